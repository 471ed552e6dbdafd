"""Which rules are in force on a date, what each says about a chip, and whether a buyer can obtain it.

For a buyer country B, a rule covering B is on the *export side* when its jurisdiction is not B
(e.g. US rules for a Chinese buyer) and on the *import side* when it is B (China's own measures).
Each side's level is the most restrictive level of its rules (order: free < discouraged <
licensed_with_conditions < licence_required < banned); an undecided rule makes the side
undecided unless every level it could take is already outranked. The chip is obtainable when
both sides are free, discouraged or licensed with conditions.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from itertools import product
from typing import Iterable, NamedTuple

from supernode.catalog.loader import Catalog
from supernode.errors import UsageError
from supernode.rules import countries
from supernode.rules.classify import Classification, classify
from supernode.rules.evaluate import RuleVerdict, evaluate_rule
from supernode.rules.schema import LEVELS, OBTAINABLE_LEVELS, UNDECIDED, Rule, level_rank


@dataclass(frozen=True)
class Verdict:
    """One rule in force on the date, and what it says about the chip (for this buyer)."""

    rule_id: str
    jurisdiction: str
    title: str
    label: str
    level: str  # free | discouraged | licensed_with_conditions | licence_required | banned | undecided
    possible_levels: tuple[str, ...]
    reason: str
    source_id: str
    locator: str
    applies_to_buyer: bool | None  # None when no buyer was given
    side: str | None  # "export" | "import" | None
    effective_date: str
    end_date: str | None


@dataclass(frozen=True)
class SideStatus:
    """The combined level of one side (export or import) and the rules that bind it."""

    level: str
    possible_levels: tuple[str, ...]
    binding_rule_ids: tuple[str, ...]


@dataclass(frozen=True)
class ChipStatus:
    chip_id: str
    date: str
    buyer: str | None
    classification: Classification
    verdicts: tuple[Verdict, ...]
    export_side: SideStatus | None
    import_side: SideStatus | None
    obtainable: bool | None  # None: undecided, or no buyer given
    summary: str


def parse_date(value: str | _dt.date, parameter: str = "date") -> _dt.date:
    """ISO date, or a one-line :class:`UsageError` naming the parameter."""
    if isinstance(value, _dt.date):
        return value
    try:
        return _dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise UsageError(f"{parameter}: expected a date YYYY-MM-DD, got {value!r}") from None


def parse_country(value: str, parameter: str = "buyer") -> str:
    """ISO 3166 alpha-2 code (upper-cased), or a one-line :class:`UsageError`."""
    code = value.strip().upper()
    if len(code) != 2 or not code.isalpha():
        raise UsageError(f"{parameter}: expected an ISO 3166 two-letter country code such as CN, got {value!r}")
    if not countries.is_assigned(code):
        raise UsageError(f"{parameter}: {value!r} is not an assigned ISO 3166-1 alpha-2 country code "
                         f"(user-assigned codes such as XX or ZZ name no country)")
    return code


def rules(catalog: Catalog) -> dict[str, Rule]:
    """The catalog's rules by id."""
    return catalog.extra.get("rules", {})


def rules_in_force(catalog: Catalog, date: _dt.date) -> list[Rule]:
    """Rules with effective_date <= date < end_date, by jurisdiction then effective date."""
    return sorted((r for r in rules(catalog).values() if r.in_force(date)),
                  key=lambda r: (r.jurisdiction != "US", r.jurisdiction, r.effective_date, r.id))


