"""The RTX Blackwell efficiency record (data/efficiency/nvidia-blackwell-rtx.yaml) against the sm_120 kernel tables it
was fitted on by rule R1-R5 (validation/notes/blackwell-rtx-gemm-fraction-rule.md, written before the fit): cuBLAS
torch.mm on the RTX PRO 6000 Server and Workstation Editions (zzc0721/torch-performance-test-data issues #161 and
#160) and cuBLAS / cuBLASLt on the Max-Q edition at its 300 W rating (waynehacking8/blackwell-tensorcore-kernels).
Each test names the source's figures and turns red when a table or the family value moves away from them."""

import numpy as np
import pytest

from supernode.hardware import resolve_cluster
from supernode.perf import calibration, compute

FAMILY = "nvidia-blackwell-rtx"
# table id -> (chip, precision, rows, per-table fit at the family's other values)
ADMITTED = {
    "torchmm-rtxpro6000server-bf16": ("rtx-pro-6000-server", "bf16", 5, 0.909),
    "torchmm-rtxpro6000server-fp16": ("rtx-pro-6000-server", "fp16", 5, 0.888),
    "torchmm-rtxpro6000-bf16": ("rtx-pro-6000", "bf16", 5, 0.747),  # 0.752 at the estimated 500 before stop 56
    "torchmm-rtxpro6000-fp16": ("rtx-pro-6000", "fp16", 5, 0.735),  # 0.741 likewise
    "cublas-rtxpro6000maxq-fp16": ("rtx-pro-6000-maxq", "fp16", 5, 0.564),
    "cublaslt-rtxpro6000maxq-fp8": ("rtx-pro-6000-maxq", "fp8", 5, 0.657),
}


@pytest.fixture(scope="module")
def tables():
    return {t.id: t for t in calibration.kernel_tables()}


def test_rtx_kernel_tables_are_the_rule_r1_admissions(catalog, tables):
    """Exactly the six admitted tables are on the family's chips; each names its catalog part and source."""
    on_family = {i for i, t in tables.items() if catalog.chips[t.chip].family == FAMILY}
    assert on_family == set(ADMITTED)
    for table_id, (chip, precision, rows, _) in ADMITTED.items():
        t = tables[table_id]
        assert (t.chip, t.precision, len(t.rows)) == (chip, precision, rows)
        assert t.source in catalog.sources
    assert len({tables[i].source for i in ADMITTED}) == 2


def test_server_edition_bf16_rows_are_issue_161(tables):
    """zzc0721 issue #161: BF16 torch.mm 399.93 / 417.34 / 387.01 TFLOP/s at 4096^2 / 8192^2 / 10240^2, i.e. 0.81-0.87
    of the derived 480 TFLOP/s dense peak."""
    t = tables["torchmm-rtxpro6000server-bf16"]
    rate = {r[2]: r[5] for r in t.rows}
    assert (rate[4096], rate[8192], rate[10240]) == (399.93, 417.34, 387.01)


@pytest.mark.parametrize("table_id", sorted(ADMITTED))
def test_per_table_fits(catalog, tables, table_id):
    chip, _, _, fit = ADMITTED[table_id]
    t = tables[table_id]
    got = calibration.fitted_gemm_fraction(t, resolve_cluster(catalog, chip, 1).chip)
    assert got == pytest.approx(fit, abs=0.005)


def test_family_fractions_follow_rule_r2_to_r4():
    """R2: BF16 and FP16 share the mean of the five BF16 / FP16 fits (0.769; 0.771 before stop 56 took the
    Workstation Edition's whitepaper peak); FP8 is the one FP8 fit (0.657, one source,
    R3); FP4 and INT8 have no admitted table and take the smallest fitted value (R4), i.e. FP8's."""
    eff = compute.efficiency(FAMILY)
    bf = [f for _, p, _, f in ADMITTED.values() if p in ("bf16", "fp16")]
    assert eff.gemm_fraction("bf16") == pytest.approx(np.mean(bf), abs=0.006)
    assert eff.gemm_fraction("fp16") == eff.gemm_fraction("bf16")
    assert eff.gemm_fraction("fp8") == pytest.approx(ADMITTED["cublaslt-rtxpro6000maxq-fp8"][3], abs=0.006)
    assert "fp4" not in eff.gemm_peak_fraction and "int8" not in eff.gemm_peak_fraction
    assert eff.gemm_fraction("fp4") == eff.gemm_fraction("int8") == eff.gemm_fraction("fp8")


def test_values_without_an_admitted_measurement_are_the_default_files():
    """R5: memory, half sizes, t_0, attention and collectives stay the default file's values."""
    eff, default = compute.efficiency(FAMILY), compute.efficiency("no-such-family")
    for name in ("memory_bandwidth_fraction", "gemm_half_size", "gemm_token_half_size", "roofline_exponent",
                 "kernel_floor_s", "gemm_kernel_latency_s", "attention_peak_fraction", "collective_bandwidth_fraction"):
        assert getattr(eff, name) == getattr(default, name), name
