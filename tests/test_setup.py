"""The first hour of a user: what the set-up installs, and that the tests never touch a Redis database of the user's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from redis import Redis

from genserve import GRACEFUL_SHUTDOWN_S, embedded_redis
from tests.conftest import ROOT

SETUP = ROOT / "scripts" / "setup.sh"


def dry_run(tmp_path: Path, *, gpu: bool = False, extras: str = "", venv: Path | None = None) -> list[str]:
    """The commands scripts/setup.sh would run, on a machine with or without an NVIDIA GPU."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    if gpu:
        smi.write_text('#!/bin/sh\necho "GPU 0: NVIDIA H200 (UUID: GPU-0)"\n')
        smi.chmod(0o755)
    elif smi.exists():
        smi.unlink()
    path = f"{bin_dir}:/usr/bin:/bin" if gpu else "/usr/bin:/bin"  # no nvidia-smi on a CPU machine's PATH
    env = {
        "PATH": path,
        "HOME": str(tmp_path),
        "GENSERVE_SETUP_DRY_RUN": "1",
        "GENSERVE_EXTRAS": extras,
        "GENSERVE_VENV": str(venv or tmp_path / "fresh-venv"),
    }
    done = subprocess.run(["bash", str(SETUP)], env=env, capture_output=True, text=True, cwd=ROOT, check=True)
    return done.stdout.splitlines()


def test_a_fresh_machine_without_a_gpu_gets_the_cpu_build_of_torch(tmp_path: Path) -> None:
    lines = dry_run(tmp_path)
    torch_lines = [line for line in lines if "torch" in line]
    assert torch_lines, lines
    assert all("torch==2.13.0+cpu" in line for line in torch_lines), torch_lines
    assert any("--index-url https://download.pytorch.org/whl/cpu" in line for line in torch_lines), torch_lines
    assert not any("cu1" in line for line in lines)


def test_a_machine_with_an_nvidia_gpu_gets_the_cuda_build(tmp_path: Path) -> None:
    torch_lines = [line for line in dry_run(tmp_path, gpu=True) if "torch" in line]
    assert torch_lines == [line for line in torch_lines if "torch==2.13.0" in line and "+cpu" not in line]
    assert len(torch_lines) == 1


def test_the_service_installs_without_the_test_tooling(tmp_path: Path) -> None:
    service = dry_run(tmp_path)[-1]
    assert service.endswith("pip install -q -e ./client[cli] -e ."), service
    assert dry_run(tmp_path, extras="test")[-1].endswith("pip install -q -e ./client[cli,test] -e .[test]")


def test_a_second_start_reinstalls_nothing(tmp_path: Path) -> None:
    """The project's own virtualenv was set up by scripts/test.sh with the test extras: the service's set-up (no
    extras) and the tests' again find everything in place."""
    venv = ROOT / ".venv"
    if not (venv / ".genserve-installed").exists():
        pytest.skip("the virtualenv was not set up by scripts/setup.sh (run ./scripts/test.sh)")
    for extras in ("", "test"):
        lines = dry_run(tmp_path, extras=extras, venv=venv)
        assert not any(line.startswith("+") for line in lines), lines
        assert "# genserve is installed and up to date" in lines


def run_a_redis_test(env_overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One test that uses the Redis fixture (and flushes its database), in a pytest of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENSERVE_", "PYTEST_"))}
    env.update(env_overrides)
    test = "tests/app/test_auth.py::test_open_without_keys"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_tests_never_flush_a_database_they_did_not_create(tmp_path: Path) -> None:
    with embedded_redis(tmp_path / "users-redis") as url:
        users = Redis.from_url(url)
        users.set("a-users-key", "precious")
        ran = run_a_redis_test({"GENSERVE_REDIS_URL": url})  # what a user exported for dev.sh
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert users.get("a-users-key") == b"precious"
        refused = run_a_redis_test({"GENSERVE_TEST_REDIS_URL": url})  # named for the tests, but not empty
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert "GENSERVE_TEST_REDIS_URL names a database that holds 1 keys" in refused.stdout + refused.stderr
        assert users.get("a-users-key") == b"precious"
        users.close()


def test_the_docker_files_keep_their_promises() -> None:
    """The CPU image asks for the CPU build of torch, its CUDA variant is a build argument; only the API has an HTTP
    health check; the API is published on localhost only and gets the time its in-flight requests may need."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG TORCH_VARIANT=cpu" in dockerfile
    assert '"torch==${TORCH_VERSION}+${TORCH_VARIANT}"' in dockerfile
    instructions = [line.split()[0] for line in dockerfile.splitlines() if line.strip() and line[0].isupper()]
    # The image runs workers too, which serve no HTTP: no image-wide health check.
    assert "FROM" in instructions and "HEALTHCHECK" not in instructions
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["api"]["ports"] == ["127.0.0.1:8000:8000"]
    assert "healthz" in " ".join(services["api"]["healthcheck"]["test"])
    assert int(services["api"]["stop_grace_period"].rstrip("s")) > GRACEFUL_SHUTDOWN_S
    for worker in ("worker", "worker-gpu"):
        assert "healthcheck" not in services[worker], worker
    assert services["worker-gpu"]["build"]["args"]["TORCH_VARIANT"].startswith("cu")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "genserve-data", "tests"} <= set(ignored)
