"""Activation traffic of a layer's non-GEMM ("glue") kernels (formula I22, docs/inference.md).

Between the GEMMs of a transformer layer, memory-bound kernels read and write the activations: the two
RMSNorms with their residual adds, RoPE with the KV-cache write, the gated activation, and, when a GEMM
runs at a sub-16-bit format, the quantization of its input. I13 prices their launches (a kernel floor
each); their bytes were neglected, which holds for small-batch decode but not when an iteration carries
hundreds or thousands of tokens on a chip whose GEMMs are fast: on B200 at NVFP4 a Llama-70B layer's GEMMs
take ~0.3 us per token, its glue moves ~0.48 MB per token, another ~0.07 us at the HBM rate.

Bytes per token of one layer on one chip of a t-way tensor-parallel group (activations BF16, A = 2 bytes;
h hidden, H and K query and KV heads of width d, F the FFN width, b_f + s_f the bytes per element of a
quantized GEMM input with its block scales):

  norms           2 x (read x and residual, write residual and normed x)            = 8 h A
  RoPE + KV write read q, k, v; write q and the cache's k, v                         = (H+2K) d A/t + H d A/t + 2 K d b_kv/t
  quantization    per quantized GEMM input of width n: read n A, write n (b_f + s_f)  (qkv: h, out: H d/t,
                  up: h, down: F/t)
  activation      SwiGLU: read 2 F/t, write F/t (GeLU: read and write F/t), x A

Scope: layers with MHA/GQA attention (the attention-side kernels), dense gated FFNs (the FFN-side kernels)
and, since stop 25 (I30), MoE FFNs at the traffic every MoE implementation moves (a lower bound):

  shared experts  as a dense FFN of width n_s F_e
  MoE input       without a dispatch kernel (d = 1), its quantization once per token: h (A + b_f)
  routed copies   per token-copy on the chip (c per token of the rank, c = d k r f / ep: the group's copies over
                  the EP ranks, r and f of I15 and I17), the gated activation and the down GEMM's input
                  quantization at the expert's width F_e / t_e, as for a dense FFN
  combine         without a dispatch kernel, the weighted sum of the copies: read c h A, write h A

A permute kernel is not counted (vLLM's fused MoE gathers rows inside its GEMM); with a dispatch kernel
(d > 1) the dispatch writes the copies in the experts' layout at its own payload format and the combine
kernel sums them (I18), so neither the input quantization nor the combine is counted again. MLA's attention
block (I31, stop 25) is priced by the same rules: the norms, each sub-16-bit GEMM input's quantization (the
latent down-projections' h once, q's up-projection's q_lora, o_proj's H d_v / t), the q and kv latent norms, RoPE
on the rope parts and the latent KV-cache write; the absorbed decode's batched GEMMs stay GEMMs.

Which kernels a serving stack fuses is a profile (``data/inference/glue-fusions.yaml``, ``--glue-fusion``):
``unfused`` (default) runs every quantization and the activation as separate kernels, as the 2025 NVFP4 paths
of SGLang and vLLM did; ``trtllm-1.0`` has the attention kernel write o_proj's quantized input (8-bit KV
cache) and, for FP8, the activation write down_proj's FP8 input. The bytes are priced at the family's
streaming fraction of HBM bandwidth (K4), the rate every memory-bound stream in the model gets; no new fitted
parameter.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from supernode.catalog.loader import builtin_dir, parse_item
from supernode.catalog.schema import Strict
from supernode.errors import UsageError
from supernode.infer.arch import ServingArch
from supernode.infer.precision import (ACTIVATION_BYTES, BYTES_PER_ELEMENT, WEIGHT_PRECISIONS, MixedFormat,
                                       mean_over_formats)

DEFAULT_FUSION = "unfused"


class FusionProfile(Strict):
    """The glue kernels one serving stack fuses (I22)."""

    title: str
    attention_quantized_output: bool  # with an 8-bit KV cache, attention writes o_proj's quantized input
    # the gated activation writes the down GEMM's input at these formats (a sub-16-bit weight format)
    activation_quantized_formats: list[Literal["fp8", "int8", "fp4"]]
    evidence: str
    # I42: at TP > 1 without attention DP the residual add + RMSNorm after each TP all-reduce run inside it
    allreduce_norm_fusion: bool = False
    # I42: the stack fuses up to this many tokens per all-reduce whatever the message size; None: below its custom
    # all-reduce limit (C3's ``custom_all_reduce_max_bytes``; above it NCCL and a separate norm)
    allreduce_norm_max_tokens: int | None = None


class FusionProfiles(Strict):
    id: str
    profiles: dict[str, FusionProfile]


@lru_cache(maxsize=1)
def _profiles() -> FusionProfiles:
    return parse_item(Path(builtin_dir()) / "inference" / "glue-fusions.yaml", FusionProfiles)


def fusion_profiles() -> tuple[str, ...]:
    return tuple(_profiles().profiles)


def profile(name: str | None) -> FusionProfile:
    """The fusion profile ``name`` (None: ``unfused``); a one-line error naming ``--glue-fusion`` otherwise."""
    name = name or DEFAULT_FUSION
    if name not in _profiles().profiles:
        raise UsageError(f"--glue-fusion: expected one of {', '.join(fusion_profiles())}, got {name!r}")
    return _profiles().profiles[name]


def describe(name: str | None) -> str:
    """One line for the assumptions list."""
    name = name or DEFAULT_FUSION
    return (f"glue kernels' activation traffic at the HBM streaming rate (I22), fusions {name!r}: "
            f"{profile(name).title}; MoE FFNs (I30) and MLA attention blocks (I31) at their least traffic")


NORMS_PER_LAYER = 2  # a layer's two RMSNorms, each after a TP all-reduce (attention output, FFN / MoE output)


def fused_norms_per_layer(fusion: str | None, tp, dp, tokens, hidden: float, custom_limit_bytes) -> np.ndarray:
    """Norms per layer that run inside the TP all-reduce before them (I42): 2 where the profile fuses them, the plan has
    t > 1 and one attention group (dp = 1), and the all-reduce of ``tokens`` x ``hidden`` BF16 per rank is in the
    stack's fused range (at most ``allreduce_norm_max_tokens`` tokens, or a message below ``custom_limit_bytes``, C3's
    custom all-reduce limit); 0 elsewhere."""
    prof = profile(fusion)
    t, d = np.asarray(tp, float), np.asarray(dp, float)
    tok = np.asarray(tokens, float)
    if not prof.allreduce_norm_fusion:
        return np.zeros(np.broadcast(t, d, tok).shape)
    if prof.allreduce_norm_max_tokens is not None:
        in_range = tok <= prof.allreduce_norm_max_tokens
    else:
        in_range = tok * hidden * ACTIVATION_BYTES < np.asarray(custom_limit_bytes, float)
    return np.where((t > 1) & (d <= 1) & in_range, float(NORMS_PER_LAYER), 0.0)

QUANTIZED_FORMATS = tuple(f for f in WEIGHT_PRECISIONS if BYTES_PER_ELEMENT[f] < ACTIVATION_BYTES)


def _quantized_input_bytes(fmt: str, chip_formats) -> float:
    """Bytes moved per element by the kernel that quantizes a GEMM's BF16 input to ``fmt`` (0 when the GEMM
    runs at 16 bits, or the chip has no rate for ``fmt``, so its GEMMs would not take quantized inputs)."""
    if isinstance(fmt, MixedFormat):  # a mixed part (I32): the share-weighted mean
        return mean_over_formats(fmt, lambda f: _quantized_input_bytes(f, chip_formats))
    if fmt not in QUANTIZED_FORMATS or fmt not in chip_formats:
        return 0.0
    return ACTIVATION_BYTES + BYTES_PER_ELEMENT[fmt]  # block scales included (NVFP4: one E4M3 per 16)


def priced(arch: ServingArch) -> bool:
    """Whether I22 prices this model's attention-side glue (MHA/GQA attention; MLA since stop 25, I31)."""
    return arch.attention in ("mha", "gqa", "mla")


