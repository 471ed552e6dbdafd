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


def test_a_mistyped_fixed_degree_is_refused_not_ignored():
    """The API's ``fixed`` is a plain dict, so a typo ("attention_dp" for "dp", "tpp") used to be dropped without a
    word and the search ran free; a non-integer degree or an unknown recompute name is refused as well."""
    import pytest

    from supernode.catalog import load_catalog
    from supernode.errors import UsageError
    from supernode.infer import Workload, search
    from supernode.train.api import train_plans

    cat = load_catalog()
    wl = Workload(1000, 100)
    for fixed, match in (({"attention_dp": 2}, "unknown key 'attention_dp'"), ({"tp": 2.5}, "--tp"),
                         ({"batch": True}, "--batch")):
        with pytest.raises(UsageError, match=match):
            search(cat, "llama-3.1-8b", "h100", 8, workload=wl, fixed=fixed, disaggregated=False)
    assert search(cat, "llama-3.1-8b", "h100", 8, workload=wl, fixed={"tp": 2, "max_batch": 64},
                  disaggregated=False)["colocated"]["plan"]["tp"] == 2
    for fixed, match in (({"tpp": 4}, "unknown key 'tpp'"), ({"recompute": "some"}, "--recompute"),
                         ({"micro-batch": 0}, "--micro-batch")):
        with pytest.raises(UsageError, match=match):
            train_plans(cat, "llama-3.1-8b", "h100", 8, fixed=fixed)
    assert train_plans(cat, "llama-3.1-8b", "h100", 8, fixed={"micro-batch": 2})["plans"][0]["plan"]["micro_batch"] == 2
