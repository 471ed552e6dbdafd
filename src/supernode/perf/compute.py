"""Compute primitives shared by the training and inference models: GEMM, attention and
memory-bound operation times on one chip, with achievable efficiencies per chip family.

Roofline (docs/model.md, K1):

    T_gemm = R( F / (P_prec · e_prec · σ_m(m) σ(n) σ(k)),  Q / (B_mem · e_mem) ) + t_0
    R(a,b) = (a^q + b^q)^(1/q)                  (smooth roofline; q → ∞ gives max)
    σ(x)   = x / (x + x_half)                   (shape saturation, K2; the token dim m has its own x_half)
    T_attn = F_attn / (P_attn · e_attn)          (fused FlashAttention kernels, K3)
    T_mem  = Q / (B_mem · e_mem)                 (element-wise / normalization ops, K4)

F = 2·m·n·k FLOP, Q = bytes moved, t_0 the fixed latency of one GEMM kernel, P_prec the dense
peak at the GEMM precision, B_mem the HBM bandwidth. e_prec, x_half, t_0, e_attn, e_mem come from
``data/efficiency/<family>.yaml`` (one file per chip family, every value with a kind, source and
rationale); a family without a file falls back to ``default.yaml`` and the fallback is listed in
the assumptions. Efficiencies are calibrated
per family, never per case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from supernode.catalog.loader import builtin_dir, parse_item
from supernode.catalog.schema import Strict
from supernode.hardware import ChipSpec

ArrayLike = Any


class Factor(Strict):
    """One efficiency number with its provenance (value is a fraction or a size)."""

    value: float = Field(ge=0)
    kind: Literal["measured", "paper", "derived", "assumption", "estimate"]
    source: str
    note: str  # rationale


class EfficiencyFile(Strict):
    family: str
    description: str
    gemm_peak_fraction: dict[str, Factor]  # precision -> achievable fraction of dense peak (large GEMMs)
    # chip id -> precision -> the same, for a chip of the family whose kernel tables realize a different fraction of
    # its own spec peak (K1b: Blackwell Ultra's FP4); absent: the family's value
    chip_gemm_peak_fraction: dict[str, dict[str, Factor]] = {}
    gemm_half_size: Factor  # x_half of the shape saturation sigma(x) = x / (x + x_half), weight dims n, k
    gemm_token_half_size: Factor | None = None  # x_half for the token dim m (default: default.yaml's)
    roofline_exponent: Factor | None = None  # q of the smooth roofline (default: default.yaml's)
    kernel_floor_s: Factor | None = None  # least time of one kernel (launch, ramp, tail), default.yaml's by default
    # fixed time every GEMM kernel adds to its roofline time (pipeline ramp-up, tail, epilogue; K1), fitted per family
    # on its kernel tables (data/kernels); default.yaml's by default
    gemm_kernel_latency_s: Factor | None = None
    attention_peak_fraction: Factor  # fused attention kernel, fraction of the bf16/fp16 dense peak
    # the same in training (forward + backward, recompute), where it differs: by default attention_peak_fraction
    attention_training_peak_fraction: Factor | None = None
    # prefill (context) attention in serving (I35): precision (bf16, fp8) -> fraction of that precision's dense peak,
    # fitted on published prefill attention kernel tables (data/attention-kernels); absent: attention_peak_fraction
    attention_prefill_peak_fraction: dict[Literal["bf16", "fp8"], Factor] = {}
    # chip id -> precision -> the same, for a chip of the family whose attention datapath differs from the family's
    # (Blackwell Ultra's doubled exponential units, the H20's capped tensor rate), fitted on its own tables; absent:
    # the family's value
    chip_attention_prefill_peak_fraction: dict[str, dict[Literal["bf16", "fp8"], Factor]] = {}
    memory_bandwidth_fraction: Factor  # achieved / nominal HBM bandwidth for streaming kernels
    # achieved / nominal HBM bandwidth of serving-stack glue kernels (norms, quantization, activations, RoPE) at
    # serving sizes, fitted on data/glue-kernels (I22); None: memory_bandwidth_fraction
    glue_bandwidth_fraction: Factor | None = None
    # MoE grouped GEMM kernels (the routed experts' GEMMs of one layer in one kernel, K5): precision -> their time
    # is the dense roofline time divided by this factor (t_0 once); fitted on data/grouped-kernels; absent: 1
    grouped_gemm_fraction: dict[str, Factor] = {}
    # TensorRT-LLM's fused MoE op (I37, ``moe_backend: trtllm-fused``): precision -> its fixed time per MoE layer
    # (fixed_s: routing, quantization, finalize, launches) and the fraction of HBM bandwidth at which it streams the
    # hit experts' weights (bandwidth_fraction), fitted on data/fused-moe-kernels; absent: the grouped GEMMs price it
    fused_moe: dict[str, dict[Literal["fixed_s", "bandwidth_fraction"], Factor]] = {}
    collective_bandwidth_fraction: dict[str, Factor]  # tier level (scale_up, scale_out) -> busbw / link bw
    # MoE high-throughput (DeepEP normal) kernels on the scale-up links (I24): dispatch_fp8 / dispatch_bf16 /
    # combine -> algorithm bandwidth (bytes a rank receives, its own copies included) / link bw; absent: the
    # scale-up collective fraction
    ep_normal_bandwidth_fraction: dict[Literal["dispatch_fp8", "dispatch_bf16", "combine"], Factor] = {}
    # C3: all-reduce in the collective library's regime (messages above the serving stacks' custom all-reduce limit):
    # latency per step (s) and bus bandwidth / scale-up link bandwidth, fitted on data/collective-kernels; absent: the
    # tier's latency and collective_bandwidth_fraction at every size
    nccl_all_reduce: dict[Literal["latency_step_s", "bandwidth_fraction"], Factor] = {}
    # C4: the serving stacks' own all-reduce kernels below their message limit, the same two parameters fitted on
    # data/custom-allreduce-kernels (validation/notes/custom-all-reduce-fit-rule.md); absent: the tier's latency
    custom_all_reduce: dict[Literal["latency_step_s", "bandwidth_fraction"], Factor] = {}
    # C3: the largest all-reduce message (bytes per rank) the serving stacks' own kernels take, for TP groups of at
    # most two and of more ranks (default.yaml); larger messages go to NCCL / RCCL
    custom_all_reduce_max_bytes: dict[Literal["tp_le_2", "tp_gt_2"], Factor] = {}
    overlap: dict[str, Factor] = {}  # software overlap fractions (default.yaml); see step model
    memory: dict[str, Factor] = {}  # usable_memory_fraction etc. (default.yaml)


def attention_precision_key(precision: str) -> str:
    """The key of a prefill attention fraction (I35) for a kernel at ``precision``: fp16 shares bf16's."""
    return "bf16" if precision == "fp16" else precision