def _mla_attention_side_bytes(arch: ServingArch, formats: dict, chip_formats, t, kv_precision_bytes: float,
                              fusion: str | None) -> np.ndarray:
    """MLA's attention side per token on one chip (I31): the norms with their residual adds (8 h A), the latent
    down-projections' input quantized once (h), the q and kv latent norms (read and write q_lora + kv_lora), the
    q up-projection's input quantized (q_lora), RoPE on the rope parts of the H/t query heads and the shared key
    (read and write), the latent KV-cache write ((kv_lora + rope) b_kv) and o_proj's input quantized (H d_v / t;
    not with a profile whose attention writes it quantized, 8-bit KV cache)."""
    m, a = arch.model, ACTIVATION_BYTES
    mla = m.mla
    h, H = float(arch.hidden), float(arch.heads)
    q_lora = float(mla.q_lora_rank or 0)
    rope = float(mla.qk_rope_head_dim)
    q = _quantized_input_bytes(formats["attention"], chip_formats)
    fused_out = profile(fusion).attention_quantized_output and kv_precision_bytes <= 1.0
    latent_norms = 2.0 * (q_lora + mla.kv_lora_rank) * a
    rope_rw = 2.0 * (H / t * rope + rope) * a
    kv_write = (mla.kv_lora_rank + rope) * kv_precision_bytes
    quant = q * (h + q_lora + (0.0 if fused_out else H * mla.v_head_dim / t))
    return 8.0 * h * a + latent_norms + rope_rw + kv_write + quant


