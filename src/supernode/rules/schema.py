"""Schema of a rule file (``data/rules/<id>.yaml``, one dated rule per file).

A rule is a dated, sourced legal or administrative measure (an export-control rule, an
"is-informed" letter, an import guidance) of one ``jurisdiction``. It is in force from
``effective_date`` (inclusive) until ``end_date`` (exclusive; the day it was superseded or
rescinded). It applies to buyers in ``buyers`` (ISO 3166 alpha-2 codes, ``"*"`` = everywhere)
minus ``buyers_except``, and to chips matching ``scope``. Its ``clauses`` are tried in order;
the first whose predicate holds gives the verdict ``level``; if none holds, ``default_level``.

A predicate is an atom ``{attr, op, value[, unit]}`` or ``{all: [...]}`` / ``{any: [...]}``.
Attributes (see :mod:`supernode.rules.classify`): ``tpp`` (TPP, dimensionless),
``performance_density`` (TPP per mm2 of applicable die area, the unit the rule text uses),
``memory_bandwidth``, ``io_bandwidth``, ``memory_plus_io_bandwidth`` (thresholds with a
bandwidth ``unit`` such as ``GB/s``, compared in bytes/s), ``datacenter`` (bool), ``chip_id`` and
``vendor`` (strings, compared case-insensitively; a listed name also matches a longer name that
starts with it and a space, so ``Intel`` matches ``Intel (Habana Labs)``). ``op: unknown`` holds when the attribute has
not been published.
"""

from __future__ import annotations

import datetime as _dt
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from supernode import units
from supernode.rules import countries

Level = Literal["free", "discouraged", "licensed_with_conditions", "licence_required", "banned"]
LEVELS: tuple[str, ...] = Level.__args__  # type: ignore[attr-defined]  # least to most restrictive
UNDECIDED = "undecided"
# a buyer can obtain the chip (perhaps at a cost, or against advice) at these levels
OBTAINABLE_LEVELS = frozenset({"free", "discouraged", "licensed_with_conditions"})

NUMERIC_ATTRS = ("tpp", "performance_density", "memory_bandwidth", "io_bandwidth", "memory_plus_io_bandwidth")
BANDWIDTH_ATTRS = ("memory_bandwidth", "io_bandwidth", "memory_plus_io_bandwidth")
STRING_ATTRS = ("chip_id", "vendor")
Attr = Literal["tpp", "performance_density", "memory_bandwidth", "io_bandwidth", "memory_plus_io_bandwidth",
               "datacenter", "chip_id", "vendor"]
Op = Literal[">=", ">", "<", "<=", "==", "in", "not_in", "unknown"]
# the units a numeric threshold may state (TPP and PD have the rule text's own units)
_DIMENSIONLESS_UNITS = {"tpp": "TPP", "performance_density": "TPP/mm2"}


def level_rank(level: str) -> int:
    """0 (free) .. 4 (banned): how restrictive a level is."""
    return LEVELS.index(level)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Atom(Strict):
    """One comparison of a chip attribute with a threshold (or a list of names)."""

    attr: Attr
    op: Op
    value: float | bool | str | list[str] | None = None
    unit: str | None = None

    @model_validator(mode="after")
    def _check(self) -> "Atom":
        a, op, v = self.attr, self.op, self.value
        if op == "unknown":
            if v is not None or self.unit is not None:
                raise ValueError("op: unknown takes no value or unit")
            return self
        if a in NUMERIC_ATTRS:
            if op not in (">=", ">", "<", "<="):
                raise ValueError(f"attr {a}: op must be one of >=, >, <, <=")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"attr {a}: value must be a number")
            if a in BANDWIDTH_ATTRS:
                if self.unit is None or self.unit not in units.UNITS or units.dimension(self.unit) != units.BANDWIDTH:
                    raise ValueError(f"attr {a}: unit must be a bandwidth unit such as GB/s")
            elif self.unit not in (None, _DIMENSIONLESS_UNITS[a]):
                raise ValueError(f"attr {a}: unit must be {_DIMENSIONLESS_UNITS[a]!r} or omitted")
        elif a == "datacenter":
            if op != "==" or not isinstance(v, bool):
                raise ValueError("attr datacenter: use op '==' with true or false")
        else:  # chip_id, vendor
            if op in ("in", "not_in"):
                if not isinstance(v, list) or not v:
                    raise ValueError(f"attr {a}: op {op} needs a non-empty list")
            elif op == "==":
                if not isinstance(v, str):
                    raise ValueError(f"attr {a}: op '==' needs a string")
            else:
                raise ValueError(f"attr {a}: op must be ==, in or not_in")
        return self

    @property
    def threshold_si(self) -> float:
        """The numeric threshold in the attribute's internal unit (bytes/s for bandwidths)."""
        assert isinstance(self.value, (int, float))
        return units.to_si(float(self.value), self.unit) if self.attr in BANDWIDTH_ATTRS else float(self.value)


