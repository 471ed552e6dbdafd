"""The one place where units are converted.

Catalog records state a unit string (``"TFLOP/s"``, ``"GB/s"``, ``"Gb/s"``, ``"GiB"``, ``"kW"``);
:func:`to_si` turns a value in that unit into SI base units (FLOP/s, bytes, bytes/s, W, s, m^2,
USD). Decimal prefixes are decimal (1 TB = 1e12 bytes); binary ones say ``iB``.
Human formatting back to prefixed units lives in :func:`fmt` and is used only by the report
and CLI layers.
"""

from __future__ import annotations

import math

# dimension names used across the schema
RATE = "flop_per_s"  # floating-point or integer operations per second (dense peak)
BYTES = "bytes"
BANDWIDTH = "bytes_per_s"
POWER = "w"
TIME = "s"
AREA = "m2"
MONEY = "usd"
COUNT = "count"
RATIO = "ratio"
ENERGY = "j"

_DEC = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "Z": 1e21}
_BIN = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}

UNITS: dict[str, tuple[str, float]] = {}
for _p, _f in _DEC.items():
    UNITS[f"{_p}FLOP/s"] = (RATE, _f)
    UNITS[f"{_p}OP/s"] = (RATE, _f)  # integer ops (INT8 "TOPS")
    UNITS[f"{_p}B"] = (BYTES, _f)
    UNITS[f"{_p}B/s"] = (BANDWIDTH, _f)
    UNITS[f"{_p}b/s"] = (BANDWIDTH, _f / 8.0)
    UNITS[f"{_p}W"] = (POWER, _f)
    UNITS[f"{_p}J"] = (ENERGY, _f)
    UNITS[f"{_p}Wh"] = (ENERGY, _f * 3600.0)
for _p, _f in _BIN.items():
    UNITS[f"{_p}B"] = (BYTES, _f)
    UNITS[f"{_p}B/s"] = (BANDWIDTH, _f)
UNITS.update(
    {
        "s": (TIME, 1.0),
        "ms": (TIME, 1e-3),
        "us": (TIME, 1e-6),
        "ns": (TIME, 1e-9),
        "h": (TIME, 3600.0),
        "mm2": (AREA, 1e-6),
        "m2": (AREA, 1.0),
        "USD": (MONEY, 1.0),
        "kUSD": (MONEY, 1e3),
        "MUSD": (MONEY, 1e6),
        "count": (COUNT, 1.0),
        "ratio": (RATIO, 1.0),
        "fraction": (RATIO, 1.0),
        "percent": (RATIO, 0.01),
    }
)

SI_UNIT_NAME = {
    RATE: "FLOP/s",
    BYTES: "B",
    BANDWIDTH: "B/s",
    POWER: "W",
    TIME: "s",
    AREA: "m2",
    MONEY: "USD",
    COUNT: "count",
    RATIO: "ratio",
    ENERGY: "J",
}


def dimension(unit: str) -> str:
    """Dimension name of a unit string; raises KeyError for an unknown unit."""
    return UNITS[unit][0]


def to_si(value: float, unit: str) -> float:
    """``value`` in ``unit`` -> SI base units (see module docstring)."""
    return float(value) * UNITS[unit][1]


def from_si(value_si: float, unit: str) -> float:
    """SI base units -> ``unit`` (for output only)."""
    return float(value_si) / UNITS[unit][1]


_PREFIXES = [("Z", 1e21), ("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3), ("", 1.0)]


def fmt(value_si: float | None, dim: str, digits: int = 3) -> str:
    """Human form of an SI value with a decimal prefix: ``fmt(9.895e14, RATE) == '990 TFLOP/s'``."""
    if value_si is None or (isinstance(value_si, float) and math.isnan(value_si)):
        return "unknown"
    base = SI_UNIT_NAME[dim]
    if dim in (RATIO,):
        return f"{value_si:.{digits}g}"
    if dim == COUNT:
        return f"{value_si:,.0f}"
    if dim == MONEY:
        return f"${value_si:,.0f}"
    if dim == TIME:
        for name, f in (("h", 3600.0), ("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
            if abs(value_si) >= f or name == "us":
                return f"{value_si / f:.{digits}g} {name}"
    if dim == AREA:
        return f"{value_si / 1e-6:.{digits}g} mm2"
    for p, f in _PREFIXES:
        if abs(value_si) >= f:
            return f"{value_si / f:.{digits}g} {p}{base}"
    return f"{value_si:.{digits}g} {base}"
