"""Planning with only the hardware a buyer can obtain: ``--allowed-for COUNTRY --date D``.

A thin layer over :func:`supernode.rules.allowed_chips`: a system is allowed when every chip in
its composition is; anything excluded is reported with the rule behind it.
"""

from __future__ import annotations

import datetime as dt

from supernode.catalog.loader import Catalog
from supernode.errors import UsageError


def parse_date(text: str | None, param: str = "--date") -> dt.date:
    if text is None:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{param}: expected a date as YYYY-MM-DD, got {text!r}") from None


def chips_of(cat: Catalog, ref: str) -> list[str]:
    name = ref.partition(":")[0]
    if name in cat.systems:
        return sorted({m.chip for m in cat.systems[name].composition})
    if name in cat.chips:
        return [name]
    cat.system(name)  # one-line UsageError naming the id
    return []


def filter_allowed(cat: Catalog, refs: list[str], country: str, date: str | None) -> tuple[list[str], dict[str, str]]:
    """Keep the refs (system or chip ids) a buyer in ``country`` can obtain on ``date``."""
    from supernode.rules import allowed_chips

    day = parse_date(date)
    allowed, excluded_chips = allowed_chips(cat, country.upper(), day)
    keep: list[str] = []
    excluded: dict[str, str] = {}
    for ref in refs:
        bad = [c for c in chips_of(cat, ref) if c not in allowed]
        if bad:
            excluded[ref] = "; ".join(f"{c}: {excluded_chips.get(c, 'not obtainable')}" for c in bad)
        else:
            keep.append(ref)
    return keep, excluded


def require_allowed(cat: Catalog, on: str, country: str | None, date: str | None) -> list[str]:
    """For train/infer: raise a one-line UsageError if ``on`` is not obtainable; return notes."""
    if not country:
        return []
    keep, excluded = filter_allowed(cat, [on], country, date)
    if not keep:
        raise UsageError(f"--allowed-for {country}: {on} is excluded on {parse_date(date)}: {excluded[on]}")
    return [f"{on} is obtainable by a buyer in {country.upper()} on {parse_date(date)}"]
