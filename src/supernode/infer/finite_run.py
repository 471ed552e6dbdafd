"""A finite offline run (I28): N requests issued at once, served by continuous batching, timed to the last token.

The steady-state estimate (I9) is the rate of an engine whose slots are always full. A benchmark such as MLPerf
Offline issues a fixed number of requests at once and divides the tokens by the time to the last completion, so it
also counts the drain: once the queue is empty the batch thins out as sequences finish, and the last, longest ones
decode at a small batch. With a long-tailed output distribution and few requests per slot (DeepSeek-R1 in MLPerf:
outputs up to 20,000 tokens, ~6 requests per slot) the drain is a large part of the run.

Per instance (requests dealt round-robin from one seeded shuffle of the length distribution, in proportion to its
weights): each request holds a slot for ceil(O / a) iterations and is admitted, in issue order, into the first slot
that frees (list scheduling over ``slots`` identical slots). The run's time is

    T_run = k_e * T(S) + N_i * t_prompt + sum_{k >= k_e} T(n_k, c_k)

with k_e the iteration of the last admission (every slot busy before it), T(S) the decode-only iteration at the full
batch and the steady decoding context, t_prompt = (T_iter - T(S)) * E[O] / (S a) each prompt's share of the steady
iteration T_iter (its prefill, at the steady mixture's cost), and T(n_k, c_k) the decode-only iteration at the n_k
sequences left in iteration k (per rank ceil(n_k / (d p)), the most loaded rank when spread evenly) and their mean
context c_k. The run ends with its slowest instance. ``decode_step_s`` supplies T from the model's own decode step
(no second model): evaluated on a grid of per-rank batches at two contexts, interpolated linearly in both.
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass
from typing import Callable

import numpy as np

from supernode.errors import UsageError

SEED = 0  # the issue order's shuffle; fixed so that an estimate is reproducible


@dataclass(frozen=True)
class LengthSamples:
    """Per-request prompt and output lengths (tokens) with weights (requests each row stands for)."""

    inputs: np.ndarray
    outputs: np.ndarray
    weights: np.ndarray

    @classmethod
    def fixed(cls, input_tokens: float, output_tokens: float) -> "LengthSamples":
        return cls(np.array([float(input_tokens)]), np.array([float(output_tokens)]), np.ones(1))

    def workload(self, ttft_quantile: float = 0.9):
        """The :class:`supernode.infer.serving.Workload` of this distribution (means and I27's effective lengths)."""
        from supernode.infer.serving import Workload

        return Workload.from_samples(self.inputs, self.outputs, self.weights, ttft_quantile=ttft_quantile)


def check_requests(requests) -> int:
    """A request count: a positive whole number, else the one-line ``--requests`` error."""
    if isinstance(requests, bool) or not isinstance(requests, (int, np.integer)) or requests < 1:
        raise UsageError(f"--requests: expected a positive whole number of requests, got {requests!r}")
    return int(requests)


def request_order(samples: LengthSamples, requests: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """``requests`` (prompt, output) pairs in issue order: each row repeated in proportion to its weight (largest
    remainders; a file of n rows issued k·n times gives every row k times, as MLPerf's LoadGen cycles its sample
    set), shuffled once with ``seed``."""
    w = np.asarray(samples.weights, float)
    share = requests * w / w.sum()
    counts = np.floor(share).astype(np.int64)
    rest = int(requests - counts.sum())
    if rest:
        counts[np.argsort(-(share - counts), kind="stable")[:rest]] += 1
    idx = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(w)), counts))
    return np.asarray(samples.inputs, float)[idx], np.asarray(samples.outputs, float)[idx]


