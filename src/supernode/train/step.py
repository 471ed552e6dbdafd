"""Training step time of a transformer LLM under a parallel plan (docs/model.md T1-T5, T9).

One function, :func:`estimate`, evaluates any number of configurations at once (every plan
field a numpy array); a single configuration is the length-1 case, and the search calls the
same function. Notation: t TP, c CP, e EP, d DP, p PP, v virtual stages, b micro-batch,
m = B/(d·b) micro-batches, s sequence length, T = b·s/c tokens of one micro-batch on a TP group.

Per micro-batch and pipeline stage (T1): forward time t_f = Σ_layers [GEMMs (K1) + attention
core (K3) + element-wise ops (K4) + exposed TP/EP/CP communication]; backward t_b = 2x GEMMs,
2.5x attention core, 2x element-wise and the same communication again; full recompute adds one
forward, selective the attention core forward. The pipeline (T2, Narayanan et al. 2021 eq. 1-2):

    T_step = (m + (p-1)/v) · (t_f + t_b) + T_pp_p2p + T_dp_exposed + T_optimizer

bubble = (p-1)/v · (t_f + t_b). DP traffic (T4) hides behind one micro-batch's backward /
forward when overlapped; the optimizer (T5) streams ~32 bytes per locally owned parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from supernode.hardware import ClusterSpec
from supernode.perf import collectives as coll
from supernode.perf.compute import (Efficiency, attention_time_s, efficiency, gemm_time_s, memory_time_s,
                                    tier_bw_efficiency)
from supernode.train.memory import memory_per_chip, param_split, params_per_chip
from supernode.train.plan import PRECISION_BYTES, Plan, TrainWorkload
from supernode.workload.model import ModelSpec
from supernode.workload.shapes import (attention_core_flops, flops_per_token, layer_gemms, lm_head_gemm)

OPTIMIZER_BYTES_PER_PARAM = 32.0  # Adam: read fp32 master, m, v, grad (16 B); write master, m, v (12 B), bf16 weight


@dataclass(frozen=True)
class StepBreakdown:
    """Step-time breakdown (s), memory (bytes per chip) and derived rates; arrays over configurations."""

    compute_s: Any
    exposed_tp_comm_s: Any
    exposed_cp_comm_s: Any
    exposed_ep_comm_s: Any
    exposed_pp_comm_s: Any
    exposed_dp_comm_s: Any
    bubble_s: Any
    optimizer_s: Any
    step_time_s: Any
    tokens_per_s: Any
    mfu: Any
    hfu: Any
    weights_bytes: Any
    gradients_bytes: Any
    optimizer_bytes: Any
    activations_bytes: Any
    comm_buffers_bytes: Any
    memory_bytes_per_chip: Any
    memory_capacity_bytes: float
    fits: Any
    valid: Any

    def row(self, i: int = 0) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            a = np.asarray(v)
            out[f.name] = a.ravel()[i].item() if a.ndim else a.item()
        return out

    def take(self, idx: Any) -> "StepBreakdown":
        vals = []
        for f in fields(self):
            a = np.asarray(getattr(self, f.name))
            vals.append(a[idx] if a.ndim else a)
        return StepBreakdown(*vals)


def _coll_affine(fn, cluster: ClusterSpec, n, stride, bw_eff):
    """Collective time as size·α + β with (α, β) computed once per distinct (n, stride) pair:
    every cost in perf.collectives is affine in the buffer size."""
    n = np.asarray(n, dtype=float)
    stride = np.asarray(stride, dtype=float)
    key = n * (cluster.chips + 1.0) + stride
    uniq, inv = np.unique(key, return_inverse=True)
    un = np.floor(uniq / (cluster.chips + 1.0))
    us = uniq - un * (cluster.chips + 1.0)
    beta = np.asarray(fn(cluster, 0.0, un, us, bw_eff), dtype=float)
    alpha = np.asarray(fn(cluster, 1.0, un, us, bw_eff), dtype=float) - beta
    return alpha[inv].reshape(n.shape), beta[inv].reshape(n.shape)


def _p2p_affine(cluster: ClusterSpec, span, bw_eff):
    beta = coll.p2p_s(cluster, 0.0, span, bw_eff)
    alpha = coll.p2p_s(cluster, 1.0, span, bw_eff) - beta
    return alpha, beta


def _unfused_attention_s(m: ModelSpec, chip, eff: Efficiency, T, t, s):
    """Unfused attention core (T1b): batched GEMMs QK^T [T x d_qk]·[d_qk x s] and P·V over all
    H/t heads (full s x s, no causal skipping), plus the softmax/mask/dropout passes over the
    score matrix: 8 bytes per score (write, read+write softmax, read for PV), +5 with dropout."""
    dqk, dv = _dims(m)
    heads = m.heads / t
    p = "fp16" if "fp16" in chip.peak_flop_per_s else "bf16"
    t_bmm = gemm_time_s(chip, eff, T, s, dqk, p, heads) + gemm_time_s(chip, eff, T, dv, s, p, heads)
    scores = T * s * heads
    return t_bmm + memory_time_s(chip, eff, scores * (13.0 if m.dropout else 8.0))


def _layer_times(m: ModelSpec, kind: str, chip, eff: Efficiency, precision: str, T, t, e, s,
                 attention_kernel: str = "flash"):
    """Forward GEMM, attention-core and element-wise time (s) of one layer, one micro-batch."""
    gb = PRECISION_BYTES.get(precision, 2)
    t_gemm = 0.0
    for g in layer_gemms(m, T, kind, t, e):
        t_gemm = t_gemm + gemm_time_s(chip, eff, g.m, g.n, g.k, precision, g.count, gb)
    if attention_kernel == "unfused":
        t_attn = _unfused_attention_s(m, chip, eff, T, t, s)
    else:
        t_attn = attention_time_s(chip, eff, attention_core_flops(m, T, s, True, t), precision)
    # element-wise bytes per token (K4/T1): 2 norms (2D each), 2 residual adds (3D each), RoPE on Q,K,
    # activation function, dropout; x2 bytes (bf16); sequence-parallel: split t ways
    D = m.hidden
    elems = 4 * D + 6 * D + (5 * D * 2 if m.dropout else 0)
    elems += 2 * (m.heads + m.kv_heads) * (m.mla.qk_rope_head_dim if m.mla else m.d_head) if m.position == "rope" else 0
    up = 2 if m.mlp == "swiglu" else 1
    if kind == "moe" and m.moe is not None:
        k = m.moe.active_experts
        elems += k * (up + 1) * m.moe.expert_ffn + 4 * k * D + (up + 1) * m.moe.shared_experts * m.moe.expert_ffn
    else:
        elems += (up + 1) * m.ffn
    t_elem = memory_time_s(chip, eff, 2.0 * elems * T / t)
    return t_gemm, t_attn, t_elem


def estimate(m: ModelSpec, cluster: ClusterSpec, w: TrainWorkload, plan: Plan,
             eff: Efficiency | None = None) -> StepBreakdown:
    """Step time, throughput, MFU/HFU and memory per chip of every configuration in ``plan``."""
    eff = eff or efficiency(cluster.chip.family)
    pl = plan.arrays()
    t, p, v, d, e, c, b, z, r = pl.tp, pl.pp, pl.vpp, pl.dp, pl.ep, pl.cp, pl.micro_batch, pl.zero, pl.recompute
    chip = cluster.chip
    N = t * c * d * p
    s, B, prec = w.seq_len, w.global_batch, w.precision
    abytes = 2.0  # activations exchanged in bf16
    bw_eff = tier_bw_efficiency(cluster, eff)
    ov = eff.overlap
    n_mb = B / (d * b)
    T = b * s / c

    # ---- compute per layer (forward) ----
    g_d, a_d, el_d = _layer_times(m, "dense", chip, eff, prec, T, t, e, s, w.attention_kernel)
    fwd_dense = g_d + a_d + el_d
    bwd_dense = 2 * g_d + 2.5 * a_d + 2 * el_d
    rc_dense = np.where(r >= 2, fwd_dense, np.where(r >= 1, a_d, 0.0))
    if m.moe_layers:
        g_m, a_m, el_m = _layer_times(m, "moe", chip, eff, prec, T, t, e, s, w.attention_kernel)
        fwd_moe = g_m + a_m + el_m
        bwd_moe = 2 * g_m + 2.5 * a_m + 2 * el_m
        rc_moe = np.where(r >= 2, fwd_moe, np.where(r >= 1, a_m, 0.0))
    else:
        fwd_moe = bwd_moe = rc_moe = 0.0

    # ---- TP (T3): with sequence parallelism 2 all-gathers + 2 reduce-scatters of T·D per layer per pass
    a_rs, b_rs = _coll_affine(coll.reduce_scatter_s, cluster, t, 1.0, bw_eff)
    tp_pass = 4.0 * (a_rs * T * m.hidden * abytes + b_rs) * (t > 1)
    tp_layer = tp_pass * (2.0 + (r >= 2))  # forward, backward (+ recomputed forward)
    tp_exposed_layer = tp_layer * (1.0 - pl.overlap_tp * ov.get("tp_comm_hidden_fraction", 0.0))

    # ---- CP (T3): ring attention passes K,V blocks c-1 times; hidden behind the attention core
    kv_width = (m.heads * sum(_dims(m))) if m.mla else 2 * m.kv_heads * m.d_head
    a_cp, b_cp = _p2p_affine(cluster, t * c, bw_eff)
    cp_fwd = (c - 1) * (a_cp * T * kv_width / t * abytes + b_cp)
    cp_exposed_layer = np.maximum(0.0, cp_fwd - a_d) + np.maximum(0.0, 2 * cp_fwd - 2.5 * a_d)
    cp_exposed_layer = cp_exposed_layer * (1 + (r >= 2)) * (c > 1)

    # ---- EP (T3): dispatch + combine all-to-all per MoE layer per pass, group e at stride t·c
    if m.moe_layers:
        a_a2a, b_a2a = _coll_affine(coll.all_to_all_s, cluster, e, t * c, bw_eff)
        disp_bytes = 1.0 if prec in ("fp8", "fp4") else abytes  # FP8 dispatch (DeepSeek-V3 sec. 3.3)
        size = T / t * m.moe.active_experts * m.hidden
        a2a_pass = (a_a2a * size * (disp_bytes + abytes) + 2 * b_a2a) * (e > 1)
        ep_layer = a2a_pass * (2.0 + (r >= 2))
        ep_exposed_layer = ep_layer * (1.0 - pl.overlap_ep * ov.get("ep_comm_hidden_fraction", 0.0))
    else:
        ep_exposed_layer = 0.0

    # ---- one micro-batch through the most loaded stage ----
    Ld, Lm = m.dense_layers, m.moe_layers
    body_f = Ld * fwd_dense + Lm * fwd_moe
    body_b = Ld * bwd_dense + Lm * bwd_moe
    body_rc = Ld * rc_dense + Lm * rc_moe
    head = lm_head_gemm(m, T, t)
    head_f = gemm_time_s(chip, eff, head.m, head.n, head.k, prec, 1, 2.0)
    head_f = head_f + memory_time_s(chip, eff, 3 * 4.0 * T * m.vocab / t)  # fp32 softmax cross-entropy
    if m.mtp_layers:
        head_f = head_f * (1 + m.mtp_layers) + m.mtp_layers * (fwd_moe if Lm else fwd_dense)
    head_b = 2 * head_f
    imbalance = np.ceil(m.layers / (p * v)) * p * v / m.layers  # whole layers per virtual stage
    comm_body = Ld * (tp_exposed_layer + cp_exposed_layer) + Lm * (tp_exposed_layer + cp_exposed_layer
                                                                   + ep_exposed_layer)
    work = body_f + body_b + body_rc
    stage_compute = np.maximum(work * imbalance / p, (work + head_f + head_b) / p)
    stage_compute = np.where(p > 1, stage_compute, work + head_f + head_b)
    stage_comm = comm_body * imbalance / p
    tp_only = (Ld + Lm) * tp_exposed_layer * imbalance / p
    cp_only = (Ld + Lm) * cp_exposed_layer * imbalance / p
    ep_only = Lm * ep_exposed_layer * imbalance / p
    per_mb = stage_compute + stage_comm
    bubble = (p - 1) / v * per_mb

    # ---- PP p2p (T2): activations T·D/t (scatter-gather) per boundary, fwd and bwd
    a_pp, b_pp = _p2p_affine(cluster, t * c * d + 1, bw_eff)
    t_p2p = a_pp * T * m.hidden * abytes / t + b_pp
    hidden_pp = ov.get("pp_p2p_hidden_fraction", 0.0)
    pp_exposed = np.where(p > 1, (2 * (p - 1) + 2 * n_mb * v * (1 - hidden_pp)) * t_p2p, 0.0)

    # ---- DP (T4): gradient reduce (+ parameter gather) over d·c ranks at stride t
    split = param_split(m)
    dense_pc, expert_pc = params_per_chip(m, split, t, p, e)
    g_bytes = w.grad_bytes
    pw_bytes = w.param_bytes
    n_dp = d * c
    n_edp = np.maximum(n_dp / e, 1.0)
    a_dp, b_dp = _coll_affine(coll.reduce_scatter_s, cluster, n_dp, t, bw_eff)
    a_edp, b_edp = _coll_affine(coll.reduce_scatter_s, cluster, n_edp, t * e, bw_eff)
    rs = (a_dp * dense_pc * g_bytes + b_dp) * (n_dp > 1) + (a_edp * expert_pc * g_bytes + b_edp) * (n_edp > 1)
    ag = (a_dp * dense_pc * pw_bytes + b_dp) * (n_dp > 1) + (a_edp * expert_pc * pw_bytes + b_edp) * (n_edp > 1)
    # zero 0: all-reduce = RS + AG of gradients; zero 1-2: RS grads + AG bf16 params; zero 3: + AG per micro-batch x2
    ag_step = np.where(z >= 1, ag, rs)
    ag_mb = np.where(z >= 3, 2.0 * ag, 0.0)
    # overlap windows: one micro-batch's forward (~1/3) and backward (~2/3) of the stage; fixed shares
    # keep the step time monotone in FLOP/s (a window never exceeds the compute it hides behind)
    # ZeRO-3 gathers use each micro-batch's compute first; only the spare time hides the step-end traffic
    ag_mb_pre = np.where(z >= 3, 2.0 * ag, 0.0)
    spare = np.maximum(0.0, stage_compute - ag_mb_pre * pl.overlap_dp)
    stage_f = spare / 3.0
    stage_b = spare * 2.0 / 3.0
    win = ov.get("dp_overlap_window_fraction", 1.0) * pl.overlap_dp
    dp_exposed = np.maximum(0.0, rs - win * stage_b) + np.maximum(0.0, ag_step - win * stage_f)
    dp_exposed = dp_exposed + n_mb * np.maximum(0.0, ag_mb - win * stage_compute)

    # ---- optimizer (T5)
    owned = dense_pc / np.where(z >= 1, n_dp, 1.0) + expert_pc / np.where(z >= 1, n_edp, 1.0)
    optimizer = memory_time_s(chip, eff, owned * OPTIMIZER_BYTES_PER_PARAM)

    compute_total = n_mb * stage_compute
    step = (n_mb + (p - 1) / v) * per_mb + pp_exposed + dp_exposed + optimizer

    # ---- rates (T9)
    tokens = B * s
    fpt = flops_per_token(m, s, causal=True)
    model_flops = 3.0 * fpt * tokens
    rc_flops = np.where(r >= 2, fpt, np.where(r >= 1, m.layers * attention_core_flops(m, 1.0, s, True), 0.0))
    hw_flops = model_flops + rc_flops * tokens
    peak = chip.peak(prec) * N
    mem = memory_per_chip(m, pl, s, B, prec, eff.memory, w.attention_kernel, w.grad_bytes, w.param_bytes)
    cap = (chip.memory_bytes or np.inf) * eff.memory.get("usable_memory_fraction", 1.0)
    total_mem = mem.total_bytes
    return StepBreakdown(
        compute_s=compute_total,
        exposed_tp_comm_s=n_mb * tp_only,
        exposed_cp_comm_s=n_mb * cp_only,
        exposed_ep_comm_s=n_mb * ep_only,
        exposed_pp_comm_s=pp_exposed,
        exposed_dp_comm_s=dp_exposed,
        bubble_s=bubble,
        optimizer_s=optimizer,
        step_time_s=step,
        tokens_per_s=tokens / step,
        mfu=model_flops / (step * peak),
        hfu=hw_flops / (step * peak),
        weights_bytes=mem.weights_bytes,
        gradients_bytes=mem.gradients_bytes,
        optimizer_bytes=mem.optimizer_bytes,
        activations_bytes=mem.activations_bytes,
        comm_buffers_bytes=mem.comm_buffers_bytes,
        memory_bytes_per_chip=total_mem,
        memory_capacity_bytes=float(cap),
        fits=total_mem <= cap,
        valid=validity(m, cluster, w, pl)[0],
    )


def _dims(m: ModelSpec) -> tuple[int, int]:
    from supernode.workload.shapes import attention_dims

    return attention_dims(m)


def validity(m: ModelSpec, cluster: ClusterSpec, w: TrainWorkload, plan: Plan) -> tuple[Any, list[tuple[str, Any]]]:
    """Boolean mask of structurally valid configurations and (parameter, failing-mask) pairs.

    Rules: t·c·d·p = chips; heads and kv heads divisible by t (MLA: heads); p·v <= L; v > 1 needs
    p > 1 and m divisible by p (Megatron interleaved schedule); B divisible by d·b; s divisible by
    2c (load-balanced ring attention); e divides d and the routed experts (e = 1 for dense)."""
    pl = plan.arrays()
    t, p, v, d, e, c, b = pl.tp, pl.pp, pl.vpp, pl.dp, pl.ep, pl.cp, pl.micro_batch
    N = cluster.chips
    n_mb = w.global_batch / (d * b)
    kv = m.heads if m.mla else m.kv_heads
    checks = [
        ("chips", t * c * d * p != N),
        ("tp", (m.heads % t != 0) | (kv % t != 0)),
        ("pp", p * v > m.layers),
        ("vpp", (v > 1) & ((p <= 1) | (np.mod(n_mb, p) != 0))),
        ("micro-batch", (np.mod(w.global_batch, d * b) != 0) | (b < 1)),
        ("cp", (np.mod(w.seq_len, 2 * c) != 0) & (c > 1)),
        ("ep", (np.mod(d, e) != 0) | ((m.moe.routed_experts if m.moe else 1) % e != 0)),
        ("zero", (pl.zero < 0) | (pl.zero > 3)),
        ("recompute", (pl.recompute < 0) | (pl.recompute > 2)),
    ]
    bad = np.zeros(np.shape(t), dtype=bool)
    for _, mask in checks:
        bad = bad | mask
    return ~bad, checks
