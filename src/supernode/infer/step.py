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
experts' weights are read (I7).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from supernode.hardware import ClusterSpec
from supernode.infer import kernels
from supernode.infer.arch import ServingArch
from supernode.infer.plan import PlanGrid
from supernode.infer.precision import ACTIVATION_BYTES, dispatch_bytes, weight_bytes
from supernode.infer.precision import attention_precision as default_attention_precision
from supernode.perf import collectives as coll


@dataclass(frozen=True)
class StageBreakdown:
    """Seconds per stage and micro-batch, one array element per plan."""

    gemm_s: np.ndarray  # all weight GEMMs (roofline: weight reads or FLOPs)
    attention_s: np.ndarray  # attention core (KV-cache reads or FLOPs)
    tp_comm_s: np.ndarray  # tensor-parallel all-reduce / FFN all-gather + reduce-scatter
    moe_comm_s: np.ndarray  # MoE dispatch + combine all-to-all
    pp_comm_s: np.ndarray  # activation send to the next stage
    exposed_comm_s: np.ndarray  # communication not hidden behind compute
    stage_s: np.ndarray  # the stage's time for one micro-batch
    overlap_applied: np.ndarray | None = None  # two-micro-batch overlap in effect (needs >= 2 tokens per rank)

    def row(self, i: int) -> dict:
        return {k: float(np.asarray(v)[i]) for k, v in self.__dict__.items() if k != "overlap_applied"}


def _layers_per_stage(arch: ServingArch, pp: np.ndarray):
    """(dense, moe) layers of the slowest stage: ceil(L/p) layers, split in the model's proportion."""
    per = np.ceil(arch.layers / pp)
    moe = per * arch.moe_layers / arch.layers
    return per - moe, moe


