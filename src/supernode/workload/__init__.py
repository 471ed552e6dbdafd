"""Workloads: LLM model descriptions (catalog kind ``models``) and their parameter/FLOP/shape
accounting. Importing this package registers the ``models`` kind with the catalog loader.

Stable API (used by the training and inference models):
``load_model(catalog, ref) -> ModelSpec``, ``param_count(model) -> (total, active)``,
``kv_cache_bytes_per_token(model, bytes_per_element)``, ``layer_gemms(model, tokens, kind, tp, ep)``,
``flops_per_token(model, seq_len)``, ``attention_core_flops(...)``, ``lm_head_gemm(...)``.
"""

from supernode.workload.model import MLA, ModelSpec, MoE, load_model, models
from supernode.workload.shapes import (
    Gemm,
    attention_core_flops,
    attention_dims,
    flops_per_token,
    kv_cache_bytes_per_token,
    layer_gemms,
    lm_head_gemm,
    megatron_flops_per_step,
    param_breakdown,
    param_count,
    published_param_count,
)

__all__ = ["MLA", "ModelSpec", "MoE", "load_model", "models", "Gemm", "attention_core_flops", "attention_dims",
           "flops_per_token", "kv_cache_bytes_per_token", "layer_gemms", "lm_head_gemm", "megatron_flops_per_step",
           "param_breakdown", "param_count", "published_param_count"]
