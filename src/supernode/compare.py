"""System-versus-system comparison of aggregate figures, with provenance.

For each system and metric the figure is either the vendor's own system-level number
(``aggregate`` in the system file; kind as recorded, usually ``spec``) or chip figure x chip
count summed over the composition (kind ``derived``; ``estimate`` when any input is an
estimate). A chip id can be compared too: a generic cluster of that chip (count given as
``ID:N``, default the chip's standard node).

Metric keys are stable (``--json``): chips, dense_<precision>_flop_per_s, memory_bytes,
memory_bandwidth_bytes_per_s, scale_up_bandwidth_bytes_per_s (per direction, summed over
chips), scale_out_bandwidth_bytes_per_s (per direction, summed), power_w, price_usd.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from supernode import units
from supernode.catalog.loader import Catalog
from supernode.catalog.schema import PRECISIONS, Chip, Quantity
from supernode.errors import UsageError
from supernode.hardware import per_chip_per_direction, si

COMPARE_PRECISIONS = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "fp4", "int8")


@dataclass(frozen=True)
class Figure:
    """One aggregate figure: SI value (None = unknown), its kind and the sources behind it."""

    value: float | None
    kind: str  # spec | paper | derived | estimate | assumption | unknown
    sources: tuple[str, ...] = ()
    how: str = ""  # the arithmetic or the record it came from


@dataclass(frozen=True)
class SystemFigures:
    id: str
    name: str
    status: str
    figures: dict[str, Figure]
    composition: tuple[tuple[str, int], ...]
    assumptions: tuple[str, ...] = ()
    notes: str | None = None


@dataclass(frozen=True)
class Comparison:
    systems: tuple[SystemFigures, ...]
    ratios: dict[str, list[float | None]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "systems": [
                {
                    "id": s.id,
                    "name": s.name,
                    "status": s.status,
                    "composition": [{"chip": c, "count": n} for c, n in s.composition],
                    "assumptions": list(s.assumptions),
                    "figures": {k: asdict(f) | {"sources": list(f.sources)} for k, f in s.figures.items()},
                    **{k: f.value for k, f in s.figures.items()},
                }
                for s in self.systems
            ],
            "baseline": self.systems[0].id,
            "ratios": {k: v for k, v in self.ratios.items()},
        }


def metric_dimension(metric: str) -> str:
    if metric == "chips":
        return units.COUNT
    if metric.endswith("_flop_per_s"):
        return units.RATE
    if metric.endswith("_bytes_per_s"):
        return units.BANDWIDTH
    if metric.endswith("_bytes"):
        return units.BYTES
    if metric.endswith("_w"):
        return units.POWER
    if metric.endswith("_usd"):
        return units.MONEY
    return units.RATIO


def _kind_of(records: list[Quantity | None]) -> str:
    kinds = {q.kind for q in records if q is not None}
    if "estimate" in kinds or "assumption" in kinds:
        return "estimate"
    return "derived"


def _sum(parts: list[tuple[Quantity | None, float | None, int, str]], label: str) -> Figure:
    """Sum over composition of (record, si value per chip, count, chip id)."""
    if any(v is None for _, v, _, _ in parts):
        missing = [c for _, v, _, c in parts if v is None]
        return Figure(None, "unknown", (), f"{label} of {', '.join(missing)} is unknown")
    total = sum(v * n for _, v, n, _ in parts)  # type: ignore[operator]
    srcs = tuple(sorted({q.source for q, _, _, _ in parts if q is not None and q.source}))
    how = " + ".join(f"{n:,} x {c}" for _, _, n, c in parts)
    return Figure(total, _kind_of([q for q, _, _, _ in parts]), srcs, f"{how} ({label} per chip x count)")


def _from_record(q: Quantity, value: float | None = None, how: str = "system-level figure") -> Figure:
    v = value if value is not None else si(q)
    return Figure(v, q.kind or "unknown", (q.source,) if q.source else (), q.note or how)


def _chip_figures(members: list[tuple[Chip, int]]) -> dict[str, Figure]:
    figs: dict[str, Figure] = {}
    figs["chips"] = Figure(float(sum(n for _, n in members)), "spec", (), "chip count")
    for p in COMPARE_PRECISIONS:
        parts = []
        for chip, n in members:
            q = chip.compute_dense.get(p)  # type: ignore[call-overload]
            parts.append((q, si(q) if q is not None else None, n, chip.id))
        if all(q is None for q, _, _, _ in parts):
            unsupported = all(p in chip.unsupported_precisions for chip, _ in members)
            figs[f"dense_{p}_flop_per_s"] = Figure(None, "unsupported" if unsupported else "unknown", (),
                                                   f"no {p} rate for this chip")
            continue
        figs[f"dense_{p}_flop_per_s"] = _sum(parts, f"dense {p}")
    figs["memory_bytes"] = _sum([(c.memory.capacity, si(c.memory.capacity), n, c.id) for c, n in members], "memory")
    figs["memory_bandwidth_bytes_per_s"] = _sum(
        [(c.memory.bandwidth, si(c.memory.bandwidth), n, c.id) for c, n in members], "memory bandwidth")
    return figs


def system_figures(catalog: Catalog, ref: str) -> SystemFigures:
    """Figures of a system id, or of a generic cluster ``CHIP`` / ``CHIP:N``."""
    name, _, count = ref.partition(":")
    if name in catalog.systems and not count:
        return _system(catalog, name)
    if name in catalog.chips:
        chip = catalog.chips[name]
        try:
            n = int(count) if count else int(si(chip.scale_up.domain_size) or 1) if chip.scale_up else 1
        except ValueError:
            raise UsageError(f"system {ref!r}: expected CHIP:N with N a positive integer") from None
        if n <= 0:
            raise UsageError(f"system {ref!r}: expected CHIP:N with N a positive integer")
        figs = _chip_figures([(chip, n)])
        sup = per_chip_per_direction(chip.scale_up.bandwidth) if chip.scale_up else None
        figs["scale_up_bandwidth_bytes_per_s"] = _link_sum(chip.scale_up.bandwidth if chip.scale_up else None, sup, n,
                                                           chip.id, "scale-up")
        sout = per_chip_per_direction(chip.scale_out.bandwidth) if chip.scale_out else None
        figs["scale_out_bandwidth_bytes_per_s"] = _link_sum(chip.scale_out.bandwidth if chip.scale_out else None,
                                                            sout, n, chip.id, "scale-out")
        tdp = si(chip.tdp)
        figs["power_w"] = (Figure(tdp * n, "estimate", (chip.tdp.source,) if chip.tdp and chip.tdp.source else (),
                                  f"{n:,} x {chip.id} TDP (accelerators only)") if tdp else
                           Figure(None, "unknown", (), "TDP unknown"))
        price = si(chip.price)
        figs["price_usd"] = (Figure(price * n, "estimate", (chip.price.source,) if chip.price and chip.price.source
                                    else (), f"{n:,} x {chip.id} price") if price else
                             Figure(None, "unknown", (), "price unknown"))
        return SystemFigures(ref, f"{n:,} x {chip.name}", chip.status, figs, ((chip.id, n),),
                             (f"generic cluster: {n} x {chip.id}, standard node and NIC",))
    catalog.system(name)  # raises a one-line UsageError naming the id
    raise AssertionError


def _link_sum(q, per_chip: float | None, n: int, chip_id: str, label: str) -> Figure:
    if per_chip is None:
        return Figure(None, "unknown", (), f"{label} bandwidth of {chip_id} unknown")
    return Figure(per_chip * n, _kind_of([q]), (q.source,) if q is not None and q.source else (),
                  f"{n:,} x {chip_id} {label} per chip per direction")


def _system(catalog: Catalog, system_id: str) -> SystemFigures:
    system = catalog.system(system_id)
    members = [(catalog.chip(m.chip), int(si(m.count) or 0)) for m in system.composition]
    figs = _chip_figures(members)
    agg = system.aggregate
    if agg is not None:
        for p, q in agg.compute_dense.items():
            if q.known:
                derived = figs.get(f"dense_{p}_flop_per_s")
                how = f"system-level figure; chip x count gives {units.fmt(derived.value, units.RATE)}" if (
                    derived and derived.value) else "system-level figure"
                figs[f"dense_{p}_flop_per_s"] = _from_record(q, how=how)
        if agg.memory_capacity is not None and agg.memory_capacity.known:
            figs["memory_bytes"] = _from_record(agg.memory_capacity)
        if agg.memory_bandwidth is not None and agg.memory_bandwidth.known:
            figs["memory_bandwidth_bytes_per_s"] = _from_record(agg.memory_bandwidth)
    up = system.tiers[0]
    bw = per_chip_per_direction(up.bandwidth)
    chips_total = sum(n for _, n in members)
    if agg is not None and agg.scale_up_bandwidth is not None and agg.scale_up_bandwidth.known:
        v = per_chip_per_direction(agg.scale_up_bandwidth)
        figs["scale_up_bandwidth_bytes_per_s"] = _from_record(agg.scale_up_bandwidth, v,
                                                              "system-level figure, per direction")
    else:
        figs["scale_up_bandwidth_bytes_per_s"] = _link_sum(up.bandwidth, bw, chips_total, up.name, "scale-up")
    outer = next((t for t in system.tiers if t.level == "scale_out"), None)
    obw = per_chip_per_direction(outer.bandwidth) if outer else None
    figs["scale_out_bandwidth_bytes_per_s"] = _link_sum(outer.bandwidth if outer else None, obw, chips_total,
                                                        outer.name if outer else "scale-out", "scale-out")
    if system.power is not None and system.power.known:
        figs["power_w"] = _from_record(system.power, how=system.power_scope or "system power")
    else:
        tdps = [(c.tdp, si(c.tdp), n, c.id) for c, n in members]
        f = _sum(tdps, "TDP")
        figs["power_w"] = Figure(f.value, "estimate" if f.value else "unknown", f.sources,
                                 f.how + "; accelerators only" if f.value else f.how)
    if system.price is not None and system.price.known:
        figs["price_usd"] = _from_record(system.price, how="system price")
    else:
        prices = [(c.price, si(c.price), n, c.id) for c, n in members]
        f = _sum(prices, "price")
        figs["price_usd"] = Figure(f.value, "estimate" if f.value else "unknown", f.sources, f.how)
    return SystemFigures(system.id, system.name, system.status, figs,
                         tuple((c.id, n) for c, n in members), tuple(system.assumptions), system.notes)


def compare(catalog: Catalog, refs: list[str]) -> Comparison:
    """Figures of each system and the ratio of each later system to the first, per metric."""
    if len(refs) < 2:
        raise UsageError("compare: give at least two system or chip ids")
    systems = tuple(system_figures(catalog, r) for r in refs)
    base = systems[0]
    ratios: dict[str, list[float | None]] = {}
    for key in base.figures:
        row: list[float | None] = []
        b = base.figures[key].value
        for s in systems[1:]:
            f = s.figures.get(key)
            row.append(f.value / b if (f is not None and f.value is not None and b) else None)
        ratios[key] = row
    # per-chip compute ratio: the "each chip a third of the other" figure
    for p in ("bf16", "fp8"):
        k = f"dense_{p}_flop_per_s"
        b = base.figures[k].value
        if b:
            bc = b / base.figures["chips"].value  # type: ignore[operator]
            ratios[f"dense_{p}_flop_per_s_per_chip"] = [
                (s.figures[k].value / s.figures["chips"].value / bc) if s.figures[k].value else None  # type: ignore
                for s in systems[1:]]
    return Comparison(systems, ratios)


__all__ = ["Figure", "SystemFigures", "Comparison", "compare", "system_figures", "metric_dimension",
           "COMPARE_PRECISIONS", "PRECISIONS"]
