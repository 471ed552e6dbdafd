"""Resolved hardware: catalog records turned into SI numbers the model computes with.

A :class:`ClusterSpec` is one chip kind x a chip count arranged in tiers. It is built either
from a catalog system (``cloudmatrix-384``, repeated when more chips are asked for) or from a
bare chip id and a count (a generic cluster: the chip's standard node as the scale-up tier and
its standard NIC as the scale-out tier). Every tier gives bandwidth *per chip per direction*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from supernode import units
from supernode.catalog.loader import Catalog
from supernode.catalog.schema import Bandwidth, Chip, Link, Quantity, System
from supernode.errors import UsageError, close_ids


def si(q: Quantity | None) -> float | None:
    """A record's value in SI base units, or None when unknown/absent."""
    if q is None or not q.known:
        return None
    return units.to_si(q.number, q.unit)


def per_chip_per_direction(b: Bandwidth | None) -> float | None:
    """Bandwidth per chip per direction in bytes/s: bidirectional / 2; per link x links."""
    v = si(b)
    if v is None or b is None:
        return None
    if b.per in ("link", "port"):
        v *= b.links or 1
    if b.direction == "bidirectional":
        v /= 2.0
    return v


def bidirectional_per_chip(b: Bandwidth | None) -> float | None:
    v = per_chip_per_direction(b)
    return None if v is None else 2.0 * v


@dataclass(frozen=True)
class ChipSpec:
    """One accelerator in SI units (dense peaks only; unknown precisions absent)."""

    id: str
    name: str
    family: str
    peak_flop_per_s: Mapping[str, float]
    memory_bytes: float | None
    memory_bandwidth_bytes_per_s: float | None
    tdp_w: float | None
    price_usd: float | None
    host_bytes_per_s: float | None = None  # link to the host CPU's memory, per direction (weight offload, I26)
    devices: int = 1  # devices the driver exposes per package (the Ascend 910C's two dies), one rank each

    def peak(self, precision: str) -> float:
        """Dense peak at ``precision`` (FLOP/s); UsageError when the chip lacks it or it is unknown."""
        try:
            return self.peak_flop_per_s[precision]
        except KeyError:
            have = ", ".join(sorted(self.peak_flop_per_s)) or "none"
            raise UsageError(
                f"--precision: chip {self.id!r} has no known dense {precision} rate (known: {have})") from None


def chip_spec(chip: Chip) -> ChipSpec:
    peaks = {p: si(q) for p, q in chip.compute_dense.items() if q.known}
    return ChipSpec(
        id=chip.id,
        name=chip.name,
        family=chip.family,
        peak_flop_per_s={p: v for p, v in peaks.items() if v is not None},
        memory_bytes=si(chip.memory.device_capacity) if chip.memory.device_capacity is not None
        and chip.memory.device_capacity.known else si(chip.memory.capacity),
        memory_bandwidth_bytes_per_s=si(chip.memory.bandwidth),
        tdp_w=si(chip.tdp),
        price_usd=si(chip.price),
        host_bytes_per_s=per_chip_per_direction(chip.host_interface.bandwidth) if chip.host_interface else None,
        devices=int(chip.runtime_devices.number) if chip.runtime_devices is not None and chip.runtime_devices.known
        else 1,
    )


@dataclass(frozen=True)
class TierSpec:
    """One network tier. ``domain_chips``: chips in one group of this tier (the last tier spans
    the whole cluster). ``bandwidth_bytes_per_s``: per chip, per direction, after
    oversubscription."""

    name: str
    level: str
    domain_chips: int
    bandwidth_bytes_per_s: float
    latency_s: float
    topology: str
    oversubscription_ratio: float = 1.0
    # a full mesh's size (chips joined pairwise by equal direct links; 0: not a mesh), kept when a cluster smaller
    # than the mesh clips ``domain_chips``: a group of m of its chips reaches its peers over m - 1 of the mesh - 1
    # links (perf.collectives.mesh_share)
    mesh_chips: int = 0


@dataclass(frozen=True)
class ClusterSpec:
    id: str
    name: str
    chip: ChipSpec
    chips: int
    tiers: tuple[TierSpec, ...]
    power_w: float | None = None  # whole cluster; None when unknown
    price_usd: float | None = None
    assumptions: tuple[str, ...] = field(default_factory=tuple)
    devices_per_chip: int = 1  # > 1: a device-level view (device_cluster): ``chip`` and ``chips`` are devices

    @property
    def scale_up(self) -> TierSpec:
        return self.tiers[0]

    def tier_index(self, span_chips: int) -> int:
        """Index of the smallest tier whose domain holds ``span_chips`` consecutive chips."""
        for i, t in enumerate(self.tiers):
            if span_chips <= t.domain_chips:
                return i
        return len(self.tiers) - 1


