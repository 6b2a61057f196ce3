"""Choosing the torch device: cuda when available, else cpu, unless a setting says otherwise."""

from __future__ import annotations

import torch

from models.errors import Invalid


def resolve_device(setting: str = "auto") -> torch.device:
    """The device named by GENSERVE_DEVICE. Call it inside the process that will use the device: in the worker,
    that is the forked job, never the parent, because CUDA does not survive a fork."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise Invalid(f"GENSERVE_DEVICE={setting} but CUDA is not available on this machine", field=("device",))
    return device
