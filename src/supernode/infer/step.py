"""One forward pass of one pipeline stage of a serving instance, vectorized over plans.

The same function times a decode step (``decode_seqs`` sequences, one query token each, or
``1 + draft`` with speculative decoding), a prefill chunk (``prefill_tokens`` new prompt tokens)
and a mixed co-located iteration (both). Per chip of the stage, per micro-batch (docs/inference.md):

    T_local = sum_gemm roofline(gemm) + roofline(attention core vs KV-cache reads)        (I4)
    T_comm  = TP all-reduce + FFN all-gather/reduce-scatter (dense) or MoE dispatch/combine
              all-to-all (collectives.all_to_all_s) + pipeline send                      (I5)
    T_stage = T_local + T_comm              without overlap
            = T_local' + max(sum_c T_c (1 - h_c), T_comm - T_local')
                                            with two-micro-batch overlap: T_local' streams the
                                            weights once per half batch, h_c is the shared
                                            hidden fraction of collective c                (I6)

GEMM roofline times come from :mod:`supernode.perf.compute` through :mod:`supernode.infer.kernels`,
so decode GEMMs at small batch are weight-read bound and prefill GEMMs compute bound without a
separate switch. MoE: a chip holds ceil(E/ep) expert slots; of those, a fraction
1 - (1 - k/E)^(T_g) is hit by the T_g tokens of the stage group (uniform routing), and only hit
experts' weights are read (I7). With an ``expert_balance`` mode the stage is timed on its most loaded
EP rank, which carries f = max/mean routed tokens (I17, :mod:`supernode.infer.balance`) on its routed
experts and on the dispatch/combine bytes it receives.

:func:`draft_pass_time` prices one sequential MTP / draft-model pass (I14) with the same per-layer
pieces (``_layer_gemms_s``, ``_attention_core_s``, ``_layer_comm_s``) that :func:`stage_time` sums
over its layers; the serving step adds m of them on the last stage after the verify pass.

Per-module weight formats (I20): each part (attention projections, dense FFN, shared experts, routed
experts, router, the draft block, LM head) is priced at its own format from
:func:`supernode.infer.precision.module_formats`, with the same roofline (``kernels.gemms_s``) at that
format's dense rate and bytes per element; MoE dispatch is sent at the routed experts' format.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from supernode.hardware import ClusterSpec
from supernode.infer import balance, fixed_costs, glue, kernels
from supernode.infer.arch import ServingArch
from supernode.infer.moe_backend import fused as fused_moe_op
from supernode.infer.plan import PlanGrid
from supernode.infer.precision import (ACTIVATION_BYTES, dispatch_bytes, gather_bytes, mean_over_formats,
                                       module_formats, weight_bytes)
from supernode.infer.precision import attention_precision as default_attention_precision
from supernode.infer.shared_stream import overlaps as shared_stream_overlaps
from supernode.perf import collectives as coll
from supernode.perf import compute


@dataclass(frozen=True)
class StageBreakdown:
    """Seconds per stage and micro-batch, one array element per plan (``expert_balance_ratio``: dimensionless)."""

    gemm_s: np.ndarray  # all weight GEMMs (roofline: weight reads or FLOPs)
    attention_s: np.ndarray  # attention core (KV-cache reads or FLOPs)
    tp_comm_s: np.ndarray  # tensor-parallel all-reduce / FFN all-gather + reduce-scatter
    moe_comm_s: np.ndarray  # MoE dispatch + combine all-to-all
    pp_comm_s: np.ndarray  # activation send to the next stage
    exposed_comm_s: np.ndarray  # communication not hidden behind compute
    stage_s: np.ndarray  # the stage's time for one micro-batch
    overlap_applied: np.ndarray | None = None  # two-micro-batch overlap in effect (needs >= 2 tokens per rank)
    draft_s: np.ndarray | None = None  # m sequential draft passes per step on the last stage (I14); None: not priced
    expert_balance_ratio: np.ndarray | None = None  # f of I17 (most loaded EP rank / mean); None: dense or not priced
    layer_fixed_s: np.ndarray | None = None  # I21: calibrated fixed time per layer x layers of the pass (in stage_s)
    offload_s: np.ndarray | None = None  # I26: stage time the weight-offload copies add (in stage_s); None: no offload

    def row(self, i: int) -> dict:
        return {k: float(np.asarray(v)[i]) for k, v in self.__dict__.items()
                if k != "overlap_applied" and v is not None}


def _moe_glue_args(arch: ServingArch, plan: PlanGrid, q_tok, routed_ratio=1.0, expert_balance: str | None = None):
    """The MoE arguments of :func:`supernode.infer.glue.stage_bytes` (I30): (attention-DP ranks, expert TP, routed
    copies per token of the rank on this chip: the group's d k r f copies over the EP ranks, f of I17); None for a
    dense model."""
    if not arch.is_moe:
        return None
    f = expert_balance_ratio(arch, plan, q_tok, routed_ratio, expert_balance)
    return plan.dp, plan.expert_tp, plan.dp * float(arch.experts_per_token) * routed_ratio * f / plan.ep


def _layers_per_stage(arch: ServingArch, pp: np.ndarray):
    """(dense, moe) layers of the slowest stage: ceil(L/p) layers, split in the model's proportion."""
    per = np.ceil(arch.layers / pp)
    moe = per * arch.moe_layers / arch.layers
    return per - moe, moe


def expert_balance_ratio(arch: ServingArch, plan: PlanGrid, q_tok, routed_ratio=1.0, expert_balance: str | None = None):
    """f of I17 for ``q_tok`` tokens per attention-DP rank: the most loaded EP rank's routed tokens over the
    group mean, mu = q_tok d routed_ratio k / ep tokens per EP rank; 1 for a dense model or without a mode."""
    if not arch.is_moe or expert_balance is None:
        return np.ones(np.broadcast(np.asarray(q_tok, float), plan.ep).shape)
    E, k = float(arch.experts), float(arch.experts_per_token)
    ep = plan.ep.astype(float)
    mu = np.asarray(q_tok, float) * plan.dp.astype(float) * routed_ratio * k / ep
    return balance.rank_balance_ratio(expert_balance, ep, mu, E, k)


def _gemms_s(chip, eff, parts) -> np.ndarray | float:
    """Roofline seconds (K1, ``kernels.gemms_s``) of ``parts``, a list of (GEMM list, weight format): each
    GEMM at its part's format and bytes per element (I20). Consecutive parts at one format are priced in one
    call, so a single-format model sums its GEMMs exactly as before per-module formats."""
    def priced(run, fmt):  # a mixed part (I32): the share-weighted mean over its formats
        return mean_over_formats(fmt, lambda f: kernels.gemms_s(chip, eff, run, f, weight_bytes(f)))

    total, run, fmt = 0.0, [], None
    for gemms, f in parts:
        if run and f != fmt:
            total = total + priced(run, fmt)
            run = []
        run, fmt = run + list(gemms), f
    if run:
        total = total + priced(run, fmt)
    return total


def _layer_gemms_s(arch: ServingArch, chip, eff, plan: PlanGrid, q_tok, formats: dict, routed_ratio=1.0,
                   expert_balance: str | None = None, fused_moe: bool = False):
    """GEMM seconds of ONE layer's parts on one chip for ``q_tok`` tokens per attention-DP rank (I4):
    (attention projections, dense FFN, MoE FFN = router + shared experts + the hit routed experts).
    A part the model lacks is 0. Dense FFN and shared experts are TP-split over t and replicated over
    the d attention-DP ranks; a chip holds ceil(E/ep) expert slots, of which a fraction
    1 - (1 - k/E)^(T_g) is hit by the T_g = q d tokens of the expert group (uniform routing), each with
    T_g k / (ep ceil(E/ep) h) tokens. ``routed_ratio``: the group's mean routed tokens per rank over this
    rank's (I15). ``expert_balance``: the routed experts are those of the most loaded EP rank, which sees
    f T_g (I17; hit fraction and tokens per hit expert both at f T_g); None: the mean rank. ``formats``: the
    weight format of each part (``attention``, ``dense_ffn``, ``router``, ``shared_experts``, ``experts``;
    :func:`supernode.infer.precision.module_formats`, I20). ``fused_moe``: the hit routed experts run as one fused
    op (I37, :func:`supernode.infer.moe_backend.fused`)."""
    from supernode.workload import shapes

    m = arch.model
    t = plan.tp.astype(float)
    attn = _gemms_s(chip, eff, [(shapes.attention_gemms(m, q_tok, t), formats["attention"])])
    dense_ffn = moe_ffn = 0.0
    if arch.dense_layers:  # dense FFN: TP over t, replicated over attention-DP ranks (SGLang "dense FFN DP")
        dense_ffn = _gemms_s(chip, eff, [(shapes.mlp_gemms(m, q_tok, m.ffn, t), formats["dense_ffn"])])
    if arch.is_moe:
        routed, shared = _moe_paths_s(arch, chip, eff, plan, q_tok, formats, routed_ratio, expert_balance, fused_moe)
        moe_ffn = routed + shared
    return attn, dense_ffn, moe_ffn


def _moe_paths_s(arch: ServingArch, chip, eff, plan: PlanGrid, q_tok, formats: dict, routed_ratio=1.0,
                 expert_balance: str | None = None, fused_moe: bool = False):
    """GEMM seconds of ONE MoE layer's two paths on one chip (I4, I37): (the router GEMM and the hit routed experts,
    the shared experts), arguments as :func:`_layer_gemms_s`. Their sum is the layer's MoE FFN."""
    from supernode import workload
    from supernode.workload import shapes

    m = arch.model
    t, d = plan.tp.astype(float), plan.dp.astype(float)
    E, k = float(arch.experts), float(arch.experts_per_token)
    tokens_group = q_tok * d * routed_ratio * expert_balance_ratio(arch, plan, q_tok, routed_ratio, expert_balance)
    slots, hit, tok_per_hit = shapes.uniform_routing(tokens_group, k, E, plan.ep.astype(float))
    router = [([workload.Gemm("router", q_tok * d / (t * d), E, m.hidden)], formats["router"])]
    routed = shapes.mlp_gemms(m, tok_per_hit, m.moe.expert_ffn, plan.expert_tp.astype(float), slots * hit,
                              "expert", "expert")
    if fused_moe:  # I37: one fused op
        routed_s = _gemms_s(chip, eff, router) + kernels.fused_moe_s(chip, eff, routed, formats["experts"])
    else:
        routed_s = _gemms_s(chip, eff, router + [(routed, formats["experts"])])
    shared_s = 0.0
    if m.moe.shared_experts:  # shared experts: like the dense FFN (TP over t, replicated over DP)
        shared_s = _gemms_s(chip, eff, [(shapes.mlp_gemms(m, q_tok, m.moe.shared_experts * m.moe.expert_ffn, t),
                                         formats["shared_experts"])])
    return routed_s, shared_s


def _fused_norms(arch: ServingArch, eff, plan: PlanGrid, q_tok, glue_fusion: str | None) -> np.ndarray:
    """Norms per layer that run inside the TP all-reduce before them for ``q_tok`` tokens per attention rank (I42,
    :func:`supernode.infer.glue.fused_norms_per_layer`; the stack's custom all-reduce limit of C3)."""
    return glue.fused_norms_per_layer(glue_fusion, plan.tp, plan.dp, q_tok, float(arch.hidden),
                                      kernels.custom_all_reduce_limit_bytes(eff, plan.tp))


def _latency_free(eff):
    """``eff`` with every fixed latency at zero (t_0, the kernel floor, the fused MoE op's t_f): the roofline work."""
    return dataclasses.replace(eff, gemm_kernel_latency_s=0.0, kernel_floor_s=0.0,
                               fused_moe={p: {**f, "fixed_s": 0.0} for p, f in eff.fused_moe.items()})


def shared_stream_saving_s(arch: ServingArch, chip, eff, plan: PlanGrid, q_tok, formats: dict, chip_formats,
                           routed_ratio=1.0, expert_balance: str | None = None, fused_moe: bool = False,
                           glue_fusion: str | None = None):
    """Seconds ONE MoE layer saves when its shared experts run on a second stream (I38, :mod:`supernode.infer.
    shared_stream`): T_r + T_s - max(T_r, T_s, W_r + W_s), T_s the shared experts' GEMMs, one kernel floor (their
    activation) and their glue traffic (I30), T_r the router and routed experts, W the same without fixed latencies.
    0 for a model without shared experts."""
    if not arch.is_moe or not arch.model.moe.shared_experts:
        return np.zeros_like(np.asarray(q_tok, float) * plan.tp)
    glue_s = compute.memory_time_s(chip, eff, np.asarray(q_tok, float) * glue.shared_experts_bytes_per_token(
        arch, formats, chip_formats, plan.tp.astype(float), glue_fusion), eff.glue_fraction)
    t_r, t_s = _moe_paths_s(arch, chip, eff, plan, q_tok, formats, routed_ratio, expert_balance, fused_moe)
    w_r, w_s = _moe_paths_s(arch, chip, _latency_free(eff), plan, q_tok, formats, routed_ratio, expert_balance,
                            fused_moe)
    t_s = t_s + glue_s + eff.kernel_floor_s
    w_s = w_s + glue_s
    return (t_r + t_s) - np.maximum(np.maximum(t_r, t_s), w_r + w_s)


def _lm_head_s(arch: ServingArch, chip, eff, tokens, tp, precision: str):
    """The output head D -> V for ``tokens`` tokens, vocabulary split t ways (I4), at the head's format (I20)."""
    from supernode import workload

    head = [workload.lm_head_gemm(arch.model, tokens, tp)]
    return mean_over_formats(precision, lambda f: kernels.gemms_s(chip, eff, head, f, weight_bytes(f)))


def _attention_core_s(arch: ServingArch, chip, eff, tp, decode_seqs, decode_tokens, context_tokens,
                      prefill_tokens, prefill_len, kv_precision_bytes: float, attn_precision: str):
    """Attention core of ONE layer on one chip (I4, I7): ``decode_tokens`` query tokens of
    ``decode_seqs`` sequences over their ``context_tokens`` KV (absorbed MLA widths), plus causal prefill
    of ``prefill_tokens`` tokens from prompts of ``prefill_len``; query heads split over t, the KV cache
    over min(t, K) (MHA/GQA) or not at all (MLA latent)."""
    from supernode import workload

    heads_split = tp  # query heads are split over TP (MLA too)
    kv_split = np.minimum(tp, arch.kv_heads) if arch.attention != "mla" else np.ones_like(tp)
    ctx = np.asarray(context_tokens, dtype=float)
    sa = getattr(arch.model, "sparse_attention", None)
    # I43: with sparse attention a query token attends to min(c, k) keys; a sequence of q query tokens reads at most
    # q k latent rows
    attended = ctx if sa is None else np.minimum(ctx, float(sa.topk))
    rows = ctx if sa is None else np.minimum(
        ctx, float(sa.topk) * np.asarray(decode_tokens, float) / np.maximum(np.asarray(decode_seqs, float), 1e-30))
    flops_dec = 2.0 * decode_tokens * attended * arch.heads * (arch.decode_qk_dim + arch.decode_v_dim) / heads_split
    flops_pre = workload.attention_core_flops(arch.model, prefill_tokens, np.asarray(prefill_len, float), True,
                                              heads_split)
    kv_read = decode_seqs * rows * arch.kv_elements_per_token_per_layer * kv_precision_bytes / kv_split
    core = kernels.attention_s(chip, eff, flops_dec, kv_read, attn_precision, prefill_flops=flops_pre)
    if sa is None:
        return core
    return core + _indexer_s(arch, chip, eff, decode_seqs, decode_tokens, ctx, prefill_tokens, prefill_len,
                             attn_precision)


def _indexer_s(arch: ServingArch, chip, eff, decode_seqs, decode_tokens, context_tokens, prefill_tokens, prefill_len,
               attn_precision: str):
    """Lightning indexer of ONE layer on one chip (I43), replicated over TP: its logits over every cached token
    (2 H_i d_i FLOPs per query-key pair; decode tokens over their context, prompt tokens causally), the decode
    sequences' index keys streamed once, and the FP32 logits written and read back for the top-k (8 bytes per pair);
    one attention-like kernel at FP8 where the chip has it."""
    from supernode import workload

    sa = arch.model.sparse_attention
    ctx = np.asarray(context_tokens, dtype=float)
    pre_len = np.asarray(prefill_len, dtype=float)
    flops_dec = workload.shapes.indexer_core_flops(arch.model, decode_tokens, ctx, causal=False)
    flops_pre = workload.shapes.indexer_core_flops(arch.model, prefill_tokens, pre_len, causal=True)
    pairs = np.asarray(decode_tokens, float) * ctx + np.asarray(prefill_tokens, float) * pre_len * 0.5
    bytes_moved = np.asarray(decode_seqs, float) * ctx * sa.index_key_bytes + 8.0 * pairs
    prec = "fp8" if "fp8" in chip.peak_flop_per_s else attn_precision
    return kernels.attention_s(chip, eff, flops_dec, bytes_moved, prec, prefill_flops=flops_pre)


def _layer_comm_s(arch: ServingArch, cluster: ClusterSpec, plan: PlanGrid, q, expert_precision: str, ceff,
                  a2a_scale=1.0, dispatch: str = "all-to-all", moe_comm: str = "all-to-all", group_ratio=1.0):
    """Collectives of ONE layer for ``q`` tokens per attention-DP rank (I5): (one all-reduce of q D
    BF16 activations over the t-way TP group, 0 without TP, by ``kernels.tp_all_reduce_s`` (C3: the stacks'
    own kernels below their message limit, NCCL / RCCL above); one MoE dispatch + combine over the stage's
    chips, q/t k D each way, by the MoE all-to-all kernels (I18); 0 for a dense model, and 0 with one
    attention group over the stage (dp = 1), whose FFN all-reduce combines the experts' outputs). ``a2a_scale``: the
    all-to-all's bytes on its slowest chip over q/t k D (I17: the most loaded EP rank receives f times the mean).
    The caller zeroes the all-to-all on one chip. ``expert_precision``: the routed experts' weight format, which
    sets the dispatch bytes per element (``dispatch_bytes``; combine is BF16). ``dispatch``: ``all-to-all`` (every
    routed copy sent to its expert's chip: the low-latency kernels of decode, I18) or ``dedup`` (once per remote
    scale-up domain, then forwarded: the high-throughput kernels of prefill, I24). ``moe_comm`` ``allgather``
    (I41) replaces both: an all-gather of the group's tokens at ``gather_bytes`` and a reduce-scatter of their BF16
    outputs over the stage's chips, n x the group's mean tokens per chip (``group_ratio`` q / t) each, whatever the
    routing (``a2a_scale`` does not apply)."""
    ab = ACTIVATION_BYTES
    D = float(arch.hidden)
    eff = kernels.efficiency(cluster)
    ar = np.where(plan.tp > 1, kernels.tp_all_reduce_s(cluster, eff, q * D * ab, plan.tp, ceff),
                  0.0)
    a2a = 0.0
    if arch.is_moe:
        k = float(arch.experts_per_token)
        per_chip_tokens = q / plan.tp.astype(float) * a2a_scale
        grp = plan.stage_chips
        if moe_comm == "allgather":
            gathered = grp * (q * np.asarray(group_ratio, float) / plan.tp.astype(float)) * D
            a2a = np.where(plan.dp > 1,
                           kernels.moe_allgather_s(cluster, eff, gathered * gather_bytes(expert_precision), grp, ceff)
                           + kernels.moe_allgather_s(cluster, eff, gathered * ab, grp, ceff), 0.0)
            return ar, a2a
        if dispatch == "dedup":
            mo = arch.model.moe if arch.model is not None else None
            groups = (mo.expert_groups, mo.groups_per_token) if mo is not None else (None, None)
            disp = kernels.moe_dedup_dispatch_s(cluster, per_chip_tokens * D * dispatch_bytes(expert_precision), k,
                                                grp, ceff, *groups,
                                                payload_bytes_per_element=dispatch_bytes(expert_precision))
            comb = kernels.moe_dedup_combine_s(cluster, per_chip_tokens * D * ab, k, grp, ceff, *groups)
        else:
            disp = kernels.moe_dispatch_s(cluster, per_chip_tokens * k * D * dispatch_bytes(expert_precision), grp,
                                         ceff)
            comb = kernels.moe_combine_s(cluster, per_chip_tokens * k * D * ab, grp, ceff)
        # one attention group over the whole stage (dp = 1): every chip already holds every token after the
        # attention all-reduce, computes its own experts' share, and the FFN all-reduce sums it; no all-to-all
        a2a = np.where(plan.dp > 1, disp + comb, 0.0)
    return ar, a2a


def stage_time(arch: ServingArch, cluster: ClusterSpec, plan: PlanGrid, *, precision: str, kv_precision_bytes: float,
               decode_seqs, context_tokens, query_tokens=1.0, prefill_tokens=0.0, prefill_len=0.0,
               attention_precision: str | None = None, routed_tokens_per_rank=None,
               expert_balance: str | None = None, module_precision=None,
               glue_fusion: str | None = None, dispatch: str = "all-to-all",
               serving_stack: str | None = None, moe_backend: str | None = None,
               shared_experts_stream: str | None = None, moe_comm: str = "all-to-all") -> StageBreakdown:
    """Time of one stage for one micro-batch on every plan.

    ``decode_seqs``: sequences decoding per attention-DP rank in this micro-batch; ``context_tokens``:
    their mean KV length; ``query_tokens``: tokens per sequence per step (1 + draft tokens);
    ``prefill_tokens``: prompt tokens per attention-DP rank in this micro-batch, from prompts of
    ``prefill_len`` tokens (mean attended context prefill_len / 2, causal).
    ``routed_tokens_per_rank``: mean tokens per attention-DP rank that reach the routed experts, when the
    ranks of the expert group carry unequal loads (I15: one rank prefilling a chunk while the others only
    decode); the time is that of the rank with ``decode_seqs`` and ``prefill_tokens``, the routed-expert GEMMs
    see the group's total. Default: every rank carries the same tokens.
    ``expert_balance`` (``eplb``, ``none``, ``ideal``; :mod:`supernode.infer.balance`): the routed experts and the
    all-to-all are those of the most loaded EP rank, f times the group mean (I17); the all-to-all moves
    max(this rank's sends, f x the mean a rank receives). None: the mean rank (no imbalance).
    ``module_precision``: weight format per part (I20; :func:`supernode.infer.precision.module_formats`), the
    parts not named at ``precision``; None: every part at ``precision``. ``glue_fusion``: the serving stack's
    glue-kernel fusions (I22, :mod:`supernode.infer.glue`); None: ``unfused``. ``dispatch``: the MoE
    dispatch/combine kernels, ``all-to-all`` (per routed copy, I18) or ``dedup`` (once per remote scale-up
    domain, I24; where the group spans several domains and two micro-batches overlap, the forwarding kernels
    take ``ep_dedup_sm_fraction`` of the SMs from the MoE layers' overlapped compute, as in training's C2).
    ``serving_stack``: the fixed time per layer of a MoE model is the stack's own where it has one for the chip's
    family (I34, at every ep), else the family's (I21, only where the plan runs expert parallelism, ep > 1).
    ``moe_backend``: the stack's MoE backend for the routed experts (I37; None: ``grouped``).
    ``shared_experts_stream``: ``overlap`` runs each MoE layer's shared experts on a second stream beside the routed
    experts in a pass without prompt tokens (I38, :mod:`supernode.infer.shared_stream`); None: ``serial``.
    ``moe_comm``: ``all-to-all`` (the dispatch/combine kernels that ``dispatch`` names) or ``allgather`` (I41: the
    ranks all-gather the group's tokens and reduce-scatter the outputs, in prefill and decode alike)."""
    chip = cluster.chip
    t, p = plan.tp.astype(float), plan.pp.astype(float)
    formats = module_formats(precision, module_precision)
    n_dec = np.asarray(decode_seqs, dtype=float)
    q_dec = n_dec * np.asarray(query_tokens, dtype=float)
    q_pre = np.asarray(prefill_tokens, dtype=float)
    q = q_dec + q_pre  # tokens per attention rank
    routed_ratio = (1.0 if routed_tokens_per_rank is None
                    else np.asarray(routed_tokens_per_rank, float) / np.maximum(q, 1e-30))  # group mean / this rank
    dense_l, moe_l = _layers_per_stage(arch, plan.pp)
    last_stage = 1.0  # the LM head sits on the last stage; the slowest stage is taken to carry it
    eff = kernels.efficiency(cluster)
    ceff = kernels.collective_efficiency(cluster, eff)

    fused = arch.is_moe and fused_moe_op(eff, moe_backend, formats["experts"])  # I37

    def gemm_time(q_tok):
        attn, dense_ffn, moe_ffn = _layer_gemms_s(arch, chip, eff, plan, q_tok, formats, routed_ratio,
                                                  expert_balance, fused)
        tot = attn * (dense_l + moe_l)
        if arch.dense_layers:
            tot = tot + dense_l * dense_ffn
        if arch.is_moe:
            tot = tot + moe_l * moe_ffn
        lm = _lm_head_s(arch, chip, eff, n_dec * np.asarray(query_tokens, float) + 0 * q_tok, t,
                        formats["lm_head"])
        return tot + last_stage * lm

    # two-micro-batch overlap needs at least two sequences (or prompt tokens) per rank to split
    overlap = (plan.overlap > 0) & (q >= 2.0)
    chip_formats = tuple(chip.peak_flop_per_s)

    def aux(q_tok):  # I13 kernel floors + I22 / I30 / I31 activation traffic of the glue kernels
        moe = _moe_glue_args(arch, plan, q_tok, routed_ratio, expert_balance)
        fn = _fused_norms(arch, eff, plan, q_tok, glue_fusion)  # I42
        return kernels.aux_kernels_s(eff, dense_l, moe_l, chip,
                                     glue.stage_bytes(arch, formats, chip_formats, t, kv_precision_bytes, q_tok,
                                                      dense_l, moe_l, glue_fusion, moe, fused, fn), fused, fn)

    shared_overlap = arch.is_moe and shared_stream_overlaps(shared_experts_stream)
    decode_only = q_pre <= 0.0  # I38: CUDA-graph passes, which carry no prompt tokens

    def local_s(q_tok):  # GEMMs and glue kernels, less what the shared experts' own stream hides (I38)
        t_local = gemm_time(q_tok) + aux(q_tok)
        if not shared_overlap:
            return t_local
        saved = shared_stream_saving_s(arch, chip, eff, plan, q_tok, formats, chip_formats, routed_ratio,
                                       expert_balance, fused, glue_fusion)
        return t_local - np.where(decode_only, moe_l * saved, 0.0)

    gemm_s = local_s(q)
    gemm_half_s = np.where(overlap, 2.0 * local_s(q / 2.0), gemm_s)

    # attention core: decode tokens over their context (absorbed MLA dims), prefill tokens causal
    layers = dense_l + moe_l
    attn_prec = attention_precision or default_attention_precision(chip)
    attention_s = layers * _attention_core_s(arch, chip, eff, t, n_dec, q_dec, context_tokens, q_pre, prefill_len,
                                             kv_precision_bytes, attn_prec)

    # communication (I5); the all-to-all waits for the chip that moves the most: this rank's own sends, or
    # the most loaded EP rank's receives, f times the group mean (I17; with I15 the mean is routed_ratio q)
    f_bal = expert_balance_ratio(arch, plan, q, routed_ratio, expert_balance)
    ar, a2a = _layer_comm_s(arch, cluster, plan, q, formats["experts"], ceff, np.maximum(1.0, f_bal * routed_ratio),
                            dispatch, moe_comm, routed_ratio)
    grp = plan.stage_chips
    tp_comm = 2.0 * ar * layers  # after attention and after the FFN / shared experts
    moe_comm_s = np.zeros_like(tp_comm)
    if arch.is_moe:
        moe_comm_s = np.where(grp > 1, moe_l * a2a, 0.0)
    pp_comm = np.where(p > 1, coll.p2p_s(cluster, q * float(arch.hidden) * ACTIVATION_BYTES / t, grp + 1, ceff), 0.0)

    comm = tp_comm + moe_comm_s
    local = gemm_s + attention_s
    local_overlap = gemm_half_s + attention_s
    if dispatch == "dedup" and arch.is_moe and moe_comm != "allgather":
        # I24 / C2: where the EP group spans several scale-up domains, the forwarding kernels run beside the other
        # micro-batch's compute and take a share of the SMs from the MoE layers' part of it (DeepSeek-V3 sec.
        # 3.2.2: 20 SMs for IB sends and NVLink forwarding); inside one domain they are a plain all-to-all (I18)
        f_sm = eff.overlap.get("ep_dedup_sm_fraction", 0.0)
        moe_share = moe_l / np.maximum(dense_l + moe_l, 1.0)
        spans = (plan.dp > 1) & (grp > cluster.scale_up.domain_chips)
        local_overlap = local_overlap * np.where(spans, 1.0 + moe_share * (1.0 / (1.0 - f_sm) - 1.0), 1.0)
    # overlap hides at most the shared hidden fractions of each collective, and never more than the
    # compute it runs behind (I6; fractions from data/efficiency/default.yaml)
    h_tp = eff.overlap.get("tp_comm_hidden_fraction", 0.0)
    h_ep = eff.overlap.get("ep_comm_hidden_fraction", 0.0)
    exposed_overlap = np.maximum(tp_comm * (1.0 - h_tp) + moe_comm_s * (1.0 - h_ep), comm - local_overlap)
    exposed = np.where(overlap, exposed_overlap, comm)
    # I21: the family's calibrated fixed time per layer of a MoE model's forward pass (0 where not calibrated, and
    # where the experts are sharded by TP, ep 1); I34: the serving stack's own value where it has one for the family
    layer_fixed = layers * fixed_costs.layer_overhead_s(chip.family, arch.is_moe, serving_stack, plan.ep)
    stage = np.where(overlap, local_overlap, local) + exposed + layer_fixed
    return StageBreakdown(gemm_s=gemm_s, attention_s=attention_s, tp_comm_s=tp_comm, moe_comm_s=moe_comm_s,
                          pp_comm_s=pp_comm, exposed_comm_s=exposed, stage_s=stage + pp_comm,
                          layer_fixed_s=np.broadcast_to(layer_fixed, np.shape(stage)).astype(float),
                          overlap_applied=np.broadcast_to(overlap, np.shape(stage)),
                          expert_balance_ratio=(np.broadcast_to(f_bal, np.shape(stage)).astype(float)
                                                if arch.is_moe and expert_balance is not None else None))


DRAFT_EXTRA_KERNELS = 4  # per draft pass besides the block's own: embedding gather, enorm, hnorm, the head's norm (I14)


def draft_pass_time(arch: ServingArch, cluster: ClusterSpec, plan: PlanGrid, *, precision: str,
                    kv_precision_bytes: float, decode_seqs, context_tokens,
                    attention_precision: str | None = None, expert_balance: str | None = None,
                    module_precision=None, glue_fusion: str | None = None,
                    serving_stack: str | None = None, moe_backend: str | None = None,
                    shared_experts_stream: str | None = None, moe_comm: str = "all-to-all") -> StageBreakdown:
    """Time of ONE sequential draft pass of multi-token prediction (MTP) on every plan (I14).

    DeepSeek-V3 MTP as served by TensorRT-LLM (one MTP module run m times autoregressively) and SGLang
    (EAGLE worker, ``speculative_num_steps`` = m): after each verify pass the module runs m times, one new
    token per decoding sequence each time. A pass is the embedding lookup, two RMSNorms, the projection
    [h; e] (2D) -> D, ONE transformer block of the model's shape (MoE if the model has MoE layers) and the
    shared output head, on the last pipeline stage (its chips hold the module), after the verify pass:

        T_draft = sum_gemm roofline(block GEMMs at b tokens, f_mtp) + roofline(projection, BF16, split over t)
                  + roofline(LM head, f_lm_head) + (aux kernels of one layer + 4) t_floor
                  + attention core of one layer over the context
                  + (2 + [t > 1]) AllReduce(b D 2, t) + [MoE, > 1 chip] (dispatch + combine)

    with b = ``decode_seqs`` sequences per attention-DP rank, every piece priced by the same per-layer
    functions as :func:`stage_time` (I4, I5, I7, I13). The projection stays BF16 and is row-parallel over t
    with its own all-reduce (TensorRT-LLM ``DeepseekV3MTP.eh_proj``; replicated, no all-reduce, under
    attention DP where t = 1). No two-micro-batch overlap and no pipeline send (a pass is tiny and runs on
    one stage). A model without MTP modules is priced the same way: an EAGLE-style one-layer draft head of
    the target's layer shape (an assumption the search states). Not priced: the draft's sampling / top-k
    kernel, the gather of TP-split logits (neither is priced for the main model either), and the first
    pass's re-reading of the accepted tokens (at small batch it is bound by weight reads either way).
    ``expert_balance``: the MoE block's routed experts and all-to-all on the most loaded EP rank (I17), as in
    :func:`stage_time`; None: the mean rank. ``module_precision`` (I20): the block's GEMMs (and its MoE
    dispatch) at the ``mtp`` format, the shared head at ``lm_head``'s; parts not named at ``precision``.
    ``moe_backend``: the stack's MoE backend (I37), for the block's routed experts as in :func:`stage_time`;
    ``shared_experts_stream`` (I38) and ``moe_comm`` (I41) as there (a draft pass carries no prompt tokens)."""
    from supernode import workload

    chip = cluster.chip
    t = plan.tp.astype(float)
    formats = module_formats(precision, module_precision)
    block = {part: formats["mtp"] for part in formats}  # every GEMM of the draft block at the mtp format
    n_dec = np.asarray(decode_seqs, dtype=float)
    q = n_dec * np.ones_like(t)  # one token per sequence and pass
    eff = kernels.efficiency(cluster)
    ceff = kernels.collective_efficiency(cluster, eff)
    moe_block = arch.is_moe  # DeepSeek-V3's MTP block is a MoE block (its paper, sec. 2.2)

    fused = moe_block and fused_moe_op(eff, moe_backend, block["experts"])  # I37
    attn, dense_ffn, moe_ffn = _layer_gemms_s(arch, chip, eff, plan, q, block, 1.0, expert_balance, fused)
    proj_prec = default_attention_precision(chip)  # the chip's 16-bit rate (BF16, else FP16)
    proj = kernels.gemms_s(chip, eff, [workload.Gemm("mtp_projection", q, arch.hidden, 2.0 * arch.hidden / t)],
                           proj_prec, weight_bytes(proj_prec))
    lm = _lm_head_s(arch, chip, eff, q, t, formats["lm_head"])
    dl, ml = (0.0, 1.0) if moe_block else (1.0, 0.0)
    moe = _moe_glue_args(arch, plan, q, 1.0, expert_balance)  # the block's MoE glue (I30), as in stage_time
    fn = _fused_norms(arch, eff, plan, q, glue_fusion)  # I42: the block's two norms, as in stage_time
    aux = (kernels.aux_kernels_s(eff, dl, ml, chip, glue.stage_bytes(arch, block, tuple(chip.peak_flop_per_s), t,
                                                                     kv_precision_bytes, q, dl, ml, glue_fusion, moe,
                                                                     fused, fn), fused, fn)
           + DRAFT_EXTRA_KERNELS * eff.kernel_floor_s)
    gemm_s = attn + (moe_ffn if moe_block else dense_ffn) + proj + lm + aux
    if moe_block and shared_stream_overlaps(shared_experts_stream):  # I38: draft passes run in CUDA graphs too
        gemm_s = gemm_s - shared_stream_saving_s(arch, chip, eff, plan, q, block, tuple(chip.peak_flop_per_s), 1.0,
                                                 expert_balance, fused, glue_fusion)

    attn_prec = attention_precision or default_attention_precision(chip)
    attention_s = _attention_core_s(arch, chip, eff, t, n_dec, q, context_tokens, 0.0, 0.0, kv_precision_bytes,
                                    attn_prec)

    f_bal = expert_balance_ratio(arch, plan, q, 1.0, expert_balance)
    ar, a2a = _layer_comm_s(arch, cluster, plan, q, block["experts"], ceff, f_bal, moe_comm=moe_comm)
    tp_comm = 3.0 * ar  # after the projection, after attention, after the FFN / shared experts
    moe_comm_s = np.where(plan.stage_chips > 1, a2a, 0.0) if moe_block else np.zeros_like(tp_comm)
    comm = tp_comm + moe_comm_s
    zero = np.zeros_like(comm)
    # I21 / I34: one block's pass (I21 only where ep > 1; a stack's own I34 value at every ep)
    layer_fixed = fixed_costs.layer_overhead_s(chip.family, arch.is_moe, serving_stack, plan.ep)
    return StageBreakdown(gemm_s=gemm_s, attention_s=attention_s, tp_comm_s=tp_comm, moe_comm_s=moe_comm_s,
                          pp_comm_s=zero, exposed_comm_s=comm, stage_s=gemm_s + attention_s + comm + layer_fixed,
                          layer_fixed_s=np.broadcast_to(layer_fixed, np.shape(comm)).astype(float),
                          overlap_applied=np.zeros(np.shape(comm), dtype=bool))
