"""What the inference model needs to know about a model architecture, in one frozen record.

:class:`ServingArch` is built from the shared model catalog (:mod:`supernode.workload`) by
:func:`serving_arch`; it holds parameter counts per part (so weight bytes per chip follow from
the parallel plan), the KV-cache size per token (from ``workload.kv_cache_bytes_per_token``) and
the attention shape that sets the attention FLOPs. Notation (docs/inference.md): L layers,
D hidden size, V vocabulary, H query heads, K KV heads, E routed experts, k experts per token.
"""

from __future__ import annotations

from dataclasses import dataclass



@dataclass(frozen=True)
class ServingArch:
    """Parameter counts (count), shapes and KV-cache elements of one decoder-only model.

    ``attn_params_per_layer``: Q, K, V, O projections (incl. MLA down/up projections).
    ``dense_ffn_params_per_layer``: the FFN of a dense layer (0 when every layer is MoE).
    ``expert_params``: one routed expert; ``shared_expert_params_per_layer``: the always-on
    shared expert(s) of a MoE layer. ``kv_elements_per_token_per_layer``: cached elements per
    token per layer (2 K h_d for MHA/GQA, d_c + d_r for the MLA latent).
    ``attn_qk_dim`` / ``attn_v_dim``: per-head widths of the score and value products in prefill;
    ``decode_qk_dim`` / ``decode_v_dim`` the same in decode (MLA decodes in the absorbed latent
    space: d_c + d_r and d_c).
    """

    id: str
    layers: int
    hidden: int
    vocab: int
    heads: int
    kv_heads: int
    attention: str  # "mha", "gqa" or "mla"
    attn_params_per_layer: float
    dense_layers: int
    dense_ffn_params_per_layer: float
    moe_layers: int = 0
    experts: int = 0
    experts_per_token: int = 0
    expert_params: float = 0.0
    shared_expert_params_per_layer: float = 0.0
    router_params_per_layer: float = 0.0
    kv_elements_per_token_per_layer: float = 0.0
    index_bytes_per_token_per_layer: float = 0.0  # I43: sparse attention's FP8 index key (+ scale), any KV precision
    attn_qk_dim: float = 128.0
    attn_v_dim: float = 128.0
    decode_qk_dim: float = 128.0
    decode_v_dim: float = 128.0
    tied_embeddings: bool = False
    model: object = None  # the workload.ModelSpec, for the shared GEMM-shape functions

    @property
    def is_moe(self) -> bool:
        return self.moe_layers > 0 and self.experts > 0

    @property
    def embedding_params(self) -> float:
        """Input embedding plus LM head (V D each unless tied)."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def total_params(self) -> float:
        moe = self.moe_layers * (self.experts * self.expert_params + self.shared_expert_params_per_layer
                                 + self.router_params_per_layer)
        return (self.layers * self.attn_params_per_layer + self.dense_layers * self.dense_ffn_params_per_layer
                + moe + self.embedding_params)

    @property
    def active_params(self) -> float:
        """Parameters touched per token (k routed experts); embedding lookup excluded, LM head included."""
        moe = self.moe_layers * (self.experts_per_token * self.expert_params + self.shared_expert_params_per_layer
                                 + self.router_params_per_layer)
        return (self.layers * self.attn_params_per_layer + self.dense_layers * self.dense_ffn_params_per_layer
                + moe + self.vocab * self.hidden)

    def kv_bytes_per_token(self, bytes_per_element: float) -> float:
        """KV-cache bytes per token over all layers (formula I3; with sparse attention's index keys, I43)."""
        return self.layers * (self.kv_elements_per_token_per_layer * bytes_per_element
                              + self.index_bytes_per_token_per_layer)

    def kv_bytes_per_token_per_layer(self, bytes_per_element: float) -> float:
        """KV-cache bytes per token of one layer (latent or K/V at ``bytes_per_element``, index keys at theirs)."""
        return self.kv_elements_per_token_per_layer * bytes_per_element + self.index_bytes_per_token_per_layer


def serving_arch(catalog, model_ref) -> ServingArch:
    """The :class:`ServingArch` of a catalog model id, a YAML path, or a ``ModelSpec``."""
    from supernode import workload

    model = workload.load_model(catalog, model_ref) if isinstance(model_ref, str) else model_ref
    return from_model_spec(model)


def from_model_spec(model) -> ServingArch:
    """Per-part parameter counts from the shared accounting (``workload.param_breakdown``, W2),
    KV elements per token from ``workload.kv_cache_bytes_per_token`` (W6), attention widths from
    ``workload.attention_dims``; MLA decodes in the absorbed latent space (d_c + d_r, d_c;
    DeepSeek-V2 paper sec. 2.1.2), formula I2 in docs/inference.md."""
    from supernode import workload
    from supernode.workload import shapes

    b = workload.param_breakdown(model)
    L = model.layers
    dqk, dv = workload.attention_dims(model)
    if model.mla is not None:
        dec = (model.mla.kv_lora_rank + model.mla.qk_rope_head_dim, model.mla.kv_lora_rank)
    else:
        dec = (dqk, dv)
    kw = {}
    if model.moe is not None and model.moe_layers:
        e = model.moe
        kw = dict(moe_layers=model.moe_layers, experts=e.routed_experts, experts_per_token=e.active_experts,
                  expert_params=b["routed_experts"] / (model.moe_layers * e.routed_experts),
                  shared_expert_params_per_layer=b["shared_experts"] / model.moe_layers,
                  router_params_per_layer=b["router"] / model.moe_layers)
    return ServingArch(
        id=model.id, layers=L, hidden=model.hidden, vocab=model.vocab, heads=model.heads, kv_heads=model.kv_heads,
        attention=model.attention, attn_params_per_layer=b["attention"] / L, dense_layers=model.dense_layers,
        dense_ffn_params_per_layer=b["dense_mlp"] / model.dense_layers if model.dense_layers else 0.0,
        kv_elements_per_token_per_layer=(workload.kv_cache_bytes_per_token(model, 1.0)
                                         - shapes.index_cache_bytes_per_token(model)) / L,
        index_bytes_per_token_per_layer=shapes.index_cache_bytes_per_token(model) / L,
        attn_qk_dim=float(dqk), attn_v_dim=float(dv), decode_qk_dim=float(dec[0]), decode_v_dim=float(dec[1]),
        tied_embeddings=model.tied_embeddings, model=model, **kw)
