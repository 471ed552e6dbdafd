"""Parallel serving plans, as arrays: one element per configuration (vectorized search).

A serving *instance* (one model replica) spans ``tp * pp * dp`` chips: ``pp`` pipeline stages,
each with ``dp`` attention data-parallel ranks of ``tp`` tensor-parallel chips. The FFN of a
stage (dense or MoE) is spread over all ``tp * dp`` chips of the stage: a MoE layer's experts over
``ep`` expert-parallel ranks, each expert split ``tp * dp / ep`` ways. Rank order: tp innermost,
then dp, then pp, then replicas, so a TP group and a stage's EP group are consecutive chips.
``batch`` is the number of sequences in flight in the instance (all attention ranks and all
pipeline micro-batches); the search draws it as ``b x dp x pp`` with ``b`` per rank per micro-batch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from supernode.errors import UsageError, is_positive_int
from supernode.infer.arch import ServingArch


@dataclass(frozen=True)
class PlanGrid:
    """Configurations as equal-length integer arrays (``overlap`` is 0/1: two-micro-batch overlap
    of communication with compute, as SGLang TBO and CloudMatrix-Infer micro-batch pipelining)."""

    tp: np.ndarray
    pp: np.ndarray
    dp: np.ndarray
    ep: np.ndarray
    batch: np.ndarray
    overlap: np.ndarray
    # the chunked-prefill budget of a co-located plan (prompt tokens per rank and iteration, I39); 0: the options'
    chunk_tokens: np.ndarray | int = 0

    def __post_init__(self) -> None:
        n = len(self.tp)
        for f in fields(self):
            a = np.asarray(getattr(self, f.name))
            if a.ndim == 0:
                a = np.full(n, a)
            object.__setattr__(self, f.name, a.astype(np.int64))

    def __len__(self) -> int:
        return len(self.tp)

    @property
    def chips_per_instance(self) -> np.ndarray:
        return self.tp * self.pp * self.dp

    @property
    def stage_chips(self) -> np.ndarray:
        return self.tp * self.dp

    @property
    def expert_tp(self) -> np.ndarray:
        return np.maximum(self.stage_chips // np.maximum(self.ep, 1), 1)

    @staticmethod
    def concat(grids: list["PlanGrid"]) -> "PlanGrid":
        return PlanGrid(**{f.name: np.concatenate([getattr(g, f.name) for g in grids]) for f in fields(PlanGrid)})

    def take(self, idx) -> "PlanGrid":
        return PlanGrid(**{f.name: np.atleast_1d(getattr(self, f.name)[idx]) for f in fields(self)})

    def row(self, i: int) -> dict:
        return {f.name: int(getattr(self, f.name)[i]) for f in fields(self)}

    def with_batch(self, batch) -> "PlanGrid":
        """The same plans at ``batch`` (one value, or one per plan)."""
        return PlanGrid(**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "batch"},
                        batch=np.broadcast_to(np.asarray(batch, np.int64), (len(self),)))


def _pow2_upto(n: int) -> list[int]:
    out, v = [], 1
    while v <= n:
        out.append(v)
        v *= 2
    return out


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def candidate_plans(arch: ServingArch, chips: int, scale_up_chips: int, *, tp=None, pp=None, dp=None, ep=None,
                    batch=None, batches: list[int] | None = None, max_instance_chips: int | None = None,
                    overlap: bool | None = None, max_batch: int | None = None, unit: str = "chips") -> PlanGrid:
    """All plans on at most ``chips`` chips: tp a power of two within the scale-up domain and not
    above the query heads; pp a power of two not above the layers; dp a power of two; ep (MoE) the
    whole stage or a power-of-two share of it; batch from ``batches``. Any argument given fixes
    that degree (checked: one-line UsageError naming the flag). ``batches``: per-rank, per-micro-batch
    sequence counts to try (default powers of two to 1024). ``overlap``: True or False fixes two-micro-batch
    overlap on or off (a fact of the serving stack: SGLang TBO, vLLM DBO; TensorRT-LLM of 2025 has none); None
    tries both. ``max_batch``: an engine's cap on the instance batch; drawn batches above it are left out (the
    search adds the largest batch that fits under it, :func:`memory_filled`)."""
    _check_fixed(arch, chips, tp=tp, pp=pp, dp=dp, ep=ep, batch=batch, max_batch=max_batch, unit=unit)
    tps = [tp] if tp else [t for t in _pow2_upto(min(scale_up_chips, arch.heads)) if arch.heads % t == 0]
    pps = [pp] if pp else [p for p in _pow2_upto(min(arch.layers, 16))]
    dps = [dp] if dp else (_pow2_upto(chips) if arch.is_moe else [1])  # dense: DP ranks = replicas
    per_rank = batches or _pow2_upto(1024)
    cap = max_instance_chips or chips
    rows = []
    for t in tps:
        for p in pps:
            for d in dps:
                n = t * p * d
                if n > chips or n > cap:
                    continue
                if ep:
                    eps = [ep] if (t * d) % ep == 0 else []
                elif arch.is_moe:
                    eps = sorted({t * d, *(e for e in _pow2_upto(t * d) if e >= max(1, t * d // 8))})
                else:
                    eps = [1]
                for e in eps:
                    for b in ([batch] if batch else [r * d * p for r in per_rank
                                                     if max_batch is None or r * d * p <= max_batch]):
                        for o in ((0, 1) if overlap is None else (int(bool(overlap)),)):
                            rows.append((t, p, d, e, b, o))
    if not rows and max_batch is not None:
        raise UsageError(f"--max-batch: {max_batch} is below one sequence per attention-DP rank and pipeline "
                         "micro-batch of every plan")
    if not rows:
        raise UsageError(f"--chips: no plan of {chips} {unit} satisfies the fixed degrees")
    a = np.array(rows, dtype=np.int64).T
    return PlanGrid(tp=a[0], pp=a[1], dp=a[2], ep=a[3], batch=a[4], overlap=a[5])


def memory_filled(plan: PlanGrid, max_batch, cap: int | None = None) -> PlanGrid:
    """The distinct plans of ``plan`` (batch aside) at the largest batch that fits (I8): ``max_batch`` per plan
    (the memory verdict's), at most ``cap`` (an engine's maximum batch), rounded down to whole sequences per rank
    and micro-batch (a multiple of dp x pp); plans where not even that fits are dropped."""
    unit = plan.dp * plan.pp
    b = np.asarray(max_batch, np.int64)
    if cap is not None:
        b = np.minimum(b, cap)
    b = b // unit * unit
    filled = plan.with_batch(b)
    keep = b > 0
    rows = np.stack([getattr(filled, f.name) for f in fields(filled)], axis=1)[keep]
    if not len(rows):
        return filled.take(np.zeros(0, np.int64))
    rows = rows[np.lexsort(rows.T[::-1])]  # distinct rows (np.unique(axis=0) sorts a void view, ~10x slower)
    rows = rows[np.r_[True, np.any(rows[1:] != rows[:-1], axis=1)]]
    return PlanGrid(**{f.name: rows[:, j] for j, f in enumerate(fields(filled))})


def _check_fixed(arch: ServingArch, chips: int, *, tp, pp, dp, ep, batch, max_batch=None, unit: str = "chips") -> None:
    for name, v in (("--tp", tp), ("--pp", pp), ("--attention-dp", dp), ("--ep", ep), ("--batch", batch),
                    ("--max-batch", max_batch)):
        if v is not None and not is_positive_int(v):
            raise UsageError(f"{name}: must be a positive integer, got {v!r}")
    if batch is not None and max_batch is not None:
        raise UsageError("--max-batch: give either --batch (the batch) or --max-batch (a cap on it), not both")
    if tp and arch.heads % tp:
        raise UsageError(f"--tp: {tp} does not divide the {arch.heads} query heads of {arch.id}")
    if pp and pp > arch.layers:
        raise UsageError(f"--pp: {pp} exceeds the {arch.layers} layers of {arch.id}")
    if ep and ep > 1 and not arch.is_moe:
        raise UsageError(f"--ep: {arch.id} is a dense model (no experts to spread)")
    n = (tp or 1) * (pp or 1) * (dp or 1)
    if n > chips:
        raise UsageError(f"--chips: tp x pp x attention-dp = {n} exceeds the {chips} {unit}")
    if ep and tp and dp and (tp * dp) % ep:
        raise UsageError(f"--ep: {ep} does not divide tp x attention-dp = {tp * dp}")
    if ep and ep > chips:
        raise UsageError(f"--ep: {ep} exceeds the {chips} {unit}")
