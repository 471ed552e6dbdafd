"""The chip attributes that export rules test: TPP, performance density, memory and I/O bandwidth.

Definitions (BIS, 88 FR 73458, ECCN 3A090 Technical Notes [fr_2023]):

    TPP = 2 x MacTOPS x bit length, aggregated over all processing units, max over formats
        = max_f (dense peak rate_f in tera-operations/s) x bits_f
    PD  = TPP / applicable die area (mm2; all logic dies on non-planar processes, no memory dies)

``2 x MacTOPS`` is the dense "TOPS"/"TFLOPS" figure vendors print (a MAC counts 2 operations), so
TPP = dense rate [OP/s] / 1e12 x bits. Bit lengths are :data:`supernode.catalog.schema.BITS`
(TF32 counted as 32, rules.md A.1 and caveat G.7).

I/O bandwidth (used by the Oct 2022 rule and the Apr 2025 letters) is the aggregate
bidirectional chip-to-chip rate: scale-up link + host interface, per chip, bidirectional
(rules.md B.1, B.7). Memory (DRAM/HBM) traffic does not count. Assumption: a link block absent
from the chip file is a link the chip does not have (0 B/s); a link listed with an unknown
bandwidth makes the I/O unknown. The letters never defined "I/O bandwidth" (rules.md G.1).

Unknown stays unknown: every attribute is an interval ``[low, high]``. A precision whose rate is
recorded as ``value: null`` makes TPP at least the max of the known products and, unless the
wider-format bound applies (:func:`unknown_term_bound`, an assumption), unbounded above; an
unknown die area makes PD unbounded. Precisions absent from ``compute_dense`` are taken as not
offered (the catalog lists every precision a chip supports). A scale-up block with
``topology: none`` is the host link restated (no chip-to-chip fabric) and counts 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from supernode import units
from supernode.catalog.schema import BITS, Bandwidth, Chip, Link

INF = math.inf


def _decimal(x: float) -> float:
    """Round away binary noise (12 significant digits) so a value equal to a threshold in decimal
    arithmetic compares equal (e.g. 1,600 TPP / 500 mm2 = 3.2, not 3.2000000000000006)."""
    return x if math.isinf(x) or x == 0 else float(f"{x:.12g}")


@dataclass(frozen=True)
class Interval:
    """A value known to lie in ``[low, high]``; ``low == high`` when it is known exactly."""

    low: float
    high: float

    @property
    def known(self) -> bool:
        return self.low == self.high

    @property
    def value(self) -> float | None:
        return self.low if self.known else None

    def __add__(self, other: "Interval") -> "Interval":
        return Interval(_decimal(self.low + other.low), _decimal(self.high + other.high))


UNKNOWN = Interval(0.0, INF)


def num(x: float | None, decimals: int = 2) -> str:
    """Human number: thousands separators, at most ``decimals`` decimals, trailing zeros dropped."""
    if x is None:
        return "unknown"
    if math.isinf(x):
        return "unbounded"
    s = f"{x:,.{decimals}f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


@dataclass(frozen=True)
class Classification:
    """What the rules test, for one chip, with the arithmetic as text.

    ``tpp`` is dimensionless; ``performance_density_tpp_per_mm2`` is TPP per mm2 (the rule's own
    unit); bandwidths are bytes/s. ``unknown`` maps an attribute to why it is not known exactly.
    """

    chip_id: str
    vendor: str
    datacenter: bool
    tpp: Interval
    tpp_precision: str | None  # the format giving the maximum (of the known ones)
    tpp_arithmetic: str
    die_area_mm2: float | None
    performance_density_tpp_per_mm2: Interval
    performance_density_arithmetic: str
    memory_bandwidth_bytes_per_s: Interval
    io_bandwidth_bytes_per_s: Interval
    io_arithmetic: str
    unknown: dict[str, str] = field(default_factory=dict)

    @property
    def memory_plus_io_bandwidth_bytes_per_s(self) -> Interval:
        return self.memory_bandwidth_bytes_per_s + self.io_bandwidth_bytes_per_s

    def interval(self, attr: str) -> Interval:
        """The interval of a numeric rule attribute (see :mod:`supernode.rules.schema`)."""
        return {
            "tpp": self.tpp,
            "performance_density": self.performance_density_tpp_per_mm2,
            "memory_bandwidth": self.memory_bandwidth_bytes_per_s,
            "io_bandwidth": self.io_bandwidth_bytes_per_s,
            "memory_plus_io_bandwidth": self.memory_plus_io_bandwidth_bytes_per_s,
        }[attr]

    def describe(self, attr: str) -> str:
        """The attribute's value in the unit the rules state it in (for reasons)."""
        iv = self.interval(attr)
        scale = 1e9 if attr.endswith("bandwidth") else 1.0
        suffix = " GB/s" if attr.endswith("bandwidth") else ""
        name = {"tpp": "TPP", "performance_density": "PD", "memory_bandwidth": "DRAM bandwidth",
                "io_bandwidth": "I/O bandwidth", "memory_plus_io_bandwidth": "DRAM + I/O bandwidth"}[attr]
        if iv.known:
            return f"{name} {num(iv.low / scale)}{suffix}"
        if iv.low > 0 and math.isinf(iv.high):
            return f"{name} >= {num(iv.low / scale)}{suffix} (upper bound unknown)"
        return f"{name} unknown"


