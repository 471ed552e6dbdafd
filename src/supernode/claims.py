"""Published headline claims (data/claims/*.yaml) checked against the catalog.

A claim says: system ``subject`` has ``claimed`` x the ``metric`` of system ``baseline``
(e.g. Atlas 950 SuperPoD = 6.7x the dense FP8 of Vera Rubin NVL144). :func:`check_claim`
recomputes the ratio from the catalog and says whether it lies within the tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, model_validator

from supernode.catalog import loader
from supernode.catalog.schema import Quantity, Strict
from supernode.compare import Comparison, compare


class ClaimMetric(Strict):
    metric: str  # a compare metric key, e.g. dense_fp8_flop_per_s, or ..._per_chip
    claimed: Quantity  # unit: ratio
    tolerance_fraction: float = Field(gt=0, lt=1)


class Claim(Strict):
    id: str
    title: str
    claimant: str
    date: str
    baseline: str
    subject: str
    metrics: list[ClaimMetric] = Field(min_length=1)
    explanation: str

    @model_validator(mode="after")
    def _ratio_units(self) -> "Claim":
        for m in self.metrics:
            if m.claimed.unit != "ratio":
                raise ValueError(f"metrics.{m.metric}.claimed: unit must be ratio")
        return self


loader.EXTRA_KINDS["claims"] = Claim


def _check_claim_refs(cat: loader.Catalog) -> None:
    for cid, claim in cat.extra.get("claims", {}).items():
        for ref in (claim.baseline, claim.subject):
            name = ref.partition(":")[0]
            if name not in cat.systems and name not in cat.chips:
                raise loader.CatalogError(f"{cat.paths[('claims', cid)]}: baseline/subject: unknown system id {ref!r}")


loader.CHECKERS.append(_check_claim_refs)


@dataclass(frozen=True)
class ClaimCheck:
    claim: Claim
    metric: str
    claimed_ratio: float
    computed_ratio: float | None
    tolerance_fraction: float
    comparison: Comparison

    @property
    def error_fraction(self) -> float | None:
        if self.computed_ratio is None:
            return None
        return self.computed_ratio / self.claimed_ratio - 1.0

    @property
    def holds(self) -> bool:
        e = self.error_fraction
        return e is not None and abs(e) <= self.tolerance_fraction


def claims(cat: loader.Catalog) -> list[Claim]:
    return sorted(cat.extra.get("claims", {}).values(), key=lambda c: c.id)


def check_claim(cat: loader.Catalog, claim: Claim) -> list[ClaimCheck]:
    comp = compare(cat, [claim.baseline, claim.subject])
    out = []
    for m in claim.metrics:
        ratio = comp.ratios.get(m.metric, [None])[0]
        out.append(ClaimCheck(claim, m.metric, m.claimed.number, ratio, m.tolerance_fraction, comp))
    return out
