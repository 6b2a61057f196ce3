"""The README stays true: every setting documented, and CI runs the README's test command."""

from __future__ import annotations

from app.settings import Settings
from tests.conftest import ROOT


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [f"GENSERVE_{name.upper()}" for name in Settings.model_fields if f"GENSERVE_{name.upper()}" not in readme]
    assert not missing, f"settings missing from README.md: {missing}"


def test_ci_runs_the_readme_test_command() -> None:
    assert "./scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
    assert "./scripts/test.sh" in (ROOT / "README.md").read_text()
    assert "./scripts/dev.sh" in (ROOT / "README.md").read_text()
