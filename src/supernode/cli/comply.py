"""CLI: `comply` -- TPP, PD and each chip's status under the export/import rules in force on a date."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Optional

import typer

_LEVEL_STYLE = {"free": "green", "discouraged": "yellow", "licensed_with_conditions": "yellow",
                "licence_required": "red", "banned": "bold red", "undecided": "magenta"}


def _iv(iv, scale: float = 1.0) -> float | None:
    return iv.low * scale if iv.known else None


def chip_status_json(cat, st) -> dict[str, Any]:
    """One chip's status as JSON (snake_case keys; SI units except TPP and PD, which are the rule's own)."""
    c = st.classification
    chip = cat.chip(st.chip_id)

    def side(s):
        return None if s is None else {"level": s.level, "possible_levels": list(s.possible_levels),
                                       "binding_rule_ids": list(s.binding_rule_ids)}

    return {
        "chip_id": chip.id, "name": chip.name, "vendor": chip.vendor, "datacenter": chip.datacenter,
        "tpp": _iv(c.tpp), "tpp_at_least": c.tpp.low, "tpp_precision": c.tpp_precision,
        "tpp_arithmetic": c.tpp_arithmetic,
        "applicable_die_area_m2": c.die_area_mm2 * 1e-6 if c.die_area_mm2 is not None else None,
        "performance_density_tpp_per_mm2": _iv(c.performance_density_tpp_per_mm2),
        "performance_density_arithmetic": c.performance_density_arithmetic,
        "memory_bandwidth_bytes_per_s": _iv(c.memory_bandwidth_bytes_per_s),
        "io_bandwidth_bytes_per_s": _iv(c.io_bandwidth_bytes_per_s),
        "io_arithmetic": c.io_arithmetic,
        "unknown": dict(c.unknown),
        "verdicts": [{
            "rule_id": v.rule_id, "jurisdiction": v.jurisdiction, "title": v.title, "label": v.label,
            "level": v.level, "possible_levels": list(v.possible_levels), "reason": v.reason,
            "source_id": v.source_id, "locator": v.locator, "applies_to_buyer": v.applies_to_buyer,
            "side": v.side, "effective_date": v.effective_date, "end_date": v.end_date,
        } for v in st.verdicts],
        "export_side": side(st.export_side),
        "import_side": side(st.import_side),
        "obtainable": st.obtainable,
        "summary": st.summary,
    }


def register(app: typer.Typer) -> None:
    """Add the ``comply`` command to ``app``."""

    @app.command("comply")
    def comply(
        date: Optional[str] = typer.Option(None, "--date", help="Date YYYY-MM-DD (default: today)."),
        buyer: Optional[str] = typer.Option(None, "--buyer", help="Buyer country, ISO 3166 alpha-2 (e.g. CN)."),
        chip: Optional[list[str]] = typer.Option(None, "--chip", help="Chip id; repeatable (default: all chips)."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Per chip: TPP and PD with the arithmetic, the verdict of each rule in force on the date, and
        whether a buyer in the given country can obtain it (export side and import side)."""
        from supernode.cli import console, emit_json, fail, get_catalog
        from supernode.errors import SupernodeError
        from supernode.rules import parse_country, parse_date, rules_in_force, status

        try:
            day = parse_date(date, "--date") if date is not None else _dt.date.today()
            country = parse_country(buyer, "--buyer") if buyer is not None else None
            cat = get_catalog()
            ids = list(chip) if chip else sorted(cat.chips)
            for cid in ids:
                if cid not in cat.chips:
                    cat.chip(cid)  # raises the one-line "unknown chip id" error
            statuses = [status(cat, cid, day, country) for cid in ids]
        except SupernodeError as exc:
            fail(f"--chip: {exc}" if "unknown chip id" in str(exc) else str(exc))
            return
        if json_out:
            cited = sorted({v.source_id for st in statuses for v in st.verdicts}
                           | {r.source for r in rules_in_force(cat, day)})
            emit_json({
                "date": day.isoformat(), "buyer": country,
                "rules_in_force": [r.id for r in rules_in_force(cat, day)],
                "chips": [chip_status_json(cat, st) for st in statuses],
                "sources": {s: {"title": cat.sources[s].title, "publisher": cat.sources[s].publisher,
                                "url": cat.sources[s].url, "date": cat.sources[s].date}
                            for s in cited if s in cat.sources},
            })
            return
        _print_human(console(), statuses, day, country)


def _print_human(con, statuses, day: _dt.date, country: str | None) -> None:
    from rich.markup import escape
    from rich.table import Table

    for st in statuses:
        c = st.classification
        con.print(f"[bold]{st.chip_id}[/bold]  ({'datacenter' if c.datacenter else 'not datacenter'}, {c.vendor})")
        con.print(f"  {escape(c.tpp_arithmetic)}")
        con.print(f"  {escape(c.performance_density_arithmetic)}")
        con.print(f"  {escape(c.io_arithmetic)}")
        t = Table(show_lines=False, title=None, expand=True)
        for h in ("rule", "side" if country else "jurisdiction", "classification", "level", "reason", "source"):
            t.add_column(h, overflow="fold", no_wrap=h in ("rule", "level", "source"),
                         ratio=3 if h == "reason" else 1 if h == "classification" else None)
        for v in st.verdicts:
            side = (v.side or f"n/a for {country}") if country else v.jurisdiction
            style = _LEVEL_STYLE.get(v.level, "") if (v.applies_to_buyer or country is None) else "dim"
            t.add_row(v.rule_id, side, escape(v.label), f"[{style}]{v.level}[/{style}]" if style else v.level,
                      escape(v.reason), v.source_id)
        con.print(t)
        if country:
            head = {True: "[green]obtainable[/green]", False: "[red]not obtainable[/red]",
                    None: "[magenta]undecided[/magenta]"}[st.obtainable]
            con.print(f"  {head}: {escape(st.summary)}\n")
        else:
            con.print("  (give --buyer CC for the export/import-side verdict)\n")
    if not statuses:
        con.print(f"no chips; rules in force on {day.isoformat()} listed with --json")
