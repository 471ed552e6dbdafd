"""C4 (docs/inference.md, validation/notes/custom-all-reduce-fit-rule.md): the serving stacks' own all-reduce kernels
below their message limit. The published tables in data/custom-allreduce-kernels cite catalog sources and chips, the
families' recorded latency and bandwidth fraction are what the fit rule gives on them, and the serving model prices
small messages by them where a family has them and by the tier's assumed latency where it has none."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from supernode.catalog import load_catalog
from supernode.hardware import resolve_cluster
from supernode.infer import kernels
from supernode.perf import calibration as cal
from supernode.perf import collectives as coll
from supernode.perf.compute import efficiency

CAT = load_catalog(use_env=False)
TABLES = cal.custom_all_reduce_tables()
FAMILIES = sorted({resolve_cluster(CAT, t.chip, 1).chip.family for t in TABLES})


def _fits(family):
    try:
        cal.fit_custom_all_reduce(CAT, family)
    except ValueError:
        return False
    return True


FITTED = [f for f in FAMILIES if _fits(f)]


def test_tables_cite_catalog_sources_and_chips():
    assert TABLES
    for t in TABLES:
        assert t.source in CAT.sources, t.id
        resolve_cluster(CAT, t.chip, 1)  # raises on an unknown chip
        assert t.columns == ["size_bytes", "time_us"], t.id
        assert all(len(r) == 2 and float(r[1]) > 0 for r in t.rows), t.id


def test_sizes_do_not_decrease_within_each_table():
    """Rows in size order (two shapes of one size may both appear, e.g. 512 x 8192 and 256 x 16384)."""
    for t in TABLES:
        sizes = [float(r[0]) for r in t.rows]
        assert sizes == sorted(sizes), t.id


def test_fit_tables_follow_the_rule():
    for f in FITTED:
        for r in cal.custom_fit_tables(CAT, f):
            assert 2 <= r.table.gpus <= cal.CUSTOM_AR_FIT_MAX_GPUS
            assert len(r.size_bytes) >= cal.CUSTOM_AR_FIT_MIN_ROWS
            assert r.size_bytes.max() <= cal.CUSTOM_AR_FIT_MAX_BYTES
            assert (r.size_bytes <= cal.CUSTOM_AR_DECODE_MAX_BYTES).sum() >= cal.CUSTOM_AR_DECODE_MIN_ROWS  # T1


def test_admission_refuses_what_the_amendment_names():
    """The stop-44 amendment (fixed before new tables were read) names what its tests do to the 16 tables stored in
    stop 43: the Hopper and Blackwell ones fail T1 (no decode-size rows), the GB200 one-shot table and QuickReduce
    INT4 are slower than the library at their smallest size (T2; the former fails T1 first)."""
    why = {t.id: cal.custom_ar_refusal(CAT, t) for t in TABLES}
    for tid in ("bw-trtllm14534-gb200x4-oneshot", "bw-trtllm14534-gb200x4-twoshot",
                "hp-vllm22086-h100x2-fi-fused-oneshot", "hp-vllm24111-h100x4-ca1stage", "hp-vllm24111-h100x6-ca2stage"):
        assert why[tid].startswith("T1"), (tid, why[tid])
    assert why["amd-vllm19744-mi300x4-quickreduce-int4"].startswith("T2")
    assert why["amd-vllm19744-mi300x4-quickreduce-fp"] is None


def test_t2_compares_with_the_measured_library_time():
    """T2's reference on 4 GB200 at 16 KiB is Azure's 4-GPU sweep at 64 KiB (busbw 5.71 GB/s: 17.2 us); MI300X at
    2 KiB falls back to the 8-rank RCCL tables (no 2- or 4-rank one), median of 9.14, 13.77 and 44.35 us."""
    t = cal.library_time_at(CAT, "nvidia-blackwell", 4, 16384)
    assert t == pytest.approx(65536 / (5.71e9 * 4 / 6), rel=1e-3)
    assert cal.library_time_at(CAT, "amd-cdna3", 4, 2048) == pytest.approx(13.77e-6)
    assert cal.library_time_at(CAT, "amd-cdna4", 4, 2048) is None  # MI355X's only RCCL table starts at 8 GiB


@pytest.mark.parametrize("family", FITTED)
def test_fitted_families_have_two_tables_from_two_sources(family):
    """T3: a family's C4 values rest on at least two admitted tables from two sources."""
    tabs = cal.custom_fit_tables(CAT, family)
    assert len(tabs) >= cal.CUSTOM_AR_MIN_TABLES and len({r.table.source for r in tabs}) >= cal.CUSTOM_AR_MIN_SOURCES
    a, f = cal.fit_custom_all_reduce(CAT, family)
    assert np.isfinite(a) and np.isfinite(f) and a > 0