def _per_chip(values: dict[str, dict[str, Factor]]) -> str:
    """'chip precision value; ...' of an efficiency file's per-chip entries, for the assumption line."""
    return "; ".join(f"{c} {p} {f.value:.2f}" for c, fs in sorted(values.items()) for p, f in sorted(fs.items()))


@dataclass(frozen=True)
class Efficiency:
    """Resolved efficiencies of one chip family (plain floats) and the assumptions used."""

    family: str
    gemm_peak_fraction: dict[str, float]
    gemm_half_size: float
    gemm_token_half_size: float
    roofline_exponent: float
    kernel_floor_s: float
    attention_peak_fraction: float
    memory_bandwidth_fraction: float
    collective_bandwidth_fraction: dict[str, float]
    overlap: dict[str, float]
    memory: dict[str, float]
    assumptions: tuple[str, ...] = field(default_factory=tuple)
    attention_training_peak_fraction: float | None = None  # None: attention_peak_fraction
    gemm_kernel_latency_s: float = 0.0  # t_0 of K1: added once per GEMM kernel
    glue_bandwidth_fraction: float | None = None  # glue kernels' HBM fraction (I22); None: memory_bandwidth_fraction
    grouped_gemm_peak_fraction: dict[str, float] = field(default_factory=dict)  # K5, precision -> factor; absent: 1
    ep_normal_bandwidth_fraction: dict[str, float] = field(default_factory=dict)  # I24 kernels on scale-up links
    chip_gemm_peak_fraction: dict[str, dict[str, float]] = field(default_factory=dict)  # K1b, chip -> precision -> f
    attention_prefill_peak_fraction: dict[str, float] = field(default_factory=dict)  # I35, precision -> f
    chip_attention_prefill_peak_fraction: dict[str, dict[str, float]] = field(default_factory=dict)  # I35 per chip
    nccl_all_reduce: dict[str, float] = field(default_factory=dict)  # C3: latency_step_s, bandwidth_fraction
    custom_all_reduce: dict[str, float] = field(default_factory=dict)  # C4: latency_step_s, bandwidth_fraction
    custom_all_reduce_max_bytes: dict[str, float] = field(default_factory=dict)  # C3: tp_le_2, tp_gt_2
    fused_moe: dict[str, dict[str, float]] = field(default_factory=dict)  # I37: precision -> fixed_s, phi_f

    def attention_prefill_fraction(self, precision: str, chip: str | None = None) -> float:
        """Fraction of the dense peak at ``precision`` that prefill (context) attention kernels reach in serving (I35):
        ``chip``'s own value where it has one, else the family's, both fitted on prefill attention kernel tables
        (fp16 reads bf16's), else the serving attention fraction. A chip with an own value at the other precision only
        (bf16 / fp8) takes it times the family's ratio between the two (the family's FP8 : BF16 kernel speed-up; every
        chip of a family has the same 2 : 1 peak ratio)."""
        key = attention_precision_key(precision)
        own = self.chip_attention_prefill_peak_fraction.get(chip, {}) if chip else {}
        fam = self.attention_prefill_peak_fraction
        if key in own:
            return own[key]
        other = {"bf16": "fp8", "fp8": "bf16"}.get(key)
        if other in own and key in fam and other in fam:
            return own[other] * fam[key] / fam[other]
        return fam.get(key, self.attention_peak_fraction)

    def ep_normal_fraction(self, kind: str) -> float:
        """Algorithm bandwidth / scale-up link bandwidth of the high-throughput MoE dispatch or combine kernel (I24;
        ``kind`` dispatch_fp8, dispatch_bf16 or combine): the family's measured value, else its scale-up collective
        fraction."""
        f = self.ep_normal_bandwidth_fraction.get(kind)
        return self.tier_fraction("scale_up") if f is None else f

    def grouped_fraction(self, precision: str) -> float:
        """MoE grouped-GEMM kernels' speed relative to a dense GEMM of the same shape (K5): the family's fitted
        factor at ``precision``, 1 where the family has none (its grouped kernels run at the dense rate, or no
        table measures them)."""
        return self.grouped_gemm_peak_fraction.get(precision, 1.0)

    @property
    def glue_fraction(self) -> float:
        """Achieved / nominal HBM bandwidth of the glue kernels (I22): the family's fitted value, else its
        streaming fraction."""
        f = self.glue_bandwidth_fraction
        return self.memory_bandwidth_fraction if f is None else f

    @property
    def attention_training_fraction(self) -> float:
        """Fused-attention fraction of peak in training (forward, backward and recompute)."""
        f = self.attention_training_peak_fraction
        return self.attention_peak_fraction if f is None else f

    def gemm_fraction(self, precision: str, chip: str | None = None) -> float:
        """Large-GEMM fraction of peak at ``precision`` (falls back to bf16, then the smallest known); ``chip``: a chip
        id whose own fitted fraction at ``precision`` (K1b) replaces the family's."""
        own = self.chip_gemm_peak_fraction.get(chip, {}) if chip else {}
        if precision in own:
            return own[precision]
        if precision in self.gemm_peak_fraction:
            return self.gemm_peak_fraction[precision]
        if precision == "fp16" and "bf16" in self.gemm_peak_fraction:
            return self.gemm_peak_fraction["bf16"]
        return min(self.gemm_peak_fraction.values())

    def tier_fraction(self, level: str) -> float:
        return self.collective_bandwidth_fraction.get(level, min(self.collective_bandwidth_fraction.values()))


