"""The Blackwell efficiency record (data/efficiency/nvidia-blackwell.yaml) against the kernel measurements it was fitted
on: Azure's steady-state cuBLASLt FP8/FP4 sweeps on GB200, XLA's burst-timed GEMM table for B200, the CCCL streaming
benchmark on B200 and nccl-tests on GB200. Each test names the source's figure and turns red when the data or the
family value moves away from it."""

import dataclasses

import numpy as np
import pytest

from supernode.hardware import resolve_cluster
from supernode.perf import calibration, compute

TABLES = {"cublaslt-gb200-fp8": 9, "cublaslt-gb200-fp4": 8, "xla-b200-bf16": 375, "xla-b200-fp8": 375,
          "cublaslt-b200-fp4": 7, "cublas-b200-nvfp4-torchao": 7, "cublaslt-b200-nvfp4-fastcu": 2,
          "cublaslt-gb300-nvfp4-aisp": 4, "te-b300-nvfp4-prequant": 0, "torchao2427-b200-bf16": 7,
          "vllm18778-b200-bf16": 7, "vllm19566-b200-bf16": 9, "vllm18778-b200-fp8": 7, "vllm19566-b200-fp8": 8}


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
    """Azure ND GB200 v6, cuBLASLt FP8 (2.83-2.91 PFLOP/s of 5 at 4096^3-32768^3): the log-least-squares fit to the five
    shapes with every dimension >= 4096 is 0.618 (with the family's ~5 us kernel latency); at the family's value
    (0.64, the mean with a B300 and, since stop 45, a B200 table) each is within 14%. Known gap, the other way round
    from the FP4 tables: this sweep's small shapes (1024^3 at 4.4 us, 1024x2145x1024, 802816x192x768) run 40-65%
    faster than the model, whose one kernel latency is the family's mean over its sources; this turns red when the
    model prices them."""
    f = _fit(catalog, "cublaslt-gb200-fp8")
    _, m, _, k = _dims(f.table)
    large = f.large
    small = np.maximum(m, k) <= 1024
    assert large.sum() == 5 and small.sum() == 2
    # at the family's two-table value this table's large shapes run 3.4% slower than priced, each within 14%
    assert abs(np.mean(np.log1p(f.error_fraction[large]))) <= 0.04
    assert np.max(np.abs(f.error_fraction[large])) <= 0.14
    assert np.all(f.error_fraction[small] > 0.3)
    chip = resolve_cluster(catalog, f.table.chip, 1).chip
    azure = _fitted_fraction(f.table, chip, "fp8")
    assert azure == pytest.approx(0.618, abs=0.005)
    # the family's FP8 fraction (0.64) is the mean of this fit, Transformer Engine's B300 per-tensor FP8 sums' (0.67)
    # and, since stop 45 (rule B1), vLLM PR #19566's CUTLASS per-tensor FP8 row on B200 (0.62)
    tables = {t.id: t for t in calibration.kernel_tables()}
    te_fit = calibration.fitted_gemm_fraction(tables["te-b300-fp8-prequant"], resolve_cluster(catalog, "b300", 1).chip)
    assert te_fit == pytest.approx(0.672, abs=0.005)
    vllm_fit = calibration.fitted_gemm_fraction(tables["vllm19566-b200-fp8"], resolve_cluster(catalog, "b200", 1).chip)
    assert vllm_fit == pytest.approx(0.624, abs=0.005)
    assert compute.efficiency("nvidia-blackwell").gemm_fraction("fp8") == pytest.approx(
        (azure + te_fit + vllm_fit) / 3, abs=0.006)


def _fitted_fraction(table, chip, precision="fp4"):
    """The large-GEMM fraction at which the model's mean log time error over the table's large shapes is zero."""
    assert table.precision == precision
    return calibration.fitted_gemm_fraction(table, chip)


# Azure's other page revision (fa799957) of the GB200 cuBLASLt FP4 sweep: 8192^3, 16384^3, 32768^3 in TFLOP/s (source
# azure_ai_bench_gb200, note); its smaller rows, 4096^3 included, are not restated there and are taken as the stored ones
AZURE_FP4_REVISION_FA799957 = {8192: 7609.1, 16384: 5604.0, 32768: 5262.2}