def attention_side_bytes_per_token(arch: ServingArch, formats: dict, chip_formats, tp,
                                   kv_precision_bytes: float, fusion: str | None = None) -> np.ndarray:
    """Glue bytes per token of one layer's norms and attention block on one chip (I22; MLA: I31). With a
    profile whose attention writes o_proj's quantized input (8-bit KV cache), o_proj has no quantization kernel."""
    t = np.asarray(tp, float)
    if not priced(arch):
        return np.zeros_like(t)
    if arch.attention == "mla":
        return _mla_attention_side_bytes(arch, formats, chip_formats, t, kv_precision_bytes, fusion)
    m = arch.model
    h, H, K, d = float(arch.hidden), float(arch.heads), float(arch.kv_heads), float(m.d_head)
    a = ACTIVATION_BYTES
    norms = 8.0 * h * a
    rope_kv = ((H + 2.0 * K) * d * a + H * d * a + 2.0 * K * d * kv_precision_bytes) / t
    q = _quantized_input_bytes(formats["attention"], chip_formats)
    fused_out = profile(fusion).attention_quantized_output and kv_precision_bytes <= 1.0
    quant = q * (h + (0.0 if fused_out else H * d / t))
    return norms + rope_kv + quant


def _activation_bytes(arch: ServingArch, f, fmt: str, chip_formats, fusion: str | None):
    """The gated activation over an FFN slice of width ``f`` and the quantization of the down GEMM's input at
    ``fmt`` (read the up GEMM's output, write the down GEMM's input), per token (I22)."""
    if isinstance(fmt, MixedFormat):  # a mixed part (I32): the share-weighted mean
        return mean_over_formats(fmt, lambda one: _activation_bytes(arch, f, one, chip_formats, fusion))
    a = ACTIVATION_BYTES
    read_in = 2.0 * f * a if arch.model.mlp == "swiglu" else f * a
    q = _quantized_input_bytes(fmt, chip_formats)
    if q and fmt in profile(fusion).activation_quantized_formats:  # activation + quantization in one kernel
        return read_in + f * (q - a)
    return read_in + f * a + q * f


def _ffn_bytes(arch: ServingArch, f, fmt: str, chip_formats, fusion: str | None):
    """A dense FFN slice of width ``f`` per token (I22): its input's quantization, the activation and the down
    GEMM's input."""
    return _quantized_input_bytes(fmt, chip_formats) * float(arch.hidden) + _activation_bytes(
        arch, f, fmt, chip_formats, fusion)


def dense_ffn_bytes_per_token(arch: ServingArch, formats: dict, chip_formats, tp,
                              fusion: str | None = None) -> np.ndarray:
    """Glue bytes per token of one dense FFN on one chip (I22): the activation and its inputs' quantization. With
    a profile whose activation writes the down GEMM's input at its format, that input is written once, quantized."""
    t = np.asarray(tp, float)
    if not arch.dense_layers:
        return np.zeros_like(t)
    return _ffn_bytes(arch, float(arch.model.ffn) / t, formats["dense_ffn"], chip_formats, fusion)


