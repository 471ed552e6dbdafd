"""Kernel times for the inference model, all delegated to the shared roofline in
:mod:`supernode.perf.compute` (per-family achievable efficiencies from ``data/efficiency/``) and
to :mod:`supernode.perf.collectives`. This module only adapts shapes (``workload.Gemm`` lists)
and picks the efficiency record and the measured kernel floors (I13, I18); it holds no cost formula of
its own."""

from __future__ import annotations

import numpy as np

from supernode.hardware import ChipSpec, ClusterSpec
from supernode.infer import fixed_costs
from supernode.perf import collectives as coll
from supernode.perf import compute


def efficiency(cluster: ClusterSpec) -> compute.Efficiency:
    return compute.efficiency(cluster.chip.family)


# non-GEMM kernels per layer in a serving step (I13); a MoE layer whose routed path is one fused op (I37) keeps a
# dense layer's six, the routed path's own (top-k, permute, activation, combine) being inside the op
AUX_KERNELS_PER_LAYER = {"dense": 6, "moe": 10, "moe_fused": 6}


def gemms_s(chip: ChipSpec, eff: compute.Efficiency, gemms, precision: str, bytes_per_element: float) -> np.ndarray:
    """Sum of the roofline times (K1) of ``gemms`` on one chip at ``precision``; each GEMM (a
    grouped GEMM is one kernel) takes at least the family's kernel floor (I13). The routed experts' GEMMs
    (kind ``expert``) run as MoE grouped GEMMs at the family's grouped-GEMM factor (K5)."""
    total = 0.0
    for g in gemms:
        m = np.asarray(g.m, float)
        count = np.asarray(g.count, float)
        live = (m > 0) & (count > 0)  # an empty GEMM (no tokens, no expert hit) takes no time
        with np.errstate(invalid="ignore", divide="ignore"):
            t = compute.gemm_time_s(chip, eff, np.where(live, m, 1.0), np.asarray(g.n, float), np.asarray(g.k, float),
                                    precision, count, bytes_per_element, grouped=g.kind == "expert")
        total = total + np.where(live, np.maximum(t, eff.kernel_floor_s), 0.0)
    return np.asarray(total, dtype=float)


def fused_moe_s(chip: ChipSpec, eff: compute.Efficiency, gemms, precision: str) -> np.ndarray:
    """One fused MoE op (I37) doing the routed experts' ``gemms`` at ``precision`` (its bytes per element):
    :func:`supernode.perf.compute.fused_moe_time_s`, the family's fitted fixed time and streaming fraction."""
    from supernode.infer.precision import weight_bytes

    return np.asarray(compute.fused_moe_time_s(chip, eff, gemms, precision, weight_bytes(precision)), dtype=float)


def attention_s(chip: ChipSpec, eff: compute.Efficiency, flops, kv_bytes, precision: str,
                prefill_flops=0.0) -> np.ndarray:
    """Fused attention: smooth roofline (K1) of its FLOPs (K3) and streaming its KV cache from HBM (K4). ``flops``
    run at the family's serving (decode) attention fraction, ``prefill_flops`` (prompt tokens' causal attention) at
    its prefill attention fraction (I35)."""
    t_math = (compute.attention_time_s(chip, eff, np.asarray(flops, float), precision, fp8_attention=True)
              + compute.attention_time_s(chip, eff, np.asarray(prefill_flops, float), precision, fp8_attention=True,
                                         prefill=True))
    t = compute.roofline_s(eff, t_math, compute.memory_time_s(chip, eff, np.asarray(kv_bytes, float)))
    return np.maximum(t, eff.kernel_floor_s)


def aux_kernels_s(eff: compute.Efficiency, dense_layers, moe_layers, chip: ChipSpec | None = None,
                  glue_bytes=0.0, fused_moe: bool = False, fused_norms=0.0) -> np.ndarray:
    """Non-GEMM kernels of a serving step (I13): per layer 2 norms, RoPE + KV-cache write, the
    activation, residual adds / quantization (dense: 6); MoE layers add router top-k, permute and
    unpermute, and dispatch/combine preparation (10). Each costs the kernel floor, which is what binds
    them at small batch; ``glue_bytes`` (I22, :mod:`supernode.infer.glue`), the activations they read and
    write, add their HBM time (K4) on ``chip`` at the family's glue-kernel bandwidth fraction (fitted on
    ``data/glue-kernels``; the streaming fraction where a family has none). ``fused_moe``: the MoE layers' routed
    path runs as one fused op (I37), which holds its glue kernels, so a MoE layer counts a dense layer's six.
    ``fused_norms``: norms per layer that run inside the TP all-reduce before them (I42), not kernels of their own."""
    per_moe = AUX_KERNELS_PER_LAYER["moe_fused" if fused_moe else "moe"]
    dense_l, moe_l = np.asarray(dense_layers, float), np.asarray(moe_layers, float)
    floors = eff.kernel_floor_s * ((AUX_KERNELS_PER_LAYER["dense"] * dense_l + per_moe * moe_l)
                                   - np.asarray(fused_norms, float) * (dense_l + moe_l))
    if chip is None:
        return floors
    return floors + compute.memory_time_s(chip, eff, np.asarray(glue_bytes, float), eff.glue_fraction)


