"""LLM model descriptions: the schema of ``data/models/<id>.yaml`` and loading by id or path.

A model file states the architecture hyper-parameters exactly as the model's config file or
paper table gives them (one notation, docs/model.md section W): L layers, D hidden size, H query
heads, K key/value heads, d_h head size, F dense FFN size, V vocabulary; MLA and MoE blocks
when present. The published parameter count is a sourced :class:`~supernode.catalog.Quantity`
so that tests can check :func:`supernode.workload.shapes.param_count` against it.

A user can pass a catalog id (``llama-3.1-405b``) or a path to a YAML file with the same schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from supernode.catalog import loader
from supernode.catalog.loader import Catalog, parse_item
from supernode.catalog.schema import Quantity, Strict
from supernode.errors import UsageError, close_ids

KIND = "models"


class MLA(Strict):
    """Multi-head latent attention (DeepSeek-V2/V3): low-rank compressed Q and KV.

    The KV cache stores only the compressed latent (``kv_lora_rank``) and the shared RoPE key
    (``qk_rope_head_dim``) per token and layer."""

    q_lora_rank: int | None = Field(default=None, gt=0)  # None: full-rank Q projection
    kv_lora_rank: int = Field(gt=0)
    qk_nope_head_dim: int = Field(gt=0)
    qk_rope_head_dim: int = Field(gt=0)
    v_head_dim: int = Field(gt=0)


class SparseAttention(Strict):
    """DeepSeek Sparse Attention (DeepSeek-V3.2; I43): a lightning indexer of ``index_heads`` heads of
    ``index_head_dim`` scores every cached token for each query token (FP8 index keys cached per token and layer)
    and the MLA attention reads only the ``topk`` best."""

    index_heads: int = Field(gt=0)  # H_i (config index_n_heads)
    index_head_dim: int = Field(gt=0)  # d_i (config index_head_dim)
    topk: int = Field(gt=0)  # k (config index_topk)

    @property
    def index_key_bytes(self) -> float:
        """Cached bytes per token and layer of the index key: d_i at FP8 plus an FP32 scale per 128 elements
        (DeepSeek-V3.2-Exp inference/model.py: ``k_cache`` float8_e4m3fn, ``k_scale_cache`` float32)."""
        return float(self.index_head_dim + 4 * -(-self.index_head_dim // 128))


class MoE(Strict):
    """Mixture-of-experts FFN: E routed experts of size ``expert_ffn``, k active per token,
    ``shared_experts`` always-on experts of the same size. The first ``first_dense_layers``
    layers use the dense FFN (size F); after that every ``layer_interval``-th layer is MoE."""

    routed_experts: int = Field(gt=0)
    active_experts: int = Field(gt=0)
    shared_experts: int = Field(default=0, ge=0)
    expert_ffn: int = Field(gt=0)
    first_dense_layers: int = Field(default=0, ge=0)
    layer_interval: int = Field(default=1, gt=0)
    # group-limited routing (DeepSeek-V3 "node-limited"): experts in ``expert_groups`` groups, a token
    # picks ``groups_per_token`` groups first and its k experts inside them (HF n_group / topk_group)
    expert_groups: int | None = Field(default=None, gt=0)
    groups_per_token: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _k(self) -> "MoE":
        if self.active_experts > self.routed_experts:
            raise ValueError("active_experts exceeds routed_experts")
        if (self.expert_groups is None) != (self.groups_per_token is None):
            raise ValueError("expert_groups and groups_per_token go together")
        if self.expert_groups is not None:
            if self.routed_experts % self.expert_groups:
                raise ValueError("routed_experts must divide into expert_groups")
            if self.groups_per_token > self.expert_groups:
                raise ValueError("groups_per_token exceeds expert_groups")
        return self


class ModelSpec(Strict):
    """One decoder-only transformer LLM (catalog item kind ``models``)."""

    id: str
    name: str
    source: str  # source id of the config file or paper table the shape comes from
    locator: str | None = None
    layers: int = Field(gt=0)  # L
    hidden: int = Field(gt=0)  # D
    heads: int = Field(gt=0)  # H (query heads)
    kv_heads: int = Field(gt=0)  # K (key/value heads; = H for MHA)
    head_dim: int | None = Field(default=None, gt=0)  # d_h; default D / H
    ffn: int = Field(gt=0)  # F, dense FFN intermediate size
    vocab: int = Field(gt=0)  # V
    attention: Literal["mha", "gqa", "mla"]
    mlp: Literal["gelu", "swiglu"]  # swiglu: gated, three matrices
    position: Literal["learned", "rope", "alibi"] = "rope"
    # positions of a learned position embedding; when a file states it, also the context window a served request
    # (prompt + output) must fit in
    max_seq_len: int = Field(default=4096, gt=0)
    tied_embeddings: bool = False
    linear_bias: bool = False  # biases on all linear layers (GPT-2/3, BLOOM)
    qkv_bias: bool = False  # biases on Q, K, V only (Qwen2)
    norm: Literal["layernorm", "rmsnorm"] = "rmsnorm"
    qk_norm: bool = False  # per-head RMSNorm on Q and K (Qwen3)
    dropout: bool = False  # dropout masks stored for backward (GPT-3 era training)
    mla: MLA | None = None
    sparse_attention: SparseAttention | None = None  # DeepSeek Sparse Attention (I43); MLA models only
    moe: MoE | None = None
    mtp_layers: int = Field(default=0, ge=0)  # multi-token-prediction modules (DeepSeek-V3)
    params: Quantity  # published total parameter count (unit: count)
    active_params: Quantity | None = None  # published activated parameters per token (MoE)
    # how the publisher counts ``params`` / ``active_params``: ``all`` (embedding and output head included, MTP
    # modules excluded: DeepSeek-V3's 671B / 37B) or ``non-embedding`` (neither the input embedding nor the output
    # head, MTP modules included: GLM-4.5's 355B / 32B); see workload.shapes.published_param_count
    params_convention: Literal["all", "non-embedding"] = "all"
    notes: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "ModelSpec":
        if self.attention == "mla" and self.mla is None:
            raise ValueError("attention: mla needs an mla block")
        if self.attention != "mla" and self.mla is not None:
            raise ValueError("an mla block needs attention: mla")
        if self.attention == "mha" and self.kv_heads != self.heads:
            raise ValueError("attention: mha needs kv_heads == heads (use gqa)")
        if self.attention == "gqa" and self.heads % self.kv_heads:
            raise ValueError("gqa: heads must be a multiple of kv_heads")
        if self.head_dim is None and self.hidden % self.heads and self.attention != "mla":
            raise ValueError("hidden is not a multiple of heads: give head_dim")
        if self.sparse_attention is not None and (self.mla is None or not self.mla.q_lora_rank):
            raise ValueError("sparse_attention needs attention: mla with a q_lora_rank (its indexer reads the Q latent)")
        if self.moe is not None and self.moe.first_dense_layers > self.layers:
            raise ValueError("moe.first_dense_layers exceeds layers")
        return self

    @property
    def d_head(self) -> int:
        """d_h, the per-head size of Q/K/V (MHA/GQA)."""
        return self.head_dim or self.hidden // self.heads

    @property
    def moe_layers(self) -> int:
        """Number of layers whose FFN is a mixture of experts."""
        if self.moe is None:
            return 0
        rest = self.layers - self.moe.first_dense_layers
        return (rest + self.moe.layer_interval - 1) // self.moe.layer_interval

    @property
    def dense_layers(self) -> int:
        return self.layers - self.moe_layers


def _ensure_models(catalog: Catalog) -> dict[str, ModelSpec]:
    """The catalog's models; loads the built-in ``models/`` folder if the catalog was loaded
    before this kind was registered."""
    table = catalog.extra.get(KIND)
    if table is None:
        table = {}
        folder = loader.builtin_dir() / KIND
        for path in sorted(folder.glob("*.y*ml")):
            item = parse_item(path, ModelSpec)
            table[item.id] = item
            catalog.paths[(KIND, item.id)] = path
        catalog.extra[KIND] = table
    return table


def models(catalog: Catalog) -> dict[str, ModelSpec]:
    """All catalog models by id."""
    return _ensure_models(catalog)


def load_model(catalog: Catalog, ref: str | Path) -> ModelSpec:
    """A model by catalog id (``llama-3.1-405b``) or by the path of a YAML file with the
    :class:`ModelSpec` schema. Unknown id or bad file -> one-line UsageError/CatalogError."""
    table = _ensure_models(catalog)
    key = str(ref)
    if key in table:
        return table[key]
    path = Path(key)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UsageError(f"MODEL: file {path} does not exist")
        return parse_item(path, ModelSpec)
    close = close_ids(key, table)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `supernode catalog models` or pass a YAML file"
    raise UsageError(f"MODEL: unknown model id {key!r}{hint}")


def _check_models(cat: Catalog) -> None:
    from supernode.errors import CatalogError

    for mid, m in cat.extra.get(KIND, {}).items():
        if m.source not in cat.sources:
            raise CatalogError(f"{cat.paths.get((KIND, mid))}: source: unknown source id {m.source!r}")


loader.EXTRA_KINDS[KIND] = ModelSpec
if _check_models not in loader.CHECKERS:
    loader.CHECKERS.append(_check_models)
