"""Activation traffic of a layer's non-GEMM ("glue") kernels (formula I22, docs/inference.md).

Between the GEMMs of a transformer layer, memory-bound kernels read and write the activations: the two
RMSNorms with their residual adds, RoPE with the KV-cache write, the gated activation, and, when a GEMM
runs at a sub-16-bit format, the quantization of its input. I13 prices their launches (a kernel floor
each); their bytes were neglected, which holds for small-batch decode but not when an iteration carries
hundreds or thousands of tokens on a chip whose GEMMs are fast: on B200 at NVFP4 a Llama-70B layer's GEMMs
take ~0.3 us per token, its glue moves ~0.46 MB per token, another ~0.09 us at the HBM rate.

Bytes per token of one layer on one chip of a t-way tensor-parallel group (activations BF16, A = 2 bytes;
h hidden, H and K query and KV heads of width d, F the FFN width, b_f + s_f the bytes per element of a
quantized GEMM input with its block scales):

  norms           2 x (read x and residual, write residual and normed x)            = 8 h A
  RoPE + KV write read q, k, v; write q and the cache's k, v                         = (H+2K) d A/t + H d A/t + 2 K d b_kv/t
  quantization    per quantized GEMM input of width n: read n A, write n (b_f + s_f)  (qkv: h, out: H d/t,
                  up: h, down: F/t)
  activation      SwiGLU: read 2 F/t, write F/t (GeLU: read and write F/t), x A

Scope: layers with MHA/GQA attention (the attention-side kernels) and dense gated FFNs (the FFN-side
kernels). MLA's attention block (latent norms, split RoPE) and MoE FFNs (permute, per-expert activation and
quantization, combine) have their own kernel lists and are not priced here: their launches keep the I13
floor, and on Hopper I21's calibrated time per layer covers what MoE layers do besides their GEMMs.

Every quantization and the activation run as separate kernels: the 2025 serving stacks of the validation
cases did not fuse them for NVFP4 (SGLang PR #34934, 2026: 'every projection input is normalized, written to
HBM in bf16, then re-read and quantized by a separate kernel'; vLLM turned SiLU+FP4-quant fusion on by
default only in PR #34718, 2026-02; FlashInfer's fused RMSNorm+FP4 kernels are PR #2233, late 2025). The
bytes are priced at the family's streaming fraction of HBM bandwidth (K4), the rate every memory-bound stream
in the model gets; no new fitted parameter.
"""

from __future__ import annotations

import numpy as np

from supernode.infer.arch import ServingArch
from supernode.infer.precision import ACTIVATION_BYTES, BYTES_PER_ELEMENT

# bytes of block scales per element of a quantized activation: NVFP4 stores one E4M3 scale per 16 elements;
# FP8 / INT8 activations use per-tensor or per-token scales (a few bytes per token: 0)
SCALE_BYTES_PER_ELEMENT = {"fp4": 1.0 / 16.0}
QUANTIZED_FORMATS = ("fp8", "int8", "fp4")


def _quantized_input_bytes(fmt: str, chip_formats) -> float:
    """Bytes moved per element by the kernel that quantizes a GEMM's BF16 input to ``fmt`` (0 when the GEMM
    runs at 16 bits, or the chip has no rate for ``fmt``, so its GEMMs would not take quantized inputs)."""
    if fmt not in QUANTIZED_FORMATS or fmt not in chip_formats:
        return 0.0
    return ACTIVATION_BYTES + BYTES_PER_ELEMENT[fmt] + SCALE_BYTES_PER_ELEMENT.get(fmt, 0.0)


def priced(arch: ServingArch) -> bool:
    """Whether I22 prices this model's attention-side glue (MHA/GQA attention)."""
    return arch.attention in ("mha", "gqa")


def attention_side_bytes_per_token(arch: ServingArch, formats: dict, chip_formats, tp,
                                   kv_precision_bytes: float) -> np.ndarray:
    """Glue bytes per token of one layer's norms and attention block on one chip (I22); 0 for MLA."""
    t = np.asarray(tp, float)
    if not priced(arch):
        return np.zeros_like(t)
    m = arch.model
    h, H, K, d = float(arch.hidden), float(arch.heads), float(arch.kv_heads), float(m.d_head)
    a = ACTIVATION_BYTES
    norms = 8.0 * h * a
    rope_kv = ((H + 2.0 * K) * d * a + H * d * a + 2.0 * K * d * kv_precision_bytes) / t
    q = _quantized_input_bytes(formats["attention"], chip_formats)
    quant = q * (h + H * d / t)
    return norms + rope_kv + quant


def dense_ffn_bytes_per_token(arch: ServingArch, formats: dict, chip_formats, tp) -> np.ndarray:
    """Glue bytes per token of one dense FFN on one chip (I22): the activation and its inputs' quantization."""
    t = np.asarray(tp, float)
    if not arch.dense_layers:
        return np.zeros_like(t)
    m = arch.model
    f = float(m.ffn) / t
    a = ACTIVATION_BYTES
    act = 3.0 * f * a if m.mlp == "swiglu" else 2.0 * f * a
    q = _quantized_input_bytes(formats["dense_ffn"], chip_formats)
    return act + q * (float(arch.hidden) + f)


def stage_bytes(arch: ServingArch, formats: dict, chip_formats, tp, kv_precision_bytes: float,
                tokens, dense_layers, moe_layers) -> np.ndarray:
    """Glue bytes of one stage's layers for ``tokens`` tokens per chip (I22): the attention side on every
    layer of an MHA/GQA model, the FFN side on its dense layers."""
    tok = np.asarray(tokens, float)
    layers = np.asarray(dense_layers, float) + np.asarray(moe_layers, float)
    per_tok = (layers * attention_side_bytes_per_token(arch, formats, chip_formats, tp, kv_precision_bytes)
               + np.asarray(dense_layers, float) * dense_ffn_bytes_per_token(arch, formats, chip_formats, tp))
    return tok * per_tok
