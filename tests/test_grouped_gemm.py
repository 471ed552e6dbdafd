"""K5: MoE grouped GEMM kernels against the dense GEMM price (data/grouped-kernels, perf/calibration.py)."""

import dataclasses

import numpy as np
import pytest

from supernode.catalog.loader import load_catalog
from supernode.hardware import resolve_cluster
from supernode.perf import calibration, compute

CAT = load_catalog()


def _chip(name):
    return resolve_cluster(CAT, name, 1).chip


def test_grouped_tables_load_and_cite_sources():
    tables = calibration.grouped_tables()
    assert {t.id for t in tables} == {"flashinfer2503-cutedsl-masked-fp4", "vllm-gb200-trtllmgen-moe-fp4",
                                      "torchao-mxfp8-b200-fp8"}
    for t in tables:
        assert t.source in CAT.sources, t.id
        assert t.chip in CAT.chips, t.id
    for prec in ("fp4", "fp8"):
        assert compute.efficiency_file("nvidia-blackwell").grouped_gemm_fraction[prec].source in CAT.sources
    with pytest.raises(ValueError, match="no grouped-kernel tables"):
        calibration.fit_grouped_gemm_fraction(CAT, "nvidia-blackwell", "bf16")


def test_blackwell_fp4_grouped_factor_is_the_median_of_the_source_fits():
    """The family value (data/efficiency/nvidia-blackwell.yaml) is what the stated rule gives on the tables: per source
    the time-weighted ratio of dense roofline time to measured time less t_0, the median over sources."""
    per_source = calibration.grouped_fractions_by_source(CAT, "nvidia-blackwell", "fp4")
    assert set(per_source) == {"flashinfer_pr2503_grouped_masked_fp4", "vllm_gb200_wideep_part1"}
    assert per_source["flashinfer_pr2503_grouped_masked_fp4"] == pytest.approx(0.70, abs=0.01)
    assert per_source["vllm_gb200_wideep_part1"] == pytest.approx(0.60, abs=0.01)
    fitted = calibration.fit_grouped_gemm_fraction(CAT, "nvidia-blackwell", "fp4")
    assert compute.efficiency("nvidia-blackwell").grouped_fraction("fp4") == pytest.approx(fitted, abs=0.005)


def test_blackwell_fp8_grouped_factor_is_the_rule_on_its_one_source():
    """FP8 has one source (torchao's MXFP8 grouped GEMM on B200); the recorded value is the same rule's fit."""
    per_source = calibration.grouped_fractions_by_source(CAT, "nvidia-blackwell", "fp8")
    assert set(per_source) == {"torchao_moe_mxfp8_b200_breakdown"}
    fitted = calibration.fit_grouped_gemm_fraction(CAT, "nvidia-blackwell", "fp8")
    assert fitted == pytest.approx(0.831, abs=0.01)
    assert compute.efficiency("nvidia-blackwell").grouped_fraction("fp8") == pytest.approx(fitted, abs=0.005)


def test_grouped_tables_are_reproduced_row_by_row():
    """With the fitted factor every row of the CuTe DSL masked table (28-2,200 rows per group, memory- to
    compute-bound) is priced within 20% of its kernel time, and the trtllm-gen rows within 15%."""
    for t in calibration.grouped_tables():
        f = calibration.grouped_fit(t, _chip(t.chip))
        bound = 0.20 if "flashinfer2503" in t.id else 0.15
        assert np.max(np.abs(f.error_fraction)) <= bound, (t.id, f.error_fraction)


def test_same_library_dense_gemms_are_priced_at_the_dense_rate():
    """The gap is the grouped kernels', not the dense fit's: the same CuTe DSL library's dense NVFP4 GEMMs on B200
    (FlashInfer PR #3948, autotuned) are priced at 0.9-1.1 of their summed time, its grouped GEMMs at ~0.7 without K5."""
    (f,) = [f for f in calibration.fits(CAT) if f.table.id == "flashinfer3948-b200-cutedsl-autotuned-fp4"]
    assert 0.9 <= f.predicted_s.sum() / f.measured_s.sum() <= 1.1


def test_grouped_factor_divides_only_grouped_roofline_time():
    chip = _chip("b200")
    eff = compute.efficiency(chip.family)
    g = eff.grouped_fraction("fp4")
    t0 = eff.gemm_kernel_latency_s
    dense = compute.gemm_time_s(chip, eff, 2048.0, 4096.0, 7168.0, "fp4", 4, 0.5)
    grouped = compute.gemm_time_s(chip, eff, 2048.0, 4096.0, 7168.0, "fp4", 4, 0.5, grouped=True)
    assert grouped - t0 == pytest.approx((dense - t0) / g)
    # a precision without a grouped table, and a family without one, price grouped GEMMs at the dense rate
    assert eff.grouped_fraction("bf16") == 1.0
    assert compute.gemm_time_s(chip, eff, 2048.0, 4096.0, 7168.0, "bf16", 4, 2.0, grouped=True) == pytest.approx(
        compute.gemm_time_s(chip, eff, 2048.0, 4096.0, 7168.0, "bf16", 4, 2.0))
    hopper = compute.efficiency("nvidia-hopper")
    assert hopper.grouped_fraction("fp8") == 1.0


def test_serving_step_prices_routed_experts_as_grouped():
    """A DeepSeek-R1 NVFP4 decode step on B200: only the routed experts' GEMMs slow down with K5."""
    from supernode.infer.search import estimate_decode

    kw = dict(context_tokens=2000, batch_per_rank=256, tp=1, pp=1, dp=8, ep=8, precision="fp4")
    with_k5 = estimate_decode(CAT, "deepseek-r1", "b200", 8, **kw)["breakdown"]["gemm_s"]
    orig = compute.efficiency

    def no_k5(family):
        return dataclasses.replace(orig(family), grouped_gemm_peak_fraction={})

    try:
        compute.efficiency = no_k5
        without = estimate_decode(CAT, "deepseek-r1", "b200", 8, **kw)["breakdown"]["gemm_s"]
    finally:
        compute.efficiency = orig
    assert with_k5 > without
