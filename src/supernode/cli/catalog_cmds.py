"""CLI: `catalog`, `show`, `compare`, `report`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from supernode import units

catalog_app = typer.Typer(help="List catalog items: chips, systems, models, sources.", no_args_is_help=True)


def _q_json(q) -> dict | None:
    if q is None:
        return None
    from supernode.hardware import si

    d = {k: v for k, v in q.model_dump().items() if v is not None}
    d["si_value"] = si(q)
    d["si_unit"] = units.SI_UNIT_NAME[q.dimension]
    if hasattr(q, "direction"):
        from supernode.hardware import per_chip_per_direction

        d["per_chip_per_direction_bytes_per_s"] = per_chip_per_direction(q)
    return d


def _fmt_q(q, dim: str) -> str:
    from supernode.hardware import si

    if q is None:
        return "-"
    v = si(q)
    if v is None:
        return "unknown"
    mark = "~" if q.kind in ("estimate", "assumption") else ""
    return mark + units.fmt(v, dim)


@catalog_app.command("chips")
def catalog_chips(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Table of chips: dense BF16/FP8, memory, bandwidth, scale-up, TDP."""
    from supernode.cli import console, emit_json, get_catalog
    from supernode.hardware import per_chip_per_direction, si

    cat = get_catalog()
    rows = []
    for c in sorted(cat.chips.values(), key=lambda c: (c.vendor, c.id)):
        rows.append({
            "id": c.id, "name": c.name, "vendor": c.vendor, "status": c.status,
            "dense_bf16_flop_per_s": si(c.compute_dense.get("bf16")),
            "dense_fp8_flop_per_s": si(c.compute_dense.get("fp8")),
            "dense_fp4_flop_per_s": si(c.compute_dense.get("fp4")),
            "memory_bytes": si(c.memory.capacity),
            "memory_bandwidth_bytes_per_s": si(c.memory.bandwidth),
            "scale_up_bandwidth_bytes_per_s": per_chip_per_direction(c.scale_up.bandwidth) if c.scale_up else None,
            "tdp_w": si(c.tdp),
        })
    if json_out:
        emit_json({"chips": rows})
        return
    from rich.table import Table

    t = Table(title=f"{len(rows)} chips (dense peaks; ~ = estimate; scale-up per direction)")
    for h in ("id", "vendor", "status", "BF16", "FP8", "FP4", "memory", "mem BW", "scale-up", "TDP"):
        t.add_column(h, justify="right" if h not in ("id", "vendor", "status") else "left",
                     no_wrap=h == "id")
    for c, r in zip(sorted(cat.chips.values(), key=lambda c: (c.vendor, c.id)), rows):
        t.add_row(c.id, c.vendor, c.status, _fmt_q(c.compute_dense.get("bf16"), units.RATE),
                  _fmt_q(c.compute_dense.get("fp8"), units.RATE), _fmt_q(c.compute_dense.get("fp4"), units.RATE),
                  _fmt_q(c.memory.capacity, units.BYTES), _fmt_q(c.memory.bandwidth, units.BANDWIDTH),
                  units.fmt(r["scale_up_bandwidth_bytes_per_s"], units.BANDWIDTH), _fmt_q(c.tdp, units.POWER))
    console().print(t)


