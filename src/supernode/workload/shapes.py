"""Parameter, FLOP, GEMM-shape and KV-cache accounting of a :class:`ModelSpec`.

Notation (docs/model.md section W): L layers, D hidden, H query heads, K kv heads, d_h head
size, F dense FFN size, F_e expert FFN size, E routed experts, k active experts, E_s shared
experts, V vocabulary, T tokens, s sequence length (context), t tensor-parallel degree.

Every function accepts numpy arrays for token counts and parallel degrees (vectorized use by
the search). GEMM FLOPs are 2·m·n·k (one multiply-add = 2 FLOP).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from supernode.workload.model import ModelSpec

ArrayLike = Any  # float | int | np.ndarray


@dataclass(frozen=True)
class Gemm:
    """One forward matrix multiply [m x k] @ [k x n], repeated ``count`` times (e.g. per expert).

    ``kind``: "dense" (attention/MLP weights) or "expert" (MoE expert weights)."""

    name: str
    m: ArrayLike
    n: ArrayLike
    k: ArrayLike
    count: ArrayLike = 1
    kind: str = "dense"

    @property
    def flops(self) -> ArrayLike:
        """2·m·n·k·count FLOP (W1)."""
        return 2.0 * self.m * self.n * self.k * self.count

    def bytes(self, bytes_per_element: float) -> ArrayLike:
        """Operand + result traffic (m·k + k·n + m·n)·count·bytes, the roofline memory term."""
        return (self.m * self.k + self.k * self.n + self.m * self.n) * self.count * bytes_per_element


# ---------------------------------------------------------------- parameters (W2)

def attention_params(m: ModelSpec) -> float:
    """Weights of one attention block (projections, their biases, QK norms)."""
    D, H, K = m.hidden, m.heads, m.kv_heads
    if m.mla is not None:
        a = m.mla
        dqk = a.qk_nope_head_dim + a.qk_rope_head_dim
        q = (D * a.q_lora_rank + a.q_lora_rank + a.q_lora_rank * H * dqk) if a.q_lora_rank else D * H * dqk
        kv = D * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank + a.kv_lora_rank * H * (
            a.qk_nope_head_dim + a.v_head_dim)
        return float(q + kv + H * a.v_head_dim * D + indexer_params(m))
    dh = m.d_head
    p = D * (H + 2 * K) * dh + H * dh * D
    if m.linear_bias:
        p += (H + 2 * K) * dh + D
    elif m.qkv_bias:
        p += (H + 2 * K) * dh
    if m.qk_norm:
        p += 2 * dh
    return float(p)


def indexer_params(m: ModelSpec) -> float:
    """Weights of one layer's lightning indexer (I43; 0 without sparse attention): q up-projection q_lora·H_i·d_i,
    key projection D·d_i and its LayerNorm (2 d_i), head weights D·H_i (DeepSeek-V3.2-Exp ``Indexer``)."""
    sa = m.sparse_attention
    if sa is None:
        return 0.0
    return float(m.mla.q_lora_rank * sa.index_heads * sa.index_head_dim + m.hidden * sa.index_head_dim
                 + 2 * sa.index_head_dim + m.hidden * sa.index_heads)


def mlp_params(m: ModelSpec, ffn: int) -> float:
    """Weights of one FFN of intermediate size ``ffn``: 2·D·F (GeLU) or 3·D·F (SwiGLU), + biases."""
    mats = 3 if m.mlp == "swiglu" else 2
    p = mats * m.hidden * ffn
    if m.linear_bias:
        p += ffn + m.hidden
    return float(p)


def norm_params(m: ModelSpec) -> float:
    """One normalization layer: D (RMSNorm) or 2·D (LayerNorm with bias)."""
    return float(m.hidden * (2 if m.norm == "layernorm" else 1))


def param_breakdown(m: ModelSpec) -> dict[str, float]:
    """Parameter count by part (count). ``mtp`` is kept apart (not part of the published total)."""
    D, V = m.hidden, m.vocab
    out = {
        "embedding": float(V * D),
        "position": float(m.max_seq_len * D) if m.position == "learned" else 0.0,
        "lm_head": 0.0 if m.tied_embeddings else float(V * D),
        "final_norm": norm_params(m),
        "attention": m.layers * (attention_params(m) + 2 * norm_params(m)),
        "dense_mlp": m.dense_layers * mlp_params(m, m.ffn),
        "routed_experts": 0.0,
        "shared_experts": 0.0,
        "router": 0.0,
        "mtp": 0.0,
    }
    if m.moe is not None:
        e = m.moe
        out["routed_experts"] = m.moe_layers * e.routed_experts * mlp_params(m, e.expert_ffn)
        out["shared_experts"] = m.moe_layers * e.shared_experts * mlp_params(m, e.expert_ffn)
        out["router"] = float(m.moe_layers * e.routed_experts * D)
    if m.mtp_layers:
        # one MTP module = projection 2D->D, two RMSNorms, one transformer block (MoE if the model is);
        # embedding and output head are shared with the main model (DeepSeek-V3 paper, sec. 2.2)
        block = attention_params(m) + 2 * norm_params(m)
        if m.moe is not None:
            block += (m.moe.routed_experts + m.moe.shared_experts) * mlp_params(m, m.moe.expert_ffn) \
                + m.moe.routed_experts * D
        else:
            block += mlp_params(m, m.ffn)
        out["mtp"] = m.mtp_layers * (2 * D * D + 2 * norm_params(m) + block)
    return out


def param_count(m: ModelSpec, include_mtp: bool = False) -> tuple[float, float]:
    """(total, active) parameters (count), embeddings and output head included (W2).

    Active = everything except the routed experts not selected: routed experts contribute k/E.
    MTP modules (DeepSeek-V3) are excluded by default, as in the published 671B/37B figures."""
    b = param_breakdown(m)
    total = sum(v for k, v in b.items() if k != "mtp")
    active = total
    if m.moe is not None:
        active -= b["routed_experts"] * (1.0 - m.moe.active_experts / m.moe.routed_experts)
    if include_mtp:
        total += b["mtp"]
        if m.moe is not None and b["mtp"]:
            idle = m.mtp_layers * (m.moe.routed_experts - m.moe.active_experts) * mlp_params(m, m.moe.expert_ffn)
            active += b["mtp"] - idle
        else:
            active += b["mtp"]
    return float(total), float(active)


def published_param_count(m: ModelSpec) -> tuple[float, float]:
    """(total, active) counted the way the model's publisher counts them (``params_convention``), to compare with
    ``params`` / ``active_params``: ``all`` is :func:`param_count`; ``non-embedding`` leaves out the input embedding
    (and learned positions) and the output head and includes the MTP modules."""
    if m.params_convention == "all":
        return param_count(m)
    total, active = param_count(m, include_mtp=True)
    b = param_breakdown(m)
    emb = b["embedding"] + b["position"] + b["lm_head"]
    return total - emb, active - emb


# ---------------------------------------------------------------- GEMM shapes (W3)

def attention_gemms(m: ModelSpec, tokens: ArrayLike, tp: ArrayLike = 1) -> list[Gemm]:
    """Forward projection GEMMs of one attention block for ``tokens`` tokens on one chip of a
    t-way tensor-parallel group (Megatron column-parallel QKV, row-parallel output; MLA down
    projections replicated). Attention core (QK^T, AV) is in :func:`attention_core_flops`."""
    D, H, K = m.hidden, m.heads, m.kv_heads
    T = tokens
    if m.mla is not None:
        a = m.mla
        dqk = a.qk_nope_head_dim + a.qk_rope_head_dim
        g = []
        if a.q_lora_rank:
            g.append(Gemm("q_down", T, a.q_lora_rank, D))
            g.append(Gemm("q_up", T, H * dqk / tp, a.q_lora_rank))
        else:
            g.append(Gemm("q", T, H * dqk / tp, D))
        g.append(Gemm("kv_down", T, a.kv_lora_rank + a.qk_rope_head_dim, D))
        g.append(Gemm("kv_up", T, H * (a.qk_nope_head_dim + a.v_head_dim) / tp, a.kv_lora_rank))
        g.append(Gemm("out", T, D, H * a.v_head_dim / tp))
        sa = m.sparse_attention
        if sa is not None:  # I43: the indexer's projections, replicated over TP (the reference code's Linear)
            g.append(Gemm("index_q", T, sa.index_heads * sa.index_head_dim, a.q_lora_rank))
            g.append(Gemm("index_k", T, sa.index_head_dim, D))
            g.append(Gemm("index_w", T, sa.index_heads, D))
        return g
    dh = m.d_head
    return [Gemm("qkv", T, (H + 2 * K) * dh / tp, D), Gemm("out", T, D, H * dh / tp)]


def mlp_gemms(m: ModelSpec, tokens: ArrayLike, ffn: int, tp: ArrayLike = 1, count: ArrayLike = 1,
              kind: str = "dense", name: str = "mlp") -> list[Gemm]:
    """Forward GEMMs of an FFN of size ``ffn`` (F split t ways), ``count`` copies (experts)."""
    up = 2 * ffn if m.mlp == "swiglu" else ffn
    return [Gemm(f"{name}_up", tokens, up / tp, m.hidden, count, kind),
            Gemm(f"{name}_down", tokens, m.hidden, ffn / tp, count, kind)]


def uniform_routing(tokens: ArrayLike, k: float, experts: float, ranks: ArrayLike):
    """Routed experts of one of ``ranks`` expert-parallel ranks when ``tokens`` tokens each pick ``k`` of ``experts``
    experts independently and uniformly (I7): (expert slots on the rank ceil(E/ep), the fraction of them hit
    1 - (1 - k/E)^T, the mean tokens per hit expert T k / (ep slots hit); 0 where none is hit)."""
    e = np.asarray(ranks, float)
    slots = np.ceil(experts / e)
    t = np.asarray(tokens, float)
    hit = 1.0 - (1.0 - k / experts) ** t
    tok_per_hit = np.where(hit > 0, t * k / (e * slots) / np.maximum(hit, 1e-30), 0.0)
    return slots, hit, tok_per_hit


def moe_gemms(m: ModelSpec, tokens: ArrayLike, tp: ArrayLike = 1, ep: ArrayLike = 1) -> list[Gemm]:
    """Forward GEMMs of one MoE FFN on one chip: router, shared experts (TP split), and E/ep local
    routed experts each receiving T·k·ep/E tokens on average (perfect balance assumed), expert
    FFN split t ways (expert-tensor-parallel = t). ``tokens`` = tokens of the t-way TP group."""
    e = m.moe
    assert e is not None
    g = [Gemm("router", tokens, e.routed_experts, m.hidden)]
    if e.shared_experts:
        g += mlp_gemms(m, tokens, e.shared_experts * e.expert_ffn, tp, 1, "dense", "shared")
    per_expert = tokens * e.active_experts * ep / e.routed_experts
    g += mlp_gemms(m, per_expert, e.expert_ffn, tp, e.routed_experts / ep, "expert", "expert")
    return g


def layer_gemms(m: ModelSpec, tokens: ArrayLike, kind: str = "dense", tp: ArrayLike = 1,
                ep: ArrayLike = 1) -> list[Gemm]:
    """Forward GEMMs of one transformer layer (``kind`` "dense" or "moe") for ``tokens`` tokens
    on one chip with tensor-parallel degree ``tp`` and expert-parallel degree ``ep``."""
    g = attention_gemms(m, tokens, tp)
    if kind == "moe":
        return g + moe_gemms(m, tokens, tp, ep)
    return g + mlp_gemms(m, tokens, m.ffn, tp)


def lm_head_gemm(m: ModelSpec, tokens: ArrayLike, tp: ArrayLike = 1) -> Gemm:
    """Output projection D -> V (vocabulary split t ways)."""
    return Gemm("lm_head", tokens, m.vocab / tp, m.hidden)


def attention_dims(m: ModelSpec) -> tuple[int, int]:
    """(d_qk, d_v): per-head size of the score dot product and of the values."""
    if m.mla is not None:
        return m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim, m.mla.v_head_dim
    return m.d_head, m.d_head


def kv_width(m: ModelSpec) -> int:
    """Elements of K and V per token per layer as training exchanges them (context parallelism): the
    decompressed per-head K, V for MLA (H·(d_qk + d_v)), 2·K·d_h for MHA/GQA."""
    return m.heads * sum(attention_dims(m)) if m.mla else 2 * m.kv_heads * m.d_head


def attention_core_flops(m: ModelSpec, tokens: ArrayLike, context: ArrayLike, causal: bool = True,
                         tp: ArrayLike = 1) -> ArrayLike:
    """Forward FLOPs of QK^T and softmax·V for one layer (W4):
    2·T·c·H·(d_qk + d_v) / t, with c the mean attended context: s/2 for causal training over a
    sequence of s (FlashAttention skips masked blocks), s otherwise."""
    dqk, dv = attention_dims(m)
    c = attended_context(m, context, causal)
    return 2.0 * tokens * c * m.heads * (dqk + dv) / tp


def attended_context(m: ModelSpec, context: ArrayLike, causal: bool = True) -> ArrayLike:
    """Mean keys a query attends to over a sequence of ``context`` tokens: s/2 causal, s otherwise; with sparse
    attention (I43) each query attends to min(position, k): causal s/2 up to s = k, then k - k^2/(2s)."""
    sa = m.sparse_attention
    if sa is None:
        return context * 0.5 if causal else context
    s = np.asarray(context, dtype=float)
    k = float(sa.topk)
    if not causal:
        return np.minimum(s, k)
    return np.where(s <= k, 0.5 * s, k - k * k / (2.0 * np.maximum(s, 1e-30)))


def indexer_core_flops(m: ModelSpec, tokens: ArrayLike, context: ArrayLike, causal: bool = True) -> ArrayLike:
    """Forward FLOPs of one layer's lightning-indexer logits (I43): 2·T·c·H_i·d_i over the whole attended context
    (c = s/2 causal, s otherwise), replicated over TP; 0 without sparse attention."""
    sa = m.sparse_attention
    if sa is None:
        return 0.0 * np.asarray(tokens, dtype=float)
    c = np.asarray(context, dtype=float) * (0.5 if causal else 1.0)
    return 2.0 * tokens * c * sa.index_heads * sa.index_head_dim


def flops_per_token(m: ModelSpec, seq_len: ArrayLike, causal: bool = True) -> ArrayLike:
    """Forward FLOPs per token of the whole model (W5): 2 x matmul weights touched per token
    (active experts only, LM head included, input embedding excluded) + attention core with
    mean context s/2 (causal). Training = 3x this (forward + 2x backward), +1x with full
    recompute. Cf. Kaplan et al. 2020 C_fwd = 2N + 2·L·n_ctx·d_attn."""
    gemm = sum(float(g.flops) for g in layer_gemms(m, 1.0, "dense")) * m.dense_layers
    if m.moe_layers:
        gemm += sum(float(g.flops) for g in layer_gemms(m, 1.0, "moe")) * m.moe_layers
    gemm += float(lm_head_gemm(m, 1.0).flops)
    return gemm + m.layers * (attention_core_flops(m, 1.0, seq_len, causal) + indexer_core_flops(m, 1.0, seq_len, causal))


def kv_cache_bytes_per_token(m: ModelSpec, bytes_per_element: float) -> float:
    """KV-cache bytes per token over all layers (W6):
    MHA/GQA 2·L·K·d_h·b; MLA L·(kv_lora_rank + qk_rope_head_dim)·b (compressed latent + RoPE key), plus the index
    keys of sparse attention (I43, :func:`index_cache_bytes_per_token`, independent of b)."""
    if m.mla is not None:
        return float(m.layers * (m.mla.kv_lora_rank + m.mla.qk_rope_head_dim) * bytes_per_element
                     + index_cache_bytes_per_token(m))
    return float(2 * m.layers * m.kv_heads * m.d_head * bytes_per_element)


def index_cache_bytes_per_token(m: ModelSpec) -> float:
    """Index-key cache bytes per token over all layers (I43; FP8 whatever the KV precision); 0 without sparse
    attention."""
    return float(m.layers * m.sparse_attention.index_key_bytes) if m.sparse_attention is not None else 0.0


def megatron_flops_per_step(m: ModelSpec, global_batch: float, seq_len: float, recompute: bool = True) -> float:
    """FLOPs per iteration as Megatron-LM reports them (Narayanan et al. SC'21, eq. 3, W7):
    F = 24·(3 + r)·B·s·L·D²·(1 + s/(6D) + V/(16·L·D)) with r = 1 with full activation recompute
    (96 B s L D² ... form), r = 0 without. Counts full (non-causal) attention and the 4·D MLP of
    GPT; used only to convert published TFLOP/s figures to step times."""
    B, s, L, D, V = global_batch, seq_len, m.layers, m.hidden, m.vocab
    return 24.0 * (3 + (1 if recompute else 0)) * B * s * L * D * D * (1 + s / (6 * D) + V / (16 * L * D))
