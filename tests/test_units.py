from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supernode import units


def test_decimal_and_binary_prefixes():
    assert units.to_si(1, "TB") == 1e12
    assert units.to_si(1, "GiB") == 2**30
    assert units.to_si(400, "Gb/s") == 50e9
    assert units.to_si(989.5, "TFLOP/s") == pytest.approx(9.895e14)
    assert units.to_si(3, "us") == pytest.approx(3e-6)
    assert units.to_si(814, "mm2") == pytest.approx(814e-6)


def test_fmt():
    assert units.fmt(9.895e14, units.RATE) == "990 TFLOP/s"
    assert units.fmt(None, units.RATE) == "unknown"
    assert units.fmt(1.4e12, units.BANDWIDTH) == "1.4 TB/s"


@given(st.floats(min_value=1e-3, max_value=1e6), st.sampled_from(sorted(units.UNITS)))
def test_round_trip(v, unit):
    assert units.from_si(units.to_si(v, unit), unit) == pytest.approx(v, rel=1e-12)