def _tier_from_link(link: Link, level: str, name: str, domain: int, what: str) -> TierSpec:
    bw = per_chip_per_direction(link.bandwidth)
    if bw is None:
        raise UsageError(f"{what}: {name} bandwidth is unknown, so the network cannot be modelled")
    lat = si(link.latency)
    over = si(link.oversubscription) or 1.0
    mesh = int(si(link.domain_size) or 0) if link.topology == "full-mesh" else 0
    return TierSpec(name=name, level=level, domain_chips=domain, bandwidth_bytes_per_s=bw / over,
                    latency_s=lat if lat is not None else 0.0, topology=link.topology, oversubscription_ratio=over,
                    mesh_chips=mesh)


def _generic(chip: Chip, chips: int) -> ClusterSpec:
    what = f"chip {chip.id!r}"
    tiers: list[TierSpec] = []
    assumptions = [f"generic cluster of {chips} x {chip.id}: the chip's standard node and NIC"]
    dom = 1
    if chip.scale_up is not None and chip.scale_up.bandwidth is not None and chip.scale_up.bandwidth.known:
        dom = int(si(chip.scale_up.domain_size) or 1)
        tiers.append(_tier_from_link(chip.scale_up, "scale_up", chip.scale_up.tech, min(dom, chips), what))
    if chips > dom or not tiers:
        if chip.scale_out is None or chip.scale_out.bandwidth is None or not chip.scale_out.bandwidth.known:
            if chips > dom:
                raise UsageError(f"--chips: {chip.id} has no known scale-out NIC, so {chips} chips cannot be joined")
        else:
            if not tiers:  # no scale-up: a domain of one chip
                tiers.append(TierSpec("none", "scale_up", 1, math.inf, 0.0, "none"))
            tiers.append(_tier_from_link(chip.scale_out, "scale_out", chip.scale_out.tech, chips, what))
    if not tiers:
        tiers.append(TierSpec("none", "scale_up", 1, math.inf, 0.0, "none"))
    spec = chip_spec(chip)
    power = spec.tdp_w * chips if spec.tdp_w else None
    if power:
        assumptions.append("power = chip TDP x count (accelerators only; no host, network or cooling)")
    price = spec.price_usd * chips if spec.price_usd else None
    return ClusterSpec(id=f"{chip.id}x{chips}", name=f"{chips} x {chip.name}", chip=spec, chips=chips,
                       tiers=tuple(tiers), power_w=power, price_usd=price, assumptions=tuple(assumptions))


def system_chip(catalog: Catalog, system: System) -> Chip:
    """The single chip kind of a homogeneous system (UsageError for a mixed one)."""
    kinds = {m.chip for m in system.composition}
    if len(kinds) != 1:
        raise UsageError(f"system {system.id!r} mixes chips ({', '.join(sorted(kinds))}); "
                         "the performance model needs one chip kind: pass a chip id with --chips")
    return catalog.chip(kinds.pop())


def system_chip_count(system: System) -> int:
    return int(sum(si(m.count) or 0 for m in system.composition))


