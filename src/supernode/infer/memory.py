"""Memory per chip of a serving plan and the largest batch that fits (the memory verdict).

Per chip of the fullest stage (formula I8, docs/inference.md):

    weights  = b_attn L_s P_attn / t + b_ffn L_s,dense P_ffn / t
               + L_s,moe (b_exp ceil(E / ep) P_exp / (t d / ep) + b_shared P_shared / t + b_router P_router)
               + b_head P_emb,stage / t
               (b_part: bytes per element of each part's format, I20; one format b_w for all by default)
    kv       = (B / d) ctx L_s n_kv b_kv / s_kv     s_kv = min(t, K) for MHA/GQA, 1 for MLA (latent replicated)
    act      = T_fwd (2 D + 2 F_eff / (t d)) b_act  live activations of the largest forward (T_fwd tokens per rank)
    usable   = capacity x usable_memory_fraction   (assumption, data/inference/serving-assumptions.yaml)

B is the instance's batch (all pipeline micro-batches: every stage holds the KV of every sequence
for its layers), ctx the KV length per sequence (prompt + output).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from supernode.infer.arch import ServingArch
from supernode.infer.plan import PlanGrid
from supernode.infer.precision import ACTIVATION_BYTES


@dataclass(frozen=True)
class MemoryVerdict:
    """Bytes per chip (arrays over plans) and whether they fit."""

    weights_bytes: np.ndarray
    kv_cache_bytes: np.ndarray
    activation_bytes: np.ndarray
    usable_bytes: float
    capacity_bytes: float
    max_batch: np.ndarray  # largest instance batch whose KV fits beside weights and activations
    fits: np.ndarray

    @property
    def total_bytes(self) -> np.ndarray:
        return self.weights_bytes + self.kv_cache_bytes + self.activation_bytes

    def row(self, i: int) -> dict:
        return {"weights_bytes": float(self.weights_bytes[i]), "kv_cache_bytes": float(self.kv_cache_bytes[i]),
                "activation_bytes": float(self.activation_bytes[i]), "total_bytes": float(self.total_bytes[i]),
                "usable_bytes": self.usable_bytes, "capacity_bytes": self.capacity_bytes,
                "max_batch": int(self.max_batch[i]), "fits": bool(self.fits[i])}


WEIGHT_PARTS = ("attention", "dense_ffn", "experts", "shared_experts", "router", "lm_head")  # stored per chip (I8)


def weights_bytes_per_chip(arch: ServingArch, plan: PlanGrid, bytes_per_weight) -> np.ndarray:
    """Weight bytes per chip of the fullest stage (I8): each part's parameters on the chip times its bytes per
    element. ``attention`` is split t ways; ``dense_ffn`` and ``shared_experts`` t ways (replicated over the d
    attention-DP ranks); ``experts``: ceil(E/ep) slots, each split t d / ep ways; ``router`` replicated;
    ``lm_head``: the LM head and, on a one-stage plan, the input embedding, t ways (a pipeline puts the
    embedding on the first stage). ``bytes_per_weight``: one number for every part, or part -> bytes per element
    (I20, :func:`supernode.infer.precision.module_weight_bytes`; other keys ignored). The MTP module's weights
    are not counted (docs/inference.md, known limits)."""
    if isinstance(bytes_per_weight, Mapping):
        b = {part: float(bytes_per_weight[part]) for part in WEIGHT_PARTS}
    else:
        b = dict.fromkeys(WEIGHT_PARTS, float(bytes_per_weight))
    ref = max(b.values())
    # b_ref sum_part P_part (b_part / b_ref): with one format every ratio is exactly 1, so the sum is b_w sum P
    r = {part: (v / ref if ref > 0 else 0.0) for part, v in b.items()}
    t, p = plan.tp.astype(float), plan.pp.astype(float)
    per = np.ceil(arch.layers / p)
    moe_l = per * arch.moe_layers / arch.layers
    dense_l = per - moe_l
    params = (per * arch.attn_params_per_layer / t * r["attention"]
              + dense_l * arch.dense_ffn_params_per_layer / t * r["dense_ffn"])
    if arch.is_moe:
        slots = np.ceil(arch.experts / plan.ep)
        params = params + moe_l * (slots * arch.expert_params / plan.expert_tp * r["experts"]
                                   + arch.shared_expert_params_per_layer / t * r["shared_experts"]
                                   + arch.router_params_per_layer * r["router"])
    emb = np.where(p > 1, arch.embedding_params / (1 if arch.tied_embeddings else 2), arch.embedding_params)
    return (params + emb / t * r["lm_head"]) * ref


def kv_bytes_per_sequence_per_chip(arch: ServingArch, plan: PlanGrid, context_tokens, kv_bytes: float) -> np.ndarray:
    per = np.ceil(arch.layers / plan.pp.astype(float))
    split = np.minimum(plan.tp, arch.kv_heads).astype(float) if arch.attention != "mla" else 1.0
    return np.asarray(context_tokens, float) * per * arch.kv_bytes_per_token_per_layer(kv_bytes) / split


def activation_bytes_per_chip(arch: ServingArch, plan: PlanGrid, tokens_per_rank) -> np.ndarray:
    t = plan.tp.astype(float)
    ffn = max(arch.dense_ffn_params_per_layer, arch.experts_per_token * arch.expert_params) / (3.0 * arch.hidden)
    tok = np.asarray(tokens_per_rank, float)
    return tok * (2.0 * arch.hidden + 2.0 * ffn / t) * ACTIVATION_BYTES


def verdict(arch: ServingArch, plan: PlanGrid, *, capacity_bytes: float, usable_fraction: float,
            bytes_per_weight, kv_bytes: float, context_tokens, tokens_per_forward_per_rank,
            offloaded_bytes=0.0) -> MemoryVerdict:
    """Memory verdict of every plan at its ``batch`` with KV length ``context_tokens``; ``bytes_per_weight``
    as in :func:`weights_bytes_per_chip` (one number, or bytes per part); ``offloaded_bytes``: weight bytes per
    chip held in host memory instead (I26, :mod:`supernode.infer.offload`)."""
    w = weights_bytes_per_chip(arch, plan, bytes_per_weight) - np.asarray(offloaded_bytes, float)
    per_seq = kv_bytes_per_sequence_per_chip(arch, plan, context_tokens, kv_bytes)
    kv = per_seq * plan.batch / plan.dp
    act = activation_bytes_per_chip(arch, plan, tokens_per_forward_per_rank)
    usable = capacity_bytes * usable_fraction
    free = usable - w - act
    max_b = np.where(free > 0, np.floor(free / np.maximum(per_seq, 1e-30)) * plan.dp, 0).astype(np.int64)
    fits = (w + kv + act) <= usable
    return MemoryVerdict(weights_bytes=w, kv_cache_bytes=kv, activation_bytes=act, usable_bytes=usable,
                         capacity_bytes=capacity_bytes, max_batch=max_b, fits=fits)
