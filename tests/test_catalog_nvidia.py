"""Published numbers of the NVIDIA chips, NVIDIA systems and xAI Colossus in the shipped catalog.

Each expected value is the vendor's figure (datasheet, product page or keynote) converted to SI by hand; the
catalog stores the vendor's own unit and, for 'with sparsity' figures, the halving formula. Sources are the
catalog's source records (``supernode catalog sources``).
"""

from __future__ import annotations

import math

import pytest

from supernode import units
from supernode.catalog import load_catalog
from supernode.catalog.schema import BITS, PRECISIONS, Quantity

NVIDIA_CHIPS = ("a100", "a800", "h100", "h800", "h20", "h200", "b200", "gb200", "b300", "gb300", "rubin",
                "rtx-pro-6000", "rtx-pro-6000-server", "rtx-pro-6000-maxq", "rtx-pro-6000d", "l20")
NVIDIA_SYSTEMS = ("hgx-h100", "hgx-h20", "gb200-nvl72", "gb300-nvl72", "vera-rubin-nvl144", "xai-colossus")


@pytest.fixture(scope="module")
def cat():
    return load_catalog(use_env=False)


def si(q: Quantity) -> float:
    return units.to_si(q.number, q.unit)


def dense(cat, chip_id: str, precision: str) -> float:
    return si(cat.chip(chip_id).compute_dense[precision])


def tpp(cat, chip_id: str) -> float:
    """3A090 TPP = max over precisions of dense TOP/s x bit length (rules.md A.1)."""
    chip = cat.chip(chip_id)
    return max(si(q) / 1e12 * BITS[p] for p, q in chip.compute_dense.items() if q.known)


def test_all_ids_present(cat):
    assert set(NVIDIA_CHIPS) <= set(cat.chips)
    assert set(NVIDIA_SYSTEMS) <= set(cat.systems)


@pytest.mark.parametrize("chip_id", NVIDIA_CHIPS)
def test_every_precision_is_accounted_for(cat, chip_id):
    """Each precision is a rate, an explicit unknown (with reason) or listed as unsupported."""
    chip = cat.chip(chip_id)
    for p in PRECISIONS:
        assert p in chip.compute_dense or p in chip.unsupported_precisions, (chip_id, p)


@pytest.mark.parametrize(
    ("chip_id", "precision", "expected"),
    [
        ("a100", "bf16", 312e12),  # A100 datasheet, dense column
        ("a100", "int8", 624e12),
        ("a100", "int4", 1248e12),  # Ampere whitepaper Table 1
        ("h100", "bf16", 989.5e12),  # H100 datasheet 1,979 with sparsity / 2
        ("h100", "fp8", 1979e12),
        ("h100", "tf32", 494.5e12),
        ("h800", "fp8", 1979e12),
        ("h800", "fp64", 1e12),
        ("h20", "bf16", 148e12),
        ("h20", "fp8", 296e12),
        ("h200", "fp8", 1979e12),
        ("b200", "fp4", 9e15),  # HGX B200 72 PF dense / 8
        ("b200", "fp8", 4.5e15),  # HGX B200 72 PF sparse / 8 / 2
        ("b200", "fp64", 37e12),  # HGX B200 296 TF / 8
        ("gb200", "bf16", 2.5e15),  # NVL72 360 PF sparse / 72 / 2
        ("gb200", "fp8", 5e15),
        ("gb200", "fp4", 10e15),
        ("b300", "fp4", 13.5e15),  # HGX B300 108 PF dense / 8
        ("b300", "fp8", 4.5e15),
        ("b300", "int8", 0.15e15),
        ("gb300", "fp4", 15e15),  # NVL72 1,080 PF dense / 72
        ("gb300", "fp8", 5e15),
        ("rubin", "fp4", 50e15),  # GTC 2025
        ("rtx-pro-6000", "fp4", 2015.2e12),  # whitepaper Appendix A, Workstation column, dense (4,030.4 sparse, the page's "4,000 AI TOPS")
        ("rtx-pro-6000", "bf16", 503.8e12),  # the same column; estimated 500 before stop 56
        ("rtx-pro-6000", "fp8", 1007.6e12),
        ("rtx-pro-6000", "fp32", 125e12),
        ("rtx-pro-6000-server", "fp32", 120e12),  # Server Edition page
        ("rtx-pro-6000-server", "fp4", 1.92e15),  # 16 x FP32 per SM and clock (whitepaper Appendix A), dense
        ("rtx-pro-6000-server", "bf16", 480e12),  # 4 x FP32; the page's '1 PFLOPS' is sparse
        ("rtx-pro-6000-maxq", "bf16", 438.9e12),  # whitepaper Appendix A, Max-Q column, dense
        ("rtx-pro-6000-maxq", "fp8", 877.9e12),
        ("rtx-pro-6000-maxq", "fp4", 1755.7e12),
        ("l20", "fp8", 239e12),
        ("l20", "tf32", 59.8e12),
    ],
)
def test_dense_peaks(cat, chip_id, precision, expected):
    assert dense(cat, chip_id, precision) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("chip_id", "capacity_bytes", "bandwidth_bytes_per_s"),
    [
        ("a100", 80e9, 2039e9),
        ("h100", 80e9, 3.35e12),
        ("h20", 96e9, 4.0e12),
        ("h200", 141e9, 4.8e12),
        ("b200", 180e9, 8e12),
        ("gb200", 192e9, 8e12),
        ("gb300", 288e9, 8e12),
        ("rubin", 288e9, 13e12),
        ("rtx-pro-6000", 96e9, 1792e9),
        ("rtx-pro-6000-server", 96e9, 1597e9),  # Server Edition page, Lenovo Press LP2263
        ("rtx-pro-6000d", 84e9, 1398e9),
        ("l20", 48e9, 864e9),
    ],
)
def test_memory(cat, chip_id, capacity_bytes, bandwidth_bytes_per_s):
    mem = cat.chip(chip_id).memory
    assert si(mem.capacity) == pytest.approx(capacity_bytes)
    assert si(mem.bandwidth) == pytest.approx(bandwidth_bytes_per_s)