def efficiency_dir() -> Path:
    return builtin_dir() / "efficiency"


@lru_cache(maxsize=64)
def _read(path: str) -> EfficiencyFile:
    return parse_item(Path(path), EfficiencyFile)


def efficiency_file(family: str) -> EfficiencyFile | None:
    p = efficiency_dir() / f"{family}.yaml"
    return _read(str(p)) if p.is_file() else None


@lru_cache(maxsize=64)
def efficiency(family: str) -> Efficiency:
    """Efficiencies for a chip family; families without data use ``default.yaml`` (+ a warning
    in ``assumptions``). Software overlap fractions always come from ``default.yaml``."""
    default = _read(str(efficiency_dir() / "default.yaml"))
    data = efficiency_file(family)
    notes: list[str] = []
    if data is None:
        data = default
        notes.append(f"no efficiency data for chip family {family!r}: default efficiencies used "
                     f"(GEMM {default.gemm_peak_fraction['bf16'].value:.2f} of peak); treat results as indicative")
    else:
        own = _per_chip(data.chip_gemm_peak_fraction)
        pre = ", ".join(f"{p} {f.value:.2f}" for p, f in sorted(data.attention_prefill_peak_fraction.items()))
        pre_own = _per_chip(data.chip_attention_prefill_peak_fraction)
        notes.append(f"efficiencies of family {family} (data/efficiency/{family}.yaml)"
                     + (f"; chips' own large-GEMM fractions (K1b): {own}" if own else "")
                     + (f"; prefill attention fractions of peak (I35): {pre}" if pre else "")
                     + (f"; chips' own: {pre_own}" if pre_own else ""))
    ov = {k: v.value for k, v in default.overlap.items()}
    ov.update({k: v.value for k, v in data.overlap.items()})
    return Efficiency(
        family=family,
        gemm_peak_fraction={k: v.value for k, v in data.gemm_peak_fraction.items()},
        gemm_half_size=data.gemm_half_size.value,
        gemm_token_half_size=(data.gemm_token_half_size or default.gemm_token_half_size).value,
        roofline_exponent=(data.roofline_exponent or default.roofline_exponent).value,
        kernel_floor_s=(data.kernel_floor_s or default.kernel_floor_s).value,
        gemm_kernel_latency_s=(data.gemm_kernel_latency_s or default.gemm_kernel_latency_s).value,
        attention_peak_fraction=data.attention_peak_fraction.value,
        attention_training_peak_fraction=(data.attention_training_peak_fraction.value
                                          if data.attention_training_peak_fraction else None),
        attention_prefill_peak_fraction={k: v.value for k, v in data.attention_prefill_peak_fraction.items()},
        chip_attention_prefill_peak_fraction={c: {k: v.value for k, v in f.items()}
                                              for c, f in data.chip_attention_prefill_peak_fraction.items()},
        memory_bandwidth_fraction=data.memory_bandwidth_fraction.value,
        glue_bandwidth_fraction=data.glue_bandwidth_fraction.value if data.glue_bandwidth_fraction else None,
        grouped_gemm_peak_fraction={k: v.value for k, v in data.grouped_gemm_fraction.items()},
        collective_bandwidth_fraction={k: v.value for k, v in data.collective_bandwidth_fraction.items()},
        ep_normal_bandwidth_fraction={k: v.value for k, v in data.ep_normal_bandwidth_fraction.items()},
        chip_gemm_peak_fraction={c: {k: v.value for k, v in f.items()}
                                 for c, f in data.chip_gemm_peak_fraction.items()},
        nccl_all_reduce={k: v.value for k, v in data.nccl_all_reduce.items()},
        custom_all_reduce={k: v.value for k, v in data.custom_all_reduce.items()},
        custom_all_reduce_max_bytes={k: v.value for k, v in (data.custom_all_reduce_max_bytes
                                                            or default.custom_all_reduce_max_bytes).items()},
        fused_moe={p: {k: v.value for k, v in f.items()} for p, f in data.fused_moe.items()},
        overlap=ov,
        memory={**{k: v.value for k, v in default.memory.items()}, **{k: v.value for k, v in data.memory.items()}},
        assumptions=tuple(notes),
    )


