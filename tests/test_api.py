"""The public API is small and listed in __all__."""

import subprocess
import sys

import supernode


def test_exported_members():
    for name in supernode.__all__:
        assert hasattr(supernode, name), name


def test_console_script_entry_point_runs():
    # the real entry point, in a fresh process
    out = subprocess.run([sys.executable, "-m", "supernode", "show", "no-such-id"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "no-such-id" in out.stderr
    assert "Traceback" not in out.stderr
