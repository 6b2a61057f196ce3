"""The `genserve` console script against a real service, as a subprocess: upload -> train --follow -> sample gives
the bytes of the raw HTTP call; `--json` outputs parse; exit codes; the progress bar in a pseudo-terminal; Ctrl-C
cancels when asked to; completion; the server's `genserve` passing client commands through."""

from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from conftest import TINY, Service
from genserve_client import Client

SCRIPT = shutil.which("genserve", path=str(Path(sys.executable).parent)) or "genserve"


def genserve(
    service: Service, *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GENSERVE_URL": service.url}
    env.pop("GENSERVE_API_KEY", None)
    done = subprocess.run([SCRIPT, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def train_options(steps: int) -> list[str]:
    return ["--steps", str(steps), *(arg for k, v in TINY.items() for arg in ("--set", f"{k}={v}"))]


def blobs_csv(path: Path) -> Path:
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [4.0, 4.0]])
    points = centers[rng.integers(0, 2, 300)] + rng.normal(0, 0.3, (300, 2))
    path.write_text("x,y\n" + "\n".join(f"{x:.4f},{y:.4f}" for x, y in points))
    return path


def test_upload_train_follow_sample_through_the_command(service: Service, tmp_path: Path) -> None:
    dataset = json.loads(genserve(service, "--json", "upload", str(blobs_csv(tmp_path / "blobs.csv"))).stdout)
    assert dataset["id"].startswith("ds_") and dataset["name"] == "blobs" and dataset["kind"] == "points"

    followed = genserve(service, "--json", "train", dataset["id"], "--family", "gan", *train_options(150), "--follow")
    training = json.loads(followed.stdout)
    assert training["status"] == "succeeded" and training["model"]["id"] == training["model_id"]
    model_id = training["model_id"]

    out = tmp_path / "samples.npy"
    written = json.loads(
        genserve(
            service, "--json", "sample", model_id, "-n", "16", "--seed", "3", "--format", "npy", "-o", str(out)
        ).stdout
    )
    raw = httpx.post(f"{service.url}/v1/models/{model_id}/samples", json={"n": 16, "seed": 3, "format": "npy"})
    assert out.read_bytes() == raw.content and written == {
        "path": str(out),
        "bytes": len(raw.content),
        "format": "npy",
        "seed": 3,
    }

    models = json.loads(genserve(service, "--json", "models", "ls", "--dataset", dataset["id"]).stdout)
    assert [m["id"] for m in models] == [model_id]
    trainings = json.loads(genserve(service, "--json", "trainings", "ls", "--status", "succeeded").stdout)
    assert training["id"] in [t["id"] for t in trainings]
    assert any(d["id"] == "ring2d" for d in json.loads(genserve(service, "--json", "datasets", "ls").stdout))
    table = genserve(service, "models", "ls").stdout  # for people: a table naming the model
    assert model_id in table and "family" in table
    assert genserve(service, "open", model_id).stdout.strip() == f"{service.url}/ui#/models/{model_id}"


def test_errors_exit_non_zero_with_the_problem(service: Service, tmp_path: Path) -> None:
    missing = genserve(service, "--json", "sample", "mdl_00000000", "-o", str(tmp_path / "x.png"), check=False)
    assert missing.returncode == 1 and missing.stdout == ""
    assert json.loads(missing.stderr)["status"] == 404
    invalid = genserve(service, "train", "ring2d", "--family", "gan", "--steps", "0", check=False)
    assert invalid.returncode == 1 and "steps" in invalid.stderr and "422" in invalid.stderr
    usage = genserve(service, "train", "ring2d", check=False)  # --family missing
    assert usage.returncode == 2 and "--family" in usage.stderr
    bad_set = genserve(service, "train", "ring2d", "--family", "gan", "--set", "steps", check=False)
    assert bad_set.returncode == 2 and "key=value" in bad_set.stderr
    assert not (tmp_path / "x.png").exists()


def read_pty(fd: int, until: bytes, timeout_s: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout_s
    while until not in seen and time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        seen += chunk
    return seen


def run_in_pty(service: Service, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    primary, secondary = pty.openpty()
    env = {**os.environ, "GENSERVE_URL": service.url, "COLUMNS": "120", "TERM": "xterm"}
    proc = subprocess.Popen(
        [SCRIPT, *args], env=env, stdin=secondary, stdout=secondary, stderr=secondary, preexec_fn=_as_from_a_shell
    )
    os.close(secondary)
    return proc, primary


def _as_from_a_shell() -> None:
    """In the child, before exec: SIGINT delivered and handled by default, as a shell starts a foreground command.
    A child inherits its parent's blocked signals and ignored handlers, and in a full run of the suite the test
    process's state let Ctrl-C reach the command never (2 SIGINTs in 40 s, bar still moving)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_the_progress_bar_in_a_terminal(service: Service) -> None:
    proc, terminal = run_in_pty(service, "train", "ring2d", "--family", "gan", *train_options(200), "--follow")
    try:
        screen = read_pty(terminal, b"sample it:", 120).decode(errors="replace")
        assert proc.wait(30) == 0, screen
    finally:
        os.close(terminal)
    assert "200/200" in screen and "100%" in screen and "succeeded" in screen, screen
    assert "\x1b[" in screen  # drawn for a terminal (colours, the bar redrawn in place)


def test_ctrl_c_asks_and_cancels(service: Service) -> None:
    proc, terminal = run_in_pty(service, "train", "ring2d", "--family", "gan", "--steps", "200000", "--follow")
    try:
        screen = read_pty(terminal, b"running", 60)
        assert b"running" in screen, screen
        proc.send_signal(signal.SIGINT)
        screen += read_pty(terminal, b"[y/N]", 20)
        assert b"Cancel training" in screen, screen
        os.write(terminal, b"y\n")
        screen += read_pty(terminal, b"canceling training", 20)
        assert proc.wait(30) == 130, screen
    finally:
        os.close(terminal)
    training_id = screen.decode(errors="replace").split("canceling training ")[1].split()[0]
    with Client(service.url) as client:
        assert client.trainings.get(training_id).status in ("canceling", "canceled")


def test_a_follower_of_a_canceled_training_exits_1(service: Service) -> None:
    started = json.loads(genserve(service, "--json", "train", "ring2d", "--family", "gan", "--steps", "200000").stdout)
    env = {**os.environ, "GENSERVE_URL": service.url}
    follower = subprocess.Popen(
        [SCRIPT, "--json", "follow", started["id"]], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(1.0)
    genserve(service, "cancel", started["id"])
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 1, err
    assert json.loads(out)["status"] == "canceled"


def test_completion_and_the_server_command_pass_through(service: Service) -> None:
    script = genserve(service, "completion", "bash").stdout
    assert "genserve" in script and "upload" in script and "complete" in script
    if shutil.which("python") and _server_installed():
        env = {**os.environ, "GENSERVE_URL": service.url}
        listed = subprocess.run(
            [sys.executable, "-m", "genserve", "--json", "datasets", "ls"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        assert any(d["id"] == "ring2d" for d in json.loads(listed.stdout))


def _server_installed() -> Any:
    import importlib.util

    return importlib.util.find_spec("genserve") is not None
