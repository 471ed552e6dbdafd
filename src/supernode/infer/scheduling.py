"""Chunked-prefill scheduling in co-located serving: whole prefill chunks, not an even spread of
prompt tokens, set the mean iteration time (formula I15, docs/inference.md).

In the steady state of co-located serving each attention-DP rank prefills on average c = b I a / O
prompt tokens per iteration (I9). Schedulers (vLLM, SGLang, TensorRT-LLM in-flight batching) do not
spread them evenly: a prompt admitted into a free slot is prefilled in whole units of
u = min(C_b, I) tokens (a chunk of the budget C_b, or the whole prompt when it fits). With
n = floor(c / u) a rank carries L = n u prompt tokens in every iteration and H = min(L + u, C_b)
with probability pi = (c - L) / (H - L), independently of the other ranks; the mean stays c. For
c < u (the usual case at long prompts) L = 0, H = C = u and pi = c / C.

    dense (attention-DP ranks are independent replicas; no per-layer collective joins them):
        E[T_iter] = pi T(b + H) + (1 - pi) T(b + L)                      (per-rank mixture)
    MoE (every layer's dispatch/combine all-to-all joins the d ranks, so the iteration lasts as
    long as its slowest rank):
        P = 1 - (1 - pi)^d                                              (some rank carries H)
        E[T_iter] = P T(b + H; K̄) + (1 - P) T(b + L)
        K̄ = E[K | K >= 1] = d pi / P                                    (K ~ Bin(d, pi) ranks at H)

Aligned admission (``admission="aligned"``): when every request has the same output length and the run
starts with every slot empty (a fixed-length offline benchmark), each rank fills its slots one prompt unit
per iteration in the same iterations, and the slots then free, and refill, in the same iterations on every
rank; the ranks carry H together:
        E[T_iter] = pi T(b + H; K̄ = d) + (1 - pi) T(b + L)              (no rank waits for another)

T(b + H; K̄) is the stage time of a rank with b decode sequences and H prompt tokens while the
routed experts, shared by the group, see its mean load b + L + K̄ (H - L) / d per rank (uniform
routing); attention, dense/shared FFN and the all-to-all send are the loaded rank's. For d = 1 both
cases are pi T(b + H) + (1 - pi) T(b + L): equal to the even-spread T(b + c) when T is linear in
the tokens, larger when T is convex (Jensen), e.g. weight-read-bound decode turning compute-bound
with a chunk. P grows with d, so a synchronized MoE instance pays more the more ranks it has.

When c >= C_b the budget cannot admit prompts as fast as outputs finish; every iteration is then
kept at the mean load c (L = H = c: the even-spread I9 figure, an upper bound for that plan) rather
than inventing a smaller batch.

Expert-load imbalance over the EP ranks (I17) enters through ``stage_time``'s ``expert_balance``:
T(b + H; K̄)'s routed experts see f times the group mean. This is the steady state; a finite run's ramp and drain
are timed on top of it by I28 (:mod:`supernode.infer.finite_run`).
Schedulers that make the ranks wait for each other's prompts (TensorRT-LLM's ADP balance strategy,
``timeout_iters``) move the mixture toward aligned admission.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from supernode.errors import UsageError
from supernode.infer.step import StageBreakdown


@dataclass(frozen=True)
class ChunkMix:
    """Per plan (arrays, tokens per attention-DP rank and iteration): the two prefill loads an
    iteration can carry and the weights of the mixture (I15)."""

    base_tokens: np.ndarray  # L: prompt tokens every rank carries in every iteration
    burst_tokens: np.ndarray  # H: prompt tokens of a rank that carries one more unit
    burst_probability: np.ndarray  # P (MoE: some rank of the d is at H) or pi (dense: this rank is), in [0, 1]
    burst_ranks: np.ndarray  # K̄ = E[K | K >= 1], ranks at H in a burst iteration (MoE); 1 (dense: unused)


ADMISSIONS = ("independent", "aligned")


def check_admission(mode: str) -> str:
    if mode not in ADMISSIONS:
        raise UsageError(f"--admission: expected one of {', '.join(ADMISSIONS)}, got {mode!r}")
    return mode


def chunk_mix(prefill_tokens_per_rank, *, prompt_tokens: float, chunk_budget_tokens: float, ranks,
              synchronized: bool, admission: str = "independent") -> ChunkMix:
    """I15 mixture. ``prefill_tokens_per_rank``: c, mean prompt tokens per rank and iteration (I9);
    ``prompt_tokens``: I; ``chunk_budget_tokens``: C_b, the scheduler's prompt-token budget per rank and
    iteration (a number, or one per plan: an engine whose token budget counts decode tokens leaves its prompts
    M - b (1 + m), I29); ``ranks``: d attention-DP ranks per instance (per plan); ``synchronized``: whether the
    ranks wait for each other in every layer (MoE all-to-all; False for replicas of a dense model);
    ``admission``: ``independent`` (each rank admits prompts on its own: P = 1 - (1 - pi)^d) or ``aligned``
    (the ranks admit in the same iterations, as in a fixed-length offline run that starts all at once:
    P = pi, K̄ = d)."""
    check_admission(admission)
    c = np.asarray(prefill_tokens_per_rank, dtype=float)
    d = np.asarray(ranks, dtype=float)
    budget = np.asarray(chunk_budget_tokens, dtype=float)
    shape = np.broadcast(c, d, budget).shape
    c, d, budget = np.broadcast_to(c, shape), np.broadcast_to(d, shape), np.broadcast_to(budget, shape)
    unit = np.minimum(budget, float(prompt_tokens))
    if not np.all(unit > 0):
        raise ValueError(f"chunk_mix: prompt and chunk budget must be positive, "
                         f"got {prompt_tokens}, {np.min(budget)}")
    over_budget = c >= budget
    low = np.where(over_budget, c, np.floor(c / unit) * unit)
    high = np.where(over_budget, c, np.minimum(low + unit, budget))
    pi = np.divide(c - low, high - low, out=np.zeros(shape), where=high > low)
    if not synchronized:
        return ChunkMix(low, high, pi, np.ones(shape))
    if admission == "aligned":
        return ChunkMix(low, high, pi, d.astype(float))
    with np.errstate(divide="ignore"):  # log1p(-1) = -inf: P = 1
        p = -np.expm1(d * np.log1p(-pi))  # 1 - (1 - pi)^d without cancellation at small pi
    k = np.clip(np.divide(d * pi, p, out=np.ones(shape), where=p > 0), 1.0, d)
    return ChunkMix(low, high, p, k)


def routed_tokens_per_rank(decode_tokens_per_rank, mix: ChunkMix, ranks) -> np.ndarray:
    """Mean tokens per rank that the shared routed experts see in a burst iteration:
    b + L + K̄ (H - L) / d."""
    return (np.asarray(decode_tokens_per_rank, float) + mix.base_tokens
            + mix.burst_ranks * (mix.burst_tokens - mix.base_tokens) / np.asarray(ranks, float))


def expected_iteration_s(mix: ChunkMix, base_s, burst_s) -> np.ndarray:
    """E[T] = P T(b + H) + (1 - P) T(b + L); seconds in, seconds out."""
    p = mix.burst_probability
    return p * np.asarray(burst_s, float) + (1.0 - p) * np.asarray(base_s, float)


def expected_breakdown(mix: ChunkMix, base: StageBreakdown, burst: StageBreakdown) -> StageBreakdown:
    """The I15 mixture of two :class:`~supernode.infer.step.StageBreakdown`, field by field (seconds);
    ``overlap_applied`` where either kind of iteration applies it."""
    fields = {k: expected_iteration_s(mix, getattr(base, k), getattr(burst, k))
              for k in ("gemm_s", "attention_s", "tp_comm_s", "moe_comm_s", "pp_comm_s", "exposed_comm_s", "stage_s")}
    oa, ob = base.overlap_applied, burst.overlap_applied
    applied = None if oa is None and ob is None else np.logical_or(False if oa is None else oa,
                                                                   False if ob is None else ob)
    fa, fb = base.expert_balance_ratio, burst.expert_balance_ratio  # I17 factor: its mean over iterations
    balance = None if fa is None or fb is None else expected_iteration_s(mix, fa, fb)
    return StageBreakdown(**fields, overlap_applied=applied, expert_balance_ratio=balance)