def combine(levels: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    """Possible levels of the most restrictive of several verdicts (each given as its possible levels)."""
    acc = {"free"}
    for options in levels:
        acc = {max(a, b, key=level_rank) for a, b in product(acc, options)}
    return tuple(sorted(acc, key=level_rank))


def _side(verdicts: list[Verdict]) -> SideStatus:
    possible = combine(v.possible_levels for v in verdicts)
    level = possible[0] if len(possible) == 1 else UNDECIDED
    binding = tuple(v.rule_id for v in verdicts
                    if (v.level == level and level != "free") or (level == UNDECIDED and v.level == UNDECIDED))
    return SideStatus(level, possible, binding)


def _obtainable(possible: tuple[str, ...]) -> bool | None:
    ok = {p in OBTAINABLE_LEVELS for p in possible}
    return ok.pop() if len(ok) == 1 else None


def status(catalog: Catalog, chip_id: str, date: str | _dt.date, buyer: str | None = None) -> ChipStatus:
    """Classification of ``chip_id`` and its status under every rule in force on ``date``.

    With ``buyer`` (ISO alpha-2), also the export-side and import-side levels and whether a buyer
    in that country can obtain it. Unknown chip ids, malformed dates or countries raise a one-line
    :class:`UsageError`.
    """
    day = parse_date(date)
    country = parse_country(buyer) if buyer is not None else None
    chip = catalog.chip(chip_id)
    c = classify(chip)
    verdicts: list[Verdict] = []
    for rule in rules_in_force(catalog, day):
        rv: RuleVerdict = evaluate_rule(rule, c, day)
        applies = rule.covers_buyer(country) if country is not None else None
        side = None
        if applies:
            side = "import" if rule.jurisdiction == country else "export"
        verdicts.append(Verdict(
            rule_id=rule.id, jurisdiction=rule.jurisdiction, title=rule.title, label=rv.label, level=rv.level,
            possible_levels=rv.possible_levels, reason=rv.reason, source_id=rv.source_id, locator=rv.locator,
            applies_to_buyer=applies, side=side, effective_date=rule.effective_date.isoformat(),
            end_date=rule.end_date.isoformat() if rule.end_date else None))
    if country is None:
        return ChipStatus(chip.id, day.isoformat(), None, c, tuple(verdicts), None, None, None,
                          "no buyer given: per-rule classification only")
    exp = _side([v for v in verdicts if v.side == "export"])
    imp = _side([v for v in verdicts if v.side == "import"])
    obtainable = _obtainable(combine([exp.possible_levels, imp.possible_levels]))
    return ChipStatus(chip.id, day.isoformat(), country, c, tuple(verdicts), exp, imp, obtainable,
                      _summary(chip.id, country, day, exp, imp, obtainable, verdicts))


def _summary(chip_id: str, country: str, day: _dt.date, exp: SideStatus, imp: SideStatus,
             obtainable: bool | None, verdicts: list[Verdict]) -> str:
    by_id = {v.rule_id: v for v in verdicts}

    def why(side: SideStatus) -> str:
        if not side.binding_rule_ids:
            return side.level
        parts = [f"{rid} ({by_id[rid].label}) [{by_id[rid].source_id}]" for rid in side.binding_rule_ids]
        return f"{side.level} under {', '.join(parts)}"

    head = {True: "obtainable", False: "not obtainable", None: "undecided"}[obtainable]
    return f"{chip_id} for a buyer in {country} on {day.isoformat()}: {head}; export side {why(exp)}; " \
           f"import side {why(imp)}"


class Allowed(NamedTuple):
    allowed: list[str]
    excluded: dict[str, str]


def allowed_chips(catalog: Catalog, country: str, date: str | _dt.date, *,
                  chip_ids: Iterable[str] | None = None, include_undecided: bool = False) -> Allowed:
    """Chips a buyer in ``country`` can obtain on ``date``, and why each other one is excluded.

    Obtainable = both sides free, discouraged or licensed with conditions (the caveat is in
    :func:`status`). An undecided chip (an attribute a rule needs is unpublished) is excluded
    unless ``include_undecided``; its reason says which attribute is missing.
    """
    day = parse_date(date)
    country = parse_country(country, "--allowed-for")
    ids = list(chip_ids) if chip_ids is not None else sorted(catalog.chips)
    allowed: list[str] = []
    excluded: dict[str, str] = {}
    for chip_id in ids:
        st = status(catalog, chip_id, day, country)
        if st.obtainable or (st.obtainable is None and include_undecided):
            allowed.append(chip_id)
            continue
        reasons = [f"{v.rule_id} [{v.source_id}]: {v.level}{'' if v.label == v.level else f' ({v.label})'}: "
                   f"{v.reason.removeprefix('undecided: ')}"
                   for v in st.verdicts if v.side is not None
                   and (v.level == UNDECIDED or (v.level in LEVELS and v.level not in OBTAINABLE_LEVELS))]
        head = "undecided" if st.obtainable is None else "not obtainable"
        excluded[chip_id] = f"{head} for {country} on {day.isoformat()}: " + " | ".join(reasons)
    return Allowed(allowed, excluded)


def allowed_systems(catalog: Catalog, country: str, date: str | _dt.date, *,
                    system_ids: Iterable[str] | None = None, include_undecided: bool = False) -> Allowed:
    """Systems whose every chip a buyer in ``country`` can obtain on ``date`` (see :func:`allowed_chips`)."""
    ids = list(system_ids) if system_ids is not None else sorted(catalog.systems)
    members = sorted({m.chip for sid in ids for m in catalog.system(sid).composition})
    chips = allowed_chips(catalog, country, date, chip_ids=members, include_undecided=include_undecided)
    allowed: list[str] = []
    excluded: dict[str, str] = {}
    for sid in ids:
        bad = [m.chip for m in catalog.system(sid).composition if m.chip in chips.excluded]
        if bad:
            excluded[sid] = "; ".join(f"chip {b}: {chips.excluded[b]}" for b in bad)
        else:
            allowed.append(sid)
    return Allowed(allowed, excluded)