def collective_efficiency(cluster: ClusterSpec, eff: compute.Efficiency) -> np.ndarray:
    return compute.tier_bw_efficiency(cluster, eff)


def _inside_scale_up(tier, nf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(groups of more than one rank inside the scale-up domain, each group's share of a full mesh's links)."""
    return (nf > 1) & (nf <= tier.domain_chips), tier.bandwidth_bytes_per_s * coll.mesh_share(tier, nf)


def custom_all_reduce_limit_bytes(eff: compute.Efficiency, n) -> np.ndarray:
    """The largest all-reduce message per rank the serving stacks' own kernels take over ``n`` ranks (C3; above it,
    NCCL / RCCL): ``custom_all_reduce_max_bytes`` at TP <= 2 and above."""
    lim = eff.custom_all_reduce_max_bytes
    return np.where(np.asarray(n, float) <= 2, lim["tp_le_2"], lim["tp_gt_2"])


def tp_all_reduce_s(cluster: ClusterSpec, eff: compute.Efficiency, size_bytes, n, ceff) -> np.ndarray:
    """One tensor-parallel all-reduce of ``size_bytes`` per rank over ``n`` ranks (C3). The serving stacks run their
    own one-shot / two-shot kernels up to a message limit (``custom_all_reduce_max_bytes``: 16 MB for 1-2 ranks, 8 MB
    above in TensorRT-LLM; 8 MiB in vLLM / SGLang) and hand larger messages to NCCL / RCCL. Below the limit, and for
    families without a fit: the hierarchical all-reduce (:func:`supernode.perf.collectives.all_reduce_s`: the tier's
    latency per step, the scale-up collective fraction). At or above it, inside the scale-up domain, on a family with
    ``nccl_all_reduce``: the library's measured curve (:func:`supernode.perf.collectives.library_all_reduce_s`,
    latency per step and bandwidth fraction fitted on published all_reduce_perf sweeps). Below it, on a family with
    ``custom_all_reduce`` (C4): the same form with the latency and fraction fitted on published timings of the stacks'
    own kernels (data/custom-allreduce-kernels)."""
    size = np.asarray(size_bytes, float)
    n = np.asarray(n)
    base = coll.all_reduce_s(cluster, size, n, 1, ceff)
    lib, own = eff.nccl_all_reduce, eff.custom_all_reduce
    tier = cluster.tiers[0]
    if not (lib or own) or tier.level != "scale_up":
        return base
    nf = n.astype(float)
    inside, link = _inside_scale_up(tier, nf)
    limit = custom_all_reduce_limit_bytes(eff, nf)
    if own:
        small = coll.library_all_reduce_s(size, nf, link, own["latency_step_s"],
                                          own["bandwidth_fraction"])
        base = np.where(inside & (size < limit), small, base)
    if not lib:
        return base
    library = coll.library_all_reduce_s(size, nf, link, lib["latency_step_s"],
                                        lib["bandwidth_fraction"])
    return np.where(inside & (size >= limit), library, base)


def moe_allgather_s(cluster: ClusterSpec, eff: compute.Efficiency, size_bytes, n, ceff) -> np.ndarray:
    """One all-gather or reduce-scatter of an all-gathering MoE (I41) whose full buffer is ``size_bytes`` per rank over
    ``n`` ranks: the stacks hand it to NCCL / RCCL, so inside the scale-up domain, on a family with a C3 fit, half the
    library all-reduce of that buffer (:func:`supernode.perf.collectives.library_all_gather_s`); otherwise the
    hierarchical all-gather at the scale-up collective fraction (:func:`supernode.perf.collectives.all_gather_s`)."""
    size = np.asarray(size_bytes, float)
    nf = np.asarray(n).astype(float)
    base = coll.all_gather_s(cluster, size, nf, 1, ceff)
    lib = eff.nccl_all_reduce
    tier = cluster.tiers[0]
    if not lib or tier.level != "scale_up":
        return base
    inside, link = _inside_scale_up(tier, nf)
    library = coll.library_all_gather_s(size, nf, link, lib["latency_step_s"], lib["bandwidth_fraction"])
    return np.where(inside, library, base)


def describe_tp_all_reduce(eff: compute.Efficiency) -> str:
    """The assumption line of :func:`tp_all_reduce_s` for a family."""
    lim = eff.custom_all_reduce_max_bytes
    head = (f"TP all-reduce (C3): the serving stack's own kernels up to {lim['tp_le_2'] / 1e6:g} MB per rank at "
            f"TP <= 2 and {lim['tp_gt_2'] / 1e6:g} MB above (TensorRT-LLM; vLLM / SGLang 8 MiB), ")
    own = eff.custom_all_reduce
    if own:
        head += (f"priced at {own['latency_step_s'] * 1e6:.1f} us per step and {own['bandwidth_fraction']:.2f} of "
                 "the scale-up bandwidth (C4, fitted on published timings of those kernels, "
                 "data/custom-allreduce-kernels), ")
    else:
        head += (f"priced at the scale-up tier's assumed latency per step (no published timings of those kernels "
                 f"fitted for family {eff.family}), ")
    lib = eff.nccl_all_reduce
    if not lib:
        return head + (f"NCCL / RCCL above; no published all-reduce sweeps fitted for family {eff.family}, so every "
                       "size at the scale-up collective fraction")
    return head + (f"NCCL / RCCL above at {lib['latency_step_s'] * 1e6:.1f} us per step and "
                   f"{lib['bandwidth_fraction']:.2f} of the scale-up bandwidth (fitted on published all_reduce_perf "
                   "sweeps, data/collective-kernels)")


def moe_dispatch_s(cluster: ClusterSpec, size_bytes, n, ceff) -> np.ndarray:
    """One MoE dispatch kernel (I18): alpha_d + the all-to-all's bandwidth term for ``size_bytes`` per chip
    over ``n`` chips (:func:`supernode.perf.collectives.moe_a2a_kernel_s`; alpha_d from
    ``data/inference/small-batch-costs.yaml``)."""
    return coll.moe_a2a_kernel_s(cluster, size_bytes, n, fixed_costs.moe_kernel_floor_s("dispatch"), 1, ceff)


def moe_combine_s(cluster: ClusterSpec, size_bytes, n, ceff) -> np.ndarray:
    """One MoE combine kernel (I18): alpha_c + the all-to-all's bandwidth term."""
    return coll.moe_a2a_kernel_s(cluster, size_bytes, n, fixed_costs.moe_kernel_floor_s("combine"), 1, ceff)