def _from_system(catalog: Catalog, system: System, chips: int | None) -> ClusterSpec:
    chip = system_chip(catalog, system)
    unit_chips = system_chip_count(system)
    n = chips or unit_chips
    if n <= 0:
        raise UsageError("--chips: must be a positive integer")
    tiers: list[TierSpec] = []
    what = f"system {system.id!r}"
    for t in system.tiers:
        dom = si(t.domain_size)
        domain = int(dom) if dom else n
        tiers.append(_tier_from_link(t, t.level, t.name, min(domain, n), what))
    assumptions = list(system.assumptions)
    if n > unit_chips:
        if n % unit_chips:
            raise UsageError(f"--chips: {n} is not a whole number of {system.id} units ({unit_chips} chips each)")
        last_outer = next((t for t in reversed(system.tiers) if t.level == "scale_out"), None)
        if last_outer is None and chip.scale_out is not None and chip.scale_out.bandwidth is not None:
            last_outer = chip.scale_out  # type: ignore[assignment]
        if last_outer is None:
            raise UsageError(f"--chips: {system.id} has no scale-out tier to join {n // unit_chips} units")
        tiers = [t for t in tiers if t.domain_chips < n] or tiers[:1]
        tiers.append(_tier_from_link(last_outer, "scale_out", f"{last_outer.tech} between units", n, what))
        assumptions.append(f"{n // unit_chips} x {system.id} joined by its scale-out fabric")
    elif n < unit_chips:
        tiers = [TierSpec(t.name, t.level, min(t.domain_chips, n), t.bandwidth_bytes_per_s, t.latency_s, t.topology,
                          t.oversubscription_ratio, t.mesh_chips) for t in tiers]
    # keep tiers strictly growing and make the last one span the cluster
    clean: list[TierSpec] = []
    for t in tiers:
        if clean and t.domain_chips <= clean[-1].domain_chips:
            continue
        clean.append(t)
    last = clean[-1]
    if last.domain_chips < n:
        raise UsageError(f"system {system.id!r}: no tier joins all {n} chips")
    spec = chip_spec(chip)
    sys_power = si(system.power)
    power = sys_power * n / unit_chips if sys_power else (spec.tdp_w * n if spec.tdp_w else None)
    if not sys_power and power:
        assumptions.append("power = chip TDP x count (accelerators only)")
    sys_price = si(system.price)
    price = sys_price * n / unit_chips if sys_price else (spec.price_usd * n if spec.price_usd else None)
    return ClusterSpec(id=system.id, name=system.name, chip=spec, chips=n, tiers=tuple(clean), power_w=power,
                       price_usd=price, assumptions=tuple(assumptions))


def resolve_cluster(catalog: Catalog, on: str, chips: int | None = None) -> ClusterSpec:
    """``on`` is a system id or a chip id; ``chips`` the chip count (default: the system's own;
    required for a bare chip)."""
    if chips is not None and chips <= 0:
        raise UsageError("--chips: must be a positive integer")
    if on in catalog.systems:
        return _from_system(catalog, catalog.systems[on], chips)
    if on in catalog.chips:
        chip = catalog.chips[on]
        node = int(si(chip.scale_up.domain_size) or 1) if chip.scale_up is not None else 1
        return _generic(chip, chips or node)
    close = close_ids(on, [*catalog.systems, *catalog.chips])
    hint = f"did you mean {', '.join(close)}?" if close else "see `supernode catalog systems` and `catalog chips`"
    raise UsageError(f"--on: unknown system or chip id {on!r}; {hint}")


def device_cluster(cluster: ClusterSpec) -> ClusterSpec:
    """The cluster as its runtime devices see it: a package of d devices (``ChipSpec.devices``: the Ascend 910C's two
    dies, each an NPU device that the serving and training stacks run as one rank) becomes d chips, each with 1/d of
    the package's peaks, memory, memory bandwidth, host link, power and price and 1/d of its links' bandwidth per
    direction (the package's ports shared evenly; the dies' faster on-package link is not modelled, so traffic between
    two dies of one package is priced on the scale-up tier), every tier's domain counting d times the devices. Totals
    (power, price) do not change. A one-device chip returns the cluster itself."""
    d = cluster.chip.devices
    if d <= 1:
        return cluster
    c = cluster.chip

    def part(x: float | None) -> float | None:
        return None if x is None else x / d

    chip = ChipSpec(id=c.id, name=f"{c.name}, one of its {d} devices", family=c.family,
                    peak_flop_per_s={p: v / d for p, v in c.peak_flop_per_s.items()}, memory_bytes=part(c.memory_bytes),
                    memory_bandwidth_bytes_per_s=part(c.memory_bandwidth_bytes_per_s), tdp_w=part(c.tdp_w),
                    price_usd=part(c.price_usd), host_bytes_per_s=part(c.host_bytes_per_s), devices=1)
    tiers = tuple(TierSpec(t.name, t.level, t.domain_chips * d, t.bandwidth_bytes_per_s / d, t.latency_s, t.topology,
                           t.oversubscription_ratio, t.mesh_chips * d) for t in cluster.tiers)
    note = (f"{c.id}: each package is {d} runtime devices (one rank each); the model runs on the "
            f"{cluster.chips * d} devices, each with 1/{d} of the package's compute, memory and links, and reports "
            "per-chip figures per package")
    return ClusterSpec(id=cluster.id, name=cluster.name, chip=chip, chips=cluster.chips * d, tiers=tiers,
                       power_w=cluster.power_w, price_usd=cluster.price_usd,
                       assumptions=cluster.assumptions + (note,), devices_per_chip=d)
