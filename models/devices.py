"""Choosing the torch device: cuda when available, else cpu, unless a setting says otherwise."""

from __future__ import annotations

import torch

from models.errors import Invalid


def resolve_device(value: str = "auto", setting: str = "device") -> torch.device:
    """The device a setting names (`setting` is what the setting is called, for the error). Call it inside the
    process that will use the device: in the worker, that is the forked job, never the parent, because CUDA does not
    survive a fork."""
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(value)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise Invalid(f"{setting}={value} but CUDA is not available on this machine", field=(setting,))
    return device
