"""Published numbers for the non-NVIDIA chips and the Huawei/Google systems in the shipped catalog.

Each case names its source; values are converted to SI with :func:`supernode.units.to_si` and compared
with a relative tolerance.
"""

from __future__ import annotations

import pytest

from supernode.catalog import load_catalog
from supernode.catalog.schema import Quantity
from supernode.hardware import per_chip_per_direction
from supernode.units import to_si

REL = 1e-3

OTHER_CHIPS = ["ascend-910b", "ascend-910c", "ascend-950pr", "ascend-950dt", "ascend-960", "ascend-970", "mi300x",
               "mi325x", "mi355x", "tpu-v5e", "tpu-v5p", "tpu-v6e", "tpu-ironwood", "gaudi2", "gaudi3", "mlu370", "ppu"]
OTHER_SYSTEMS = ["cloudmatrix-384", "atlas-950-superpod", "atlas-960-superpod", "atlas-950-supercluster",
                 "atlas-960-supercluster", "tpu-v5p-pod", "ironwood-pod"]


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def si(q: Quantity) -> float:
    assert q is not None and q.known, "expected a known value"
    return to_si(q.number, q.unit)


def test_all_ids_present(cat):
    assert set(OTHER_CHIPS) <= set(cat.chips)
    assert set(OTHER_SYSTEMS) <= set(cat.systems)


# (chip, precision, SI FLOP/s or OP/s, source / locator)
PEAKS = [
    ("ascend-910c", "bf16", 780e12, "SemiAnalysis CM384 comparison table, per chip"),
    ("ascend-910c", "fp16", 800e12, "Huawei Connect 2025 roadmap slide"),
    ("ascend-950dt", "fp8", 1e15, "Huawei Connect 2025 roadmap slide"),
    ("ascend-950dt", "fp4", 2e15, "Huawei Connect 2025 roadmap slide"),
    ("ascend-950pr", "fp8", 1e15, "Huawei Connect 2025 roadmap slide"),
    ("ascend-960", "fp8", 2e15, "Huawei Connect 2025 roadmap slide"),
    ("ascend-960", "fp4", 4e15, "Huawei Connect 2025 roadmap slide"),
    ("ascend-970", "fp8", 4e15, "Huawei Connect 2025 roadmap slide"),
    ("ascend-970", "fp4", 8e15, "Huawei Connect 2025 roadmap slide"),
    ("mi300x", "bf16", 1307.4e12, "AMD MI300X data sheet, 2,614.9 with sparsity / 2"),
    ("mi300x", "fp8", 2614.9e12, "AMD MI300X data sheet, 5,229.8 with sparsity / 2"),
    ("mi300x", "fp64", 81.7e12, "AMD MI300X data sheet, vector FP64"),
    ("mi325x", "fp8", 2614.9e12, "AMD MI325X specifications"),
    ("mi355x", "fp8", 5033e12, "SemiAnalysis gpu-specs.ts, dense"),
    ("mi355x", "fp4", 10066e12, "AMD 20.1 PF with sparsity; 10,066 dense"),
    ("tpu-v5e", "bf16", 197e12, "Cloud TPU v5e docs"),
    ("tpu-v5e", "int8", 393e12, "Cloud TPU v5e docs"),
    ("tpu-v5p", "bf16", 459e12, "Cloud TPU v5p docs"),
    ("tpu-v6e", "bf16", 918e12, "Cloud TPU v6e docs"),
    ("tpu-v6e", "int8", 1836e12, "Cloud TPU v6e docs"),
    ("tpu-ironwood", "fp8", 4614e12, "Google Ironwood blog"),
    ("tpu-ironwood", "bf16", 2307e12, "Cloud TPU7x docs"),
    ("gaudi2", "bf16", 432e12, "Intel Hot Chips 2024, slide 2"),
    ("gaudi3", "bf16", 1835e12, "Intel Hot Chips 2024, slide 4"),
    ("gaudi3", "fp8", 1835e12, "Intel Hot Chips 2024, slide 4"),
    ("mlu370", "int8", 128e12, "Cambricon MLU370-X8: 256 TOPS per two-chip card"),
]


@pytest.mark.parametrize("chip,precision,expected,where", PEAKS, ids=[f"{c}-{p}" for c, p, _, _ in PEAKS])
def test_dense_peaks(cat, chip, precision, expected, where):
    assert si(cat.chip(chip).compute_dense[precision]) == pytest.approx(expected, rel=REL), where


