"""Where a MoE layer's shared experts run beside its routed experts (formula I38, docs/inference.md).

``serial`` (the default) prices the router, the routed experts and the shared experts one after the other, as one
stream runs them. ``overlap`` is SGLang's dual-stream MoE (``DeepseekV2MoE.forward_normal_dual_stream``): in a pass
captured in a CUDA graph (decode and verify; never a pass that carries prompt tokens) the shared experts run on one
CUDA stream while the router, top-k and routed experts run on a second. The two streams share the tensor cores and
HBM, so only their fixed latencies can overlap:

    T_moe = max(T_r, T_s, W_r + W_s)      instead of T_r + T_s

T_s is the shared experts' GEMMs (K1, each with t_0 and at least the kernel floor), one kernel floor (their gated
activation) and their glue traffic (I30). T_r is the router GEMM and the routed experts (I37's fused op or the
grouped GEMMs, K5). W_s and W_r are the same with every fixed latency (t_0, kernel floors, the fused op's t_f) at
zero. Nothing is fitted. SGLang takes the path on CUDA when the shared expert is not fused into the routed MoE
(expert parallelism on NVIDIA, or ``--disable-shared-experts-fusion``) and the all-to-all is not DeepEP's; evidence
and the rule for the validation cases: validation/notes/sglang-shared-expert-stream.md.
"""

from __future__ import annotations

from supernode.errors import one_of

SERIAL = "serial"
OVERLAP = "overlap"
MODES = (SERIAL, OVERLAP)


def check(name: str | None) -> str:
    """``name`` (None: ``serial``), or a one-line error naming ``--shared-experts-stream``."""
    return one_of("--shared-experts-stream", name, MODES)


def overlaps(name: str | None) -> bool:
    """Whether the shared experts run on their own stream beside the routed experts (I38)."""
    return check(name) == OVERLAP


def describe(name: str | None) -> str:
    """The assumption line of the shared experts' stream."""
    if not overlaps(name):
        return "MoE shared experts (I38): on the routed experts' stream, priced in series with them"
    return ("MoE shared experts (I38): on a second stream beside the router and routed experts in passes without "
            "prompt tokens (SGLang's dual-stream MoE under CUDA graphs); only the fixed latencies overlap, the "
            "roofline work of both shares the chip")
