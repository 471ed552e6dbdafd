"""Shared fixtures: the built-in catalog, a CLI runner through the real entry point."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def catalog():
    from supernode import load_catalog

    return load_catalog(use_env=False)


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run `supernode ARGS` through the console-script entry point; returns (exit code, stdout, stderr)."""
    from supernode.cli import main

    monkeypatch.delenv("SUPERNODE_CATALOG", raising=False)

    def run(*args: str):
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="session")
def inference_result(catalog):
    """One inference validation case (a validation/cases/infer-*.yaml path) against the model, each computed once a
    session and shared by the tests that read it (tests/test_infer_validation.py, tests/test_track_record.py)."""
    from functools import lru_cache

    from supernode.infer.validation import run_case

    return lru_cache(maxsize=None)(lambda path: run_case(catalog, path))


@pytest.fixture(scope="session")
def inference_case_files():
    from pathlib import Path

    from supernode.infer.validation import case_files

    return case_files(Path(__file__).resolve().parents[1] / "validation" / "cases")