def test_blackwell_fp4_fraction_is_the_mean_of_the_five_table_fits(catalog):
    """The family's FP4 fraction (0.68) is the mean of the fits to five FP4 tables (shapes with every dimension >=
    4096, the family's 5.0 us kernel latency in the model): Azure's GB200 cuBLASLt sweep as stored (7.5-7.6 PFLOP/s of
    10; fits 0.78) and in its other revision (5.3-5.6 PFLOP/s at 16384^3-32768^3; 0.65), pytorch/ao's B200 cuBLAS
    NVFP4 rows (5.4-5.5 of 9 at 6144^3-8192^3; 0.67), DeepGEMM PR #348's B200 cuBLASLt column (5.24 at 8192^3, 3.94
    at 4096x4096x7168; 0.57) and (stop 25) cuBLASLt at 8192^3 on one B200 at 1,965 MHz application clocks (Nsight
    kernel times 179.0 / 179.6 us, 6.1 PFLOP/s; 0.74). Every large shape of every table is then within 30% of the
    model. Blackwell Ultra's tables fit their own value (next test)."""
    tables = {t.id: t for t in calibration.kernel_tables()}
    gb200 = tables["cublaslt-gb200-fp4"]
    rows = [list(r) for r in gb200.rows]
    for r in rows:
        if r[2] == r[3] == r[4] and r[2] in AZURE_FP4_REVISION_FA799957:
            r[5] = AZURE_FP4_REVISION_FA799957[r[2]]
    revision = gb200.model_copy(update={"rows": rows, "id": "cublaslt-gb200-fp4-fa799957"})
    fits = {}
    for t in (gb200, revision, tables["cublas-b200-nvfp4-torchao"], tables["cublaslt-b200-fp4"],
              tables["cublaslt-b200-nvfp4-fastcu"]):
        chip = resolve_cluster(catalog, t.chip, 1).chip
        fits[t.id] = _fitted_fraction(t, chip)
        f = calibration.fit(t, chip)
        assert np.max(np.abs(f.error_fraction[f.large])) <= 0.30, t.id
    assert fits["cublaslt-gb200-fp4"] == pytest.approx(0.78, abs=0.01)
    assert fits["cublaslt-gb200-fp4-fa799957"] == pytest.approx(0.65, abs=0.01)
    assert fits["cublas-b200-nvfp4-torchao"] == pytest.approx(0.67, abs=0.01)
    assert fits["cublaslt-b200-fp4"] == pytest.approx(0.57, abs=0.01)
    assert fits["cublaslt-b200-nvfp4-fastcu"] == pytest.approx(0.74, abs=0.01)
    family = compute.efficiency("nvidia-blackwell").gemm_fraction("fp4")
    assert family == pytest.approx(np.mean(list(fits.values())), abs=0.006)
    # the family's FP4 tables are B200 / GB200 ones: Blackwell Ultra is fitted apart
    family_chips = {resolve_cluster(catalog, t.chip, 1).chip.id for t in (gb200, tables["cublaslt-b200-fp4"])}
    assert family_chips.isdisjoint(compute.efficiency("nvidia-blackwell").chip_gemm_peak_fraction)


