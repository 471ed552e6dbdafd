"""Strict schemas of the catalog's YAML records (one item per file).

Every number is a :class:`Quantity` record: ``value`` (or ``formula`` for a derived value), ``unit``,
``kind`` and ``source``. A value nobody has published is ``value: null`` with a ``reason``.
Unknown keys are rejected everywhere (``extra="forbid"``). Conversion to SI happens once, in
:mod:`supernode.catalog.loader`, through :mod:`supernode.units`.
"""

from __future__ import annotations

import ast
import datetime as _dt
import operator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from supernode import units

Kind = Literal["spec", "paper", "measured", "derived", "assumption", "estimate"]
Precision = Literal["fp64", "fp64_tensor", "fp32", "tf32", "bf16", "fp16", "fp8", "fp6", "fp4", "int8", "int4"]
PRECISIONS: tuple[str, ...] = Precision.__args__  # type: ignore[attr-defined]
BITS = {"fp64": 64, "fp64_tensor": 64, "fp32": 32, "tf32": 32, "bf16": 16, "fp16": 16, "fp8": 8, "fp6": 6,
        "fp4": 4, "int8": 8, "int4": 4}
# TF32 operands are 19 bits in the tensor core, but BIS counts 32 for TF32 (rules.md, A.1)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg}


def eval_formula(expr: str) -> float:
    """Evaluate a derived value's arithmetic (numbers and + - * / ** and parentheses only)."""

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        raise ValueError(f"formula {expr!r}: only numbers and + - * / ** ( ) are allowed")

    try:
        tree = ast.parse(expr.replace(",", "").replace("_", ""), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"formula {expr!r} is not arithmetic") from exc
    return ev(tree)


class Quantity(Strict):
    """One number with its provenance.

    ``value`` xor ``formula`` (arithmetic over published numbers, kind ``derived``); or
    ``value: null`` with ``reason`` when nobody has published it. ``direction`` and ``per`` are
    required on bandwidths (see :class:`Bandwidth`).
    """

    value: float | None = None
    formula: str | None = None
    unit: str
    kind: Kind | None = None
    source: str | None = None
    locator: str | None = None
    note: str | None = None
    reason: str | None = None
    confidence: Literal["A", "B", "C"] | None = None
    date: str | None = None  # prices and availability carry a date

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, v: str) -> str:
        if v not in units.UNITS:
            raise ValueError(f"unknown unit {v!r}; expected one of e.g. TFLOP/s, GB, GB/s, Gb/s, W, us, mm2, USD, count")
        return v

    @model_validator(mode="after")
    def _check(self) -> "Quantity":
        if self.value is not None and self.formula is not None:
            raise ValueError("give value or formula, not both")
        if self.formula is not None:
            try:
                eval_formula(self.formula)
            except (ValueError, ZeroDivisionError) as exc:
                raise ValueError(str(exc)) from exc
            if self.kind not in ("derived", "estimate", "assumption"):
                raise ValueError("a formula needs kind: derived (or estimate/assumption)")
        if self.known:
            if self.kind is None:
                raise ValueError("a known value needs kind (spec|paper|measured|derived|assumption|estimate)")
            if self.source is None:
                raise ValueError("a known value needs a source id")
            if self.kind == "assumption" and not self.note:
                raise ValueError("an assumption needs a note with its rationale")
            if self.kind == "estimate" and self.confidence not in (None, "C"):
                raise ValueError("an estimate has confidence C")
            if self.number <= 0:
                raise ValueError(f"value must be > 0, got {self.number:g}")
        elif not self.reason:
            raise ValueError("value is null: give a reason (why it is unknown)")
        return self

    @property
    def known(self) -> bool:
        return self.value is not None or self.formula is not None

    @property
    def number(self) -> float:
        """The value in the record's own unit (formula evaluated)."""
        if self.formula is not None:
            return eval_formula(self.formula)
        assert self.value is not None
        return float(self.value)

    @property
    def dimension(self) -> str:
        return units.dimension(self.unit)


class Bandwidth(Quantity):
    """A link bandwidth: says its ``direction`` and whether it is ``per`` chip, link or port.

    ``links`` (links or ports per chip) is required when ``per`` is link or port.
    """

    direction: Literal["unidirectional", "bidirectional"]
    per: Literal["chip", "link", "port", "system"]  # system: an aggregate over all chips
    links: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _links(self) -> "Bandwidth":
        if self.per in ("link", "port") and self.links is None:
            raise ValueError(f"per: {self.per} needs links: N (links or ports per chip)")
        if self.dimension != units.BANDWIDTH:
            raise ValueError(f"unit {self.unit!r} is not a bandwidth (expected e.g. GB/s or Gb/s)")
        return self


def _dim_check(q: Quantity | None, dim: str, field: str) -> None:
    if q is not None and q.dimension != dim:
        raise ValueError(f"{field}: unit {q.unit!r} is not a {units.SI_UNIT_NAME[dim]} unit")


class Memory(Strict):
    """``capacity``: the marketed size (what spec sheets and comparisons quote); ``device_capacity``:
    the bytes the driver exposes as device memory (nvidia-smi total), when published: NVIDIA's
    "80 GB" parts expose ~80 GiB. The performance models fit plans into ``device_capacity`` when
    known, else ``capacity``."""

    type: str
    capacity: Quantity
    bandwidth: Quantity
    device_capacity: Quantity | None = None

    @model_validator(mode="after")
    def _dims(self) -> "Memory":
        _dim_check(self.capacity, units.BYTES, "capacity")
        if self.device_capacity is not None:
            _dim_check(self.device_capacity, units.BYTES, "device_capacity")
        _dim_check(self.bandwidth, units.BANDWIDTH, "bandwidth")
        return self