@catalog_app.command("systems")
def catalog_systems(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Table of systems: chips, scale-up domain, aggregate dense FP8/BF16, memory, power."""
    from supernode.cli import console, emit_json, get_catalog
    from supernode.compare import system_figures

    cat = get_catalog()
    figs = [system_figures(cat, s) for s in sorted(cat.systems)]
    rows = []
    for f in figs:
        s = cat.systems[f.id]
        rows.append({"id": f.id, "name": f.name, "status": f.status, "vendor": s.vendor,
                     "composition": [{"chip": c, "count": n} for c, n in f.composition],
                     "scale_up_domain_chips": _domain(s),
                     **{k: v.value for k, v in f.figures.items()}})
    if json_out:
        emit_json({"systems": rows})
        return
    from rich.table import Table

    t = Table(title=f"{len(rows)} systems (dense; ~ = estimate)")
    for h in ("id", "status", "chips", "scale-up domain", "FP8", "BF16", "memory", "mem BW", "power"):
        t.add_column(h, justify="left" if h in ("id", "status") else "right", no_wrap=h == "id")
    for f, r in zip(figs, rows):
        def cell(k: str, dim: str) -> str:
            fig = f.figures[k]
            return ("~" if fig.kind == "estimate" else "") + units.fmt(fig.value, dim)

        t.add_row(f.id, f.status, units.fmt(r["chips"], units.COUNT), units.fmt(r["scale_up_domain_chips"], units.COUNT),
                  cell("dense_fp8_flop_per_s", units.RATE), cell("dense_bf16_flop_per_s", units.RATE),
                  cell("memory_bytes", units.BYTES), cell("memory_bandwidth_bytes_per_s", units.BANDWIDTH),
                  cell("power_w", units.POWER))
    console().print(t)


def _domain(system) -> float | None:
    from supernode.hardware import si

    return si(system.tiers[0].domain_size)


@catalog_app.command("models")
def catalog_models(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Table of models (the MODEL of `train` and `infer`): layers, width, attention, experts, parameters, context."""
    from supernode.cli import console, emit_json, get_catalog
    from supernode.hardware import si
    from supernode.workload import models

    ms = sorted(models(get_catalog()).values(), key=lambda m: m.id)
    rows = [{"id": m.id, "name": m.name, "layers": m.layers, "hidden": m.hidden, "heads": m.heads,
             "kv_heads": m.kv_heads, "attention": m.attention,
             "routed_experts": m.moe.routed_experts if m.moe else None,
             "active_experts": m.moe.active_experts if m.moe else None,
             "shared_experts": m.moe.shared_experts if m.moe else None,
             "params": si(m.params), "active_params": si(m.active_params) if m.active_params else None,
             "max_seq_len": m.max_seq_len if "max_seq_len" in m.model_fields_set else None} for m in ms]
    if json_out:
        emit_json({"models": rows})
        return
    from rich.table import Table

    t = Table(title=f"{len(rows)} models (parameters as published, active per token for MoE; experts: routed / "
                    "active per token + shared; context: max_seq_len)")
    for h in ("id", "layers", "hidden", "heads (kv)", "attention", "experts", "params", "active", "context"):
        t.add_column(h, justify="left" if h in ("id", "attention", "experts") else "right", no_wrap=h == "id")
    for r in rows:
        experts = (f"{r['routed_experts']} / {r['active_experts']}" + (f" + {r['shared_experts']}"
                                                                      if r["shared_experts"] else "")
                   if r["routed_experts"] else "-")
        t.add_row(r["id"], str(r["layers"]), f"{r['hidden']:,}", f"{r['heads']} ({r['kv_heads']})", r["attention"],
                  experts, _billions(r["params"]), _billions(r["active_params"]),
                  f"{r['max_seq_len']:,}" if r["max_seq_len"] else "-")
    console().print(t)


def _billions(count: float | None) -> str:
    return "-" if count is None else f"{count / 1e9:,.4g} B"


@catalog_app.command("sources")
def catalog_sources(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Table of sources: id, publisher, date, confidence, title."""
    from supernode.cli import console, emit_json, get_catalog

    cat = get_catalog()
    srcs = sorted(cat.sources.values(), key=lambda s: s.id)
    if json_out:
        emit_json({"sources": [s.model_dump() for s in srcs]})
        return
    from rich.table import Table

    t = Table(title=f"{len(srcs)} sources")
    for h in ("id", "publisher", "date", "grade", "title"):
        t.add_column(h, overflow="fold")
    for s in srcs:
        t.add_row(s.id, s.publisher, s.date, s.confidence, s.title)
    console().print(t)


def show(item_id: str = typer.Argument(..., help="A chip, system or source id."),
         json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every field of one item with its value, unit, kind and source."""
    from supernode.catalog.loader import iter_quantities
    from supernode.cli import console, emit_json, get_catalog
    from supernode.errors import UsageError

    cat = get_catalog()
    item = cat.chips.get(item_id) or cat.systems.get(item_id) or cat.sources.get(item_id)
    if item is None:
        for kind, table in cat.extra.items():
            if item_id in table:
                item = table[item_id]
    if item is None:
        raise UsageError(f"unknown id {item_id!r}: not a chip, system or source (see `supernode catalog chips`)")
    kind = type(item).__name__.lower()
    if json_out:
        out = item.model_dump(mode="json")
        out["kind"] = kind
        out["numbers"] = {path: _q_json(q) for path, q in iter_quantities(item)}
        emit_json(out)
        return
    from rich.table import Table

    c = console()
    c.print(f"[bold]{getattr(item, 'name', None) or getattr(item, 'title', '')}[/bold]  ({kind} {item_id})")
    t = Table()
    for h in ("field", "value", "unit", "SI", "kind", "source", "note"):
        t.add_column(h, overflow="fold")
    for path, q in iter_quantities(item):
        val = q.formula + f" = {q.number:g}" if q.formula else ("unknown" if q.value is None else f"{q.value:g}")
        from supernode.hardware import si

        v = si(q)
        extra = ""
        if hasattr(q, "direction"):
            extra = f" ({q.direction}, per {q.per}{f' x {q.links}' if q.links else ''})"
        t.add_row(path, val, q.unit + extra, units.fmt(v, q.dimension) if v is not None else "-",
                  q.kind or "unknown", (q.source or "") + (f" [{q.locator}]" if q.locator else ""),
                  q.note or q.reason or "")
    c.print(t)
    other = {k: v for k, v in item.model_dump().items() if not isinstance(v, (dict, list)) and v is not None}
    for k, v in other.items():
        c.print(f"  {k}: {v}")


def compare_cmd(
    ids: list[str] = typer.Argument(..., help="Two or more system ids, or chip ids as CHIP:N (generic cluster)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON: systems (per-system figures) and ratios."),
    allowed_for: Optional[str] = typer.Option(None, "--allowed-for", help="Buyer country (e.g. CN): keep only "
                                              "systems whose chips that buyer can obtain on --date."),
    date: Optional[str] = typer.Option(None, "--date", help="Date for --allowed-for (YYYY-MM-DD; default today)."),
) -> None:
    """Aggregate dense compute per precision, memory, bandwidth, power, and ratios to the first."""
    from supernode.cli import emit_json, get_catalog
    from supernode.compare import compare
    from supernode.report import compare_table

    cat = get_catalog()
    excluded: dict[str, str] = {}
    if allowed_for:
        from supernode.planning import filter_allowed

        ids, excluded = filter_allowed(cat, ids, allowed_for, date)
        if len(ids) < 2:
            from supernode.errors import UsageError

            why = "; ".join(f"{k}: {v}" for k, v in excluded.items())
            raise UsageError(f"--allowed-for {allowed_for}: fewer than two systems left to compare "
                             f"(need at least two); excluded {why}")
    result = compare(cat, ids)
    if json_out:
        out = result.to_json()
        if allowed_for:
            out["allowed_for"] = {"country": allowed_for, "date": date, "excluded": excluded}
        emit_json(out)
        return
    from supernode.cli import console

    c = console()
    for k, why in excluded.items():
        c.print(f"[yellow]excluded {k}: {why}[/yellow]")
    c.print(compare_table(result))


def report_cmd(
    out: Optional[Path] = typer.Option(
        None, "--out", help="Write to FILE: markdown (.md, .markdown, .txt) or HTML (.html, .htm); default: print "
                            "markdown."),
) -> None:
    """The seed comparisons (Sept 2025 headline claims) in one document, with provenance."""
    from supernode.cli import get_catalog
    from supernode.report import build_report, write_report

    cat = get_catalog()
    text_md = build_report(cat)
    if out is None:
        typer.echo(text_md)
    else:
        write_report(text_md, out)
        typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(catalog_app, name="catalog")
    app.command("show")(show)
    app.command("compare")(compare_cmd)
    app.command("report")(report_cmd)