def shape_factor(eff: Efficiency, m: ArrayLike, n: ArrayLike, k: ArrayLike) -> ArrayLike:
    """σ_m(m)·σ(n)·σ(k) with σ(x) = x/(x + x_half) (K2): small or skinny GEMMs reach less of peak.

    The token dimension m has its own, smaller half size: few-row GEMMs (decode) run in small-M
    kernels (swap-AB, split-K GEMV) whose MMA tile along m is 8-16 rows, not the 128-256 rows of
    the large-GEMM tiles that set x_half for the weight dimensions n and k."""
    h = eff.gemm_half_size
    hm = eff.gemm_token_half_size
    return (m / (m + hm)) * (n / (n + h)) * (k / (k + h))


def roofline_s(eff: Efficiency, t_math: ArrayLike, t_mem: ArrayLike) -> ArrayLike:
    """Smooth roofline (K1): (t_math^q + t_mem^q)^(1/q). q → ∞ is the sharp max(); a finite q
    says that near the ridge point neither the tensor units nor HBM run at their full rate (q is
    fitted per family on kernel measurements, data/efficiency)."""
    q = eff.roofline_exponent
    t_math = np.asarray(t_math, dtype=float)
    t_mem = np.asarray(t_mem, dtype=float)
    hi = np.maximum(t_math, t_mem)
    lo = np.minimum(t_math, t_mem)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(hi > 0, lo / np.where(hi > 0, hi, 1.0), 0.0)
    return hi * (1.0 + r ** q) ** (1.0 / q)


