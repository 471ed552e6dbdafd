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