def tpp_terms(chip: Chip) -> tuple[list[tuple[str, float, float, int]], dict[str, str]]:
    """(precision, dense rate in tera-ops/s, TPP term, bits) for each known rate; and unknown ones."""
    terms: list[tuple[str, float, float, int]] = []
    unknown: dict[str, str] = {}
    for precision, q in chip.compute_dense.items():
        if not q.known:
            unknown[precision] = q.reason or "not published"
            continue
        tera = _decimal(units.to_si(q.number, q.unit) / 1e12)
        terms.append((precision, tera, _decimal(tera * BITS[precision]), BITS[precision]))
    terms.sort(key=lambda t: (-t[2], t[3]))
    return terms, unknown


def unknown_term_bound(precision: str, terms: list[tuple[str, float, float, int]]) -> float:
    """Upper bound on the TPP term of a format whose rate is unpublished.

    Assumption (wider-format bound): on one chip, a format with more bits never gives a larger
    rate x bits than a published format with the same or fewer bits (multiplier area grows
    about as bits^2; true of every accelerator in the catalog with published rates, e.g. H100
    FP64 67 x 64 = 4,288 < FP8 15,832; TF32 ties BF16 on A100 because BIS counts 32 bits).
    A format narrower than every published one (FP4, INT4) stays unbounded: Blackwell Ultra's
    FP4 gives 1.5x the TPP of its FP8. It would not hold for e.g. consumer Pascal GPUs (FP16 at
    1/64 rate); no such chip is in the catalog.
    """
    bits = BITS[precision]
    narrower = [v for _, _, v, b in terms if b <= bits]
    return max(narrower) if narrower else INF


def total_processing_performance(chip: Chip) -> tuple[Interval, str | None, str]:
    """TPP interval, the maximising format, and the arithmetic (``fp8 1,979 x 8 = 15,832; ...``)."""
    terms, unknown = tpp_terms(chip)
    parts = [f"{p} {num(t)} x {b} = {num(v)}" for p, t, v, b in terms]
    bounds = {p: unknown_term_bound(p, terms) for p in unknown}
    for p, why in unknown.items():
        bound = bounds[p]
        parts.append(f"{p} unknown ({why})" + (
            "" if math.isinf(bound) else f", at most {num(bound)} (wider-format bound, an assumption)"))
    open_formats = [p for p, bound in bounds.items() if math.isinf(bound)]
    unknown = {p: unknown[p] for p in open_formats}
    low = terms[0][2] if terms else 0.0
    high = INF if open_formats or not terms else low
    best = terms[0][0] if terms else None
    iv = Interval(low, high)
    if iv.known:
        result = f"TPP = {num(low)} ({best})"
    elif terms:
        result = f"TPP >= {num(low)}; undecided above: {', '.join(unknown)} not published"
    else:
        result = "TPP unknown: no dense rate published"
    text = "TPP = max over formats of dense T(FL)OP/s x bit length: " + "; ".join(parts or ["none"]) + f" -> {result}"
    return iv, best, text


