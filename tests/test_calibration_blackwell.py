"""The Blackwell efficiency record (data/efficiency/nvidia-blackwell.yaml) against the kernel measurements it was fitted
on: Azure's steady-state cuBLASLt FP8/FP4 sweeps on GB200, XLA's burst-timed GEMM table for B200, the CCCL streaming
benchmark on B200 and nccl-tests on GB200. Each test names the source's figure and turns red when the data or the
family value moves away from it."""

import numpy as np
import pytest

from supernode.hardware import resolve_cluster
from supernode.perf import calibration, compute

TABLES = {"cublaslt-gb200-fp8": 9, "cublaslt-gb200-fp4": 8, "xla-b200-bf16": 375, "xla-b200-fp8": 375}


def _fit(catalog, table_id):
    (f,) = [f for f in calibration.fits(catalog) if f.table.id == table_id]
    return f


def _dims(table):
    col = {c: i for i, c in enumerate(table.columns)}
    return tuple(np.array([float(r[col[c]]) for r in table.rows]) for c in ("groups", "m", "n", "k"))


def test_blackwell_kernel_tables_load(catalog):
    tables = {t.id: t for t in calibration.kernel_tables()}
    for table_id, rows in TABLES.items():
        t = tables[table_id]
        assert len(t.rows) == rows
        assert t.source in catalog.sources
        assert catalog.chips[t.chip].family == "nvidia-blackwell"


def test_gb200_fp8_fraction_is_the_fit_to_the_cublaslt_sweep(catalog):
    """Azure ND GB200 v6, cuBLASLt FP8 (2.83-2.91 PFLOP/s of 5 at 4096^3-32768^3): the family's FP8 fraction (0.60) is
    the log-least-squares fit to the five shapes with every dimension >= 4096, each within 7%. Known gap: 1024^3 and
    1024x2145x1024 (64-128 output tiles for 148 SMs) run 2-4x slower than the model, which has no wave quantization or
    launch floor; this turns red when it does."""
    f = _fit(catalog, "cublaslt-gb200-fp8")
    _, m, n, k = _dims(f.table)
    large = np.minimum(np.minimum(m, n), k) >= 4096
    small = np.maximum(m, k) <= 1024
    assert large.sum() == 5 and small.sum() == 2
    assert abs(np.mean(np.log1p(f.error_fraction[large]))) <= 0.02
    assert np.max(np.abs(f.error_fraction[large])) <= 0.07
    assert np.all(f.error_fraction[small] < -0.4)


def test_gb200_fp4_fraction_is_the_fit_to_the_cublaslt_sweep(catalog):
    """Azure ND GB200 v6, cuBLASLt FP4 (7.49-7.63 PFLOP/s of 10 at 8192^3-32768^3, revision 2a370be6): the stored
    table fits 0.73 on the four shapes with every dimension >= 4096; an other revision (fa799957, 5.3-5.6 PFLOP/s)
    fits 0.605. The family's FP4 fraction is the mean, 0.67, so the model runs the stored table's large shapes
    ~8% slow (mean log error of the time +0.08) and each within 25%."""
    f = _fit(catalog, "cublaslt-gb200-fp4")
    _, m, n, k = _dims(f.table)
    large = np.minimum(np.minimum(m, n), k) >= 4096
    assert large.sum() == 4
    assert 0.04 <= np.mean(np.log1p(f.error_fraction[large])) <= 0.12
    assert np.max(np.abs(f.error_fraction[large])) <= 0.25


@pytest.mark.parametrize("table_id, lo, hi", [("xla-b200-bf16", 0.0, 0.15), ("xla-b200-fp8", 0.10, 0.35)])
def test_xla_b200_burst_table_is_an_upper_bound(catalog, table_id, lo, hi):
    """XLA's B200 table is timed in short bursts (one warm-up, 5 runs): on its rows of >= 64 GFLOP the family fractions
    (steady state) predict slower GEMMs than it measured, by a median 4% for BF16 (the table fits 0.765 vs 0.72) and 18% for
    FP8 (0.735 of B200's peak vs 0.60 fitted on GB200's steady state). Known gap: GEMMs below 8 GFLOP run 2-10x slower
    than the model (launch floor, wave quantization); this turns red when the model prices them."""
    f = _fit(catalog, table_id)
    g, m, n, k = _dims(f.table)
    flop = 2 * g * m * n * k
    big, small = flop >= 64e9, flop < 8e9
    assert big.sum() == 34 and small.sum() == 215
    assert lo < np.median(f.error_fraction[big]) < hi
    assert np.median(f.error_fraction[small]) < -0.5


def test_blackwell_memory_and_nvlink_fractions_reproduce_their_measurements(catalog):
    """HBM: CCCL DeviceTransform relu on B200 streams 6.553 TB/s (2^28 FP16 read + written). NVLink 5: nccl-tests
    all-reduce (ring) on the 4 GPUs of an ND GB200 v6 VM reaches 679.6 GB/s bus bandwidth at 8 GB."""
    eff = compute.efficiency("nvidia-blackwell")
    b200 = resolve_cluster(catalog, "b200", 8)
    assert eff.memory_bandwidth_fraction * b200.chip.memory_bandwidth_bytes_per_s == pytest.approx(6.553e12, rel=0.01)
    gb200 = resolve_cluster(catalog, "gb200", 4)
    (nvlink,) = [t for t in gb200.tiers if t.level == "scale_up"]
    assert eff.tier_fraction("scale_up") * nvlink.bandwidth_bytes_per_s == pytest.approx(679.61e9, rel=0.01)
