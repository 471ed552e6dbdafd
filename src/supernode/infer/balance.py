"""Expert-load imbalance over the expert-parallel ranks of a MoE layer (formula I17, docs/inference.md).

Every MoE layer ends in a dispatch/combine all-to-all that waits for its slowest expert-parallel (EP)
rank, so a serving step follows the most loaded rank, not the mean (TensorRT-LLM wide-EP blog part 1:
'the hot EP rank will delay the overall E2E execution'). With E routed experts, k per token, ep ranks
holding E/ep experts each and mu mean routed tokens per rank (token-expert pairs), the load of a rank
is its share of expert popularity times the tokens, plus the sampling spread of routing mu tokens:

    f = max_r N_r / mean_r N_r = 1 + z(ep) sqrt(c^2 ep / E + (E - k) / ((E - 1) mu))        (I17)

    z(n)  expected maximum of n independent standard normals (order statistics; z(1) = 0, z(8) = 1.42,
          z(32) = 2.07). The rank loads sum to the total, which makes them negatively correlated; the
          maximum of the deviations from their mean is that of independent ones, z(n) s (exact for
          normals), with s^2 the variance of an independent rank's load.
    c     coefficient of variation of expert popularity as seen by the placement: the sum of E/ep
          experts placed at random has relative spread c sqrt(ep/E). No balancer: the skew of the
          experts themselves; EPLB: what its placement (from past statistics, with redundant experts)
          fails to predict; ideal (simulated balanced routing in benchmarks): 0.
    (E - k)/((E - 1) mu)  relative variance of the routed tokens of a rank when mu tokens pick k
          distinct experts out of E uniformly (hypergeometric per token).

c is not a tuned number: for ``none`` and ``eplb`` it is obtained by inverting I17 at the single
published per-rank measurement in ``data/inference/expert-balance.yaml`` (DeepSeek-R1, EP32, 1,024
routed tokens per rank: (max - mean)/mean 1.564 without and 0.109 with EPLB; TensorRT-LLM wide-EP part 1,
Table 1). The same c then reproduces that table's EP36 row (0.115; not used to fit) and stays below the
Ant Group H20 EP16 bound (balance ratio > 0.70). How far off: the popularity skew is dataset dependent
(one dataset is published); placement by expert id is treated as random, and with fewer than ~2
experts per rank (ep near E) EPLB can only replicate, not pack, so f there is an extrapolation;
the SGLang and CloudMatrix prefill runs lose ~18% of throughput to their EPLB residual against
simulated perfect balance, more than the c fitted on in-sample EPLB statistics implies.

The model applies f to the slowest rank's routed-expert GEMM tokens (its weight reads follow the
experts it must touch) and to the dispatch/combine bytes it receives; at ep = 1 (experts sharded by
tensor parallelism) f = 1.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from supernode.catalog.loader import builtin_dir, parse_item
from supernode.catalog.schema import Quantity, Strict
from supernode.errors import UsageError

MODES = ("eplb", "none", "ideal")
DEFAULT_MODE = "eplb"  # what large-EP deployments run (DeepSeek, SGLang large-scale EP, CloudMatrix-Infer)
Mode = Literal["eplb", "none", "ideal"]


class Measurement(Strict):
    """One published per-rank imbalance and the conditions it was measured at."""

    imbalance: Quantity  # (max - mean) / mean of routed tokens per EP rank
    ep_ranks: Quantity
    routed_tokens_per_rank: Quantity
    experts: Quantity
    experts_per_token: Quantity


class IdealMode(Strict):
    source: str
    note: str


class Check(Measurement):
    id: str
    balancer: Mode
    relation: Literal["equal", "at_most"]


class EndToEnd(Strict):
    id: str
    better: Mode
    worse: Mode
    ratio: Quantity


class ExpertBalanceRecord(Strict):
    id: str
    none: Measurement
    eplb: Measurement
    ideal: IdealMode
    checks: list[Check]
    end_to_end: list[EndToEnd]


@lru_cache(maxsize=1)
def record() -> ExpertBalanceRecord:
    return parse_item(Path(builtin_dir()) / "inference" / "expert-balance.yaml", ExpertBalanceRecord)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UsageError(f"--expert-balance: expected one of {', '.join(MODES)}, got {mode!r}")
    return mode


# E[max of n iid N(0, 1)] = int_0^inf (1 - Phi^n) dx - int_-inf^0 Phi^n dx, each half on its own grid (the
# integrand jumps by 1 at x = 0), |x| <= 12, step 0.005: error < 1e-5
_XP = np.linspace(0.0, 12.0, 2401)
_PHI_P = 0.5 * (1.0 + np.array([math.erf(v / math.sqrt(2.0)) for v in _XP]))  # Phi(x), x >= 0
_DX = _XP[1] - _XP[0]


def _trapezoid(y: np.ndarray) -> float:
    return float(_DX * (y.sum() - 0.5 * (y[0] + y[-1])))


@lru_cache(maxsize=4096)
def _expected_max_one(n: int) -> float:
    if n <= 1:
        return 0.0
    return _trapezoid(1.0 - _PHI_P ** n) - _trapezoid((1.0 - _PHI_P) ** n)  # Phi(-x) = 1 - Phi(x)


def expected_max_normal(n) -> np.ndarray:
    """z(n): expected maximum of n independent standard normal variables (dimensionless); z(1) = 0.
    Non-integer n is rounded (it counts ranks)."""
    arr = np.asarray(n, dtype=float)
    flat = np.rint(arr).astype(np.int64).ravel()
    uniq, inv = np.unique(flat, return_inverse=True)
    vals = np.array([_expected_max_one(int(u)) for u in uniq])
    return vals[inv].reshape(arr.shape)


def _sampling_variance(routed_tokens_per_rank, experts: float, experts_per_token: float) -> np.ndarray:
    """(E - k) / ((E - 1) mu): relative variance of a rank's routed tokens under uniform random routing."""
    mu = np.maximum(np.asarray(routed_tokens_per_rank, dtype=float), 1e-9)
    return (experts - experts_per_token) / max(experts - 1.0, 1.0) / mu