Topology = Literal["switched", "full-mesh", "torus-2d", "torus-3d", "clos", "fat-tree", "rail-optimized",
                   "dragonfly", "ring", "point-to-point", "none"]


class Link(Strict):
    """The standard interconnect of a chip (its usual node), or a tier of a system."""

    tech: str
    bandwidth: Bandwidth | None = None
    domain_size: Quantity | None = None  # chips reachable at this bandwidth (e.g. 8 in an HGX board)
    latency: Quantity | None = None
    topology: Topology = "switched"
    oversubscription: Quantity | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _dims(self) -> "Link":
        _dim_check(self.domain_size, units.COUNT, "domain_size")
        _dim_check(self.latency, units.TIME, "latency")
        _dim_check(self.oversubscription, units.RATIO, "oversubscription")
        return self


class Silicon(Strict):
    process_node: str | None = None
    die_area: Quantity | None = None  # applicable die area (all non-planar logic dies), 3A090 PD
    transistors: Quantity | None = None
    dies: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _dims(self) -> "Silicon":
        _dim_check(self.die_area, units.AREA, "die_area")
        _dim_check(self.transistors, units.COUNT, "transistors")
        return self


Status = Literal["shipping", "announced", "roadmap", "discontinued"]


class Chip(Strict):
    """An accelerator (one package). ``compute_dense`` holds DENSE peaks only."""

    id: str
    name: str
    vendor: str
    family: str  # efficiency-calibration family, e.g. nvidia-hopper, ascend-910
    status: Status
    release_date: str | None = None
    variant_of: str | None = None
    datacenter: bool = True
    compute_dense: dict[Precision, Quantity]
    unsupported_precisions: list[Precision] = []
    memory: Memory
    scale_up: Link | None = None
    scale_out: Link | None = None
    host_interface: Link | None = None
    tdp: Quantity | None = None
    silicon: Silicon | None = None
    # devices the driver exposes per package, each run as its own rank by the serving stacks (e.g. the Ascend 910C's
    # two dies, each an NPU device under CANN); absent: the package is one device
    runtime_devices: Quantity | None = None
    price: Quantity | None = None
    notes: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return _check_id(v)

    @model_validator(mode="after")
    def _dims(self) -> "Chip":
        for p, q in self.compute_dense.items():
            _dim_check(q, units.RATE, f"compute_dense.{p}")
        both = set(self.compute_dense) & set(self.unsupported_precisions)
        if both:
            raise ValueError(f"precision {sorted(both)[0]} is both in compute_dense and unsupported_precisions")
        _dim_check(self.tdp, units.POWER, "tdp")
        _dim_check(self.price, units.MONEY, "price")
        _dim_check(self.runtime_devices, units.COUNT, "runtime_devices")
        if self.runtime_devices is not None and self.runtime_devices.known:
            n = self.runtime_devices.number
            if n < 1 or n != int(n):
                raise ValueError(f"runtime_devices: expected a whole number of devices >= 1, got {n:g}")
        return self


class Member(Strict):
    chip: str
    count: Quantity

    @model_validator(mode="after")
    def _dims(self) -> "Member":
        _dim_check(self.count, units.COUNT, "count")
        return self


class Tier(Link):
    name: str
    level: Literal["scale_up", "scale_out"]


class Aggregate(Strict):  # noqa: D101
    """System-level figures as the vendor states them (used instead of chip x count when given)."""

    compute_dense: dict[Precision, Quantity] = {}
    memory_capacity: Quantity | None = None
    memory_bandwidth: Quantity | None = None
    scale_up_bandwidth: Bandwidth | None = None

    @model_validator(mode="after")
    def _dims(self) -> "Aggregate":
        for p, q in self.compute_dense.items():
            _dim_check(q, units.RATE, f"aggregate.compute_dense.{p}")
        _dim_check(self.memory_capacity, units.BYTES, "memory_capacity")
        _dim_check(self.memory_bandwidth, units.BANDWIDTH, "memory_bandwidth")
        if self.scale_up_bandwidth is not None and self.scale_up_bandwidth.per != "system":
            raise ValueError("scale_up_bandwidth: an aggregate is per: system")
        return self


class System(Strict):
    """Chips x count arranged in tiers (scale-up domain, scale-out fabric)."""

    id: str
    name: str
    vendor: str
    status: Status
    announced_date: str | None = None
    available_date: str | None = None
    composition: list[Member] = Field(min_length=1)
    tiers: list[Tier] = Field(min_length=1)
    aggregate: Aggregate | None = None
    power: Quantity | None = None
    power_scope: str | None = None  # e.g. "all-in (IT + networking + cooling)"
    price: Quantity | None = None
    assumptions: list[str] = []
    notes: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return _check_id(v)

    @model_validator(mode="after")
    def _dims(self) -> "System":
        _dim_check(self.power, units.POWER, "power")
        _dim_check(self.price, units.MONEY, "price")
        levels = [t.level for t in self.tiers]
        if levels[0] != "scale_up":
            raise ValueError("tiers: the first tier must be the scale_up domain")
        return self


class Source(Strict):
    id: str
    title: str
    publisher: str
    url: str
    date: str
    locator: str | None = None
    confidence: Literal["A", "B", "C"] = "A"
    note: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not v.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ValueError("id must be letters, digits, '-', '_' or '.'")
        return v

    @field_validator("date", mode="before")
    @classmethod
    def _date(cls, v: object) -> object:
        return v.isoformat() if isinstance(v, (_dt.date, _dt.datetime)) else v


def _check_id(v: str) -> str:
    if not v or not all(c.isalnum() or c in "-." for c in v) or v != v.lower():
        raise ValueError("id must be lower-case letters, digits, '-' or '.'")
    return v