def test_blackwell_bf16_fraction_is_the_mean_of_the_rule_b1_table_fits(catalog):
    """Rule B1-B3 (validation/notes/blackwell-bf16-gemm-fraction-rule.md, fixed before the fit): the family's BF16 (and
    FP16) fraction is the mean of the per-table fits to the admitted BF16 tables with rows of every dimension >= 4096:
    pytorch/ao PR #2427's cuBLAS lines on B200 (1.41-1.45 PFLOP/s at 4096^3-8192^3; 0.71), vLLM PR #19566's torch-bf16
    column on B200 (1.51 PFLOP/s at 16384 x 6144 x 4096; 0.74) and Transformer Engine's B300 sums (0.70): 0.715, from
    three sources. XLA's burst table stays out (an upper bound: it fits 0.79), and vLLM PR #18778's rows (M <= 1024)
    enter only the kernel-latency fit. Turns red when a table or the family value moves."""
    tables = {t.id: t for t in calibration.kernel_tables()}
    admitted = ("torchao2427-b200-bf16", "vllm19566-b200-bf16", "te-b300-bf16-prequant")
    fits = {}
    for table_id in admitted:
        t = tables[table_id]
        fits[table_id] = _fitted_fraction(t, resolve_cluster(catalog, t.chip, 1).chip, "bf16")
    assert fits == pytest.approx({"torchao2427-b200-bf16": 0.707, "vllm19566-b200-bf16": 0.742,
                                  "te-b300-bf16-prequant": 0.696}, abs=0.005)
    assert len({tables[i].source for i in admitted}) == 3
    eff = compute.efficiency("nvidia-blackwell")
    assert eff.gemm_fraction("bf16") == pytest.approx(np.mean(list(fits.values())), abs=0.006)
    assert eff.gemm_fraction("fp16") == eff.gemm_fraction("bf16")
    with pytest.raises(ValueError, match="no GEMM with every dimension"):
        calibration.fitted_gemm_fraction(tables["vllm18778-b200-bf16"], resolve_cluster(catalog, "b200", 1).chip)
    xla = tables["xla-b200-bf16"]
    assert calibration.fitted_gemm_fraction(xla, resolve_cluster(catalog, "b200", 1).chip) > max(fits.values()) + 0.04


# Transformer Engine's B300 GEMM profile with --pre-quantize, the same block as the NVFP4 sums it fits (source
# te_gemm_profiling_b300): the BF16 and FP8 current-scaling Fprop sums (ms) of the four shapes of its fprop entry
TE_B300_FPROP_MS = {"bf16": 4.250, "fp8": 2.158}


def test_blackwell_ultra_fp4_fraction_is_the_mean_of_its_two_table_fits(catalog):
    """B300 / GB300 realize less of their NVFP4 spec peak (13.5 / 15 PFLOP/s) than B200 / GB200 of theirs: their
    own fraction (0.46, K1b) is the mean of the fits to Transformer Engine's B300 pre-quantized per-layer sums (1.254 /
    1.305 / 1.205 ms for four GEMMs, 5.1 PFLOP/s; 0.41) and the GB300 runbook's cuBLASLt 4096^3 rows (4.7-7.1
    PFLOP/s; 0.51). At the B200 / GB200 value the model would price TE's sums >= 30% too fast; TE's BF16 and FP8
    sums of the same block need no such correction (the family's values price them at 1.00x and 1.14x), so the
    shortfall is FP4's."""
    tables = {t.id: t for t in calibration.kernel_tables()}
    te, aisp = tables["te-b300-nvfp4-prequant"], tables["cublaslt-gb300-nvfp4-aisp"]
    assert [s.label for s in te.sums] == ["fprop", "dgrad", "wgrad"] and [s.time_us for s in te.sums] == [
        1254, 1305, 1205]
    eff = compute.efficiency("nvidia-blackwell")
    fits = {}
    for t in (te, aisp):
        chip = resolve_cluster(catalog, t.chip, 1).chip
        assert eff.gemm_fraction("fp4", chip.id) == eff.chip_gemm_peak_fraction[chip.id]["fp4"]
        fits[t.id] = calibration.fitted_gemm_fraction(t, chip)
        f = calibration.fit(t, chip)
        assert np.max(np.abs(f.error_fraction[f.large])) <= 0.30, t.id
    assert fits["te-b300-nvfp4-prequant"] == pytest.approx(0.41, abs=0.01)
    assert fits["cublaslt-gb300-nvfp4-aisp"] == pytest.approx(0.51, abs=0.01)
    for chip_id in ("b300", "gb300"):
        assert eff.gemm_fraction("fp4", chip_id) == pytest.approx(np.mean(list(fits.values())), abs=0.006)
        assert eff.gemm_fraction("fp8", chip_id) == eff.gemm_fraction("fp8")  # only FP4 is their own
    b300 = resolve_cluster(catalog, "b300", 1).chip
    at_family = calibration.fit(te, b300, dataclasses.replace(eff, chip_gemm_peak_fraction={}))
    assert np.all(at_family.error_fraction < -0.30)
    fprop = te.sums[0]
    m, n, k = (np.array([float(s[i]) for s in fprop.shapes]) for i in range(3))
    for precision, bytes_per_element, band in (("bf16", 2, 0.05), ("fp8", 1, 0.15)):
        t = np.sum(compute.gemm_time_s(b300, eff, m, n, k, precision, 1.0, bytes_per_element))
        assert abs(t / (TE_B300_FPROP_MS[precision] * 1e-3) - 1) <= band, precision