def _ep_normal_ceff(cluster: ClusterSpec, ceff, kind: str) -> np.ndarray:
    """``ceff`` with its scale-up entries replaced by the family's high-throughput MoE kernel fraction (I24)."""
    c = np.array(np.broadcast_to(np.asarray(ceff, float), (len(cluster.tiers),)), dtype=float)
    f = efficiency(cluster).ep_normal_fraction(kind)
    for i, t in enumerate(cluster.tiers):
        if t.level == "scale_up":
            c[i] = f
    return c


def moe_dedup_dispatch_s(cluster: ClusterSpec, token_bytes, k: float, n, ceff, expert_groups=None,
                         groups_per_token=None, payload_bytes_per_element: float = 1.0) -> np.ndarray:
    """One deduplicated MoE dispatch kernel (I24; DeepEP normal / high-throughput kernels): alpha_d + the
    bandwidth term of a dispatch that crosses the scale-out fabric once per remote scale-up domain and sends one
    copy per destination rank inside it (:func:`supernode.perf.collectives.moe_dedup_kernel_s`); ``token_bytes``
    per token, counted once; the scale-up links at the family's measured dispatch fraction for the payload
    (FP8 and narrower, or 16-bit: ``payload_bytes_per_element``)."""
    kind = "dispatch_bf16" if payload_bytes_per_element >= 2 else "dispatch_fp8"
    return _dedup_kernel_s(cluster, token_bytes, k, n, "dispatch", kind, ceff, expert_groups, groups_per_token)


def moe_dedup_combine_s(cluster: ClusterSpec, token_bytes, k: float, n, ceff, expert_groups=None,
                        groups_per_token=None) -> np.ndarray:
    """One deduplicated MoE combine kernel (I24): reduced inside each scale-up domain, then sent once per
    remote domain; alpha_c + the bandwidth term, the scale-up links at the family's measured combine fraction."""
    return _dedup_kernel_s(cluster, token_bytes, k, n, "combine", "combine", ceff, expert_groups, groups_per_token)


def _dedup_kernel_s(cluster: ClusterSpec, token_bytes, k: float, n, op: str, kind: str, ceff, expert_groups,
                    groups_per_token) -> np.ndarray:
    """I24 kernel time. An EP group inside one scale-up domain runs the intranode kernels: one copy per
    destination rank at the family's measured algorithm bandwidth (DeepEP's intranode tables). A group spanning
    domains runs the forwarding kernels, priced as before (k copies per token on the scale-up links at the
    collective fraction), which is what reproduces DeepEP's internode H800 table
    (tests/test_infer_fixed_costs.py)."""
    floor = fixed_costs.moe_kernel_floor_s(op)
    inter = coll.moe_dedup_kernel_s(cluster, token_bytes, k, n, floor, 1, ceff, expert_groups, groups_per_token)
    intra = coll.moe_dedup_kernel_s(cluster, token_bytes, k, n, floor, 1, _ep_normal_ceff(cluster, ceff, kind),
                                    expert_groups, groups_per_token, per_rank=True)
    return np.where(np.asarray(n, float) <= cluster.tiers[0].domain_chips, intra, inter)
