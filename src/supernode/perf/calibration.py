"""Kernel measurement tables (``data/kernels/*.yaml``) and how well the GEMM model (K1-K2 in
:mod:`supernode.perf.compute`) reproduces them with a family's efficiencies.

A kernel table is published timings of single GEMMs on one chip (shape, layout, achieved
FLOP/s). It fits the family's shape parameters (token half size, smooth-roofline exponent,
large-GEMM fraction); the validation cases then test the whole model end to end.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from supernode.catalog.loader import Catalog, builtin_dir, parse_item
from supernode.catalog.schema import Strict
from supernode.hardware import ChipSpec
from supernode.perf.collectives import mesh_share
from supernode.perf.compute import Efficiency, efficiency, gemm_time_s


class _MeasuredTable(Strict):
    """A table of published kernel measurements on one catalog chip, from one source record."""

    id: str
    description: str
    source: str
    chip: str
    rows: list[list[str | float | int]]  # one measurement per row, in the subclass's ``columns`` order


class GemmSum(Strict):
    """The measured total time of a named set of GEMMs, each its own kernel, run one after the other, where the source
    prints only the sum (e.g. Transformer Engine's per-layer sums)."""

    label: str
    shapes: list[tuple[int, int, int]]  # [m, n, k] of each GEMM
    time_us: float


class KernelTable(_MeasuredTable):
    precision: str
    input_bytes_per_element: float
    output_bytes_per_element: float
    columns: list[Literal["layout", "groups", "m", "n", "k", "tflop_per_s"]]
    sums: list[GemmSum] = []  # measured sums of several GEMMs, after the rows


LARGE_GEMM_DIM = 4096  # a "large" GEMM: every dimension at least this (the large-GEMM fraction's fit set)


@dataclass(frozen=True)
class KernelFit:
    """Predicted vs measured time of a table's entries: its rows, then its sums (``kernels``: GEMM kernels per entry,
    ``large``: entries whose every GEMM has every dimension >= LARGE_GEMM_DIM)."""

    table: KernelTable
    measured_s: np.ndarray
    predicted_s: np.ndarray
    kernels: np.ndarray | None = None
    large: np.ndarray | None = None

    @property
    def error_fraction(self) -> np.ndarray:
        return self.predicted_s / self.measured_s - 1.0

    @property
    def median_abs_error(self) -> float:
        return float(np.median(np.abs(self.error_fraction)))


def _tables(folder: str, cls):
    """Every table of ``cls`` in the built-in data folder ``folder``, in file-name order."""
    return [parse_item(p, cls) for p in sorted(Path(builtin_dir() / folder).glob("*.yaml"))]


def kernel_tables() -> list[KernelTable]:
    return _tables("kernels", KernelTable)


def fit(table: KernelTable, chip: ChipSpec, eff: Efficiency | None = None) -> KernelFit:
    """Predicted vs measured time of every GEMM row in ``table`` on ``chip``, then of every sum (the sum of its GEMMs'
    predicted times)."""
    eff = eff or efficiency(chip.family)
    col = {c: i for i, c in enumerate(table.columns)}
    g = np.array([float(r[col["groups"]]) for r in table.rows])
    m, n, k = (np.array([float(r[col[c]]) for r in table.rows]) for c in ("m", "n", "k"))
    flop = 2.0 * g * m * n * k
    measured = flop / (np.array([float(r[col["tflop_per_s"]]) for r in table.rows]) * 1e12)
    predicted = np.asarray(gemm_time_s(chip, eff, m, n, k, table.precision, g, table.input_bytes_per_element), float)
    large = np.minimum(np.minimum(m, n), k) >= LARGE_GEMM_DIM
    kernels = np.ones(len(table.rows))
    for s in table.sums:
        sm, sn, sk = (np.array([float(x[i]) for x in s.shapes]) for i in range(3))
        t = np.sum(gemm_time_s(chip, eff, sm, sn, sk, table.precision, 1.0, table.input_bytes_per_element))
        measured = np.append(measured, s.time_us * 1e-6)
        predicted = np.append(predicted, t)
        large = np.append(large, bool(np.all(np.minimum(np.minimum(sm, sn), sk) >= LARGE_GEMM_DIM)))
        kernels = np.append(kernels, len(s.shapes))
    return KernelFit(table, measured, predicted, kernels, large)


def fitted_gemm_fraction(table: KernelTable, chip: ChipSpec, eff: Efficiency | None = None) -> float:
    """The large-GEMM fraction e_prec (K1) at which the model's mean log time error over the table's large entries
    (every dimension >= LARGE_GEMM_DIM) is zero, the family's other values (half sizes, t_0, e_mem) as they are: the
    per-table fit behind the fitted fractions of data/efficiency (bisection; the error falls as e_prec rises)."""
    base = eff or efficiency(chip.family)
    p = table.precision

    def mean_log(f: float) -> float:
        e = dataclasses.replace(base, gemm_peak_fraction={**base.gemm_peak_fraction, p: f},
                                chip_gemm_peak_fraction={})
        r = fit(table, chip, e)
        if not r.large.any():
            raise ValueError(f"kernel table {table.id}: no GEMM with every dimension >= {LARGE_GEMM_DIM}")
        return float(np.mean(np.log(r.predicted_s[r.large] / r.measured_s[r.large])))

    lo, hi = 0.05, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mean_log(mid) > 0 else (lo, mid)
    return 0.5 * (lo + hi)


def fit_kernel_latency_s(catalog: Catalog, family: str, grid_s: np.ndarray | None = None,
                         eff: Efficiency | None = None) -> float:
    """The family's fixed GEMM kernel latency t_0 (K1) fitted on its kernel tables: the grid value (0-12 us, 0.1 us
    steps) that minimizes the mean squared log error of time, each source weighing equally (within a source, each
    table equally), every kernel taking at least the kernel floor as in the serving model. The other efficiencies
    stay as ``eff`` (the family's own by default)."""
    from supernode.hardware import resolve_cluster

    eff = eff or efficiency(family)
    grid = np.arange(0.0, 12.0001e-6, 0.1e-6) if grid_s is None else np.asarray(grid_s, float)
    by_source: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for t in kernel_tables():
        chip = resolve_cluster(catalog, t.chip, 1).chip
        if chip.family != family:
            continue
        f = fit(t, chip, dataclasses.replace(eff, gemm_kernel_latency_s=0.0))
        by_source[t.source].append((f.predicted_s, f.measured_s, f.kernels))
    if not by_source:
        raise ValueError(f"no kernel tables for chip family {family!r} in data/kernels")
    floor = eff.kernel_floor_s

    def objective(t0: float) -> float:
        # a sum of n kernels takes n·t_0 (each kernel at least the floor: a sum's GEMMs are all well above it)
        return float(np.mean([np.mean([np.mean(np.log(np.maximum(p + n * t0, n * floor) / m) ** 2)
                                       for p, m, n in tables]) for tables in by_source.values()]))

    return float(grid[int(np.argmin([objective(t0) for t0 in grid]))])


def fits(catalog: Catalog) -> list[KernelFit]:
    from supernode.hardware import resolve_cluster

    return [fit(t, resolve_cluster(catalog, t.chip, 1).chip) for t in kernel_tables()]


class GroupedKernelTable(_MeasuredTable):
    """Published timings of MoE grouped GEMM kernels (``groups`` experts' GEMMs [m x k]·[k x n] in one kernel) on one
    chip (K5): ``time_us`` as printed; ``tflop_per_s`` where the source prints it over the valid rows (masked
    layouts draw each group's rows at random around ``m``), from which the valid rows per group are
    tflop_per_s·time / (2 n k groups); null: ``m`` is the mean rows per group."""

    rows: list[list[str | float | int | None]]
    precision: str
    input_bytes_per_element: float
    output_bytes_per_element: float
    columns: list[Literal["layout", "groups", "m", "n", "k", "time_us", "tflop_per_s"]]


def grouped_tables() -> list[GroupedKernelTable]:
    return _tables("grouped-kernels", GroupedKernelTable)


def grouped_fit(table: GroupedKernelTable, chip: ChipSpec, eff: Efficiency | None = None) -> KernelFit:
    """Predicted (the family's grouped GEMMs, K5) vs measured time of every row of ``table`` on ``chip``."""
    eff = eff or efficiency(chip.family)
    col = {c: i for i, c in enumerate(table.columns)}
    g, m, n, k, t = (np.array([float(r[col[c]]) for r in table.rows]) for c in ("groups", "m", "n", "k", "time_us"))
    tf = np.array([np.nan if r[col["tflop_per_s"]] is None else float(r[col["tflop_per_s"]]) for r in table.rows])
    measured = t * 1e-6
    m = np.where(np.isnan(tf), m, tf * 1e12 * measured / (2.0 * n * k * g))  # valid rows per group
    predicted = gemm_time_s(chip, eff, m, n, k, table.precision, g, table.input_bytes_per_element, grouped=True)
    return KernelFit(table, measured, np.asarray(predicted, dtype=float))


def grouped_fractions_by_source(catalog: Catalog, family: str, precision: str) -> dict[str, float]:
    """Per source, the grouped-GEMM factor (K5) that makes the model's summed time of its rows on chips of
    ``family`` at ``precision`` equal the measured sum: Σ(dense roofline time) / Σ(measured - t_0), t_0 the
    family's kernel latency (time-weighted, so the rows that take the time set it)."""
    from supernode.hardware import resolve_cluster

    eff = dataclasses.replace(efficiency(family), grouped_gemm_peak_fraction={})
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for t in grouped_tables():
        chip = resolve_cluster(catalog, t.chip, 1).chip
        if chip.family != family or t.precision != precision:
            continue
        f = grouped_fit(t, chip, eff)  # factor 1: the dense price
        sums[t.source][0] += float(np.sum(f.predicted_s - eff.gemm_kernel_latency_s))
        sums[t.source][1] += float(np.sum(f.measured_s - eff.gemm_kernel_latency_s))
    return {s: roof / meas for s, (roof, meas) in sums.items()}


def fit_grouped_gemm_fraction(catalog: Catalog, family: str, precision: str) -> float:
    """The family's grouped-GEMM factor at ``precision`` (K5): the median over sources of
    :func:`grouped_fractions_by_source`, each source weighing once. ValueError when no table measures it."""
    per_source = grouped_fractions_by_source(catalog, family, precision)
    if not per_source:
        raise ValueError(f"no grouped-kernel tables for chip family {family!r} at {precision} in data/grouped-kernels")
    return float(np.median(list(per_source.values())))


GLUE_MIN_TOKENS = 2048  # rows below this are launch/tail bound, not bandwidth bound (serving iterations carry more)


class GlueKernelTable(_MeasuredTable):
    """Published timings of memory-bound glue kernels (norms, quantization, activations, RoPE, KV casts) on one
    chip: achieved HBM bandwidth per row (``bytes_per_s``), as the source prints it or computed from its time and
    bytes (``bandwidth_kind``: stated or computed)."""

    columns: list[Literal["kernel", "implementation", "tokens", "hidden", "bytes_per_s", "bandwidth_kind"]]


def glue_tables() -> list[GlueKernelTable]:
    return _tables("glue-kernels", GlueKernelTable)


def glue_fractions_by_source(catalog: Catalog, family: str) -> dict[str, float]:
    """Per source, the median achieved / nominal HBM bandwidth of its glue-kernel rows at >= GLUE_MIN_TOKENS
    tokens on chips of ``family`` (nominal: the catalog's memory bandwidth of the row's chip)."""
    from supernode.hardware import resolve_cluster

    by_source: dict[str, list[float]] = defaultdict(list)
    for t in glue_tables():
        chip = resolve_cluster(catalog, t.chip, 1).chip
        if chip.family != family or not chip.memory_bandwidth_bytes_per_s:
            continue
        col = {c: i for i, c in enumerate(t.columns)}
        for r in t.rows:
            if float(r[col["tokens"]]) >= GLUE_MIN_TOKENS:
                by_source[t.source].append(float(r[col["bytes_per_s"]]) / chip.memory_bandwidth_bytes_per_s)
    return {s: float(np.median(v)) for s, v in by_source.items() if v}


def fit_glue_bandwidth_fraction(catalog: Catalog, family: str) -> float:
    """The family's glue-kernel bandwidth fraction (I22): the median over sources of each source's median
    achieved / nominal HBM bandwidth (:func:`glue_fractions_by_source`), each source weighing once whatever its
    row count. ValueError when the family has no glue-kernel table."""
    per_source = glue_fractions_by_source(catalog, family)
    if not per_source:
        raise ValueError(f"no glue-kernel tables for chip family {family!r} in data/glue-kernels")
    return float(np.median(list(per_source.values())))


ATTENTION_MIN_TOKENS = 1024  # prefill rows whose query and key lengths both reach this (serving prompt chunks do)


class AttentionKernelTable(_MeasuredTable):
    """Published timings of prefill (context) fused attention kernels on one chip (I35): per row the shape and the
    kernel time (``time_us``) or, where the source prints only a rate, its TFLOP/s in the source's own count
    (``tflop_convention``: ``causal_halved`` counts half the square's FLOPs for a causal row, ``full`` all of them).
    ``precision``: the kernel's Q/K/V input format (bf16, fp16, fp8); ``attention``: mha (GQA included) or mla."""

    precision: Literal["bf16", "fp16", "fp8"]
    attention: Literal["mha", "mla"]
    causal: bool
    flop_convention: str
    tflop_convention: Literal["causal_halved", "full"] = "causal_halved"
    rows: list[list[float | int | None]]  # None: the source does not print that column for the row
    columns: list[Literal["batch", "q_len", "kv_len", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v", "time_us",
                          "tflop_per_s"]]


def attention_tables() -> list[AttentionKernelTable]:
    return _tables("attention-kernels", AttentionKernelTable)


def attention_row_flops(table: AttentionKernelTable, row) -> float:
    """FLOPs of one row as the model counts them (K3): 2 b h_q s_q c (d_qk + d_v), c the mean attended keys: s_kv,
    or for a causal row whose queries are the last s_q of s_kv keys, s_kv - s_q / 2."""
    col = {c: i for i, c in enumerate(table.columns)}
    b, sq, skv, h, dqk, dv = (float(row[col[c]]) for c in ("batch", "q_len", "kv_len", "heads_q", "head_dim_qk",
                                                            "head_dim_v"))
    c = skv - sq / 2.0 if table.causal else skv
    return 2.0 * b * h * sq * c * (dqk + dv)


def attention_row_time_s(table: AttentionKernelTable, row) -> float:
    """The row's kernel time: as printed, else the source's FLOPs (its own convention) over its TFLOP/s."""
    col = {c: i for i, c in enumerate(table.columns)}
    t = row[col["time_us"]] if "time_us" in col else None
    if t is not None:
        return float(t) * 1e-6
    flops = attention_row_flops(table, row)
    if table.causal and table.tflop_convention == "full":
        sq, skv = float(row[col["q_len"]]), float(row[col["kv_len"]])
        flops *= skv / (skv - sq / 2.0)  # the source counts the whole s_q x s_kv rectangle
    return flops / (float(row[col["tflop_per_s"]]) * 1e12)


def attention_fractions_by_source(catalog: Catalog, family: str, precision: str,
                                  chips: frozenset[str] | None = None) -> dict[str, float]:
    """Per source, the median achieved / dense-peak FLOP rate of its prefill attention rows with query and key lengths
    >= ATTENTION_MIN_TOKENS at ``precision`` (fp16 tables count as bf16) on ``chips`` (chip ids), or where ``chips`` is
    None on the chips of ``family`` that have no own value in its efficiency file (I35); the peak is the catalog's
    dense peak of the row's chip at the kernel's input precision."""
    from supernode.hardware import resolve_cluster
    from supernode.perf.compute import attention_precision_key, efficiency_file

    key = attention_precision_key(precision)
    data = efficiency_file(family)
    own = set(data.chip_attention_prefill_peak_fraction) if data else set()
    by_source: dict[str, list[float]] = defaultdict(list)
    for t in attention_tables():
        chip = resolve_cluster(catalog, t.chip, 1).chip
        if attention_precision_key(t.precision) != key:
            continue
        if (chip.id not in chips) if chips is not None else (chip.family != family or chip.id in own):
            continue
        col = {c: i for i, c in enumerate(t.columns)}
        for r in t.rows:
            if min(float(r[col["q_len"]]), float(r[col["kv_len"]])) >= ATTENTION_MIN_TOKENS:
                rate = attention_row_flops(t, r) / attention_row_time_s(t, r)
                by_source[t.source].append(rate / chip.peak(t.precision))
    return {s: float(np.median(v)) for s, v in by_source.items() if v}


def fit_attention_prefill_fraction(catalog: Catalog, family: str, precision: str,
                                   chips: frozenset[str] | None = None) -> float:
    """The prefill attention fraction at ``precision`` (I35) of ``family`` (``chips`` None) or of the chips ``chips``:
    the median over sources of :func:`attention_fractions_by_source`, each source weighing once. ValueError when no
    table measures it."""
    per_source = attention_fractions_by_source(catalog, family, precision, chips)
    if not per_source:
        raise ValueError(f"no prefill attention tables for chip family {family!r}"
                         + (f" (chips {', '.join(sorted(chips))})" if chips else "")
                         + f" at {precision} in data/attention-kernels")
    return float(np.median(list(per_source.values())))


DECODE_MIN_KV_TOKENS = 1024  # per sequence
DECODE_MIN_WORK_ITEMS = 128  # sequences x KV heads: enough independent (sequence, head) blocks to fill the GPU


class DecodeAttentionKernelTable(_MeasuredTable):
    """Published timings of decode (generation) attention kernels on one chip: per row the batch, the new query tokens
    per sequence, the KV length per sequence, the heads and head dims (MLA: 1 KV head of 576 / 512), the kernel time
    and, where printed, the source's achieved bandwidth. A check of the model's decode attention pricing (its KV
    stream at the family's HBM streaming fraction), not a calibration input."""

    attention: Literal["mha", "mla"]
    kv_bytes_per_element: float
    q_bytes_per_element: float
    rows: list[list[float | int | None]]
    columns: list[Literal["batch", "q_len", "kv_len", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v", "time_us",
                          "bytes_per_s"]]


def decode_attention_tables() -> list[DecodeAttentionKernelTable]:
    return _tables("decode-attention-kernels", DecodeAttentionKernelTable)


def decode_kv_bytes(table: DecodeAttentionKernelTable, row) -> float:
    """KV-cache bytes one row's kernel reads: b s_kv h_kv (d_qk + d_v) bytes for MHA/GQA (K and V), b s_kv d_qk for MLA
    (one latent of 576 that is both key and value)."""
    col = {c: i for i, c in enumerate(table.columns)}
    b, skv, hkv, dqk, dv = (float(row[col[c]]) for c in ("batch", "kv_len", "heads_kv", "head_dim_qk", "head_dim_v"))
    per_token = dqk if table.attention == "mla" else hkv * (dqk + dv)
    return b * skv * per_token * table.kv_bytes_per_element


def decode_saturated_rows(table: DecodeAttentionKernelTable) -> list:
    """The rows of a saturated KV stream, the regime of a serving step's decode batch: MHA/GQA, one new token per
    sequence, at least DECODE_MIN_KV_TOKENS per sequence and DECODE_MIN_WORK_ITEMS (sequence, KV head) blocks."""
    if table.attention != "mha":
        return []
    col = {c: i for i, c in enumerate(table.columns)}
    return [r for r in table.rows if float(r[col["q_len"]]) == 1 and r[col["time_us"]] is not None
            and float(r[col["kv_len"]]) >= DECODE_MIN_KV_TOKENS
            and float(r[col["batch"]]) * float(r[col["heads_kv"]]) >= DECODE_MIN_WORK_ITEMS]


def decode_attention_model_ratio_by_source(catalog: Catalog, family: str, kv_format: str) -> dict[str, float]:
    """Per source, the median of the model's decode attention time (serving attention, K3 / K4 roofline) over the
    measured kernel time, on the saturated rows (:func:`decode_saturated_rows`) of chips of ``family`` with a
    ``kv_format`` cache (bf16: 16-bit, fp8: 8-bit)."""
    from supernode.hardware import resolve_cluster
    from supernode.infer import kernels

    by_source: dict[str, list[float]] = defaultdict(list)
    for t in decode_attention_tables():
        chip = resolve_cluster(catalog, t.chip, 1).chip
        if chip.family != family or ("bf16" if t.kv_bytes_per_element >= 2 else "fp8") != kv_format:
            continue
        eff = efficiency(chip.family)
        col = {c: i for i, c in enumerate(t.columns)}
        for r in decode_saturated_rows(t):
            b, sq, skv, h, dqk, dv = (float(r[col[c]]) for c in ("batch", "q_len", "kv_len", "heads_q", "head_dim_qk",
                                                                  "head_dim_v"))
            modelled = float(kernels.attention_s(chip, eff, 2.0 * b * sq * skv * h * (dqk + dv), decode_kv_bytes(t, r),
                                                 "bf16"))
            by_source[t.source].append(modelled / (float(r[col["time_us"]]) * 1e-6))
    return {s: float(np.median(v)) for s, v in by_source.items() if v}


# --- C3: all-reduce in the collective library's regime (NCCL / RCCL), fitted on published all_reduce_perf sweeps ---

NCCL_FIT_MIN_BYTES = 8e6  # rows from here up: the sizes the serving stacks hand to NCCL (custom kernels below, C3)
NCCL_FIT_MAX_GPUS = 8  # tables of at most one 8-GPU board's worth of ranks: the tensor-parallel groups of serving
NCCL_FIT_MIN_ROWS = 3  # a table needs this many rows in range to constrain both the latency and the bandwidth


class CollectiveTable(_MeasuredTable):
    """Published output of a collective benchmark (nccl-tests / rccl-tests ``all_reduce_perf``) on ``gpus`` chips of
    one scale-up domain: message size per rank, time (null where only the bus bandwidth is printed) and bus bandwidth
    busbw = 2 (n - 1) / n * size / time, out-of-place columns unless the table says otherwise."""

    locator: str
    gpus: int
    scope: str
    library: str
    algorithm: str
    dtype: str
    cuda_graph: bool | Literal["not printed"]
    iterations: str
    anomalous: bool = False
    columns: list[Literal["size_bytes", "time_us", "busbw_gb_per_s"]]
    rows: list[list[float | int | None]]


def collective_tables() -> list[CollectiveTable]:
    return _tables("collective-kernels", CollectiveTable)


@dataclass(frozen=True)
class CollectiveRows:
    """A table's rows as arrays: message size per rank (bytes), the measured time (s; where only the bus bandwidth is
    printed, the bytes it counts, 2 (n - 1) / n size, over it) and the link's nominal bandwidth per direction (bytes/s,
    the catalog's scale-up figure of the chip)."""

    table: CollectiveTable | CustomAllReduceTable  # C3 sweeps; C4 tables of the stacks' own kernels
    size_bytes: np.ndarray
    time_s: np.ndarray
    link_bytes_per_s: float


def _link_bytes_per_s(catalog: Catalog, chip: str, gpus: int) -> float:
    """The scale-up bandwidth per direction a table's ``gpus`` ranks of ``chip`` can use: the catalog's figure, or
    on a full mesh the group's share of its links (C5)."""
    from supernode.hardware import resolve_cluster

    tier = resolve_cluster(catalog, chip, 1).tiers[0]
    return float(tier.bandwidth_bytes_per_s * mesh_share(tier, gpus))


def collective_rows(catalog: Catalog, table: CollectiveTable, min_bytes: float = 0.0) -> CollectiveRows:
    col = {c: i for i, c in enumerate(table.columns)}
    rows = [r for r in table.rows if float(r[col["size_bytes"]]) >= min_bytes]
    size = np.array([float(r[col["size_bytes"]]) for r in rows])
    n = float(table.gpus)
    bus = 2.0 * (n - 1.0) / n * size
    busbw = np.array([float(r[col["busbw_gb_per_s"]]) * 1e9 for r in rows])
    printed = [r[col["time_us"]] if "time_us" in col else None for r in rows]
    time_s = np.array([float(t) * 1e-6 if t is not None else b / bw for t, b, bw in zip(printed, bus, busbw)])
    return CollectiveRows(table, size, time_s, _link_bytes_per_s(catalog, table.chip, table.gpus))


def nccl_fit_tables(catalog: Catalog, family: str) -> list[CollectiveRows]:
    """The tables the family's C3 fit uses, by the rule fixed before the fit: all-reduce sweeps on chips of ``family``
    over at most NCCL_FIT_MAX_GPUS ranks, not marked anomalous, with at least NCCL_FIT_MIN_ROWS rows of
    NCCL_FIT_MIN_BYTES or more (those rows only)."""
    from supernode.hardware import resolve_cluster

    out = []
    for t in collective_tables():
        if t.anomalous or t.gpus > NCCL_FIT_MAX_GPUS or resolve_cluster(catalog, t.chip, 1).chip.family != family:
            continue
        r = collective_rows(catalog, t, NCCL_FIT_MIN_BYTES)
        if len(r.size_bytes) >= NCCL_FIT_MIN_ROWS:
            out.append(r)
    return out


def fit_nccl_all_reduce(catalog: Catalog, family: str) -> tuple[float, float]:
    """The family's C3 parameters (latency per step a in s, bandwidth fraction f): least squares of the relative time
    error over :func:`nccl_fit_tables`, each table weighing equally (T is linear in a and 1 / f). ValueError when the
    family has no such table."""
    tabs = nccl_fit_tables(catalog, family)
    if not tabs:
        raise ValueError(f"no all-reduce tables for chip family {family!r} in data/collective-kernels")
    return _fit_library_form(tabs)


def _fit_library_form(tabs: list[CollectiveRows]) -> tuple[float, float]:
    """(a, f) of :func:`supernode.perf.collectives.library_all_reduce_s` fitted on ``tabs`` (C3, C4)."""
    from supernode.perf.collectives import library_all_reduce_s

    a_rows, y = [], []
    for r in tabs:
        w = 1.0 / np.sqrt(len(r.time_s))
        # C3's two terms from the model's own function: its time at a = 1 s and no bandwidth term, and at a = 0, f = 1
        steps = library_all_reduce_s(r.size_bytes, r.table.gpus, r.link_bytes_per_s, 1.0, np.inf)
        per_f = library_all_reduce_s(r.size_bytes, r.table.gpus, r.link_bytes_per_s, 0.0, 1.0)
        a_rows.extend(np.column_stack([w * steps / r.time_s, w * per_f / r.time_s]))
        y.extend([w] * len(r.time_s))
    a, inv_f = np.linalg.lstsq(np.array(a_rows), np.array(y), rcond=None)[0]
    return float(a), float(1.0 / inv_f)


# C4 (validation/notes/custom-all-reduce-fit-rule.md): the serving stacks' own all-reduce kernels below their limit
CUSTOM_AR_FIT_MAX_BYTES = 8 * 2**20  # rows up to here: the messages the stacks keep for their own kernels (8 MiB)
CUSTOM_AR_FIT_MAX_GPUS = 8  # one scale-up domain's TP group, 2-8 ranks
CUSTOM_AR_FIT_MIN_ROWS = 3
# Stop 44's admissibility tests (the rule note's amendment, fixed before new tables or a re-fit)
CUSTOM_AR_DECODE_MAX_BYTES = 256 * 2**10  # T1: decode all-reduces move up to ~18 tokens x 7,168 x BF16 per rank
CUSTOM_AR_DECODE_MIN_ROWS = 3  # T1: rows at or below that size a table must have, so the latency is measured
CUSTOM_AR_MIN_TABLES, CUSTOM_AR_MIN_SOURCES = 2, 2  # T3: a family's C4 values rest on two tables of two sources


class CustomAllReduceTable(_MeasuredTable):
    """Published per-call times of a serving stack's own all-reduce kernel (vLLM / SGLang custom all-reduce,
    TensorRT-LLM's one-shot / two-shot / Lamport kernels, FlashInfer's, AITER's) on ``gpus`` chips of one scale-up
    domain, per message size per rank (C4). ``fused_epilogue``: the timed op also adds the residual and runs RMSNorm,
    which the serving model prices as a kernel of its own (the fit is then slightly high, as the rule says)."""

    locator: str
    gpus: int
    scope: str
    stack: str
    kernel: str
    fused_epilogue: bool
    algorithm: str
    dtype: str
    hidden: int | None = None
    cuda_graph: bool | Literal["not printed"]
    timing: str
    anomalous: bool = False
    columns: list[Literal["size_bytes", "time_us"]]
    rows: list[list[float | int]]


def custom_all_reduce_tables() -> list[CustomAllReduceTable]:
    return _tables("custom-allreduce-kernels", CustomAllReduceTable)


def custom_all_reduce_rows(catalog: Catalog, table: CustomAllReduceTable) -> CollectiveRows:
    """The table's rows of at most CUSTOM_AR_FIT_MAX_BYTES per rank, with the bandwidth its ranks can use."""
    col = {c: i for i, c in enumerate(table.columns)}
    rows = [r for r in table.rows if float(r[col["size_bytes"]]) <= CUSTOM_AR_FIT_MAX_BYTES]
    size = np.array([float(r[col["size_bytes"]]) for r in rows])
    time_s = np.array([float(r[col["time_us"]]) * 1e-6 for r in rows])
    return CollectiveRows(table, size, time_s, _link_bytes_per_s(catalog, table.chip, table.gpus))


def library_time_at(catalog: Catalog, family: str, gpus: int, size_bytes: float) -> float | None:
    """T2's reference: the measured NCCL / RCCL all-reduce time (s) on ``family`` at the smallest listed size at or
    above ``size_bytes``, from the library tables (data/collective-kernels, at most NCCL_FIT_MAX_GPUS ranks, not
    anomalous) at ``gpus`` ranks, or failing that the nearest larger rank count; the median where several qualify.
    None where the family has no library row at or below CUSTOM_AR_DECODE_MAX_BYTES at such a rank count."""
    from supernode.hardware import resolve_cluster

    by_n: dict[int, list[float]] = {}
    for t in collective_tables():
        if (t.anomalous or not gpus <= t.gpus <= NCCL_FIT_MAX_GPUS
                or resolve_cluster(catalog, t.chip, 1).chip.family != family):
            continue
        r = collective_rows(catalog, t)
        if not (r.size_bytes <= CUSTOM_AR_DECODE_MAX_BYTES).any():
            continue
        at = r.size_bytes >= size_bytes
        if at.any():
            by_n.setdefault(t.gpus, []).append(float(r.time_s[at][np.argmin(r.size_bytes[at])]))
    return float(np.median(by_n[min(by_n)])) if by_n else None


def custom_ar_refusal(catalog: Catalog, table: CustomAllReduceTable) -> str | None:
    """Why the C4 fit skips ``table`` (the rule's scope, then the amendment's T1 and T2), or None if it is admitted."""
    from supernode.hardware import resolve_cluster

    if table.anomalous:
        return "marked anomalous"
    if not 2 <= table.gpus <= CUSTOM_AR_FIT_MAX_GPUS:
        return f"{table.gpus} ranks, outside 2-{CUSTOM_AR_FIT_MAX_GPUS}"
    r = custom_all_reduce_rows(catalog, table)
    if len(r.size_bytes) < CUSTOM_AR_FIT_MIN_ROWS:
        return f"{len(r.size_bytes)} rows of at most 8 MiB, fewer than {CUSTOM_AR_FIT_MIN_ROWS}"
    decode = int((r.size_bytes <= CUSTOM_AR_DECODE_MAX_BYTES).sum())
    if decode < CUSTOM_AR_DECODE_MIN_ROWS:
        return f"T1: {decode} rows of at most 256 KiB, fewer than {CUSTOM_AR_DECODE_MIN_ROWS}"
    family = resolve_cluster(catalog, table.chip, 1).chip.family
    i = int(np.argmin(r.size_bytes))
    ref = library_time_at(catalog, family, table.gpus, float(r.size_bytes[i]))
    if ref is not None and r.time_s[i] > ref:
        return (f"T2: {r.time_s[i] * 1e6:.1f} us at {r.size_bytes[i]:.0f} B, slower than the family's measured "
                f"all_reduce_perf ({ref * 1e6:.1f} us)")
    return None


def custom_fit_tables(catalog: Catalog, family: str) -> list[CollectiveRows]:
    """The tables the family's C4 fit uses, by the rule fixed before the fit and its stop-44 amendment: the stacks'
    own all-reduce kernels on chips of ``family`` that :func:`custom_ar_refusal` admits (those rows of at most
    CUSTOM_AR_FIT_MAX_BYTES only)."""
    from supernode.hardware import resolve_cluster

    return [custom_all_reduce_rows(catalog, t) for t in custom_all_reduce_tables()
            if resolve_cluster(catalog, t.chip, 1).chip.family == family and custom_ar_refusal(catalog, t) is None]


def fit_custom_all_reduce(catalog: Catalog, family: str) -> tuple[float, float]:
    """The family's C4 parameters (latency per step a in s, bandwidth fraction f) of the stacks' own all-reduce: C3's
    form and solver over :func:`custom_fit_tables`. ValueError when the family has fewer than CUSTOM_AR_MIN_TABLES
    admitted tables from CUSTOM_AR_MIN_SOURCES sources (T3)."""
    tabs = custom_fit_tables(catalog, family)
    sources = {r.table.source for r in tabs}
    if len(tabs) < CUSTOM_AR_MIN_TABLES or len(sources) < CUSTOM_AR_MIN_SOURCES:
        raise ValueError(f"chip family {family!r}: {len(tabs)} admitted custom all-reduce tables from {len(sources)} "
                         f"sources in data/custom-allreduce-kernels; C4 needs {CUSTOM_AR_MIN_TABLES} from "
                         f"{CUSTOM_AR_MIN_SOURCES} (T3)")
    return _fit_library_form(tabs)


# I37's fit rows: decode sizes (validation/notes/blackwell-fp4-moe-decode-kernel-evidence.md)
FUSED_MOE_MAX_TOKENS = 512


class FusedMoeTable(_MeasuredTable):
    """Published timings of one fused MoE op (I37: routing, input quantization, the gated FC1, FC2 and finalize of
    the routed experts in one op) on one chip, per token count: ``local_experts`` of ``experts`` on the measured
    rank, each ``expert_ffn`` wide (the rank's shard), ``experts_per_token`` routed per token, a gated (SwiGLU) FFN of
    width ``hidden``. ``router_gemm_included``: the timed module also runs the BF16 router GEMM (hidden -> experts)."""

    precision: str
    hidden: int
    expert_ffn: int
    experts: int
    local_experts: int
    experts_per_token: int
    router_gemm_included: bool
    columns: list[Literal["tokens", "time_us"]]


def fused_moe_tables() -> list[FusedMoeTable]:
    return _tables("fused-moe-kernels", FusedMoeTable)


@dataclass(frozen=True)
class FusedMoeFit:
    """Predicted (I37; with the model's price of the router GEMM where the table's module runs it) vs measured time
    of a fused-MoE table's rows."""

    table: FusedMoeTable
    tokens: np.ndarray
    measured_s: np.ndarray
    predicted_s: np.ndarray

    @property
    def error_fraction(self) -> np.ndarray:
        return self.predicted_s / self.measured_s - 1.0


def _fused_moe_rows(table: FusedMoeTable):
    """(tokens, measured seconds, the routed experts' GEMMs under uniform routing (I7), the router GEMM)."""
    from types import SimpleNamespace

    from supernode.workload import shapes

    col = {c: i for i, c in enumerate(table.columns)}
    tok = np.array([float(r[col["tokens"]]) for r in table.rows])
    measured = np.array([float(r[col["time_us"]]) for r in table.rows]) * 1e-6
    ranks = table.experts / table.local_experts
    slots, hit, tok_per_hit = shapes.uniform_routing(tok, float(table.experts_per_token), float(table.experts), ranks)
    shape = SimpleNamespace(mlp="swiglu", hidden=table.hidden)
    gemms = shapes.mlp_gemms(shape, tok_per_hit, table.expert_ffn, 1, slots * hit, "expert", "expert")
    router = shapes.Gemm("router", tok, table.experts, table.hidden)
    return tok, measured, gemms, router


def fused_moe_fit(table: FusedMoeTable, chip: ChipSpec, eff: Efficiency | None = None) -> FusedMoeFit:
    """The model's price (I37, the family's fused-MoE fit at the table's format) of every row of ``table`` on
    ``chip``: the fused op, plus the router GEMM (K1 at BF16, at least the kernel floor) where the module runs it."""
    from supernode.infer import kernels

    eff = eff or efficiency(chip.family)
    tok, measured, gemms, router = _fused_moe_rows(table)
    router_s = kernels.gemms_s(chip, eff, [router], "bf16", 2.0) if table.router_gemm_included else 0.0
    return FusedMoeFit(table, tok, measured, kernels.fused_moe_s(chip, eff, gemms, table.precision) + router_s)


def fit_fused_moe(catalog: Catalog, family: str, precision: str) -> tuple[float, float]:
    """The family's fused-MoE op at ``precision`` (I37): (fixed_s t_f, bandwidth_fraction phi_f) by the rule fixed
    before the fit (validation/notes/blackwell-fp4-moe-decode-kernel-evidence.md): rows of data/fused-moe-kernels on
    chips of ``family`` at ``precision`` with at most FUSED_MOE_MAX_TOKENS tokens; per source the mean squared log
    ratio of predicted to measured time, the objective the mean over sources (each source weighs once); t_f on a 0-60
    us grid in 0.1 us steps, phi_f on 0.30-1.00 in 0.005 steps. ValueError when no table measures it."""
    from supernode.hardware import resolve_cluster

    base = efficiency(family)
    tables = [(t, resolve_cluster(catalog, t.chip, 1).chip) for t in fused_moe_tables() if t.precision == precision]
    tables = [(t, c) for t, c in tables if c.family == family]
    if not tables:
        raise ValueError(f"no fused-MoE tables for chip family {family!r} at {precision} in data/fused-moe-kernels")
    t_grid = np.arange(0.0, 60.0001e-6, 0.1e-6)
    phi_grid = np.round(np.arange(0.30, 1.00001, 0.005), 3)
    best = (np.inf, 0.0, 0.0)
    for phi in phi_grid:
        eff = dataclasses.replace(base, fused_moe={**base.fused_moe, precision: {"fixed_s": 0.0,
                                                                                 "bandwidth_fraction": float(phi)}})
        by_source: dict[str, list[np.ndarray]] = defaultdict(list)
        for t, chip in tables:
            f = fused_moe_fit(t, chip, eff)
            use = f.tokens <= FUSED_MOE_MAX_TOKENS
            # predicted at t_f = 0 plus each grid t_f: rows x grid
            err = np.log((f.predicted_s[use, None] + t_grid[None, :]) / f.measured_s[use, None]) ** 2
            by_source[t.source].append(err)
        obj = np.mean([np.mean(np.vstack(v), axis=0) for v in by_source.values()], axis=0)
        i = int(np.argmin(obj))
        if obj[i] < best[0]:
            best = (float(obj[i]), float(t_grid[i]), float(phi))
    return best[1], best[2]