def test_blackwell_fp4_decode_shape_gemms_are_priced_within_the_backends_spread(catalog):
    """Decode-shaped FP4 GEMMs (M = 1-1024 rows) on GB200, FlashInfer PR #2540 with autotuning: the CUTLASS backend
    (the kernel TensorRT-LLM 1.0's NVFP4 linear layers run) is priced within 46% at every readable row (45% before stop
    45's refit of the kernel latency, 5.1 -> 4.9 us, made its smallest rows faster still) and within 10%
    at M = 1024 with N, K >= 4608, where most of a serving step's GEMM time goes; before the kernel latency entered the
    model these rows ran 1.5-2.7x slower than priced. The trtllm-gen backend column runs 20-60% slower than the model
    at every row, cuDNN and CuTe DSL within the CUTLASS spread."""
    fits = {f.table.id: f for f in calibration.fits(catalog)}
    cutlass = fits["flashinfer2540-gb200-autotune-cutlass-fp4"]
    _, m, n, k = _dims(cutlass.table)
    e = cutlass.error_fraction
    assert np.max(np.abs(e)) <= 0.46
    big = (m == 1024) & (np.minimum(n, k) >= 4608)
    assert big.sum() == 3 and np.all(np.abs(e[big]) <= 0.10)
    trtllm = fits["flashinfer2540-gb200-autotune-trtllm-fp4"].error_fraction
    assert np.all(trtllm[m > 1] < -0.2)


def test_blackwell_cublaslt_fp4_gemms_of_a_few_hundred_rows_are_a_known_gap(catalog):
    """Known gap: DeepGEMM PR #348's B200 cuBLASLt column (cublasTest 13.3) runs FP4 GEMMs of M = 128-1024 rows
    1.25-1.9x slower than the model (errors -0.20 to -0.48), which prices them, with the family's kernel latency, like the
    FlashInfer CUTLASS and pytorch/ao cuBLAS kernels; one library's small-M kernel choice, not modelled. Turns red when
    the model prices these shapes."""
    (f,) = [f for f in calibration.fits(catalog) if f.table.id == "cublaslt-b200-fp4"]
    _, m, _, _ = _dims(f.table)
    few_rows = m <= 1024
    assert few_rows.sum() == 5
    assert np.all(f.error_fraction[few_rows] < -0.15)


def test_vllm_small_m_fp4_rows_run_faster_than_the_kernel_latency(catalog):
    """Known gap: vLLM PR #42235's SM100 rows (M = 1-32 at N 7168, K 2048) take 3.2-4.2 us in all, less than the
    family's 5.0 us kernel latency alone: the latency grows with K and the number of tiles (FlashInfer's M = 1 rows
    take 4.3 us at K 1,024 and 10.4 us at K 8,192) rather than being one constant. Turns red when the model prices
    them within 40%."""
    for table_id in ("vllm42235-sm100-cutlass-fp4", "vllm42235-sm100-cutedsl-fp4", "vllm42235-sm100-trtllm-fp4"):
        f = _fit(catalog, table_id)
        assert np.all(f.measured_s < 4.3e-6)
        assert np.all(f.error_fraction > 0.4)