def _fit_skew(m: Measurement) -> float:
    """c^2 from one measurement: invert I17 at its (ep, mu, E, k)."""
    ep, E, k = m.ep_ranks.number, m.experts.number, m.experts_per_token.number
    rel = (m.imbalance.number / float(expected_max_normal(ep))) ** 2
    c2 = (rel - float(_sampling_variance(m.routed_tokens_per_rank.number, E, k))) * E / ep
    if not c2 >= 0.0:
        raise ValueError(f"data/inference/expert-balance.yaml: imbalance {m.imbalance.number} is below the sampling "
                         f"spread alone at ep {ep:g}, mu {m.routed_tokens_per_rank.number:g}")
    return c2


def popularity_skew_squared(mode: str) -> float:
    """c^2 of I17 for a balancer mode (dimensionless); 0 for ``ideal``."""
    check_mode(mode)
    if mode == "ideal":
        return 0.0
    return _fit_skew(getattr(record(), mode))


def rank_balance_ratio(mode: str, ep, routed_tokens_per_rank, experts: float, experts_per_token: float) -> np.ndarray:
    """f of I17: the most loaded EP rank's routed tokens over the mean (>= 1; exactly 1 at ep = 1).

    ``ep``: expert-parallel ranks (per plan); ``routed_tokens_per_rank``: mu, mean token-expert pairs a
    rank receives per MoE layer and forward (tokens x k / ep over the group); ``experts``, ``experts_per_token``:
    E and k of the model."""
    c2 = popularity_skew_squared(mode)
    ep_arr = np.asarray(ep, dtype=float)
    rel = np.sqrt(c2 * ep_arr / float(experts) + _sampling_variance(routed_tokens_per_rank, float(experts),
                                                                      float(experts_per_token)))
    return np.where(ep_arr > 1.0, 1.0 + expected_max_normal(ep_arr) * rel, 1.0)


def describe(mode: str) -> str:
    """One line for the assumptions every output lists."""
    check_mode(mode)
    what = {"eplb": "EPLB with redundant experts (placement from expert statistics)",
            "none": "no expert load balancer (experts placed by id)",
            "ideal": "ideal balanced routing (as benchmarks that simulate perfect EPLB)"}[mode]
    return (f"expert load: {what}; each MoE layer waits for the most loaded EP rank, which carries f = max/mean "
            "routed tokens (I17, data/inference/expert-balance.yaml; DeepSeek-R1 statistics) on its routed-expert "
            "GEMMs and dispatch/combine")