def stage_time(arch: ServingArch, cluster: ClusterSpec, plan: PlanGrid, *, precision: str, kv_precision_bytes: float,
               decode_seqs, context_tokens, query_tokens=1.0, prefill_tokens=0.0, prefill_len=0.0,
               attention_precision: str | None = None) -> StageBreakdown:
    """Time of one stage for one micro-batch on every plan.

    ``decode_seqs``: sequences decoding per attention-DP rank in this micro-batch; ``context_tokens``:
    their mean KV length; ``query_tokens``: tokens per sequence per step (1 + draft tokens);
    ``prefill_tokens``: prompt tokens per attention-DP rank in this micro-batch, from prompts of
    ``prefill_len`` tokens (mean attended context prefill_len / 2, causal)."""
    from supernode import workload
    from supernode.workload import shapes

    m = arch.model
    chip = cluster.chip
    t, d, p = plan.tp.astype(float), plan.dp.astype(float), plan.pp.astype(float)
    e = plan.ep.astype(float)
    etp = plan.expert_tp.astype(float)
    wb = weight_bytes(precision)
    n_dec = np.asarray(decode_seqs, dtype=float)
    q_dec = n_dec * np.asarray(query_tokens, dtype=float)
    q_pre = np.asarray(prefill_tokens, dtype=float)
    q = q_dec + q_pre  # tokens per attention rank
    dense_l, moe_l = _layers_per_stage(arch, plan.pp)
    last_stage = 1.0  # the LM head sits on the last stage; the slowest stage is taken to carry it
    eff = kernels.efficiency(cluster)
    ceff = kernels.collective_efficiency(cluster, eff)

    def gemm_time(q_tok):
        attn = kernels.gemms_s(chip, eff, shapes.attention_gemms(m, q_tok, t), precision, wb)
        tot = attn * (dense_l + moe_l)
        if arch.dense_layers:  # dense FFN: TP over t, replicated over attention-DP ranks (SGLang "dense FFN DP")
            tot = tot + dense_l * kernels.gemms_s(chip, eff, shapes.mlp_gemms(m, q_tok, m.ffn, t), precision, wb)
        if arch.is_moe:
            E, k = float(arch.experts), float(arch.experts_per_token)
            slots = np.ceil(E / e)
            tokens_group = q_tok * d
            hit = 1.0 - (1.0 - k / E) ** tokens_group
            tok_per_hit = np.where(hit > 0, tokens_group * k / (e * slots) / np.maximum(hit, 1e-30), 0.0)
            g = [workload.Gemm("router", q_tok * d / (t * d), E, m.hidden)]
            if m.moe.shared_experts:  # shared experts: like the dense FFN (TP over t, replicated over DP)
                g += shapes.mlp_gemms(m, q_tok, m.moe.shared_experts * m.moe.expert_ffn, t)
            g += shapes.mlp_gemms(m, tok_per_hit, m.moe.expert_ffn, etp, slots * hit, "expert", "expert")
            tot = tot + moe_l * kernels.gemms_s(chip, eff, g, precision, wb)
        lm = kernels.gemms_s(chip, eff, [workload.lm_head_gemm(m, n_dec * np.asarray(query_tokens, float) + 0 * q_tok, t)],
                             precision, wb)
        return tot + last_stage * lm

    # two-micro-batch overlap needs at least two sequences (or prompt tokens) per rank to split
    overlap = (plan.overlap > 0) & (q >= 2.0)
    aux = kernels.aux_kernels_s(eff, dense_l, moe_l)
    gemm_s = gemm_time(q) + aux
    gemm_half_s = np.where(overlap, 2.0 * (gemm_time(q / 2.0) + aux), gemm_s)

    # attention core: decode tokens over their context (absorbed MLA dims), prefill tokens causal
    layers = dense_l + moe_l
    heads_split = t  # query heads are split over TP (MLA too)
    kv_split = np.minimum(t, arch.kv_heads) if arch.attention != "mla" else np.ones_like(t)
    ctx = np.asarray(context_tokens, dtype=float)
    flops_dec = 2.0 * q_dec * ctx * arch.heads * (arch.decode_qk_dim + arch.decode_v_dim) / heads_split
    flops_pre = workload.attention_core_flops(m, q_pre, np.asarray(prefill_len, float), True, heads_split)
    kv_read = n_dec * ctx * arch.kv_elements_per_token_per_layer * kv_precision_bytes / kv_split
    attn_prec = attention_precision or default_attention_precision(chip)
    attention_s = layers * kernels.attention_s(chip, eff, flops_dec + flops_pre, kv_read, attn_prec)

    # communication (I5)
    ab = ACTIVATION_BYTES
    D = float(arch.hidden)
    ar = np.where(t > 1, coll.all_reduce_s(cluster, q * D * ab, plan.tp, 1, ceff), 0.0)
    grp = plan.stage_chips
    tp_comm = 2.0 * ar * layers  # after attention and after the FFN / shared experts
    moe_comm = np.zeros_like(tp_comm)
    if arch.is_moe:
        k = float(arch.experts_per_token)
        per_chip_tokens = q / t
        disp = coll.all_to_all_s(cluster, per_chip_tokens * k * D * dispatch_bytes(precision), grp, 1, ceff)
        comb = coll.all_to_all_s(cluster, per_chip_tokens * k * D * ab, grp, 1, ceff)
        moe_comm = np.where(grp > 1, moe_l * (disp + comb), 0.0)
    pp_comm = np.where(p > 1, coll.p2p_s(cluster, q * D * ab / t, grp + 1, ceff), 0.0)

    comm = tp_comm + moe_comm
    local = gemm_s + attention_s
    local_overlap = gemm_half_s + attention_s
    # overlap hides at most the shared hidden fractions of each collective, and never more than the
    # compute it runs behind (I6; fractions from data/efficiency/default.yaml)
    h_tp = eff.overlap.get("tp_comm_hidden_fraction", 0.0)
    h_ep = eff.overlap.get("ep_comm_hidden_fraction", 0.0)
    exposed_overlap = np.maximum(tp_comm * (1.0 - h_tp) + moe_comm * (1.0 - h_ep), comm - local_overlap)
    exposed = np.where(overlap, exposed_overlap, comm)
    stage = np.where(overlap, local_overlap, local) + exposed
    return StageBreakdown(gemm_s=gemm_s, attention_s=attention_s, tp_comm_s=tp_comm, moe_comm_s=moe_comm,
                          pp_comm_s=pp_comm, exposed_comm_s=exposed, stage_s=stage + pp_comm,
                          overlap_applied=np.broadcast_to(overlap, np.shape(stage)))