def gemm_time_s(chip: ChipSpec, eff: Efficiency, m: ArrayLike, n: ArrayLike, k: ArrayLike,
                precision: str = "bf16", count: ArrayLike = 1, bytes_per_element: float = 2.0,
                grouped: bool = False) -> ArrayLike:
    """Time (s) of one GEMM kernel doing ``count`` GEMMs [m x k]·[k x n] at ``precision`` (K1): the
    smooth roofline of the math time at e_prec·σ of peak and the operand/result traffic at e_mem of
    HBM bandwidth, plus the family's fixed kernel latency t_0 (ramp-up and tail), once per kernel.
    ``grouped``: a MoE grouped GEMM (the ``count`` experts' GEMMs in one kernel), whose roofline time is
    divided by the family's grouped-GEMM factor at ``precision`` (K5)."""
    t_math = gemm_math_s(chip, eff, m, n, k, precision, count)
    bw = chip.memory_bandwidth_bytes_per_s
    t0 = eff.gemm_kernel_latency_s
    g = eff.grouped_fraction(precision) if grouped else 1.0
    if not bw:
        return t_math / g + t0
    t_mem = gemm_bytes(m, n, k, count, bytes_per_element) / (bw * eff.memory_bandwidth_fraction)
    return roofline_s(eff, t_math, t_mem) / g + t0


def gemm_math_s(chip: ChipSpec, eff: Efficiency, m: ArrayLike, n: ArrayLike, k: ArrayLike, precision: str,
                count: ArrayLike = 1) -> ArrayLike:
    """K1's math time of ``count`` GEMMs [m x k]·[k x n]: 2·m·n·k FLOP each at e_prec·σ of the dense peak."""
    flops = 2.0 * m * n * k * count
    return flops / (chip.peak(precision) * eff.gemm_fraction(precision, chip.id) * shape_factor(eff, m, n, k))


