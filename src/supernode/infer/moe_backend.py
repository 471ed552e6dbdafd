"""The serving stack's MoE kernels for the routed experts (formula I37, docs/inference.md).

``grouped`` (the default) prices a MoE layer's routed experts as the model always has: two grouped GEMM kernels
(FC1 with the gated activation's input, FC2) at the family's grouped-GEMM factor (K5), each with its kernel
latency t_0 and at least the kernel floor, beside the glue kernels of routing, permutation, the activation, the
input quantization and the combine (I13's ten kernel floors of a MoE layer, I30's traffic).

``trtllm-fused`` is TensorRT-LLM's fused MoE op (FlashInfer ``trtllm_fp4_block_scale_moe`` and its kin: SGLang
and vLLM ``--moe-runner-backend flashinfer_trtllm``, TensorRT-LLM ``moe_config.backend: TRTLLM``): routing from the
router's logits, the input quantization, FC1 with SwiGLU and the quantized output, FC2 and finalize in one op,
priced by :func:`supernode.perf.compute.fused_moe_time_s`:

    T_moe = t_f + R( F_routed / (P e sigma g),  Q_routed / (B phi_f) )

t_f and phi_f fitted per chip family and format on published timings of that op (``data/fused-moe-kernels``,
perf.calibration.fit_fused_moe). The MoE layer then counts a dense layer's glue kernels (the norms, RoPE with the
KV write, the shared experts' activation and quantizations), not the routed path's, and its routed copies move no
glue traffic outside the op. The router GEMM, the shared experts and any dispatch / combine are priced as before.
A family without a fit at the routed experts' format keeps the grouped GEMMs (the assumptions say so).
"""

from __future__ import annotations

from supernode.errors import one_of
from supernode.perf.compute import Efficiency

GROUPED = "grouped"
FUSED = "trtllm-fused"
BACKENDS = (GROUPED, FUSED)


def check(name: str | None) -> str:
    """``name`` (None: ``grouped``), or a one-line error naming ``--moe-backend``."""
    return one_of("--moe-backend", name, BACKENDS)


def fused(eff: Efficiency, backend: str | None, experts_format) -> bool:
    """Whether the routed experts run as one fused op (I37): the stack runs TensorRT-LLM's fused MoE and the family
    has a fit at the experts' (single) weight format."""
    return check(backend) == FUSED and isinstance(experts_format, str) and experts_format in eff.fused_moe


def describe(eff: Efficiency, backend: str | None, experts_format) -> str:
    """The assumption line of the routed experts' kernels for a family and format."""
    name = check(backend)
    if name == GROUPED:
        return ("MoE routed experts (I37): grouped GEMM kernels at the family's grouped-GEMM factor (K5) and glue "
                "kernels")
    if fused(eff, name, experts_format):
        f = eff.fused_moe[experts_format]
        return (f"MoE routed experts (I37): TensorRT-LLM's fused MoE op, {f['fixed_s'] * 1e6:.1f} us per layer plus "
                f"the hit experts' weights at {f['bandwidth_fraction']:.3f} of HBM bandwidth (fitted on published "
                f"timings of the op, data/fused-moe-kernels)")
    return (f"MoE routed experts (I37): --moe-backend {FUSED} asked, but family {eff.family} has no fused-MoE fit at "
            f"{experts_format}; priced as grouped GEMM kernels (K5) and glue kernels")