def test_rtx_pro_6000d_just_under_the_april_2025_dram_line(cat):
    chip = cat.chip("rtx-pro-6000d")
    assert si(chip.memory.bandwidth) < 1.4e12
    # tensor rates are unpublished: unknown with a reason, never guessed
    for p in ("fp4", "fp8", "bf16", "int8"):
        q = chip.compute_dense[p]
        assert not q.known and q.reason


@pytest.mark.parametrize(
    ("chip_id", "expected_tpp"),
    [("a100", 4992), ("a800", 4992), ("h100", 15832), ("h800", 15832), ("h20", 2368), ("h200", 15832),
     ("b200", 36000), ("gb200", 40000), ("b300", 54000), ("gb300", 60000), ("l20", 1913.6)],
)
def test_tpp_matches_rules_table(cat, chip_id, expected_tpp):
    """rules.md F.1 headline TPPs, recomputed from the catalog's dense rates."""
    assert tpp(cat, chip_id) == pytest.approx(expected_tpp, rel=1e-6)


def test_china_variants_cut_nvlink_but_h20_does_not(cat):
    def nvlink(chip_id):
        return si(cat.chip(chip_id).scale_up.bandwidth)

    assert nvlink("a800") == pytest.approx(400e9) and nvlink("a100") == pytest.approx(600e9)
    assert nvlink("h800") == pytest.approx(400e9) and nvlink("h100") == pytest.approx(900e9)
    assert nvlink("h20") == pytest.approx(900e9)
    assert cat.chip("h20").scale_up.bandwidth.direction == "bidirectional"


@pytest.mark.parametrize("chip_id", NVIDIA_CHIPS)
def test_links_state_direction_and_io_is_filled(cat, chip_id):
    chip = cat.chip(chip_id)
    assert chip.scale_up is not None and chip.scale_up.bandwidth is not None
    assert chip.scale_up.bandwidth.direction in ("unidirectional", "bidirectional")
    assert chip.host_interface is not None and chip.host_interface.bandwidth is not None
    assert chip.host_interface.bandwidth.direction == "bidirectional"
    if chip_id != "gb300":  # GB300's per-GPU NVLink-C2C share is unpublished (null with reason)
        assert chip.host_interface.bandwidth.known


@pytest.mark.parametrize("chip_id", ("b200", "gb200", "b300", "gb300"))
def test_blackwell_die_area_is_a_grade_c_estimate(cat, chip_id):
    area = cat.chip(chip_id).silicon.die_area
    assert area.kind == "estimate" and area.confidence == "C"
    assert cat.chip(chip_id).silicon.dies == 2