def gemm_bytes(m: ArrayLike, n: ArrayLike, k: ArrayLike, count: ArrayLike, bytes_per_element: float) -> ArrayLike:
    """K1's operand and result traffic of ``count`` GEMMs [m x k]·[k x n] (bytes)."""
    return (m * k + k * n + m * n) * count * bytes_per_element


def fused_moe_time_s(chip: ChipSpec, eff: Efficiency, gemms, precision: str, bytes_per_element: float) -> ArrayLike:
    """Time (s) of one fused MoE op (I37: TensorRT-LLM's routing, input quantization, both expert GEMMs with the
    gated activation, and finalize in one op) doing the routed experts' ``gemms`` (``workload.Gemm``, ``count``
    experts each) at ``precision``: the family's fixed time t_f plus the smooth roofline (K1) of the GEMMs' math at
    the grouped GEMMs' compute rate (K5) and their weight and activation bytes at the op's own fraction phi_f of HBM
    bandwidth. 0 where no GEMM has a token and an expert; KeyError where the family has no fit at ``precision``
    (callers check :meth:`Efficiency.fused_moe`)."""
    fit = eff.fused_moe[precision]
    g = eff.grouped_fraction(precision)
    bw = chip.memory_bandwidth_bytes_per_s
    t_math = t_mem = 0.0
    live = False
    for x in gemms:
        m, n, k, c = (np.asarray(v, float) for v in (x.m, x.n, x.k, x.count))
        on = (m > 0) & (c > 0)
        live = live | on
        mm = np.where(on, m, 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            t_math = t_math + np.where(on, gemm_math_s(chip, eff, mm, n, k, precision, c) / g, 0.0)
            t_mem = t_mem + np.where(on, gemm_bytes(mm, n, k, c, bytes_per_element), 0.0)
    t_mem = t_mem / (bw * fit["bandwidth_fraction"]) if bw else 0.0 * t_mem
    return np.where(live, fit["fixed_s"] + roofline_s(eff, t_math, t_mem), 0.0)


def attention_time_s(chip: ChipSpec, eff: Efficiency, flops: ArrayLike, precision: str = "bf16",
                     fp8_attention: bool = False, training: bool = False, prefill: bool = False) -> ArrayLike:
    """Time (s) of fused attention (QK^T, softmax, AV) doing ``flops`` FLOP (K3). FP8 training
    keeps attention in BF16 (Transformer Engine default), so a narrow GEMM precision maps to the
    bf16 peak unless FP8 attention kernels are asked for (``fp8_attention``, serving). ``training``
    uses the family's training fraction (forward + backward kernels of training stacks); ``prefill`` its
    prefill (context) attention fraction at the kernel's precision (I35)."""
    narrow = ("fp8", "fp6", "fp4", "int8")
    keep = fp8_attention and precision == "fp8"
    p = "bf16" if precision in narrow and not keep and "bf16" in chip.peak_flop_per_s else precision
    if training:
        frac = eff.attention_training_fraction
    else:
        frac = eff.attention_prefill_fraction(p, chip.id) if prefill else eff.attention_peak_fraction
    return flops / (chip.peak(p) * frac)


def memory_time_s(chip: ChipSpec, eff: Efficiency, bytes_moved: ArrayLike, fraction: float | None = None) -> ArrayLike:
    """Time (s) of a memory-bound op moving ``bytes_moved`` bytes through HBM (K4), at ``fraction`` of the
    nominal bandwidth (default: the family's streaming fraction)."""
    bw = chip.memory_bandwidth_bytes_per_s
    if not bw:
        return 0.0 * bytes_moved
    return bytes_moved / (bw * (eff.memory_bandwidth_fraction if fraction is None else fraction))


def tier_bw_efficiency(cluster, eff: Efficiency) -> np.ndarray:
    """Per-tier algorithm bandwidth efficiency (busbw / nominal link bw) for perf.collectives."""
    return np.array([eff.tier_fraction(t.level) for t in cluster.tiers], dtype=float)