class AllOf(Strict):
    all: list["Predicate"] = Field(min_length=1)


class AnyOf(Strict):
    any: list["Predicate"] = Field(min_length=1)


def _predicate_kind(v: Any) -> str:
    if isinstance(v, dict):
        return "all" if "all" in v else "any" if "any" in v else "atom"
    return {AllOf: "all", AnyOf: "any"}.get(type(v), "atom")


Predicate = Annotated[
    Union[Annotated[Atom, Tag("atom")], Annotated[AllOf, Tag("all")], Annotated[AnyOf, Tag("any")]],
    Discriminator(_predicate_kind),
]
AllOf.model_rebuild()
AnyOf.model_rebuild()


class Clause(Strict):
    """A classification (``label``) with its predicate and verdict level.

    ``note`` says what the level means for the buyer (licence policy, exception, condition);
    ``source``/``locator`` override the rule's when the clause rests on a different document.
    """

    label: str
    when: Predicate
    level: Level
    note: str
    source: str | None = None
    locator: str | None = None


class SourceRef(Strict):
    """A further document a rule draws on (a correction, an explainer)."""

    id: str
    locator: str


def _country(v: str) -> str:
    if v != "*" and not countries.is_assigned(v):
        raise ValueError(f"country {v!r}: use an assigned ISO 3166-1 alpha-2 code such as CN, or '*'")
    return v


class Rule(Strict):
    """One dated, sourced rule (see the module docstring)."""

    id: str
    jurisdiction: str
    title: str
    instrument: str
    effective_date: _dt.date
    compliance_date: _dt.date | None = None
    end_date: _dt.date | None = None
    superseded_by: str | None = None
    end_note: str | None = None
    end_source: str | None = None
    source: str
    locator: str
    sources: list[SourceRef] = []  # further documents (corrections, explainers)
    buyers: list[str] = Field(min_length=1)
    buyers_except: list[str] = []
    buyers_note: str | None = None
    scope: Predicate | None = None
    scope_note: str | None = None
    clauses: list[Clause] = []
    default_level: Level = "free"
    default_label: str = "not caught"
    default_note: str
    note: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not v or not all(c.isalnum() or c in "-." for c in v) or v != v.lower():
            raise ValueError("id must be lower-case letters, digits, '-' or '.'")
        return v

    @field_validator("jurisdiction")
    @classmethod
    def _jurisdiction(cls, v: str) -> str:
        if v == "*":
            raise ValueError("jurisdiction must be one country code")
        return _country(v)

    @field_validator("buyers", "buyers_except")
    @classmethod
    def _buyers(cls, v: list[str]) -> list[str]:
        return [_country(c) for c in v]

    @field_validator("effective_date", "compliance_date", "end_date", mode="before")
    @classmethod
    def _iso_date(cls, v: object) -> object:
        if isinstance(v, str):
            try:
                return _dt.date.fromisoformat(v)
            except ValueError:
                raise ValueError(f"{v!r} is not a date YYYY-MM-DD") from None
        return v

    @model_validator(mode="after")
    def _dates(self) -> "Rule":
        if self.end_date is not None and self.end_date <= self.effective_date:
            raise ValueError("end_date must be after effective_date")
        if self.compliance_date is not None and self.compliance_date < self.effective_date:
            raise ValueError("compliance_date must not be before effective_date")
        if (self.superseded_by or self.end_note) and self.end_date is None:
            raise ValueError("superseded_by / end_note need an end_date")
        if self.end_date is not None and not (self.superseded_by or self.end_note):
            raise ValueError("end_date needs superseded_by or end_note (why it ended)")
        if self.scope is not None and not self.scope_note:
            raise ValueError("scope needs a scope_note (why chips outside it are not subject)")
        return self

    def in_force(self, date: _dt.date) -> bool:
        """effective_date <= date < end_date."""
        return self.effective_date <= date and (self.end_date is None or date < self.end_date)

    def covers_buyer(self, country: str) -> bool:
        return ("*" in self.buyers or country in self.buyers) and country not in self.buyers_except

    def source_ids(self) -> list[tuple[str, str]]:
        """(field, source id) for every source this rule cites."""
        out = [("source", self.source)]
        out += [(f"clauses.{i}.source", c.source) for i, c in enumerate(self.clauses) if c.source]
        out += [(f"sources.{i}.id", ref.id) for i, ref in enumerate(self.sources)]
        if self.end_source:
            out.append(("end_source", self.end_source))
        return out


def iter_atoms(pred: Any):
    """Every :class:`Atom` inside a predicate."""
    if isinstance(pred, Atom):
        yield pred
    elif isinstance(pred, AllOf):
        for p in pred.all:
            yield from iter_atoms(p)
    elif isinstance(pred, AnyOf):
        for p in pred.any:
            yield from iter_atoms(p)