def test_gb200_nvl72(cat):
    nvl = cat.system("gb200-nvl72")
    assert sum(si(m.count) for m in nvl.composition) == 72
    assert nvl.tiers[0].level == "scale_up" and si(nvl.tiers[0].domain_size) == 72
    assert si(nvl.aggregate.compute_dense["fp8"]) == pytest.approx(360e15)
    assert si(nvl.aggregate.compute_dense["bf16"]) == pytest.approx(180e15)
    assert si(nvl.power) == pytest.approx(145_000)
    # SemiAnalysis: CloudMatrix 384 uses ~3.9x the all-in power of GB200 NVL72 (559,378 W / 145,000 W)
    assert 559_378 / si(nvl.power) == pytest.approx(3.9, abs=0.05)
    # and each Ascend 910C (780 TF BF16) is ~0.31 of a GB200 GPU
    assert 780e12 / dense(cat, "gb200", "bf16") == pytest.approx(0.31, abs=0.005)


def test_gb300_nvl72(cat):
    nvl = cat.system("gb300-nvl72")
    assert sum(si(m.count) for m in nvl.composition) == 72
    assert si(nvl.aggregate.compute_dense["fp4"]) == pytest.approx(1080e15)
    assert si(nvl.tiers[1].bandwidth) == pytest.approx(800e9 / 8)  # 800 Gb/s per GPU


def test_vera_rubin_nvl144_counts_packages_and_reproduces_huawei_ratio(cat):
    nvl = cat.system("vera-rubin-nvl144")
    assert nvl.status == "announced"
    assert sum(si(m.count) for m in nvl.composition) == 72  # 144 dies
    fp8 = si(nvl.aggregate.compute_dense["fp8"])
    assert fp8 == pytest.approx(1.2e18)
    assert si(nvl.aggregate.compute_dense["fp4"]) == pytest.approx(3.6e18)
    assert si(nvl.aggregate.memory_capacity) == pytest.approx(75e12)
    assert si(nvl.aggregate.scale_up_bandwidth) == pytest.approx(260e12)
    assert 8e18 / fp8 == pytest.approx(6.7, abs=0.05)  # Atlas 950 SuperPoD 8 EF FP8


def test_xai_colossus_reproduces_huawei_ratio(cat):
    col = cat.system("xai-colossus")
    gpus = sum(si(m.count) for m in col.composition)
    fp8 = sum(si(m.count) * dense(cat, m.chip, "fp8") for m in col.composition)
    assert gpus == 200_000
    assert fp8 == pytest.approx(395.8e18)
    assert 524e18 / fp8 == pytest.approx(1.3, abs=0.05)  # Atlas 950 SuperCluster 524 EF FP8
    assert col.assumptions and all(m.count.kind == "assumption" for m in col.composition)


@pytest.mark.parametrize("system_id", ("hgx-h100", "hgx-h20"))
def test_hgx_boards(cat, system_id):
    board = cat.system(system_id)
    assert sum(si(m.count) for m in board.composition) == 8
    assert si(board.tiers[0].bandwidth) == pytest.approx(900e9)


def test_dgx_h100_fp8_is_chip_times_count(cat):
    """DGX H100 datasheet: 32 PFLOPS FP8 with sparsity, a rounding of 8 x 3,958; dense = 8 x 1,979."""
    board = cat.system("hgx-h100")
    assert not board.aggregate.compute_dense
    assert si(board.aggregate.memory_capacity) == pytest.approx(640e9)
    fp8 = sum(si(m.count) * dense(cat, m.chip, "fp8") for m in board.composition)
    assert fp8 == pytest.approx(32e15 / 2, rel=0.02)


@pytest.mark.parametrize("chip_id", NVIDIA_CHIPS)
def test_prices_carry_a_date(cat, chip_id):
    price = cat.chip(chip_id).price
    if price is not None and price.known:
        assert price.date and (price.kind == "spec" or price.confidence == "C")


def test_no_nan(cat):
    for chip_id in NVIDIA_CHIPS:
        for q in cat.chip(chip_id).compute_dense.values():
            if q.known:
                assert math.isfinite(si(q)) and si(q) > 0