def shared_experts_bytes_per_token(arch: ServingArch, formats: dict, chip_formats, tp,
                                   fusion: str | None = None) -> np.ndarray:
    """Glue bytes per token of one MoE layer's shared experts on one chip (I30): a dense FFN of width n_s F_e / t.
    0 for a model without shared experts."""
    t = np.asarray(tp, float)
    m = arch.model
    if not arch.is_moe or not m.moe.shared_experts:
        return np.zeros_like(t)
    return _ffn_bytes(arch, m.moe.shared_experts * m.moe.expert_ffn / t, formats["shared_experts"], chip_formats,
                      fusion)


def moe_ffn_bytes_per_token(arch: ServingArch, formats: dict, chip_formats, tp, dp, expert_tp, copies,
                            fusion: str | None = None, fused_moe: bool = False) -> np.ndarray:
    """Glue bytes per token of the attention-DP rank of one MoE FFN on one chip (I30, module docstring): shared
    experts as a dense FFN; per routed copy on the chip (``copies`` per token), the activation and the down
    GEMM's input at the expert's width over ``expert_tp``; without a dispatch kernel (``dp`` = 1) the MoE input's
    quantization once per token and the combine of the copies. ``fused_moe``: the routed path is one fused op
    (I37) whose fitted time holds its input quantization, activation and finalize, so only the shared experts
    count."""
    t = np.asarray(tp, float)
    if not arch.is_moe:
        return np.zeros_like(t)
    m = arch.model
    h, a = float(arch.hidden), ACTIVATION_BYTES
    c = np.asarray(copies, float)
    local = np.asarray(dp, float) <= 1.0  # no dispatch kernel: the rank quantizes its input and sums the copies
    shared = shared_experts_bytes_per_token(arch, formats, chip_formats, t, fusion)
    if fused_moe:
        return shared + np.zeros_like(c * t)
    fmt = formats["experts"]
    routed = c * _activation_bytes(arch, m.moe.expert_ffn / np.asarray(expert_tp, float), fmt, chip_formats, fusion)
    own = np.where(local, _quantized_input_bytes(fmt, chip_formats) * h + c * h * a + h * a, 0.0)
    return shared + routed + own


def stage_bytes(arch: ServingArch, formats: dict, chip_formats, tp, kv_precision_bytes: float,
                tokens, dense_layers, moe_layers, fusion: str | None = None, moe=None,
                fused_moe: bool = False, fused_norms=0.0) -> np.ndarray:
    """Glue bytes of one stage's layers for ``tokens`` tokens per chip (I22): the attention side on every
    layer of an MHA/GQA model, the FFN side on its dense layers and, given ``moe`` = (dp, expert_tp, routed
    copies per token on the chip), on its MoE layers (I30); ``moe`` None: the MoE FFNs are not priced.
    ``fused_moe``: the routed path is one fused op (I37; its traffic is in the op's time). ``fused_norms``: norms per
    layer run inside the all-reduce before them (I42, :func:`fused_norms_per_layer`), each without its read of x
    (h A per token)."""
    tok = np.asarray(tokens, float)
    layers = np.asarray(dense_layers, float) + np.asarray(moe_layers, float)
    per_tok = (layers * attention_side_bytes_per_token(arch, formats, chip_formats, tp, kv_precision_bytes, fusion)
               + np.asarray(dense_layers, float) * dense_ffn_bytes_per_token(arch, formats, chip_formats, tp, fusion))
    if priced(arch):  # the norms are in the attention side's bytes (I22 / I31)
        per_tok = per_tok - layers * np.asarray(fused_norms, float) * float(arch.hidden) * ACTIVATION_BYTES
    if moe is not None:
        per_tok = per_tok + np.asarray(moe_layers, float) * moe_ffn_bytes_per_token(arch, formats, chip_formats, tp,
                                                                                    *moe, fusion,
                                                                                    fused_moe)
    return tok * per_tok
