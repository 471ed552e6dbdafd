"""Human output: comparison tables and the report document (markdown, or HTML from it).

Formatting only: every number comes from :mod:`supernode.compare` and the other model modules.
"""

from __future__ import annotations

import html
import os
import tempfile
from pathlib import Path

from supernode import units
from supernode.catalog.loader import Catalog
from supernode.compare import Comparison, metric_dimension

KIND_MARK = {"spec": "", "paper": "", "measured": "", "derived": "=", "estimate": "~", "assumption": "~",
             "unknown": "", "unsupported": ""}
LEGEND = "= derived (chip figure x count), ~ estimate or assumption, unmarked = vendor/paper figure"

ROWS = [
    ("chips", "chips"),
    ("dense_fp4_flop_per_s", "dense FP4"),
    ("dense_fp8_flop_per_s", "dense FP8"),
    ("dense_bf16_flop_per_s", "dense BF16"),
    ("dense_fp32_flop_per_s", "dense FP32"),
    ("memory_bytes", "memory capacity"),
    ("memory_bandwidth_bytes_per_s", "memory bandwidth"),
    ("scale_up_bandwidth_bytes_per_s", "scale-up bandwidth (per direction)"),
    ("scale_out_bandwidth_bytes_per_s", "scale-out bandwidth (per direction)"),
    ("power_w", "power"),
    ("price_usd", "price"),
]


def _cell(comp: Comparison, i: int, key: str) -> str:
    f = comp.systems[i].figures.get(key)
    if f is None or f.value is None:
        return "unsupported" if f is not None and f.kind == "unsupported" else "unknown"
    return KIND_MARK.get(f.kind, "") + units.fmt(f.value, metric_dimension(key))


def _ratio(comp: Comparison, i: int, key: str) -> str:
    if i == 0:
        return ""
    r = comp.ratios.get(key, [None] * len(comp.systems))[i - 1]
    return "" if r is None else f"{r:.2f}x"


def compare_rows(comp: Comparison) -> tuple[list[str], list[list[str]]]:
    head = ["metric"]
    for i, s in enumerate(comp.systems):
        head.append(s.id)
        if i:
            head.append(f"{s.id} / {comp.systems[0].id}")
    rows = []
    for key, label in ROWS:
        row = [label]
        for i in range(len(comp.systems)):
            row.append(_cell(comp, i, key))
            if i:
                row.append(_ratio(comp, i, key))
        rows.append(row)
    return head, rows


def compare_table(comp: Comparison):
    from rich.table import Table

    head, rows = compare_rows(comp)
    t = Table(title="dense peaks; " + LEGEND, title_justify="left")
    for i, h in enumerate(head):
        t.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*r)
    return t


def compare_markdown(comp: Comparison) -> str:
    head, rows = compare_rows(comp)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    notes = []
    for s in comp.systems:
        for a in s.assumptions:
            notes.append(f"- {s.id}: assumption: {a}")
    return "\n".join(lines + ([""] + notes if notes else []))


def claims_markdown(cat: Catalog) -> str:
    from supernode.claims import check_claim, claims

    out = []
    for claim in claims(cat):
        checks = check_claim(cat, claim)
        out.append(f"### {claim.title}\n")
        out.append(f"*Claimed by {claim.claimant}, {claim.date}; {claim.subject} against {claim.baseline}.*\n")
        out.append("| metric | claimed | computed here | error | verdict | source |")
        out.append("|---|---|---|---|---|---|")
        for ch in checks:
            src = next(m.claimed for m in claim.metrics if m.metric == ch.metric)
            comp = f"{ch.computed_ratio:.2f}x" if ch.computed_ratio is not None else "unknown"
            err = f"{100 * ch.error_fraction:+.1f}%" if ch.error_fraction is not None else ""
            verdict = "reproduced" if ch.holds else "NOT reproduced"
            out.append(f"| {ch.metric} | {ch.claimed_ratio:g}x | {comp} | {err} | {verdict} | "
                       f"{src.source}{' (' + src.locator + ')' if src.locator else ''} |")
        out.append("")
        out.append(claim.explanation + "\n")
        out.append(compare_markdown(checks[0].comparison) + "\n")
        prov = []
        for s in checks[0].comparison.systems:
            for key in ("dense_fp8_flop_per_s", "dense_bf16_flop_per_s", "power_w"):
                f = s.figures[key]
                if f.value is not None:
                    prov.append(f"- {s.id} {key}: {f.kind}; {f.how}; sources: {', '.join(f.sources) or '-'}")
        out.append("Provenance:\n\n" + "\n".join(prov) + "\n")
    return "\n".join(out)


def build_report(cat: Catalog) -> str:
    """The seed comparisons as one markdown document."""
    parts = [
        "# supernode report: what the September 2025 headline claims really compare\n",
        f"Figures are dense peaks in SI-prefixed units. {LEGEND}.\n",
        "## Headline claims\n",
        claims_markdown(cat),
    ]
    extra = _extra_sections(cat)
    parts += extra
    parts.append("## Sources\n")
    used = sorted(cat.sources.values(), key=lambda s: s.id)
    parts += [f"- `{s.id}`: {s.title}. {s.publisher}, {s.date}. {s.url}"
              f"{' (' + s.locator + ')' if s.locator else ''} [grade {s.confidence}]" for s in used]
    return "\n".join(parts) + "\n"


REPORT_SECTIONS: list = []  # callables(cat) -> markdown, added by other modules (rules, training, inference)


def _extra_sections(cat: Catalog) -> list[str]:
    return [fn(cat) for fn in REPORT_SECTIONS]


def markdown_to_html(md: str) -> str:
    """Minimal, dependency-free markdown -> HTML for headings, tables, lists and paragraphs."""
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>supernode report</title>",
           "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:first-child{text-align:left}</style>",
           "</head><body>"]
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        ln = lines[i]
        if ln.startswith("#"):
            level = len(ln) - len(ln.lstrip("#"))
            out.append(f"<h{level}>{html.escape(ln[level:].strip())}</h{level}>")
        elif ln.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip("|").split("|")])
                i += 1
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in rows[0]) + "</tr>")
            for r in rows[2:]:
                out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>")
            out.append("</table>")
            continue
        elif ln.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{html.escape(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif ln.strip():
            out.append(f"<p>{html.escape(ln.strip('*'))}</p>")
        i += 1
    out.append("</body></html>")
    return "\n".join(out)


_HTML_SUFFIXES = (".html", ".htm")
_MARKDOWN_SUFFIXES = (".md", ".markdown", ".txt")


def write_report(md: str, path: Path) -> None:
    """Write markdown (.md, .markdown, .txt) or HTML (.html, .htm); atomically (nothing half-written).

    Any other suffix (.pdf, .json, none) is an error rather than a markdown file under a misleading name."""
    from supernode.errors import UsageError

    suffix = path.suffix.lower()
    if suffix not in _HTML_SUFFIXES + _MARKDOWN_SUFFIXES:
        raise UsageError(f"--out: expected a file name ending in .md, .markdown or .txt (markdown) or .html / .htm "
                         f"(HTML), got {str(path)!r}")
    text = markdown_to_html(md) if suffix in _HTML_SUFFIXES else md
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"--out: directory {parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
