"""The search's memory-filled batch (I8) and an engine's batch cap (``max_batch``)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supernode.catalog import load_catalog
from supernode.errors import UsageError
from supernode.infer import Workload, search
from supernode.infer.plan import PlanGrid, memory_filled

CAT = load_catalog()
WL = Workload(1024, 512)


def _offline(**fixed):
    return search(CAT, "llama-3.1-70b", "h200", 8, workload=WL, precision="fp8", kv_precision="fp8",
                  fixed=dict(tp=2, pp=1, **fixed), disaggregated=False)["colocated"]


def _at(batch):
    return _offline(batch=batch)


def test_offline_search_runs_the_largest_batch_that_fits():
    """With no SLO the best batch is the memory limit, not the largest power of two under it: the chosen batch
    fits and one more sequence does not."""
    c = _offline()
    b = c["batch"]
    assert c["fits"] and b & (b - 1), f"batch {b} should be the memory limit, not a power of two"
    assert b == c["memory"]["max_batch"]
    assert _at(b)["fits"] and not _at(b + 1)["fits"]
    pow2 = 1 << (b.bit_length() - 1)
    assert c["decode_tokens_per_s"] > _at(pow2)["decode_tokens_per_s"]


def test_engine_cap_bounds_the_batch():
    free = _offline()["batch"]
    cap = free // 2 + 1
    c = _offline(max_batch=cap)
    assert c["batch"] == cap and c["fits"]
    assert _offline(max_batch=10 * free)["batch"] == free  # a cap out of reach changes nothing


def test_batch_and_cap_together_and_bad_cap_are_refused():
    with pytest.raises(UsageError, match="--max-batch"):
        _offline(batch=64, max_batch=128)
    with pytest.raises(UsageError, match="--max-batch"):
        _offline(max_batch=0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 2, 4]), st.sampled_from([1, 2]), st.sampled_from([1, 2, 8]),
                          st.integers(0, 5000)), min_size=1, max_size=12),
       st.one_of(st.none(), st.integers(1, 6000)))
def test_memory_filled_rounds_down_to_whole_sequences_per_rank(rows, cap):
    tp, pp, dp, mx = (np.array(c) for c in zip(*rows))
    plan = PlanGrid(tp=tp, pp=pp, dp=dp, ep=np.ones_like(tp), batch=np.ones_like(tp), overlap=np.zeros_like(tp))
    out = memory_filled(plan, mx, cap)
    assert np.all(out.batch > 0) and np.all(out.batch % (out.dp * out.pp) == 0)
    for t, p, d, b in zip(out.tp, out.pp, out.dp, out.batch):  # each the largest multiple of dp x pp under a limit
        limits = [m if cap is None else min(m, cap) for tt, pp_, dd, m in rows if (tt, pp_, dd) == (t, p, d)]
        assert any(b <= lim < b + d * p for lim in limits)
    for t, p, d, m in rows:  # and every plan whose limit holds a whole sequence per rank is there
        lim = m if cap is None else min(m, cap)
        if lim >= d * p:
            assert np.any((out.tp == t) & (out.pp == p) & (out.dp == d) & (out.batch == lim // (d * p) * d * p))
    assert len({tuple(r) for r in np.stack([out.tp, out.pp, out.dp, out.batch], 1)}) == len(out)


def test_joined_evaluations_equal_one_evaluation_of_both_grids():
    """``join`` of two grids' evaluations is the evaluation of the grids end to end, term by term."""
    from dataclasses import fields as dc_fields

    from supernode.hardware import resolve_cluster
    from supernode.infer import serving_arch
    from supernode.infer.serving import SLO, Options, evaluate_colocated, grid, join

    arch, cluster = serving_arch(CAT, "deepseek-r1"), resolve_cluster(CAT, "h200", 16)
    opts = Options("fp8", "fp8")
    plans = grid(arch, cluster, opts)
    half = len(plans) // 2
    a, b = plans.take(np.arange(half)), plans.take(np.arange(half, len(plans)))

    def ev(pl):
        return evaluate_colocated(arch, cluster, pl, WL, SLO(None, 0.05), opts, 0.9)

    whole, joined = ev(plans), join(ev(a), ev(b))

    def same(x, y):
        if hasattr(x, "__dataclass_fields__"):
            for f in dc_fields(x):
                same(getattr(x, f.name), getattr(y, f.name))
        elif x is None or np.isscalar(x):
            assert x == y
        else:
            np.testing.assert_allclose(np.asarray(x, float), np.asarray(y, float), rtol=1e-12)
    same(whole, joined)
