"""Memory per chip of one training configuration (docs/model.md T6-T8), vectorized.

Weights, gradients and optimizer states follow Rajbhandari et al. 2020 (ZeRO, sec. 3.1):
mixed-precision Adam keeps 2 bytes of weights, g bytes of gradients and 12 bytes of optimizer
state (fp32 master weight, momentum, variance) per parameter; ZeRO stage z shards the optimizer
(z>=1), gradients (z>=2) and weights (z=3) over the N_dp = d·c data-parallel ranks.

Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
Transformer Models"), eq. 1-2 and sec. 4-5, generalized to GQA/MLA/SwiGLU/MoE: per layer and
token the bytes kept for backward are summed per tensor; with sequence parallelism everything is
divided by t. FlashAttention is assumed, so the 5·a·s/h softmax term is absent and "selective"
recompute needs no extra memory saving; full recompute keeps only the layer input (2·D bytes
per token). Layers x micro-batches in flight on the most loaded pipeline rank follow the
warm-up of Megatron's 1F1B / interleaved schedules (:func:`layers_in_flight`; for m >= p this is
Korthikanti sec. 4.2.3's p micro-batches times (1 + (p-1)/(p·v)) with interleaving).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from supernode.workload.model import ModelSpec
from supernode.workload.shapes import attention_dims


@dataclass(frozen=True)
class ParamSplit:
    """Parameter counts needed to place weights on chips (count)."""

    dense_body: float  # attention + norms + dense MLP + shared experts + router of all layers
    expert_body: float  # routed experts of all layers
    embedding: float  # input embedding (+ learned positions)
    head: float  # output head (0 when tied: the last stage then holds a copy of the embedding)
    mtp: float  # multi-token prediction modules except their routed experts (last stage)
    mtp_expert: float = 0.0  # routed experts of the MTP modules (last stage, split over EP like the others)


def param_split(m: ModelSpec) -> ParamSplit:
    from supernode.workload.shapes import param_breakdown

    from supernode.workload.shapes import mlp_params

    b = param_breakdown(m)
    head = b["lm_head"] if b["lm_head"] else b["embedding"]  # tied: a copy on the last stage
    mtp_expert = m.mtp_layers * m.moe.routed_experts * mlp_params(m, m.moe.expert_ffn) if (
        m.mtp_layers and m.moe is not None) else 0.0
    return ParamSplit(
        dense_body=b["attention"] + b["dense_mlp"] + b["shared_experts"] + b["router"],
        expert_body=b["routed_experts"],
        embedding=b["embedding"] + b["position"],
        head=head + b["final_norm"],
        mtp=b["mtp"] - mtp_expert,
        mtp_expert=mtp_expert,
    )


def activation_bytes_per_token_layer(m: ModelSpec, kind: str, precision: str = "bf16") -> float:
    """Bytes kept for backward per token of one layer without recompute and without TP (T7).

    Attention block: LN input 2D, QKV input 2D, Q,K,V for the core 2(q+k+v), core output 2·H·d_v,
    dropout masks D each; MLP: LN input 2D, up-proj input 2D, activation input 2·F_up, down-proj
    input 2F, mask D. For GPT (MHA, GeLU, F=4D, dropout) this gives Korthikanti's 34·D."""
    D = m.hidden
    g = 1.0 if precision in ("fp8", "fp6", "fp4") else 2.0  # saved GEMM inputs: FP8 copies (Transformer Engine)
    dqk, dv = attention_dims(m)
    q = m.heads * dqk
    if m.mla is not None:
        kv = m.heads * (dqk + dv)
        latent = 2 * (m.mla.kv_lora_rank + m.mla.qk_rope_head_dim + (m.mla.q_lora_rank or 0))
    else:
        kv = m.kv_heads * m.d_head * 2
        latent = 0
    mask = D if m.dropout else 0
    attn = 2 * D + g * D + 2 * (q + kv) + g * m.heads * dv + latent + mask
    up = 2 if m.mlp == "swiglu" else 1
    if kind == "moe" and m.moe is not None:
        e = m.moe
        k = e.active_experts
        ffn = e.expert_ffn
        mlp = 2 * D + g * D * k + k * (2 * up * ffn + g * ffn) + 2 * D * k  # + permuted copies
        if e.shared_experts:
            fs = e.shared_experts * ffn
            mlp += 2 * up * fs + g * fs
        mlp += 4 * e.routed_experts  # router logits / probabilities (fp32)
    else:
        mlp = 2 * D + g * D + 2 * up * m.ffn + g * m.ffn + mask
    return float(attn + mlp)


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes per chip on the most loaded pipeline stage, by kind (arrays)."""

    weights_bytes: Any
    gradients_bytes: Any
    optimizer_bytes: Any
    activations_bytes: Any
    comm_buffers_bytes: Any

    @property
    def total_bytes(self) -> Any:
        return (self.weights_bytes + self.gradients_bytes + self.optimizer_bytes + self.activations_bytes
                + self.comm_buffers_bytes)


def params_per_chip(m: ModelSpec, split: ParamSplit, t: Any, p: Any, e: Any) -> tuple[Any, Any]:
    """(dense, expert) parameters held by one chip of the most loaded stage (T6): body/p on
    every stage plus the embedding (first) or head+MTP (last stage), split t ways; experts (the
    MTP modules' routed experts on the last stage included) also split e ways."""
    ends = np.maximum(split.embedding, split.head + split.mtp)
    ends = np.where(p > 1, ends, split.embedding + split.head + split.mtp)
    dense = (split.dense_body / p + ends) / t
    expert = (split.expert_body / p + split.mtp_expert) / (t * e)
    return dense, expert


def model_state_bytes(m: ModelSpec, t: Any, p: Any, e: Any, d: Any, c: Any, z: Any, grad_bytes: float = 4.0,
                      param_bytes: float = 2.0, split: ParamSplit | None = None,
                      schedule: str = "1f1b") -> tuple[Any, Any, Any]:
    """(weights, gradients, optimizer states) bytes per chip (T6): ``param_bytes`` of weights,
    ``grad_bytes`` of gradients and 12 bytes of fp32 master weight + Adam m, v per parameter;
    ZeRO stage z shards optimizer (z>=1), gradients (z>=2), weights (z=3) over the N_dp = d·c
    ranks (experts over N_dp / e)."""
    split = split or param_split(m)
    dense, expert = params_per_chip(m, split, t, p, e)
    n_dp = d * c
    n_edp = np.maximum(n_dp / e, 1.0)
    w_bytes = param_bytes  # bf16 weights (fp8 training keeps bf16 weights unless fp8 parameters are on)
    g_bytes = grad_bytes
    o_bytes = 12.0  # fp32 master weight, Adam m and v
    shard_w = np.where(z >= 3, 1.0, 0.0)
    shard_g = np.where(z >= 2, 1.0, 0.0)
    shard_o = np.where(z >= 1, 1.0, 0.0)

    def sharded(x, bytes_, flag, n):
        return x * bytes_ / np.where(flag > 0, n, 1.0)

    weights = sharded(dense, w_bytes, shard_w, n_dp) + sharded(expert, w_bytes, shard_w, n_edp)
    if schedule == "dualpipe":  # each rank holds two model chunks: 2x parameters (DeepSeek-V3 report, Table 2)
        weights = 2.0 * weights
    grads = sharded(dense, g_bytes, shard_g, n_dp) + sharded(expert, g_bytes, shard_g, n_edp)
    optim = sharded(dense, o_bytes, shard_o, n_dp) + sharded(expert, o_bytes, shard_o, n_edp)
    return weights, grads, optim


def layer_activation_bytes(m: ModelSpec, t: Any, c: Any, b: Any, r: Any, seq_len: int, precision: str,
                           attention_kernel: str = "flash") -> tuple[Any, Any, Any]:
    """Activation bytes on one chip that depend on the micro-batch tokens b·s/c and t (T7):
    (kept per layer per micro-batch, the recompute buffer of one layer with full recompute,
    the fp32 logits and their gradient on the last stage)."""
    tokens = b * seq_len / c  # tokens of one micro-batch on one TP group
    act_dense = activation_bytes_per_token_layer(m, "dense", precision)
    act_moe = activation_bytes_per_token_layer(m, "moe", precision) if m.moe_layers else 0.0
    per_layer_full = (m.dense_layers * act_dense + m.moe_layers * act_moe) / m.layers
    per_layer = np.where(r >= 2, 2.0 * m.hidden, per_layer_full) * tokens / t
    if attention_kernel == "unfused":  # Korthikanti eq. 1: + 5·a·s²·b bytes (scores, softmax, dropout mask)
        per_layer = per_layer + np.where(r >= 1, 0.0, 5.0 * m.heads * seq_len * tokens / t)
    # full recompute: one layer's activations are rebuilt during its backward
    recompute_buffer = np.where(r >= 2, max(act_dense, act_moe) * tokens / t, 0.0)
    # logits (fp32) and their gradient on the last stage; split t ways (vocab-parallel)
    logits = 2.0 * 4.0 * tokens * m.vocab / t
    return per_layer, recompute_buffer, logits


def chunk_layers(m: ModelSpec, p: Any, v: Any, split: str = "uniform") -> Any:
    """Transformer layers of one virtual stage (model chunk): ceil(L / (p v)); with the
    "balanced" split the embedding and the output head + loss count as one layer each,
    ceil((L + 2) / (p v)), and the first chunk of the first stage and the last chunk of the last
    stage hold one transformer layer fewer (Llama 3 sec. 3.3.2; Megatron-Core
    --account-for-embedding-in-pipeline-split / --account-for-loss-in-pipeline-split)."""
    units = m.layers + (2 if split == "balanced" else 0)
    return np.where(p > 1, np.ceil(units / (p * v)), float(m.layers))


def layers_in_flight(m: ModelSpec, p: Any, v: Any, d: Any, b: Any, global_batch: int,
                     schedule: str = "1f1b", split: str = "uniform") -> Any:
    """Layer activations x micro-batches held at the peak by the most loaded pipeline rank (T8).

    Megatron's schedules (Narayanan et al. 2021): with m micro-batches, rank r of p runs
    min(p - r, m) forwards before its first backward (1F1B), or, interleaved over v chunks,
    min(m v, 2 (p - 1 - r) + (v - 1) p + 1) chunk forwards (the warm-up of
    ``get_forward_backward_func``'s interleaved schedule, plus the first steady-state forward).
    Each live entry holds one chunk's layers; uniform split: rank 0 is the most loaded. Balanced
    split: rank 0's first chunk has one layer fewer (of its live entries at most min(m, 2p - 1)
    are first-chunk ones), so rank 1 can be the most loaded. DualPipe holds p + 1 micro-batches
    of its stage's layers (DeepSeek-V3 report, Table 2)."""
    n_mb = global_batch / (d * b)
    if schedule == "dualpipe":
        return np.ceil(m.layers / (p * v)) * v * np.minimum(p + 1, n_mb)
    cs = chunk_layers(m, p, v, split)

    def entries(r):
        one_f_one_b = np.minimum(np.maximum(p - r, 1), n_mb)
        inter = np.minimum(n_mb * v, 2 * np.maximum(p - 1 - r, 0) + (v - 1) * p + 1)
        return np.where(v > 1, inter, one_f_one_b)

    e0 = entries(0)
    rank0 = cs * e0
    if split == "balanced":
        first_chunk = np.where(v > 1, np.minimum(np.minimum(e0, n_mb), 2 * p - 1), e0)
        rank0 = np.where(p > 1, rank0 - first_chunk, rank0)
        # rank 1 holds whole chunks, unless it is the last rank (p = 2, 1F1B: its one chunk is short)
        rank1 = np.where((p == 2) & (v == 1), cs - 1, cs) * entries(1)
        rank0 = np.maximum(rank0, np.where(p > 1, rank1, 0.0))
    return rank0


def comm_buffer_bytes(m: ModelSpec, t: Any, c: Any, b: Any, seq_len: int, usable: dict[str, float],
                      cp_comm: str = "ring") -> Any:
    """DP gradient buckets, the TP all-gather buffer, (MoE) the EP dispatch/combine buffers and, with
    all-gather CP, one layer's gathered K/V and its gradient (T8)."""
    tokens = b * seq_len / c
    buffers = usable.get("dp_bucket_bytes", 0.0) + 2.0 * tokens * m.hidden * 2.0  # DP buckets + TP gather
    if cp_comm == "all-gather":  # the whole sequence's K, V (and dK, dV in the backward) of one layer, bf16
        from supernode.workload.shapes import kv_width

        buffers = buffers + np.where(c > 1, 2.0 * b * seq_len * kv_width(m) / t * 2.0, 0.0)
    if m.moe is not None:
        buffers = buffers + 2.0 * tokens / t * m.moe.active_experts * m.hidden * 2.0  # EP dispatch/combine
    return buffers


def memory_per_chip(m: ModelSpec, plan, seq_len: int, global_batch: int, precision: str,
                    usable: dict[str, float], attention_kernel: str = "flash", grad_bytes: float = 4.0,
                    param_bytes: float = 2.0, schedule: str = "1f1b", pipeline_split: str = "uniform",
                    cp_comm: str = "ring") -> MemoryBreakdown:
    """Memory per chip (bytes) of a (vectorized) plan (T6-T8). ``grad_bytes``: 4 for fp32 main
    gradients (Megatron-LM default), 2 for bf16 gradient buffers (NeMo/MLPerf
    ``grad_reduce_in_fp32=False``); ``param_bytes``: 2 for bf16 weights, 1 for fp8 parameters.

    The training step model evaluates the same parts once per distinct value of the plan fields
    each depends on (train.step); this function is the direct, per-configuration composition."""
    t, p, v, d, e, c, b, z, r = plan.tp, plan.pp, plan.vpp, plan.dp, plan.ep, plan.cp, plan.micro_batch, \
        plan.zero, plan.recompute
    weights, grads, optim = model_state_bytes(m, t, p, e, d, c, z, grad_bytes, param_bytes, schedule=schedule)
    per_layer, recompute_buffer, logits = layer_activation_bytes(m, t, c, b, r, seq_len, precision, attention_kernel)
    acts = per_layer * layers_in_flight(m, p, v, d, b, global_batch, schedule, pipeline_split)
    acts = acts + recompute_buffer
    acts = acts + logits
    buffers = comm_buffer_bytes(m, t, c, b, seq_len, usable, cp_comm)
    return MemoryBreakdown(weights, grads, optim, acts, buffers + 0.0 * t)