def _link_bidir_bytes_per_s(link: Link | None, name: str) -> tuple[Interval, str]:
    """Per-chip bidirectional bandwidth of a link block (0 when the chip has none)."""
    if link is None:
        return Interval(0.0, 0.0), f"no {name} listed: 0"
    if name == "scale-up" and link.topology == "none":  # catalog convention: no chip-to-chip fabric
        return Interval(0.0, 0.0), f"no scale-up fabric ({link.tech}): 0"
    bw: Bandwidth | None = link.bandwidth
    if bw is None or not bw.known:
        return UNKNOWN, f"{name} ({link.tech}) bandwidth unknown"
    per_chip = units.to_si(bw.number, bw.unit) * (bw.links if bw.per != "chip" and bw.links else 1)
    bidir = _decimal(per_chip * (2.0 if bw.direction == "unidirectional" else 1.0))
    how = f"{num(bw.number)} {bw.unit} {bw.direction}"
    if bw.per != "chip":
        how += f" per {bw.per} x {bw.links}"
    if bw.direction == "unidirectional":
        how += " x 2"
    return Interval(bidir, bidir), f"{name} ({link.tech}) {how} = {num(bidir / 1e9)} GB/s"


def classify(chip: Chip) -> Classification:
    """TPP, PD, memory and I/O bandwidth of ``chip``, each as an interval, with the arithmetic."""
    unknown: dict[str, str] = {}
    tpp, best, tpp_text = total_processing_performance(chip)
    if not tpp.known:
        unknown["tpp"] = tpp_text.split("-> ")[-1]

    area = chip.silicon.die_area if chip.silicon is not None else None
    area_mm2 = _decimal(units.to_si(area.number, area.unit) / 1e-6) if area is not None and area.known else None
    if area_mm2 is None:
        why = (area.reason if area is not None and area.reason else "not in the catalog")
        pd = UNKNOWN
        pd_text = f"PD = TPP / applicable die area: die area unknown ({why}) -> PD unknown"
        unknown["performance_density"] = f"applicable die area unknown ({why})"
    else:
        pd = Interval(_decimal(tpp.low / area_mm2), _decimal(tpp.high / area_mm2))
        conf = (f" ({area.kind}" + (f", confidence {area.confidence}" if area.confidence else "") + ")"
                if area is not None else "")
        if tpp.known:
            pd_text = f"PD = TPP / applicable die area = {num(tpp.low)} / {num(area_mm2)} mm2{conf} = {num(pd.low)}"
        else:
            pd_text = f"PD = TPP / {num(area_mm2)} mm2{conf}: TPP unknown -> PD unknown"
            unknown["performance_density"] = "TPP unknown"

    mem = chip.memory.bandwidth
    if mem.known:
        m = _decimal(units.to_si(mem.number, mem.unit))
        mem_iv = Interval(m, m)
    else:
        mem_iv = UNKNOWN
        unknown["memory_bandwidth"] = mem.reason or "not published"

    up, up_text = _link_bidir_bytes_per_s(chip.scale_up, "scale-up")
    host, host_text = _link_bidir_bytes_per_s(chip.host_interface, "host interface")
    io = up + host
    io_text = f"I/O (bidirectional, per chip) = {up_text} + {host_text} = " + (
        f"{num(io.low / 1e9)} GB/s" if io.known else "unknown")
    if not io.known:
        unknown["io_bandwidth"] = "a link bandwidth is unknown"

    return Classification(
        chip_id=chip.id, vendor=chip.vendor, datacenter=chip.datacenter, tpp=tpp, tpp_precision=best,
        tpp_arithmetic=tpp_text, die_area_mm2=area_mm2, performance_density_tpp_per_mm2=pd,
        performance_density_arithmetic=pd_text, memory_bandwidth_bytes_per_s=mem_iv,
        io_bandwidth_bytes_per_s=io, io_arithmetic=io_text, unknown=unknown,
    )