# FlashInfer PR #2805 (pgera, 2026-04-20), table "1. FP8 fixed-len": trtllm-gen MLA decode on one B200, FP8 KV and FP8
# MMA, 128 heads, 8,192 tokens of KV, page 32; CUPTI, CUDA graph, cold L2, median of 30: (batch, q_len, ms)
TRTLLM_GEN_MLA_DECODE_B200 = [(32, 1, 0.0524), (64, 1, 0.0782), (128, 1, 0.1450), (256, 1, 0.2852),
                              (32, 4, 0.1321), (64, 4, 0.2610), (128, 4, 0.4788), (256, 4, 0.9845)]


def test_blackwell_mla_decode_attention_is_within_the_published_kernel_times(catalog):
    """The family's attention fraction (0.45, an assumption) prices absorbed-MLA decode (576/512 head dims) on B200 at
    0.9-1.35x the time of TensorRT-LLM's trtllm-gen FP8 kernel as measured in 2026 (45-54% of the FP8 peak at 64-256
    sequences): no faster than the best kernel, at most a third slower. Turns red if the model's Blackwell decode
    attention becomes faster than the kernel, or much slower."""
    from supernode.infer import kernels

    chip = resolve_cluster(catalog, "b200", 1).chip
    eff = compute.efficiency(chip.family)
    ratios = []
    for batch, q_len, ms in TRTLLM_GEN_MLA_DECODE_B200:
        flops = 2.0 * batch * 128 * q_len * 8192 * (576 + 512)
        kv_bytes = batch * 8192 * 576 * 1.0
        ratios.append(float(kernels.attention_s(chip, eff, flops, kv_bytes, "fp8")) / (ms * 1e-3))
    ratios = np.array(ratios)
    assert np.all(ratios[1:] >= 1.0) and ratios[0] > 0.85
    assert np.all(ratios <= 1.35)


@pytest.mark.parametrize("table_id, lo, hi", [("xla-b200-bf16", 0.0, 0.20), ("xla-b200-fp8", 0.15, 0.40)])
def test_xla_b200_burst_table_is_an_upper_bound(catalog, table_id, lo, hi):
    """XLA's B200 table is timed in short bursts (one warm-up, 5 runs): on its rows of >= 64 GFLOP the family values
    predict slower GEMMs than it measured, by a median 11% for BF16 (the table fits 0.79 vs the family's 0.71, fitted
    since stop 45 on three other tables, burst-timed too) and 30% for FP8 (0.735 of B200's peak vs 0.62 fitted on
    GB200's steady state, plus the ~5 us kernel latency on 20-100 us kernels). GEMMs below 8 GFLOP, 2-10x slower than
    the model before the kernel latency entered it, are now priced with a median error under 10%; the whole table's
    median |error| is 9-10% (34-38% without the latency)."""
    f = _fit(catalog, table_id)
    g, m, n, k = _dims(f.table)
    flop = 2 * g * m * n * k
    big, small = flop >= 64e9, flop < 8e9
    assert big.sum() == 34 and small.sum() == 215
    assert lo < np.median(f.error_fraction[big]) < hi
    assert abs(np.median(f.error_fraction[small])) < 0.10
    assert f.median_abs_error < 0.12


def test_blackwell_memory_and_nvlink_fractions_reproduce_their_measurements(catalog):
    """HBM: CCCL DeviceTransform relu on B200 streams 6.553 TB/s (2^28 FP16 read + written). NVLink 5: nccl-tests
    all-reduce (ring) on the 4 GPUs of an ND GB200 v6 VM reaches 679.6 GB/s bus bandwidth at 8 GB."""
    eff = compute.efficiency("nvidia-blackwell")
    b200 = resolve_cluster(catalog, "b200", 8)
    assert eff.memory_bandwidth_fraction * b200.chip.memory_bandwidth_bytes_per_s == pytest.approx(6.553e12, rel=0.01)
    gb200 = resolve_cluster(catalog, "gb200", 4)
    (nvlink,) = [t for t in gb200.tiers if t.level == "scale_up"]
    assert eff.tier_fraction("scale_up") * nvlink.bandwidth_bytes_per_s == pytest.approx(679.61e9, rel=0.01)
