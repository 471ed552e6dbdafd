"""Parallelism search: every valid (TP, CP, EP, DP, PP, virtual stages, ZeRO, recompute,
micro-batch) for a chip count, evaluated as arrays by the same step model that :func:`estimate`
uses for a single configuration; returns the k fastest plans that fit in memory (docs/model.md T10).

Any degree can be fixed (``fixed={"tp": 8}``). When the fixed degrees leave no valid
configuration, a one-line :class:`UsageError` names the parameter that cannot be satisfied.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from supernode.errors import UsageError, is_positive_int
from supernode.hardware import ClusterSpec
from supernode.perf.compute import Efficiency, efficiency
from supernode.train.plan import RECOMPUTE, Plan, TrainWorkload
from supernode.train.step import StepBreakdown, estimate, evaluation
from supernode.workload.model import ModelSpec

VPP_CHOICES = (1, 2, 3, 4, 6, 8)
MICRO_BATCH_CHOICES = (1, 2, 4, 8, 16)
MAX_CP = 32
FLAG = {"tp": "--tp", "pp": "--pp", "vpp": "--vpp", "dp": "--dp", "ep": "--ep", "cp": "--cp",
        "micro_batch": "--micro-batch", "zero": "--zero", "recompute": "--recompute", "chips": "--chips",
        "micro-batch": "--micro-batch"}


# the fields a caller may fix (``fixed`` of :func:`search`; ``micro-batch`` is read as ``micro_batch``)
FIXED_KEYS = ("tp", "pp", "vpp", "dp", "ep", "cp", "micro_batch", "zero", "recompute", "overlap_tp", "overlap_dp",
              "overlap_ep")


def _divisors(n: int) -> list[int]:
    small = [i for i in range(1, int(n ** 0.5) + 1) if n % i == 0]
    return sorted(set(small + [n // i for i in small]))


@dataclass(frozen=True)
class SearchResult:
    """The k best plans (fastest first) with their breakdowns, and search statistics."""

    plans: Plan
    breakdown: StepBreakdown
    evaluated: int
    valid: int
    fitting: int
    assumptions: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return int(np.size(self.breakdown.step_time_s))


def _grid(m: ModelSpec, cluster: ClusterSpec, w: TrainWorkload,
          fixed: dict[str, Any] | None = None) -> tuple[Plan, Plan]:
    """The candidates as a grid: parallel degrees (t, c, p, d, e) × the other fields (v, ZeRO,
    recompute, micro-batch, overlaps); candidate i·len(rest) + j combines degrees[i] and rest[j]."""
    fixed = {k.replace("-", "_"): v for k, v in (fixed or {}).items() if v is not None}
    if "recompute" in fixed and isinstance(fixed["recompute"], str):
        fixed["recompute"] = RECOMPUTE.index(fixed["recompute"])
    N = cluster.chips
    for name in ("tp", "cp", "pp", "dp"):
        if name in fixed and (int(fixed[name]) < 1 or N % int(fixed[name])):
            raise UsageError(f"{FLAG[name]}: {fixed[name]} does not divide the {N} chips")
    divs = _divisors(N)
    E = m.moe.routed_experts if m.moe else 1

    def opts(name: str, default: list[int]) -> list[int]:
        return [int(fixed[name])] if name in fixed else default

    tps = opts("tp", [x for x in divs if x <= 64])
    cps = opts("cp", [x for x in divs if x <= MAX_CP])
    pps = opts("pp", [x for x in divs if x <= m.layers])
    degree = []
    for t, c, p in itertools.product(tps, cps, pps):
        if N % (t * c * p):
            continue
        d = N // (t * c * p)
        if "dp" in fixed and int(fixed["dp"]) != d:
            continue
        eps = opts("ep", [x for x in _divisors(d) if E % x == 0] if m.moe else [1])
        for e in eps:
            degree.append((t, c, p, d, e))
    if not degree:
        degree = [(int(fixed.get("tp", 1)), int(fixed.get("cp", 1)), int(fixed.get("pp", 1)),
                   int(fixed.get("dp", 1)), int(fixed.get("ep", 1)))]
    deg = np.array(degree, dtype=float)
    rest = np.array(list(itertools.product(opts("vpp", list(VPP_CHOICES)), opts("zero", [0, 1, 2, 3]),
                                           opts("recompute", [0, 1, 2]),
                                           opts("micro_batch", list(MICRO_BATCH_CHOICES)))), dtype=float)
    ov = {k: float(fixed.get(k, 1)) for k in ("overlap_tp", "overlap_dp", "overlap_ep")}
    degrees = Plan(tp=deg[:, 0].copy(), cp=deg[:, 1].copy(), pp=deg[:, 2].copy(), dp=deg[:, 3].copy(),
                   ep=deg[:, 4].copy())
    others = Plan(vpp=rest[:, 0].copy(), zero=rest[:, 1].copy(), recompute=rest[:, 2].copy(),
                  micro_batch=rest[:, 3].copy(), **ov)
    return degrees, others


_DEGREES = ("tp", "cp", "pp", "dp", "ep")


def _grid_take(degrees: Plan, others: Plan, idx: Any) -> Plan:
    """Candidates ``idx`` of the grid degrees × others, as a :class:`Plan` of arrays."""
    idx = np.asarray(idx)
    n_rest = len(np.asarray(others.vpp))
    i, j = idx // n_rest, idx % n_rest
    o = others.arrays()
    vals = {f.name: (np.asarray(getattr(degrees, f.name))[i] if f.name in _DEGREES
                     else np.asarray(getattr(o, f.name))[j]) for f in fields(Plan)}
    return Plan(**vals)


def candidates(m: ModelSpec, cluster: ClusterSpec, w: TrainWorkload, fixed: dict[str, Any] | None = None) -> Plan:
    """All structurally plausible configurations as one array :class:`Plan` (before validity)."""
    degrees, others = _grid(m, cluster, w, fixed)
    n_deg, n_rest = len(degrees.tp), len(others.vpp)
    o = others.arrays()
    cols = {f: np.repeat(getattr(degrees, f), n_rest) for f in _DEGREES}
    cols.update({f: np.tile(getattr(o, f), n_deg) for f in ("vpp", "zero", "recompute", "micro_batch")})
    return Plan(**cols, overlap_tp=others.overlap_tp, overlap_dp=others.overlap_dp, overlap_ep=others.overlap_ep)


def search(m: ModelSpec, cluster: ClusterSpec, w: TrainWorkload, fixed: dict[str, Any] | None = None,
           top: int = 5, chunk: int = 262_144, eff: Efficiency | None = None) -> SearchResult:
    """The ``top`` fastest fitting configurations (or, when none fits, the ones needing the least
    memory, flagged ``fits = False``).

    The candidates are evaluated as the grid degrees × other fields without forming it
    (:func:`supernode.train.step.evaluation`): validity first, then memory of the valid ones, then
    the step time of the fitting ones only. The k best are taken per ``chunk`` of valid candidates
    (argpartition), then ordered (stable sort)."""
    if not is_positive_int(top):
        raise UsageError(f"--top: must be a positive integer, got {top!r}")
    given = {k.replace("-", "_"): v for k, v in (fixed or {}).items()}
    unknown = sorted(set(given) - set(FIXED_KEYS))
    if unknown:
        raise UsageError(f"fixed: unknown key {unknown[0]!r} (expected one of {', '.join(FIXED_KEYS)})")
    rc = given.get("recompute")
    if rc is not None and rc not in RECOMPUTE and rc not in range(len(RECOMPUTE)):
        raise UsageError(f"--recompute: expected one of {', '.join(RECOMPUTE)}, got {rc!r}")
    for name in ("tp", "pp", "vpp", "dp", "ep", "cp", "micro_batch"):
        v = given.get(name)
        if v is not None and not is_positive_int(v):
            raise UsageError(f"{FLAG[name]}: must be a positive integer, got {v!r}")
    degrees, others = _grid(m, cluster, w, fixed)
    eff = eff or efficiency(cluster.chip.family)
    ev = evaluation(m, cluster, w, degrees, eff, inner=others)
    ok = ev.valid()
    if not ok.any():
        checks = ev.checks()
        for name, bad in checks:
            if bad.all():
                raise UsageError(f"{FLAG.get(name, name)}: no valid configuration of {m.id} on {cluster.chips} chips "
                                 f"({_why(name, m, cluster, w)})")
        raise UsageError(f"no valid configuration of {m.id} on {cluster.chips} chips with the fixed degrees "
                         f"({', '.join(f'{k}={v}' for k, v in (fixed or {}).items() if v is not None)})")
    valid = np.flatnonzero(ok)
    n = len(valid)
    mem = ev.memory_bytes(valid)
    fits = mem <= ev.capacity
    fitting = int(np.count_nonzero(fits))
    if fitting == 0:  # nothing fits: show the plans closest to fitting
        gi_sel = np.argsort(mem, kind="stable")[:top]
    else:
        st = np.full(n, np.inf)  # step time of the fitting candidates, inf for the others
        fit = np.flatnonzero(fits)
        st[fit] = ev.step_time(valid[fit])
        best_t: list[np.ndarray] = []
        best_i: list[np.ndarray] = []
        for lo in range(0, n, chunk):
            part = st[lo:lo + chunk]
            k = min(top, len(part))
            sel = np.argpartition(part, k - 1)[:k]
            best_t.append(part[sel])
            best_i.append(lo + sel)
        st = np.concatenate(best_t)
        gi = np.concatenate(best_i)
        order = np.argsort(st, kind="stable")
        order = order[np.isfinite(st[order])][:top]
        gi_sel = gi[order]
    plans = _grid_take(degrees, others, valid[gi_sel])
    br = estimate(m, cluster, w, plans, eff)
    return SearchResult(plans=plans, breakdown=br, evaluated=n, valid=n, fitting=fitting,
                        assumptions=tuple(eff.assumptions) + tuple(cluster.assumptions))


def _why(name: str, m: ModelSpec, cluster: ClusterSpec, w: TrainWorkload) -> str:
    kv = m.heads if m.mla else m.kv_heads
    return {
        "chips": f"tp x cp x dp x pp must equal {cluster.chips}",
        "tp": f"tp must divide {m.heads} heads and {kv} kv heads",
        "pp": f"pp x vpp must not exceed {m.layers} layers",
        "vpp": "interleaving needs pp > 1 and micro-batches divisible by pp",
        "micro-batch": f"global batch {w.global_batch} must be divisible by dp x micro-batch",
        "cp": f"sequence {w.seq_len} must be divisible by 2 x cp",
        "ep": "ep must divide dp and the number of routed experts (1 for dense models)",
        "zero": "zero stage is 0-3",
        "recompute": "recompute is none, selective or full",
    }.get(name, name)
