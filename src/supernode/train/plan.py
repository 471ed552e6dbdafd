"""Training workload and parallel plan (vectorized: every plan field may be a numpy array).

Rank order (docs/model.md T0): TP innermost, then CP, then DP (with EP carved out of the DP
ranks, innermost within DP), then PP outermost. A rank r has
``tp_rank = r % t``, ``cp_rank = (r // t) % c``, ``dp_rank = (r // (t c)) % d``,
``ep_rank = dp_rank % e``, ``pp_rank = r // (t c d)``; so a TP group has stride 1, a CP group
stride t, an EP group stride t·c, a DP group (with CP: the gradient group of size d·c) stride t,
and pipeline neighbours are t·c·d ranks apart. Chips = t·c·d·p.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

RECOMPUTE = ("none", "selective", "full")
PRECISION_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "fp6": 0.75, "fp4": 0.5, "int8": 1}


@dataclass(frozen=True)
class TrainWorkload:
    """What is trained: B sequences of s tokens per step at a GEMM precision; an optional
    token budget (tokens to train) for time / chip-hours / energy."""

    global_batch: int  # B, sequences per optimizer step
    seq_len: int  # s
    precision: str = "bf16"  # GEMM precision (fp8: Transformer-Engine style, activations/weights kept bf16)
    tokens: float | None = None
    attention_kernel: str = "flash"  # "flash" (fused, causal blocks skipped) or "unfused" (pre-2022 stacks)
    grad_dtype: str = "fp32"  # gradient buffer / reduction dtype: fp32 (Megatron-LM default) or bf16
    param_dtype: str = "bf16"  # model weight copy kept on the chip: bf16, or fp8 (Transformer Engine fp8 params)
    schedule: str = "1f1b"  # pipeline schedule: 1f1b (interleaved when vpp > 1) or dualpipe (DeepSeek-V3)
    # layers per pipeline stage: "uniform" (ceil(L / (p v)) per virtual stage) or "balanced" (the embedding
    # and the output head + loss each count as one layer of the split: the first and the last stage hold one
    # transformer layer fewer; Llama 3 sec. 3.3.2, Megatron-Core --account-for-embedding/loss-in-pipeline-split)
    pipeline_split: str = "uniform"
    # MoE dispatch/combine: "all-to-all" (every expert copy sent to its chip, NCCL all-to-all) or "dedup"
    # (once per remote scale-up domain, forwarded inside it: DeepEP, DeepSeek-V3 sec. 3.2.2)
    ep_dispatch: str = "all-to-all"
    # context-parallel attention: "ring" (K/V blocks passed around the CP ring, hidden behind the attention
    # core) or "all-gather" (K and V all-gathered before the local attention, dK/dV reduce-scattered after
    # it, exposed on the critical path: Llama 3 sec. 3.3.2)
    cp_comm: str = "ring"

    def __post_init__(self) -> None:
        from supernode.errors import UsageError, is_positive_int, is_positive_number

        for flag, v in (("--global-batch", self.global_batch), ("--seq-len", self.seq_len)):
            if not is_positive_int(v):
                raise UsageError(f"{flag}: must be a positive integer, got {v!r}")
        if self.tokens is not None:
            if not is_positive_number(self.tokens):
                raise UsageError(f"--tokens: must be a positive, finite token count, got {self.tokens!r}")
        if self.grad_dtype not in ("fp32", "bf16", "fp16"):
            raise UsageError(f"--grad-dtype: expected fp32, bf16 or fp16, got {self.grad_dtype!r}")
        if self.param_dtype not in ("bf16", "fp16", "fp8"):
            raise UsageError(f"--param-dtype: expected bf16, fp16 or fp8, got {self.param_dtype!r}")
        if self.schedule not in ("1f1b", "dualpipe"):
            raise UsageError(f"--schedule: expected 1f1b or dualpipe, got {self.schedule!r}")
        if self.pipeline_split not in ("uniform", "balanced"):
            raise UsageError(f"--pipeline-split: expected uniform or balanced, got {self.pipeline_split!r}")
        if self.ep_dispatch not in ("all-to-all", "dedup"):
            raise UsageError(f"--ep-dispatch: expected all-to-all or dedup, got {self.ep_dispatch!r}")
        if self.cp_comm not in ("ring", "all-gather"):
            raise UsageError(f"--cp-comm: expected ring or all-gather, got {self.cp_comm!r}")
        if self.pipeline_split == "balanced" and self.schedule == "dualpipe":
            raise UsageError("--pipeline-split: balanced is modelled for the 1f1b schedules only, not dualpipe")

    @property
    def grad_bytes(self) -> float:
        """Bytes per gradient element (fp16 training keeps fp16 gradients)."""
        return 2.0 if self.grad_dtype != "fp32" or self.precision == "fp16" else 4.0

    @property
    def param_bytes(self) -> float:
        return 1.0 if self.param_dtype == "fp8" else 2.0

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch * self.seq_len


@dataclass(frozen=True)
class Plan:
    """Parallel plan; each field a scalar or an array of equal length (one entry per configuration).

    ``recompute``: 0 none, 1 selective (attention core), 2 full (Korthikanti et al. 2022).
    ``zero``: 0 none, 1 optimizer states, 2 + gradients, 3 + weights (FSDP), sharded over the d·c
    data-parallel ranks. ``overlap_*``: 1 when the framework overlaps that traffic with compute."""

    tp: Any = 1
    pp: Any = 1
    vpp: Any = 1
    dp: Any = 1
    ep: Any = 1
    cp: Any = 1
    micro_batch: Any = 1
    zero: Any = 1
    recompute: Any = 0
    overlap_tp: Any = 1
    overlap_dp: Any = 1
    overlap_ep: Any = 1

    def arrays(self) -> "Plan":
        """The same plan with every field a float64 array of a common length."""
        vals = [np.atleast_1d(np.asarray(getattr(self, f.name), dtype=float)) for f in fields(self)]
        shape = np.broadcast_shapes(*(v.shape for v in vals))
        return Plan(*(np.broadcast_to(v, shape) for v in vals))

    def __len__(self) -> int:
        return int(np.broadcast_shapes(*(np.shape(getattr(self, f.name)) for f in fields(self))) and
                   np.prod(np.broadcast_shapes(*(np.shape(getattr(self, f.name)) for f in fields(self))))) or 1

    def chips(self) -> Any:
        return self.tp * self.cp * self.dp * self.pp

    def row(self, i: int = 0) -> dict[str, Any]:
        """Configuration ``i`` as plain Python values (recompute as its name)."""
        a = self.arrays()
        out: dict[str, Any] = {}
        for f in fields(a):
            v = float(np.asarray(getattr(a, f.name)).ravel()[i])
            if f.name == "recompute":
                out[f.name] = RECOMPUTE[int(v)]
            elif f.name.startswith("overlap_"):
                out[f.name] = bool(v)
            else:
                out[f.name] = int(v)
        return out

    def take(self, idx: Any) -> "Plan":
        a = self.arrays()
        return Plan(*(np.asarray(getattr(a, f.name))[idx] for f in fields(a)))
