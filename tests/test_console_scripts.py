"""The console scripts in pyproject.toml: each names a real command, installed next to the Python that
runs the tests, and answers --help (so `cama-submit` works wherever `python -m hpc.submit` does)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]


def test_every_package_has_a_command() -> None:
    targets = {ref.partition(".")[0] for ref in SCRIPTS.values()}
    assert targets == {"corpus", "train", "recover", "hpc"}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_target_is_a_command(name: str) -> None:
    module, _, attr = SCRIPTS[name].partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_installed_script_answers_help(name: str) -> None:
    exe = Path(sys.executable).parent / name
    assert exe.is_file(), f"{exe} missing: the package is not installed with its scripts (make install)"
    run = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "usage:" in run.stdout
