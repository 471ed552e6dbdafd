"""Number formats of weights, KV cache and activations: bytes per element and the chip rate used.

Weights at ``fp16``/``bf16``/``fp8``/``int8``/``fp4``: GEMMs run at the weight format (W8A8,
W4A4 as served by TensorRT-LLM, SGLang/DeepGEMM, CANN INT8), at the chip's dense peak for that
format; a chip without it raises a one-line error naming ``--precision`` (``ChipSpec.peak``).
Attention products run at BF16 (FP16 where BF16 is unknown) unless FP8 attention is asked for
(``--attention-precision fp8``: FlashMLA / FlashAttention-3 FP8 kernels on an FP8 KV cache). Activations exchanged between chips
are BF16, except MoE dispatch, which is sent at the weight format when it is 8 bits or fewer
(DeepEP FP8 dispatch; CloudMatrix-Infer INT8 dispatch).
"""

from __future__ import annotations

from supernode.errors import UsageError
from supernode.hardware import ChipSpec

# bytes per element: the definition of each format (not a hardware constant)
BYTES_PER_ELEMENT = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "fp4": 0.5}
WEIGHT_PRECISIONS = ("bf16", "fp16", "fp8", "int8", "fp4")
KV_PRECISIONS = ("bf16", "fp16", "fp8", "int8")
ACTIVATION_BYTES = BYTES_PER_ELEMENT["bf16"]


def weight_bytes(precision: str) -> float:
    if precision not in WEIGHT_PRECISIONS:
        raise UsageError(f"--precision: {precision!r} is not one of {', '.join(WEIGHT_PRECISIONS)}")
    return BYTES_PER_ELEMENT[precision]


def kv_bytes(precision: str) -> float:
    if precision not in KV_PRECISIONS:
        raise UsageError(f"--kv-precision: {precision!r} is not one of {', '.join(KV_PRECISIONS)}")
    return BYTES_PER_ELEMENT[precision]


def dispatch_bytes(precision: str) -> float:
    """Bytes per element of MoE dispatch traffic (combine is always BF16)."""
    return min(BYTES_PER_ELEMENT[precision], ACTIVATION_BYTES)


def attention_precision(chip: ChipSpec) -> str:
    for p in ("bf16", "fp16"):
        if p in chip.peak_flop_per_s:
            return p
    raise UsageError(f"--on: chip {chip.id!r} has no known BF16/FP16 rate for attention")


ATTENTION_PRECISIONS = ("bf16", "fp16", "fp8")


def check_attention_precision(chip: ChipSpec, precision: str | None, kv_precision: str) -> None:
    """One-line errors for an attention format the chip or the KV cache cannot run."""
    if precision is None:
        return
    if precision not in ATTENTION_PRECISIONS:
        raise UsageError(f"--attention-precision: {precision!r} is not one of {', '.join(ATTENTION_PRECISIONS)}")
    if precision == "fp8" and BYTES_PER_ELEMENT[kv_precision] > 1:
        raise UsageError("--attention-precision: fp8 attention needs an 8-bit KV cache (--kv-precision fp8)")
    chip.peak(precision)  # names --precision and the chip when the rate is unknown


def default_precision(chip: ChipSpec) -> str:
    """The format served by default: FP8 where the chip has it, else INT8, else BF16 (stated in
    every output's assumptions)."""
    for p in ("fp8", "int8", "bf16", "fp16"):
        if p in chip.peak_flop_per_s:
            return p
    raise UsageError(f"--on: chip {chip.id!r} has no known dense FP8/INT8/BF16 rate")
