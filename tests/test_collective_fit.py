"""C3 (docs/inference.md): the tensor-parallel all-reduce of serving in the collective library's regime. The published
all_reduce_perf sweeps in data/collective-kernels are internally consistent, the families' fitted latency and
bandwidth fraction are what the fit rule gives on them, the fit reproduces every table it uses, and the serving
model switches from the stacks' own kernels to the library's curve at the message limit."""

from __future__ import annotations

import numpy as np
import pytest

from supernode.catalog import load_catalog
from supernode.hardware import resolve_cluster
from supernode.infer import kernels
from supernode.perf import calibration as cal
from supernode.perf import collectives as coll
from supernode.perf.compute import efficiency

CAT = load_catalog(use_env=False)
FITTED = ("nvidia-hopper", "nvidia-blackwell", "amd-cdna3", "nvidia-ampere")
TABLES = cal.collective_tables()


def test_tables_cite_catalog_sources_and_chips():
    assert len(TABLES) >= 10
    for t in TABLES:
        assert t.source in CAT.sources, t.id
        resolve_cluster(CAT, t.chip, 1)  # raises on an unknown chip
        assert set(t.columns) >= {"size_bytes", "busbw_gb_per_s"}, t.id


@pytest.mark.parametrize("t", TABLES, ids=lambda t: t.id)
def test_printed_time_and_bus_bandwidth_agree(t):
    """busbw = 2 (n - 1) / n * size / time wherever the table prints both (nccl-tests' own definition); a row that
    breaks it was mistyped."""
    if "time_us" not in t.columns:
        pytest.skip("bus bandwidth only")
    col = {c: i for i, c in enumerate(t.columns)}
    n = t.gpus
    checked = 0
    for r in t.rows:
        if r[col["time_us"]] is None:
            continue
        size, time_s, busbw = float(r[col["size_bytes"]]), float(r[col["time_us"]]) * 1e-6, float(
            r[col["busbw_gb_per_s"]]) * 1e9
        if size < 1e6:  # printed to two decimals: tiny messages' bandwidth has too few digits
            continue
        assert 2 * (n - 1) / n * size / time_s == pytest.approx(busbw, rel=0.02, abs=0.015e9), (t.id, r)
        checked += 1
    assert checked or not any(r[col["time_us"]] is not None for r in t.rows)


def test_sizes_increase_within_each_table():
    for t in TABLES:
        col = t.columns.index("size_bytes")
        sizes = [float(r[col]) for r in t.rows]
        assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), t.id


@pytest.mark.parametrize("family", FITTED)
def test_family_values_are_the_fit_rules_result(family):
    a, f = cal.fit_nccl_all_reduce(CAT, family)
    eff = efficiency(family).nccl_all_reduce
    assert eff["latency_step_s"] == pytest.approx(a, rel=0.03)
    assert eff["bandwidth_fraction"] == pytest.approx(f, rel=0.02)
    # a physical fit: microseconds per step, a bus bandwidth of at most the link's (NVLS aside, C3's note)
    assert 1e-6 < a < 5e-5 and 0.5 < f <= 1.0


@pytest.mark.parametrize("family", FITTED)
def test_fit_reproduces_every_table_it_uses(family):
    eff = efficiency(family).nccl_all_reduce
    tabs = cal.nccl_fit_tables(CAT, family)
    assert tabs
    for r in tabs:
        assert r.table.gpus <= cal.NCCL_FIT_MAX_GPUS and min(r.size_bytes) >= cal.NCCL_FIT_MIN_BYTES
        m = coll.library_all_reduce_s(r.size_bytes, r.table.gpus, r.link_bytes_per_s, eff["latency_step_s"],
                                      eff["bandwidth_fraction"])
        err = m / r.time_s - 1.0
        assert np.median(np.abs(err)) < 0.18, r.table.id
        assert np.max(np.abs(err)) < 0.25, r.table.id


def test_families_without_tables_have_no_fit_and_no_library_regime():
    with pytest.raises(ValueError, match="amd-cdna4"):
        cal.fit_nccl_all_reduce(CAT, "amd-cdna4")
    assert efficiency("ascend-910").nccl_all_reduce == {}


def _ar(chip, n, size):
    cl = resolve_cluster(CAT, chip, 8)
    eff = kernels.efficiency(cl)
    ceff = kernels.collective_efficiency(cl, eff)
    return float(kernels.tp_all_reduce_s(cl, eff, np.array([size]), np.array([n]), ceff)[0]), cl, eff, ceff


@pytest.mark.parametrize("n,limit", [(2, 16.0e6), (4, 8.0e6), (8, 8.0e6)])
def test_regime_switch_at_the_stacks_message_limit(n, limit):
    below, cl, eff, ceff = _ar("b200", n, limit * 0.999)
    base = float(coll.all_reduce_s(cl, np.array([limit * 0.999]), np.array([n]), 1, ceff)[0])
    assert below == pytest.approx(base)  # the stacks' own kernels: the tier's hierarchical all-reduce
    at, *_ = _ar("b200", n, limit)
    lib = eff.nccl_all_reduce
    want = 2 * np.ceil(np.log2(n)) * lib["latency_step_s"] + 2 * (n - 1) / n * limit / (
        lib["bandwidth_fraction"] * cl.tiers[0].bandwidth_bytes_per_s)
    assert at == pytest.approx(want)
    assert at > below  # mid-size NCCL all-reduce is slower than the large-message ring model (the published sweeps)


def test_no_library_regime_without_a_fit_or_for_one_rank():
    size = 64e6
    t, cl, eff, ceff = _ar("ascend-910c", 8, size)
    assert t == pytest.approx(float(coll.all_reduce_s(cl, np.array([size]), np.array([8]), 1, ceff)[0]))
    one, *_ = _ar("b200", 1, size)
    assert one == pytest.approx(0.0, abs=1e-12)


def test_eight_gpu_blackwell_all_reduce_closer_to_published_mid_sizes_than_the_ring_model():
    """The published 8-GPU GB200 / GB300 sweeps run a 64 MB all-reduce in 265-279 us; the C3 time on an 8-rank B200
    group (NVLink 5, 900 GB/s per direction) is within 25% of each and closer than the large-message ring model
    (the scale-up collective fraction, the tier's latency) that priced every size before C3."""
    for r in cal.nccl_fit_tables(CAT, "nvidia-blackwell"):
        if r.table.gpus != 8:
            continue
        i = int(np.argmin(np.abs(r.size_bytes - 67108864)))
        size, measured = float(r.size_bytes[i]), float(r.time_s[i])
        t, cl, _, ceff = _ar("b200", 8, size)
        ring = float(coll.all_reduce_s(cl, np.array([size]), np.array([8]), 1, ceff)[0])
        assert t == pytest.approx(measured, rel=0.25), r.table.id
        assert abs(t / measured - 1) < abs(ring / measured - 1), r.table.id


def test_every_serving_answer_states_the_all_reduce_regime():
    from supernode.infer.search import search
    from supernode.infer.serving import Workload

    for chip, fitted in (("b200", True), ("ascend-910c", False)):
        r = search(CAT, "llama-3.1-8b", chip, 8, workload=Workload(1024, 128), disaggregated=False)
        line = [a for a in r["assumptions"] if a.startswith("TP all-reduce (C3)")]
        assert len(line) == 1
        assert ("NCCL / RCCL above at" in line[0]) is fitted, line[0]
