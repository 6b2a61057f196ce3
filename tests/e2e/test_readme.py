"""The README's walk-through, pasted into bash as a user would, against a real API and worker with API keys on (a key
made by `genserve keys new`, passed the way the README says): it must run to the end, and what it leaves behind must
be what the README says it is."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from redis import Redis

from tests.conftest import ROOT, LiveService, make_settings, settings_env

pytestmark = pytest.mark.slow

MARKER = "<!-- tests/e2e/test_readme.py runs this block"
WALKTHROUGH_TIMEOUT_S = 600


def walkthrough() -> str:
    """The bash block that follows the marker in README.md."""
    text = (ROOT / "README.md").read_text()
    after = text[text.index(MARKER) :]
    found = re.search(r"```bash\n(.*?)```", after, re.DOTALL)
    assert found, "no bash block after the walk-through marker"
    return found.group(1)


@pytest.fixture(scope="module")
def keyed_service(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[tuple[LiveService, str]]:
    tmp = tmp_path_factory.mktemp("readme")
    Redis.from_url(redis_url).flushdb()
    settings = make_settings(tmp, redis_url, api_keys_file=tmp / "api-keys")
    made = subprocess.run(
        [sys.executable, "-m", "genserve", "keys", "new", "--scopes", "sample+train"],
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    service = LiveService(settings, tmp)
    try:
        service.start_worker()
        service.start_api()
        yield service, made.stdout.strip()
    finally:
        service.stop()
        Redis.from_url(redis_url).flushdb()


def test_the_readme_walkthrough_runs_as_pasted(keyed_service: tuple[LiveService, str], tmp_path: Path) -> None:
    service, token = keyed_service
    for tool in ("curl", "jq", "python3"):
        assert shutil.which(tool), f"{tool} is needed (./scripts/test.sh installs curl and jq)"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GENSERVE_URL": service.base_url,
        "GENSERVE_TOKEN": token,
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walkthrough()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=WALKTHROUGH_TIMEOUT_S,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{service.logs()}"
    out = done.stdout
    assert re.search(r"^dataset ds_\w+$", out, re.MULTILINE) and re.search(r"^model mdl_\w+$", out, re.MULTILINE), out
    assert out.count('data: {"status": "succeeded"') == 2, out
    samples = json.loads(next(line for line in out.splitlines() if line.startswith("[[")))
    assert len(samples) == 4 and all(len(point) == 2 for point in samples)

    assert Image.open(tmp_path / "blobs-curves.png").format == "PNG"
    assert re.search(r"^/v1/trainings/tr_\w+/previews/300$", out, re.MULTILINE), out  # the last step's preview
    scatter = Image.open(tmp_path / "blobs.png")
    assert scatter.format == "PNG" and scatter.size == (512, 512)
    digits = Image.open(tmp_path / "digits.png")
    assert digits.size == (4 * (10 * (8 + 2) + 2),) * 2  # 10 x 10 digits of 8 x 8 px, drawn 4x larger
    paths = Image.open(tmp_path / "digits-paths.png")
    assert paths.size == (4 * (8 * 10 + 2), 4 * (10 * 10 + 2))  # 8 steps across, a row per digit class
    assert (tmp_path / "blobs.csv").read_text().startswith("x,y,label\n")