# (chip, capacity bytes, bandwidth bytes/s)
MEMORY = [
    ("ascend-910c", 128e9, 3.2e12),
    ("ascend-950pr", 128e9, 1.6e12),
    ("ascend-950dt", 144e9, 4.0e12),
    ("ascend-960", 288e9, 9.6e12),
    ("ascend-970", 288e9, 14.4e12),
    ("mi300x", 192e9, 5.3e12),
    ("mi325x", 256e9, 6.0e12),
    ("mi355x", 288e9, 8.0e12),
    ("tpu-v5p", 95e9, 2765e9),
    ("tpu-ironwood", 192e9, 7.37e12),
    ("gaudi3", 128e9, 3.67e12),
]


@pytest.mark.parametrize("chip,capacity,bandwidth", MEMORY, ids=[m[0] for m in MEMORY])
def test_memory(cat, chip, capacity, bandwidth):
    mem = cat.chip(chip).memory
    assert si(mem.capacity) == pytest.approx(capacity, rel=REL)
    assert si(mem.bandwidth) == pytest.approx(bandwidth, rel=REL)


# Huawei's interconnect figures are recorded as stated and read as bidirectional per chip
INTERCONNECT_BIDIR = [
    ("ascend-910c", 784e9),
    ("ascend-950pr", 2e12),
    ("ascend-950dt", 2e12),
    ("ascend-960", 2.2e12),
    ("ascend-970", 4e12),
    ("mi300x", 896e9),
    ("mi355x", 1075.2e9),
    ("tpu-v5p", 1200e9),
    ("tpu-ironwood", 1.2e12),
    ("gaudi3", 21 * 200e9 / 8 * 2),
]


@pytest.mark.parametrize("chip,bidir", INTERCONNECT_BIDIR, ids=[c for c, _ in INTERCONNECT_BIDIR])
def test_scale_up_bandwidth(cat, chip, bidir):
    bw = cat.chip(chip).scale_up.bandwidth
    assert 2 * per_chip_per_direction(bw) == pytest.approx(bidir, rel=REL)


def test_ascend_910c_uni_direction_matches_huawei_paper(cat):
    # Huawei arXiv 2506.12708: 392 GB/s unidirectional UB bandwidth per NPU
    assert per_chip_per_direction(cat.chip("ascend-910c").scale_up.bandwidth) == pytest.approx(392e9, rel=REL)


def test_unsupported_and_unknown_stay_explicit(cat):
    for cid in OTHER_CHIPS:
        chip = cat.chip(cid)
        for p, q in chip.compute_dense.items():
            assert q.known or q.reason, f"{cid}.{p}: null without a reason"
    assert "fp8" in cat.chip("ascend-910c").unsupported_precisions
    assert "fp4" in cat.chip("mi300x").unsupported_precisions
    assert not any(q.known for q in cat.chip("ppu").compute_dense.values()), "PPU compute is unpublished"


def test_roadmap_status(cat):
    for cid in ("ascend-950pr", "ascend-950dt", "ascend-960", "ascend-970"):
        assert cat.chip(cid).status == "roadmap"
    for sid in ("atlas-950-superpod", "atlas-960-superpod", "atlas-950-supercluster", "atlas-960-supercluster"):
        assert cat.system(sid).status == "roadmap"


def test_estimates_are_grade_c(cat):
    for cid in OTHER_CHIPS:
        from supernode.catalog.loader import iter_quantities
        for where, q in iter_quantities(cat.chip(cid)):
            if q.kind == "estimate":
                assert q.confidence in (None, "C"), f"{cid}.{where}"


def test_910c_die_area_is_two_910b_dies(cat):
    a910b = si(cat.chip("ascend-910b").silicon.die_area)
    assert a910b == pytest.approx(665.61e-6, rel=REL)  # TechInsights
    assert si(cat.chip("ascend-910c").silicon.die_area) == pytest.approx(2 * a910b, rel=REL)


def _count(system) -> float:
    return sum(si(m.count) for m in system.composition)