def test_families_without_admitted_tables_have_no_fit():
    for family in ("ascend-910", *sorted(set(FAMILIES) - set(FITTED))):
        with pytest.raises(ValueError, match="T3"):
            cal.fit_custom_all_reduce(CAT, family)
        assert efficiency(family).custom_all_reduce == {}


def _ar(chip, n, size):
    cl = resolve_cluster(CAT, chip, 8)
    eff = kernels.efficiency(cl)
    ceff = kernels.collective_efficiency(cl, eff)
    return float(kernels.tp_all_reduce_s(cl, eff, np.array([size]), np.array([n]), ceff)[0]), cl, eff, ceff


@pytest.mark.parametrize("n", [2, 4, 8])
def test_small_messages_take_the_families_own_fit_or_the_tier(n):
    size = 57344.0  # 4 tokens x 7168 x BF16: a decode all-reduce
    for chip in ("b200", "h200", "mi300x", "ascend-910c"):
        t, cl, eff, ceff = _ar(chip, n, size)
        own = eff.custom_all_reduce
        if own:
            link = cl.tiers[0].bandwidth_bytes_per_s * coll.mesh_share(cl.tiers[0], n)
            want = coll.library_all_reduce_s(size, n, link, own["latency_step_s"], own["bandwidth_fraction"])
        else:
            want = float(coll.all_reduce_s(cl, np.array([size]), np.array([n]), 1, ceff)[0])
        assert t == pytest.approx(float(want)), chip
        assert t > 0


def test_assumption_line_names_the_small_message_price():
    for family in ("nvidia-blackwell", "ascend-910"):
        line = kernels.describe_tp_all_reduce(efficiency(family))
        assert ("C4" in line) == bool(efficiency(family).custom_all_reduce), line


def test_a_recorded_c4_fit_prices_small_messages_only():
    """With C4 values on the family (as a later stop may record), messages below the stacks' limit take C4's price and
    messages at or above it keep C3's."""
    cl = resolve_cluster(CAT, "b200", 8)
    eff = dataclasses.replace(kernels.efficiency(cl), custom_all_reduce={"latency_step_s": 1e-6,
                                                                         "bandwidth_fraction": 0.5})
    ceff = kernels.collective_efficiency(cl, eff)
    bw = cl.tiers[0].bandwidth_bytes_per_s
    small, big = 57344.0, 64e6
    t = kernels.tp_all_reduce_s(cl, eff, np.array([small, big]), np.array([8, 8]), ceff)
    assert t[0] == pytest.approx(float(coll.library_all_reduce_s(small, 8, bw, 1e-6, 0.5)))
    lib = eff.nccl_all_reduce
    assert t[1] == pytest.approx(float(coll.library_all_reduce_s(big, 8, bw, lib["latency_step_s"],
                                                                  lib["bandwidth_fraction"])))
    assert "C4" in kernels.describe_tp_all_reduce(eff)


@pytest.mark.parametrize("family", FITTED)
def test_recorded_values_are_the_fit(family):
    """Rule 4: a family whose admitted tables pass T3 carries its fitted values (stop 44: CDNA 3 and CDNA 4; Hopper's
    six tables are one source and Blackwell has none, so both keep C1's assumption)."""
    a, f = cal.fit_custom_all_reduce(CAT, family)
    own = efficiency(family).custom_all_reduce
    assert own["latency_step_s"] == pytest.approx(a, rel=0.01)
    assert own["bandwidth_fraction"] == pytest.approx(f, abs=0.005)


def test_hopper_and_blackwell_keep_the_assumption_until_a_second_source():
    assert "nvidia-hopper" not in FITTED and "nvidia-blackwell" not in FITTED
    for family, tables in (("nvidia-hopper", 6), ("nvidia-blackwell", 10)):
        admitted = cal.custom_fit_tables(CAT, family)
        assert len(admitted) == tables and len({r.table.source for r in admitted}) == 1  # admitted, one source (T3)
        assert efficiency(family).custom_all_reduce == {}