def schedule(iterations: np.ndarray, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end iteration of each request, admitted in order into the first slot that frees."""
    its = np.asarray(iterations, np.int64)
    free = [0] * min(slots, len(its))  # a heap of the slots' next free iteration
    out: list[int] = []
    put, replace = out.append, heapq.heapreplace
    for it in its.tolist():
        t = free[0]
        put(t)
        replace(free, t + it)
    starts = np.asarray(out, np.int64)
    return starts, starts + its


@dataclass(frozen=True)
class Drain:
    """One instance's run: ``last_admission`` k_e, ``end`` K (iterations), and for k in [k_e, K) the sequences in
    flight ``active`` and their mean context ``context`` (tokens)."""

    requests: int
    last_admission: int
    end: int
    active: np.ndarray
    context: np.ndarray


_CACHE: dict[bytes, Drain] = {}


def drain(inputs: np.ndarray, outputs: np.ndarray, slots: int, acceptance: float = 1.0) -> Drain:
    """List-schedule one instance's requests and measure the tail after the last admission (memoized on the
    inputs: a pure function, and a validation run asks for the same case's runs more than once)."""
    inputs, outputs = np.ascontiguousarray(inputs, float), np.ascontiguousarray(outputs, float)
    h = hashlib.blake2b(inputs.tobytes(), digest_size=16)
    h.update(outputs.tobytes())
    h.update(repr((int(slots), float(acceptance))).encode())
    key = h.digest()
    if key not in _CACHE:
        if len(_CACHE) >= 256:
            _CACHE.clear()
        _CACHE[key] = _drain(inputs, outputs, slots, acceptance)
    return _CACHE[key]


def _drain(inputs: np.ndarray, outputs: np.ndarray, slots: int, acceptance: float) -> Drain:
    its = np.maximum(np.ceil(outputs / acceptance), 1).astype(np.int64)
    starts, ends = schedule(its, slots)
    ke, K = int(starts.max()), int(ends.max())
    span = K - ke
    n = np.zeros(span + 1)
    base = np.zeros(span + 1)  # sum over sequences in flight of (prompt - a * start), so context = base/n + a k
    live = ends > ke  # only sequences still running after k_e contribute to the tail
    s = np.maximum(starts[live] - ke, 0)
    e = ends[live] - ke
    np.add.at(n, s, 1.0)
    np.add.at(n, e, -1.0)
    v = inputs[live] - acceptance * starts[live]
    np.add.at(base, s, v)
    np.add.at(base, e, -v)
    n, base = np.cumsum(n)[:span], np.cumsum(base)[:span]
    k = ke + np.arange(span)
    ctx = np.where(n > 0, base / np.maximum(n, 1) + acceptance * k, 0.0)
    return Drain(len(its), ke, K, n, ctx)


def estimate(*, requests: int, samples: LengthSamples, instances: int, slots: int, ranks: int, acceptance: float,
             iteration_s: float, steady_context_tokens: float, mean_output_tokens: float,
             decode_step_s: Callable[[np.ndarray, float], np.ndarray], chips: int, seed: int = SEED) -> dict:
    """The finite run of ``requests`` over ``instances`` engines of ``slots`` sequences each (``ranks`` = d·p
    attention ranks and micro-batches per instance), ``iteration_s`` the steady iteration of the plan (I9) and
    ``decode_step_s(per_rank_batch, context)`` its decode-only iteration. Returns a JSON-ready dict (SI)."""
    requests = check_requests(requests)
    inputs, outputs = request_order(samples, requests, seed)
    per_rank_full = int(np.ceil(slots / ranks))
    grid = sorted({2 ** i for i in range(int(np.log2(max(per_rank_full, 1))) + 1)} | {per_rank_full})
    runs = [drain(inputs[i::instances], outputs[i::instances], slots, acceptance) for i in range(instances)
            if len(inputs[i::instances])]
    c_hi = max([steady_context_tokens * 2.0] + [float(r.context.max()) for r in runs if len(r.context)])
    g = np.asarray(grid, float)
    t_lo, t_hi = decode_step_s(g, steady_context_tokens), decode_step_s(g, c_hi)

    def step(per_rank: np.ndarray, ctx: np.ndarray) -> np.ndarray:
        lo, hi = np.interp(per_rank, g, t_lo), np.interp(per_rank, g, t_hi)
        return lo + (ctx - steady_context_tokens) / (c_hi - steady_context_tokens) * (hi - lo)

    full = float(step(np.array([per_rank_full], float), np.array([steady_context_tokens]))[0])
    t_prompt = max(iteration_s - full, 0.0) * mean_output_tokens / (slots * acceptance)
    per_instance = []
    for r in runs:
        tail = float(step(np.ceil(r.active / ranks), r.context).sum()) if len(r.active) else 0.0
        per_instance.append((r.last_admission * full, r.requests * t_prompt, tail, r))
    slowest = max(per_instance, key=lambda x: x[0] + x[1] + x[2])
    steady_s, prefill_s, drain_s, r = slowest
    duration = steady_s + prefill_s + drain_s
    tokens = float(outputs.sum())
    steady_rate = instances * slots * acceptance / iteration_s
    return {
        "requests": requests, "instances": instances, "slots_per_instance": int(slots),
        "output_tokens": tokens, "duration_s": duration,
        "steady_s": steady_s, "prefill_s": prefill_s, "drain_s": drain_s,
        "iterations": r.end, "drain_iterations": r.end - r.last_admission,
        "decode_tokens_per_s": tokens / duration, "decode_tokens_per_s_per_chip": tokens / duration / chips,
        "steady_decode_tokens_per_s": steady_rate,
        "ratio_to_steady": tokens / duration / steady_rate,
        "seed": seed,
    }