def test_cloudmatrix_384(cat):
    s = cat.system("cloudmatrix-384")
    assert _count(s) == 384
    assert si(s.power) == pytest.approx(559_378, rel=REL)  # SemiAnalysis all-in
    # 7 x 400G per NPU per direction = 2,800 Gb/s = 350 GB/s (SemiAnalysis)
    assert per_chip_per_direction(s.tiers[0].bandwidth) == pytest.approx(350e9, rel=REL)
    assert si(s.tiers[0].domain_size) == 384


def test_cloudmatrix_vs_gb200_ratios_from_chip_figures(cat):
    """SemiAnalysis (16 Apr 2025): 384 x 910C vs 72 x GB200 (2,500 TF, 192 GB, 8 TB/s each)."""
    c = cat.chip("ascend-910c")
    n = 384
    gb200_bf16, gb200_mem, gb200_bw = 72 * 2500e12, 72 * 192e9, 72 * 8e12
    assert n * si(c.compute_dense["bf16"]) / gb200_bf16 == pytest.approx(1.7, abs=0.05)
    assert n * si(c.memory.capacity) / gb200_mem == pytest.approx(3.6, abs=0.05)
    assert n * si(c.memory.bandwidth) / gb200_bw == pytest.approx(2.1, abs=0.05)
    assert si(cat.system("cloudmatrix-384").power) / 145_000 == pytest.approx(3.9, abs=0.05)
    assert n / 72 == pytest.approx(5.3, abs=0.05)
    assert si(c.compute_dense["bf16"]) / 2500e12 == pytest.approx(1 / 3, abs=0.03)


def test_atlas_950_superpod(cat):
    s = cat.system("atlas-950-superpod")
    assert _count(s) == 8192
    assert si(s.aggregate.compute_dense["fp8"]) == pytest.approx(8e18, rel=REL)
    assert si(s.aggregate.compute_dense["fp4"]) == pytest.approx(16e18, rel=REL)
    assert si(s.aggregate.memory_capacity) == pytest.approx(1152e12, rel=REL)
    assert si(s.aggregate.scale_up_bandwidth) == pytest.approx(16.3e15, rel=REL)
    # Huawei: 6.7x Vera Rubin NVL144's 1.2 EF FP8
    assert si(s.aggregate.compute_dense["fp8"]) / 1.2e18 == pytest.approx(6.7, abs=0.05)


def test_atlas_950_supercluster(cat):
    s = cat.system("atlas-950-supercluster")
    assert _count(s) == 524_288 == 64 * 8192
    assert si(s.aggregate.compute_dense["fp8"]) == pytest.approx(524e18, rel=REL)
    assert si(s.aggregate.compute_dense["fp4"]) == pytest.approx(1e21, rel=REL)
    assert si(s.tiers[0].domain_size) == 8192
    # Huawei: 1.3x xAI Colossus, taken as 200,000 Hopper GPUs x 1,979 TF dense FP8 = 395.8 EF
    assert si(s.aggregate.compute_dense["fp8"]) / (200_000 * 1979e12) == pytest.approx(1.3, abs=0.05)


def test_atlas_960(cat):
    s = cat.system("atlas-960-superpod")
    assert _count(s) == 15_488
    assert si(s.aggregate.compute_dense["fp8"]) == pytest.approx(30e18, rel=REL)
    assert si(s.aggregate.compute_dense["fp4"]) == pytest.approx(60e18, rel=REL)
    assert si(s.aggregate.scale_up_bandwidth) == pytest.approx(34e15, rel=REL)
    sc = cat.system("atlas-960-supercluster")
    assert _count(sc) >= 1_000_000
    assert sc.aggregate.compute_dense["fp8"].confidence == "C"


def test_google_pods(cat):
    v5p = cat.system("tpu-v5p-pod")
    assert _count(v5p) == 8960
    assert v5p.tiers[0].topology == "torus-3d"
    iw = cat.system("ironwood-pod")
    assert _count(iw) == 9216
    assert si(iw.aggregate.compute_dense["fp8"]) == pytest.approx(42.5e18, rel=REL)
    assert 9216 * si(cat.chip("tpu-ironwood").compute_dense["fp8"]) == pytest.approx(42.5e18, rel=0.001)


def test_systems_tiers_have_known_bandwidth(cat):
    # the performance model needs a bandwidth on every tier
    for sid in OTHER_SYSTEMS:
        for t in cat.system(sid).tiers:
            assert t.bandwidth is not None and t.bandwidth.known, f"{sid}: {t.name}"
