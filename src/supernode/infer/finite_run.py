"""A finite offline run (I28): N requests issued at once, served by continuous batching, timed to the last token.

The steady-state estimate (I9) is the rate of an engine whose slots are always full. A benchmark such as MLPerf
Offline issues a fixed number of requests at once and divides the tokens by the time to the last completion, so it
also counts the drain: once the queue is empty the batch thins out as sequences finish, and the last, longest ones
decode at a small batch. With a long-tailed output distribution and few requests per slot (DeepSeek-R1 in MLPerf:
outputs up to 20,000 tokens, ~6 requests per slot) the drain is a large part of the run.

Per instance (requests dealt round-robin from one seeded shuffle of the length distribution, in proportion to its
weights): each request holds a slot for ceil(O / a) iterations and is admitted, in issue order, into the first slot
that frees (list scheduling over ``slots`` identical slots). The run starts with every slot empty, and the
instance prefills at most B = d p floor(C_b / u) u prompt tokens per iteration (C_b the chunk budget per rank, u =
min(C_b, E[I]) I15's prompt unit), so the first S requests enter at iteration floor(sum_{i<j} I_i / B): the slots
fill over ~S E[I] / B iterations (the ramp). Under a decode-inclusive budget M (I29) B shrinks as the slots fill:
iteration t gives the prompts min(C_b, M - ceil(n_t / (d p)) (1 + m)) per rank, n_t the requests admitted before it
(:class:`PromptBudget`). Later requests enter as slots free, their prompts in the steady
mixture (an engine whose steady prompt demand exceeds its budget is I15's upper bound, not throttled here). The
run's time is

    T_run = sum_{k < K} T_k + N_i * t_prompt,  T_k = T(S) if all S slots are busy, else T(n_k, c_k)

with T(S) the decode-only iteration at the full batch and the steady decoding context, t_prompt = (T_iter - T(S)) *
E[O] / (S a) each prompt's share of the steady iteration T_iter (its prefill, at the steady mixture's cost), and
T(n_k, c_k) the decode-only iteration at the n_k sequences in flight in iteration k (per rank ceil(n_k / (d p)), the
most loaded rank when spread evenly) and their mean context c_k: the ramp before the slots fill and the drain after
the last admission k_e. The run ends with its slowest instance. ``decode_step_s`` supplies T from the model's own
decode step (no second model): evaluated on a grid of per-rank batches at two contexts, interpolated linearly in both.
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass
from typing import Callable

import numpy as np

from supernode.errors import UsageError, is_positive_int

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
    if not is_positive_int(requests):
        raise UsageError(f"--requests: expected a positive whole number of requests, got {requests!r}")
    return int(requests)


def request_order(samples: LengthSamples, requests: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """``requests`` (prompt, output) pairs in issue order: each row repeated in proportion to its weight (largest
    remainders, ties broken at random; a file of n rows issued k·n times gives every row k times, as MLPerf's
    LoadGen cycles its sample set, and fewer requests than rows draw rows at random rather than the file's first
    ones), shuffled once with ``seed``."""
    w = np.asarray(samples.weights, float)
    share = requests * w / w.sum()
    counts = np.floor(share).astype(np.int64)
    rest = int(requests - counts.sum())
    rng = np.random.default_rng(seed)
    if rest:
        counts[np.lexsort((rng.random(len(w)), -(share - counts)))[:rest]] += 1
    idx = rng.permutation(np.repeat(np.arange(len(w)), counts))
    return np.asarray(samples.inputs, float)[idx], np.asarray(samples.outputs, float)[idx]


def schedule(iterations: np.ndarray, slots: int, ready: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Start and end iteration of each request, admitted in order into the first slot that frees, and not before
    its ``ready`` iteration (None: every request ready at 0).

    List scheduling, exact, in blocks: with F the slots' free iterations in sorted order, the next requests k = 0,
    1, ... take F[0], F[1], ... for as long as every end added before request k (F[i] + its_i, i < k) is at least
    F[k]; a block is cut where that fails. Each block is a few array operations (over a window of the next requests
    that doubles while blocks fill it), so a run of ~10^5 requests costs O(N / B) of them; where blocks are thin
    (short outputs beside many slots) a heap pass over the next ``slots`` requests takes over. Requests after the
    first ``slots`` must be ready at 0 (the ramp of :func:`ready_iterations` holds only the initial fill); any other
    ``ready`` takes the heap throughout."""
    its = np.asarray(iterations, np.int64)
    n = len(its)
    if n and not slots >= 1:
        raise ValueError(f"schedule: slots must be at least 1, got {slots!r}")
    s = min(int(slots), n)
    starts = np.empty(n, np.int64)
    if ready is None:
        starts[:s] = 0
    else:
        r = np.asarray(ready, np.int64)
        if (r[s:] != 0).any() or (r[:s] < 0).any() or (its[:s] < 0).any():
            return _heap_schedule(its, s, r)
        starts[:s] = r[:s]  # the initial fill: every slot free at 0, so each waits only for its turn
    free = np.sort(starts[:s] + its[:s])
    j, window = s, _THIN_BLOCK * 4  # requests looked at per block: grows while blocks fill it, shrinks when not
    while j < n:
        w = min(s, n - j, window)
        f = free[:w]
        ends = f + its[j:j + w]
        # request k takes f[k] while every end added before it is >= f[k]: cut at the first k where that fails
        bad = np.flatnonzero(np.minimum.accumulate(ends)[:-1] < f[1:])
        b = w if bad.size == 0 else int(bad[0]) + 1
        window = window * 2 if b == w else max(_THIN_BLOCK * 4, window // 2) if 4 * b < w else window
        if b < _THIN_BLOCK <= w:
            w = min(s, n - j)
            heap = free.tolist()  # sorted, so already a heap
            starts[j:j + w] = _heap_pass(heap, its[j:j + w])
            free = np.sort(np.asarray(heap, np.int64))
            j += w
            continue
        starts[j:j + b] = f[:b]
        free = np.concatenate((free[b:], np.sort(ends[:b])))
        free.sort(kind="stable")  # two sorted runs: a merge
        j += b
    return starts, starts + its


_THIN_BLOCK = 16  # requests per block below which a heap pass is cheaper (measured on the validation runs)


def _heap_pass(free: list[int], its: np.ndarray, ready: np.ndarray | None = None) -> list[int]:
    """Admit requests one at a time into ``free``, a heap of the slots' next free iteration (updated in place): each
    takes the slot that frees first, not before its ``ready`` iteration. Returns their starts."""
    out: list[int] = []
    put, replace = out.append, heapq.heapreplace
    if ready is None:
        for it in its.tolist():
            t = free[0]
            put(t)
            replace(free, t + it)
        return out
    for it, r in zip(its.tolist(), ready.tolist()):
        t = max(free[0], r)
        put(t)
        replace(free, t + it)
    return out


def _heap_schedule(its: np.ndarray, slots: int, ready: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`schedule` by a heap pass over every request (any ``ready``)."""
    starts = np.asarray(_heap_pass([0] * slots, its, ready), np.int64)
    return starts, starts + its


@dataclass(frozen=True)
class PromptBudget:
    """The prompt tokens one instance prefills per iteration (I15's whole units, I28's ramp): ``ranks`` = d p
    attention ranks and micro-batches, each adding at most ``chunk_tokens`` (C_b) prompt tokens to an iteration,
    and, under a decode-inclusive budget ``max_num_tokens`` M (I29), at most M - n (1 + m) beside its n decoding
    sequences of ``query_tokens`` = 1 + m tokens each; ``unit_tokens`` E[I], the prompt unit's upper bound."""

    chunk_tokens: float
    unit_tokens: float
    ranks: int
    max_num_tokens: float | None = None
    query_tokens: float = 1.0

    def per_iteration(self, in_flight: int = 0) -> float:
        """B = d p floor(C / u) u, u = min(C, E[I]), C = C_b, or min(C_b, M - ceil(n / (d p)) (1 + m)) with n
        sequences in flight under M (0 when the decodes leave nothing)."""
        c = float(self.chunk_tokens)
        if self.max_num_tokens is not None:
            c = min(c, float(self.max_num_tokens) - np.ceil(in_flight / self.ranks) * self.query_tokens)
        if c <= 0:
            return 0.0
        unit = min(c, float(self.unit_tokens))
        return float(self.ranks * np.floor(c / unit) * unit)


def ready_iterations(inputs: np.ndarray, slots: int, budget: "PromptBudget | float | None") -> np.ndarray | None:
    """The ramp: the iteration in which each of the first ``slots`` requests (the initial fill of an empty engine)
    gets its prompt's turn when the instance prefills at most ``budget`` prompt tokens per iteration (a number, or
    a :class:`PromptBudget`, whose decode-inclusive budget shrinks as the slots fill: the requests admitted in
    earlier iterations decode in this one), in issue order; the later requests enter as slots free, their prompts
    in the steady mixture (None: no limit)."""
    if budget is None:
        return None
    i = np.asarray(inputs, float)
    before = np.cumsum(i) - i
    if not isinstance(budget, PromptBudget) or budget.max_num_tokens is None:
        per = budget.per_iteration() if isinstance(budget, PromptBudget) else float(budget)
        ready = np.floor(before / per + 1e-9).astype(np.int64)
        ready[slots:] = 0
        return ready
    fill = min(slots, len(i))
    ready = np.zeros(len(i), np.int64)
    admitted, capacity, t = 0, 0.0, 0
    while admitted < fill:
        per = budget.per_iteration(admitted)  # the requests admitted before iteration t decode in it
        if per <= 0:
            raise UsageError(f"--max-num-tokens: {budget.max_num_tokens:,.0f} tokens per rank leave no room for a "
                             f"prompt beside {int(np.ceil(admitted / budget.ranks)):,} decoding sequences per rank")
        capacity += per
        # request j enters in the first iteration whose cumulative budget exceeds the prompt tokens before it
        # (a prompt that starts exactly at the budget's end waits, as floor(before / B) has it for a constant B)
        upto = int(np.searchsorted(before[:fill], capacity - 1e-9 * per, side="left"))
        ready[admitted:upto] = t
        admitted = max(upto, admitted)
        t += 1
    return ready


@dataclass(frozen=True)
class Drain:
    """One instance's run: ``last_admission`` k_e, ``end`` K (iterations), and for k in [k_e, K) the sequences in
    flight ``active`` and their mean context ``context`` (tokens); ``ramp_active`` and ``ramp_context`` the same
    for k in [0, k_e) (all ``slots`` busy there unless prompts wait for their turn, :func:`ready_iterations`)."""

    requests: int
    last_admission: int
    end: int
    active: np.ndarray
    context: np.ndarray
    ramp_active: np.ndarray
    ramp_context: np.ndarray


_CACHE: dict[bytes, Drain] = {}


def drain(inputs: np.ndarray, outputs: np.ndarray, slots: int, acceptance: float = 1.0,
          prompt_tokens_per_iteration: "PromptBudget | float | None" = None) -> Drain:
    """List-schedule one instance's requests (prompts admitted at most ``prompt_tokens_per_iteration`` tokens per
    iteration, a number or a :class:`PromptBudget`; None: no limit) and measure the sequences in flight per iteration (memoized on the inputs: a pure
    function, and a validation run asks for the same case's runs more than once)."""
    inputs, outputs = np.ascontiguousarray(inputs, float), np.ascontiguousarray(outputs, float)
    h = hashlib.blake2b(inputs.tobytes(), digest_size=16)
    h.update(outputs.tobytes())
    h.update(repr((int(slots), float(acceptance), prompt_tokens_per_iteration)).encode())
    key = h.digest()
    if key not in _CACHE:
        if len(_CACHE) >= 256:
            _CACHE.clear()
        _CACHE[key] = _drain(inputs, outputs, slots, acceptance, prompt_tokens_per_iteration)
    return _CACHE[key]


def _drain(inputs: np.ndarray, outputs: np.ndarray, slots: int, acceptance: float,
           prompt_tokens_per_iteration: "PromptBudget | float | None") -> Drain:
    its = np.maximum(np.ceil(outputs / acceptance), 1).astype(np.int64)
    starts, ends = schedule(its, slots, ready_iterations(inputs, slots, prompt_tokens_per_iteration))
    ke, K = int(starts.max()), int(ends.max())
    n = np.zeros(K + 1)
    base = np.zeros(K + 1)  # sum over sequences in flight of (prompt - a * start), so context = base/n + a k
    np.add.at(n, starts, 1.0)
    np.add.at(n, ends, -1.0)
    v = inputs - acceptance * starts
    np.add.at(base, starts, v)
    np.add.at(base, ends, -v)
    n, base = np.cumsum(n)[:K], np.cumsum(base)[:K]
    ctx = np.where(n > 0, base / np.maximum(n, 1) + acceptance * np.arange(K), 0.0)
    return Drain(len(its), ke, K, n[ke:], ctx[ke:], n[:ke], ctx[:ke])


def prompt_tokens_per_iteration(chunk_budget_tokens: float | None, mean_input_tokens: float,
                                ranks: int) -> float | None:
    """B = d p floor(C_b / u) u, u = min(C_b, E[I]): the prompt tokens an instance of ``ranks`` attention ranks and
    micro-batches prefills per iteration in whole units of I15 (None: no budget given)."""
    if chunk_budget_tokens is None:
        return None
    return PromptBudget(float(chunk_budget_tokens), float(mean_input_tokens), ranks).per_iteration()


def estimate(*, requests: int, samples: LengthSamples, instances: int, slots: int, ranks: int, acceptance: float,
             iteration_s: float, steady_context_tokens: float, mean_output_tokens: float,
             decode_step_s: Callable[[np.ndarray, float], np.ndarray], chips: int, seed: int = SEED,
             chunk_budget_tokens: float | None = None, max_num_tokens: float | None = None,
             query_tokens: float = 1.0) -> dict:
    """The finite run of ``requests`` over ``instances`` engines of ``slots`` sequences each (``ranks`` = d·p
    attention ranks and micro-batches per instance), ``iteration_s`` the steady iteration of the plan (I9) and
    ``decode_step_s(per_rank_batch, context)`` its decode-only iteration; ``chunk_budget_tokens`` the prompt
    tokens a rank prefills per iteration (C_b; None: the slots fill at once); ``max_num_tokens`` a decode-inclusive
    budget per rank (I29: the ramp's prompts get what the ``query_tokens`` = 1 + m tokens of each sequence already
    in flight leave). Returns a JSON-ready dict (SI)."""
    requests = check_requests(requests)
    inputs, outputs = request_order(samples, requests, seed)
    per_rank_full = int(np.ceil(slots / ranks))
    grid = sorted({2 ** i for i in range(int(np.log2(max(per_rank_full, 1))) + 1)} | {per_rank_full})
    budget = None if chunk_budget_tokens is None else PromptBudget(
        float(chunk_budget_tokens), float(np.mean(inputs)), ranks,
        None if max_num_tokens is None else float(max_num_tokens), float(query_tokens))
    runs = [drain(inputs[i::instances], outputs[i::instances], slots, acceptance, budget) for i in range(instances)
            if len(inputs[i::instances])]
    c_hi = max([steady_context_tokens * 2.0] + [float(c.max()) for r in runs for c in (r.context, r.ramp_context)
                                                 if len(c)])
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
        thin = r.ramp_active < min(slots, r.requests)  # iterations before k_e with a slot still empty
        ramp = float(step(np.ceil(r.ramp_active[thin] / ranks), r.ramp_context[thin]).sum()) if thin.any() else 0.0
        per_instance.append((int((~thin).sum()) * full, r.requests * t_prompt, ramp, tail, int(thin.sum()), r))
    slowest = max(per_instance, key=lambda x: x[0] + x[1] + x[2] + x[3])
    steady_s, prefill_s, ramp_s, drain_s, ramp_iterations, r = slowest
    duration = steady_s + prefill_s + ramp_s + drain_s
    tokens = float(outputs.sum())
    steady_rate = instances * slots * acceptance / iteration_s
    return {
        "requests": requests, "instances": instances, "slots_per_instance": int(slots),
        "output_tokens": tokens, "duration_s": duration,
        "steady_s": steady_s, "prefill_s": prefill_s, "ramp_s": ramp_s, "drain_s": drain_s,
        "iterations": r.end, "ramp_iterations": ramp_iterations, "drain_iterations": r.end - r.last_admission,
        # prompt tokens an instance prefills per iteration: in an empty engine, and beside a full batch (they differ
        # under a decode-inclusive budget, I29)
        "prompt_tokens_per_iteration": None if budget is None else budget.per_iteration(0),
        "prompt_tokens_per_iteration_full": None if budget is None else budget.per_iteration(slots),
        "decode_tokens_per_s": tokens / duration, "decode_tokens_per_s_per_chip": tokens / duration / chips,
        "steady_decode_tokens_per_s": steady_rate,
        "ratio_to_steady": tokens / duration / steady_rate,
        "seed": seed,
    }
