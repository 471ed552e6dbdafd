"""The grouped evaluation behind train.estimate/validity/search equals a straightforward one."""

from dataclasses import fields

import numpy as np
import pytest

from supernode.hardware import resolve_cluster
from supernode.perf.compute import efficiency
from supernode.train.memory import memory_per_chip
from supernode.train.plan import Plan, TrainWorkload
from supernode.train.search import _grid, candidates, search
from supernode.train.step import _group_plan, estimate, evaluation, validity
from supernode.workload import load_model

CASES = [("llama-3.1-8b", "h100", 64, TrainWorkload(256, 4096)),
         ("mixtral-8x7b", "h100", 64, TrainWorkload(512, 4096, "fp8", grad_dtype="bf16")),
         ("gpt3-175b", "a100", 128, TrainWorkload(512, 2048, attention_kernel="unfused"))]


def _random_plan(rng, n: int) -> Plan:
    def pick(*vals):
        return rng.choice(np.array(vals, dtype=float), n)
    return Plan(tp=pick(1, 2, 3, 4, 8), pp=pick(1, 2, 4, 5), vpp=pick(1, 2, 3), dp=pick(1, 2, 4, 8, 16, 6),
                ep=pick(1, 2, 4, 8), cp=pick(1, 2, 4), micro_batch=pick(1, 2, 4, 3), zero=pick(0, 1, 2, 3, 4),
                recompute=pick(0, 1, 2), overlap_tp=pick(0, 1), overlap_dp=pick(0, 1, 0.5), overlap_ep=pick(1, 0))


def _setup(catalog, case):
    mid, on, n, w = case
    return load_model(catalog, mid), resolve_cluster(catalog, on, n), w


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_batch_equals_each_configuration_alone(catalog, case):
    """A batch (terms evaluated once per group, then gathered) gives every configuration the values
    it gets alone (every group of size one: each formula evaluated on that configuration)."""
    m, cl, w = _setup(catalog, case)
    plan = _random_plan(np.random.default_rng(1), 40)
    batch = estimate(m, cl, w, plan)
    for i in range(40):
        alone = estimate(m, cl, w, plan.take([i])).row()
        row = batch.row(i)
        for k, v in alone.items():
            assert row[k] == pytest.approx(v, rel=1e-12, abs=0.0), (i, k)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_memory_and_validity_match_direct_formulas(catalog, case):
    m, cl, w = _setup(catalog, case)
    plan = _random_plan(np.random.default_rng(2), 500)
    br = estimate(m, cl, w, plan)
    eff = efficiency(cl.chip.family)
    mem = memory_per_chip(m, plan.arrays(), w.seq_len, w.global_batch, w.precision, eff.memory,
                          w.attention_kernel, w.grad_bytes, w.param_bytes)
    for name in ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "comm_buffers_bytes"):
        np.testing.assert_allclose(getattr(br, name), getattr(mem, name), rtol=1e-12)
    np.testing.assert_allclose(br.memory_bytes_per_chip, mem.total_bytes, rtol=1e-12)
    # the rules of validity(), written out on every configuration
    p = plan.arrays()
    t, pp, v, d, e, c, b = p.tp, p.pp, p.vpp, p.dp, p.ep, p.cp, p.micro_batch
    n_mb = w.global_batch / (d * b)
    kv = m.heads if m.mla else m.kv_heads
    direct = {
        "chips": t * c * d * pp != cl.chips,
        "tp": (m.heads % t != 0) | (kv % t != 0),
        "pp": pp * v > m.layers,
        "vpp": (v > 1) & ((pp <= 1) | (np.mod(n_mb, pp) != 0)),
        "micro-batch": (np.mod(w.global_batch, d * b) != 0) | (b < 1),
        "cp": (np.mod(w.seq_len, 2 * c) != 0) & (c > 1),
        "ep": (np.mod(d, e) != 0) | ((m.moe.routed_experts if m.moe else 1) % e != 0),
        "zero": (p.zero < 0) | (p.zero > 3),
        "recompute": (p.recompute < 0) | (p.recompute > 2),
    }
    ok, checks = validity(m, cl, w, plan)
    assert [name for name, _ in checks] == list(direct)
    for name, mask in checks:
        np.testing.assert_array_equal(mask, direct[name], err_msg=name)
    np.testing.assert_array_equal(ok, ~np.logical_or.reduce(list(direct.values())))
    np.testing.assert_array_equal(br.valid, ok)


def test_grouping_matches_np_unique_rows():
    rng = np.random.default_rng(3)
    n = 5000
    plan = Plan(tp=rng.choice([1.0, 2.0, 4.0], n), pp=rng.choice([1.0, 1.5, 2.0], n),  # not integral: np.unique
                dp=rng.choice([1.0, 3e9, 7.0], n),  # range too wide for a lookup table
                vpp=rng.integers(1, 3000, n).astype(float), ep=rng.integers(1, 3000, n).astype(float),
                cp=rng.integers(1, 3000, n).astype(float), micro_batch=rng.integers(1, 3000, n).astype(float),
                zero=rng.integers(1, 3000, n).astype(float), recompute=rng.integers(0, 3000, n).astype(float),
                overlap_dp=0.0)
    pl = plan.arrays()
    groupings = (("tp", "pp", "dp"), ("tp", "ep", "overlap_dp"),
                 ("vpp", "ep", "cp", "micro_batch", "zero", "recompute"),  # key range beyond 2^62
                 ("overlap_tp", "overlap_dp"))  # a single group
    for names, g in zip(groupings, _group_plan(pl, groupings)):
        rows = np.stack([np.asarray(getattr(pl, f)) for f in names], axis=1)
        u, inv = np.unique(rows, axis=0, return_inverse=True)
        assert g.size == len(u)
        inv_g = np.asarray(g.inv, dtype=np.intp)
        # the same partition, and each group's field values are its configurations' values
        assert len(np.unique(inv_g * len(u) + inv.reshape(-1))) == len(u)
        for j, f in enumerate(names):
            np.testing.assert_array_equal(getattr(g, f)[inv_g], rows[:, j])


def test_search_grid_equals_candidates(catalog):
    m, cl, w = _setup(catalog, CASES[1])
    degrees, others = _grid(m, cl, w)
    cand = candidates(m, cl, w)
    eff = efficiency(cl.chip.family)
    flat = estimate(m, cl, w, cand, eff)
    grid = evaluation(m, cl, w, degrees, eff, inner=others).breakdown()
    for f in fields(flat):
        np.testing.assert_array_equal(getattr(grid, f.name), getattr(flat, f.name), err_msg=f.name)
    res = search(m, cl, w, top=3)
    st = np.where(flat.valid & flat.fits, flat.step_time_s, np.inf)
    assert res.breakdown.row(0)["step_time_s"] == st.min()
    assert res.evaluated == int(flat.valid.sum()) and res.fitting == int((flat.valid & flat.fits).sum())


def test_two_dimensional_and_empty_plans(catalog):
    m, cl, w = _setup(catalog, CASES[0])
    plan = Plan(tp=np.array([[1, 2], [4, 8]]), dp=np.array([[64, 32], [16, 8]]), micro_batch=1)
    br = estimate(m, cl, w, plan)
    assert np.shape(br.step_time_s) == (2, 2)
    assert br.step_time_s[1, 0] == estimate(m, cl, w, Plan(tp=4, dp=16, micro_batch=1)).row()["step_time_s"]
    assert np.shape(validity(m, cl, w, plan)[0]) == (2, 2)
    empty = estimate(m, cl, w, Plan(tp=np.ones(0)))
    assert np.shape(empty.step_time_s) == (0,)
