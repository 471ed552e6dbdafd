"""Rule evaluator, TPP/PD classification and buyer status on small in-test chips (rules.md parts A-F).

Chip figures are those of rules.md part F (accelerators.yaml); the rules and sources are the
shipped data files. Worked figures: H100 TPP 15,832; A100 4,992; H20 2,368 and PD 2.91; L20
1,913.6 and PD 3.14; dates tested before, on and after each rule's effective date.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules_fixtures import (a100, a800, bw, chip, h20, h100, h800, l20, q, rtx_pro_6000d, rules_catalog, tpu_v5e,
                            unknown)
from supernode.rules import allowed_chips, classify, evaluate_rule, rules_in_force, status
from supernode.rules.evaluate import eval_predicate
from supernode.rules.schema import AllOf, AnyOf, Atom, level_rank
from supernode.rules.status import combine


@pytest.fixture(scope="module")
def cat():
    return rules_catalog()


def rule(cat, rule_id):
    return cat.extra["rules"][rule_id]


# ---------------------------------------------------------------- TPP and PD (rules.md A.1, A.2, F)

def test_tpp_h100_is_fp8_1979_times_8():
    c = classify(h100())
    assert c.tpp.value == pytest.approx(15_832)
    assert c.tpp_precision == "fp8"
    assert "fp8 1,979 x 8 = 15,832" in c.tpp_arithmetic
    assert c.performance_density_tpp_per_mm2.value == pytest.approx(15_832 / 814)


def test_tpp_a100_is_4992_from_int8_bf16_and_tf32_at_32_bits():
    c = classify(a100())
    assert c.tpp.value == pytest.approx(4_992)
    assert "tf32 156 x 32 = 4,992" in c.tpp_arithmetic  # TF32 counted as 32 bits (rules.md G.7)
    assert c.performance_density_tpp_per_mm2.value == pytest.approx(6.04, abs=0.005)


def test_h20_tpp_2368_pd_2_91():
    c = classify(h20())
    assert c.tpp.value == pytest.approx(2_368)
    assert c.performance_density_tpp_per_mm2.value == pytest.approx(2.91, abs=0.005)
    assert "2,368 / 814 mm2" in c.performance_density_arithmetic
    assert c.memory_bandwidth_bytes_per_s.value == pytest.approx(4.0e12)
    assert c.io_bandwidth_bytes_per_s.value == pytest.approx(1.028e12)  # 900 NVLink + 128 PCIe


def test_l20_tpp_about_1914_pd_just_under_3_2():
    c = classify(l20())
    assert c.tpp.value == pytest.approx(1_913.6)
    assert 3.1 < c.performance_density_tpp_per_mm2.value < 3.2


def test_unpublished_rate_leaves_tpp_open_above_and_pd_unknown():
    c = classify(rtx_pro_6000d())
    assert not c.tpp.known and c.tpp.value is None
    assert not c.performance_density_tpp_per_mm2.known
    assert "tpp" in c.unknown and "performance_density" in c.unknown
    partly = classify(chip("x", compute={"bf16": q(200, "TFLOP/s"), "fp8": unknown("TFLOP/s")}, mem_bw=1000))
    assert partly.tpp.low == pytest.approx(3_200) and partly.tpp.high == float("inf")


def test_unknown_die_area_leaves_pd_unknown():
    c = classify(tpu_v5e())
    assert c.tpp.value == pytest.approx(3_152)
    assert c.performance_density_tpp_per_mm2.value is None
    assert "die area unknown" in c.performance_density_arithmetic


def test_io_counts_links_and_both_directions():
    # 18 links x 25 GB/s per direction = 450 GB/s per direction = 900 GB/s bidirectional; + PCIe 128
    c = classify(chip("x", compute={"bf16": q(100, "TFLOP/s")}, mem_bw=1000,
                      scale_up=bw(25, direction="unidirectional", per="link", links=18), host=128))
    assert c.io_bandwidth_bytes_per_s.value == pytest.approx(1.028e12)
    unknown_link = chip("y", compute={"bf16": q(100, "TFLOP/s")}, mem_bw=1000,
                        scale_up={**bw(1), "value": None, "reason": "not published", "kind": None, "source": None})
    assert classify(unknown_link).io_bandwidth_bytes_per_s.value is None


# ---------------------------------------------------------------- three-valued predicates

def test_three_valued_all_and_any():
    c = classify(tpu_v5e())  # TPP known, PD unknown
    tpp_hi = Atom(attr="tpp", op=">=", value=1600)
    tpp_lo = Atom(attr="tpp", op=">=", value=4800)
    pd = Atom(attr="performance_density", op=">=", value=5.92)
    assert eval_predicate(AllOf(all=[tpp_hi, pd]), c)[0] is None
    assert eval_predicate(AllOf(all=[tpp_lo, pd]), c)[0] is False  # one False settles all
    assert eval_predicate(AnyOf(any=[tpp_hi, pd]), c)[0] is True  # one True settles any
    assert eval_predicate(AnyOf(any=[tpp_lo, pd]), c)[0] is None
    assert eval_predicate(Atom(attr="performance_density", op="unknown"), c)[0] is True


def test_combine_takes_the_most_restrictive_of_each_possibility():
    assert combine([("free", "licence_required"), ("licensed_with_conditions",)]) == (
        "licensed_with_conditions", "licence_required")
    assert combine([("banned",), ("free", "licence_required")]) == ("banned",)
    assert combine([]) == ("free",)


# ---------------------------------------------------------------- Oct 2023 rule (3A090, rules.md A.3)

@pytest.mark.parametrize("make, label, level", [
    (h100, "3A090.a.1", "licence_required"),
    (a100, "3A090.a.1", "licence_required"),
    (h800, "3A090.a.1", "licence_required"),
    (h20, "not 3A090", "free"),  # b.1 needs TPP >= 2,400; b.2 needs PD >= 3.2
    (l20, "not 3A090", "free"),  # TPP < 2,400 and PD 3.14 < 3.2
])
def test_oct2023_classification(cat, make, label, level):
    v = evaluate_rule(rule(cat, "us-3a090-2023"), classify(make()))
    assert (v.label, v.level) == (label, level)
    assert v.source_id == "fr_2023"


def _synthetic(bf16_tflops, area_mm2, datacenter=True):
    return chip("s", compute={"bf16": q(bf16_tflops, "TFLOP/s")}, mem_bw=500, die_area=area_mm2,
                datacenter=datacenter)


@pytest.mark.parametrize("bf16, area, label", [
    (300, 1000, "3A090.a.1"),       # TPP 4,800 exactly: "or more"
    (299.99, 1000, "3A090.b.1"),    # TPP 4,799.84, PD 4.8
    (100, 270, "3A090.a.2"),        # TPP 1,600, PD 5.93
    (150, 1500, "3A090.b.1"),       # TPP 2,400, PD 1.6 exactly
    (149.99, 1500, "not 3A090"),    # TPP just under 2,400, PD < 3.2
    (100, 500, "3A090.b.2"),        # TPP 1,600, PD 3.2 exactly
    (99.99, 100, "not 3A090"),      # TPP just under 1,600 whatever the PD
])
def test_oct2023_thresholds_at_the_edges(cat, bf16, area, label):
    v = evaluate_rule(rule(cat, "us-3a090-2023"), classify(_synthetic(bf16, area)))
    assert v.label == label


def test_oct2023_non_datacenter_note2_and_nac(cat):
    r = rule(cat, "us-3a090-2023")
    assert evaluate_rule(r, classify(_synthetic(250, 100, datacenter=False))).label == "not 3A090 (Note 2)"
    v = evaluate_rule(r, classify(_synthetic(500, 750, datacenter=False)))
    assert (v.level, v.source_id) == ("licensed_with_conditions", "bis_nac")


def test_oct2023_undecided_when_pd_matters_and_die_area_is_unknown(cat):
    v = evaluate_rule(rule(cat, "us-3a090-2023"), classify(tpu_v5e()))
    assert v.level == "undecided"
    assert set(v.possible_levels) == {"free", "licensed_with_conditions", "licence_required"}
    assert "performance_density" in v.unknown_attrs and "die area" in v.reason


def test_tpp_lower_bound_still_decides_a1(cat):
    c = classify(chip("x", compute={"fp8": q(1000, "TFLOP/s"), "fp4": unknown("TFLOP/s")}, mem_bw=1000))
    assert evaluate_rule(rule(cat, "us-3a090-2023"), c).label == "3A090.a.1"


def test_6000d_reported_clause_yields_to_published_numbers(cat):
    r = rule(cat, "us-3a090-2023")
    assert evaluate_rule(r, classify(rtx_pro_6000d())).label == "not 3A090 (reported)"
    published = chip("rtx-pro-6000d", compute={"fp8": q(830, "TFLOP/s")}, mem_bw=1398, die_area=750)
    assert evaluate_rule(r, classify(published)).label == "3A090.a.1"  # TPP 6,640


# ---------------------------------------------------------------- Oct 2022 rule and its supersession

def test_oct2022_io_test_catches_a100_not_a800_or_h800(cat):
    for make, level in ((a100, "licence_required"), (h100, "licence_required"), (a800, "free"), (h800, "free")):
        assert status(cat, make().id, "2023-06-01", "CN").export_side.level == level, make


@pytest.mark.parametrize("day, rule_id, a800_obtainable", [
    ("2022-10-06", None, True),                 # before the first rule
    ("2022-10-07", "us-3a090-2022", True),      # on: A800 under the I/O line
    ("2023-11-16", "us-3a090-2022", True),      # last day of the 2022 text
    ("2023-11-17", "us-3a090-2023", False),     # the 2023 text drops the I/O test
])
def test_2022_to_2023_supersession(cat, day, rule_id, a800_obtainable):
    ids = [r.id for r in rules_in_force(cat, dt.date.fromisoformat(day))]
    assert ("us-3a090-2022" in ids) == (rule_id == "us-3a090-2022")
    assert ("us-3a090-2023" in ids) == (rule_id == "us-3a090-2023")
    assert status(cat, "a800", day, "CN").obtainable is a800_obtainable
    assert status(cat, "a100", day, "CN").obtainable is (rule_id is None)


# ---------------------------------------------------------------- H20 for a Chinese buyer (rules.md B.7, B.8, D)

@pytest.mark.parametrize("day, export, import_, obtainable, binding", [
    ("2025-03-01", "free", "free", True, ()),
    ("2025-04-08", "free", "free", True, ()),
    ("2025-04-09", "licence_required", "free", False, ("us-bandwidth-letters-2025-04",)),
    ("2025-08-07", "licence_required", "free", False, ("us-bandwidth-letters-2025-04",)),
    ("2025-08-08", "licensed_with_conditions", "free", True, ("us-h20-licences-2025-08",)),
    ("2025-08-11", "licensed_with_conditions", "free", True, ("us-h20-licences-2025-08",)),
    ("2025-08-12", "licensed_with_conditions", "discouraged", True, ("us-h20-licences-2025-08",)),
])
def test_h20_timeline_for_cn(cat, day, export, import_, obtainable, binding):
    s = status(cat, "h20", day, "CN")
    assert s.export_side.level == export
    assert s.import_side.level == import_
    assert s.obtainable is obtainable
    assert s.export_side.binding_rule_ids == binding


def test_h20_reasons_name_the_bandwidth_and_the_revenue_share(cat):
    letter = {v.rule_id: v for v in status(cat, "h20", "2025-04-09", "CN").verdicts}["us-bandwidth-letters-2025-04"]
    assert "DRAM bandwidth 4,000 GB/s >= 1,400 GB/s" in letter.reason
    assert letter.source_id == "ft_intel_2025_04"
    oct23 = {v.rule_id: v for v in status(cat, "h20", "2025-04-09", "CN").verdicts}["us-3a090-2023"]
    assert oct23.level == "free" and "TPP 2,368 < 2,400" in oct23.reason
    lic = {v.rule_id: v for v in status(cat, "h20", "2025-08-08", "CN").verdicts}["us-h20-licences-2025-08"]
    assert "15%" in lic.reason and lic.source_id == "ft_15pct"
    guidance = {v.rule_id: v for v in status(cat, "h20", "2025-08-12", "CN").verdicts}["cn-h20-guidance-2025-08"]
    assert guidance.side == "import" and guidance.source_id == "bbg_2025_08_12"


# ---------------------------------------------------------------- RTX PRO 6000D

def test_6000d_bandwidth_just_under_the_letter(cat):
    c = classify(rtx_pro_6000d())
    assert 1.39e12 < c.memory_bandwidth_bytes_per_s.value < 1.4e12
    v = evaluate_rule(rule(cat, "us-h20-licences-2025-08"), c)
    assert v.level == "free" and "DRAM bandwidth 1,398 GB/s < 1,400 GB/s" in v.reason


@pytest.mark.parametrize("day, import_, obtainable", [
    ("2025-09-16", "free", True), ("2025-09-17", "banned", False), ("2025-12-01", "banned", False)])
def test_6000d_no_us_licence_but_cac_order(cat, day, import_, obtainable):
    s = status(cat, "rtx-pro-6000d", day, "CN")
    assert s.export_side.level == "free"
    assert s.import_side.level == import_
    assert s.obtainable is obtainable


# ---------------------------------------------------------------- other rules

def test_ai_diffusion_never_bound_before_rescission(cat):
    assert "us-ai-diffusion-2025-01" not in [r.id for r in rules_in_force(cat, dt.date(2025, 1, 12))]
    s = status(cat, "h100", "2025-03-01", "IN")
    v = {v.rule_id: v for v in s.verdicts}["us-ai-diffusion-2025-01"]
    assert v.applies_to_buyer and v.level == "free" and "2025-05-15" in v.reason
    assert s.obtainable is True
    assert "us-ai-diffusion-2025-01" not in [r.id for r in rules_in_force(cat, dt.date(2025, 5, 13))]
    assert {v.rule_id: v for v in status(cat, "h100", "2025-03-01", "DE").verdicts}[
        "us-ai-diffusion-2025-01"].applies_to_buyer is False  # Tier 1


def test_us_rules_do_not_reach_a_chinese_chip_but_gp10_guidance_does(cat):
    before = status(cat, "ascend-910b", "2025-05-12", "CN")
    assert {v.rule_id: v.label for v in before.verdicts}["us-3a090-2023"] == "not subject"
    assert before.export_side.level == "free"
    after = status(cat, "ascend-910b", "2025-05-13", "CN")
    assert after.export_side.level == "discouraged" and after.obtainable is True


@pytest.mark.parametrize("day, level", [("2025-10-09", "free"), ("2025-10-10", "discouraged")])
def test_customs_inspections_of_nvidia_imports(cat, day, level):
    assert status(cat, "l20", day, "CN").import_side.level == level


def test_no_buyer_gives_per_rule_levels_only(cat):
    s = status(cat, "h100", "2025-09-01")
    assert s.obtainable is None and s.export_side is None
    assert all(v.applies_to_buyer is None for v in s.verdicts)


# ---------------------------------------------------------------- allowed for

def test_allowed_chips_for_cn_after_the_cac_order(cat):
    allowed, excluded = allowed_chips(cat, "CN", "2025-09-20")
    assert {"h20", "l20", "ascend-910b"} <= set(allowed)
    assert "3A090.a.1" in excluded["h100"] and "fr_2023" in excluded["h100"]
    assert "banned" in excluded["rtx-pro-6000d"] and "ft_2025_09_17" in excluded["rtx-pro-6000d"]
    assert excluded["tpu-v5e"].startswith("undecided") and "die area" in excluded["tpu-v5e"]
    assert "tpu-v5e" in allowed_chips(cat, "CN", "2025-09-20", include_undecided=True).allowed


def test_allowed_chips_for_cn_before_the_h20_letter_and_for_germany(cat):
    assert "h20" in allowed_chips(cat, "CN", "2025-04-08").allowed
    assert "h20" in allowed_chips(cat, "CN", "2025-04-09").excluded
    allowed, excluded = allowed_chips(cat, "de", "2025-09-20")
    assert excluded == {} and "h100" in allowed


def test_bad_inputs_are_one_line_usage_errors(cat):
    from supernode.errors import UsageError

    with pytest.raises(UsageError, match="date"):
        status(cat, "h20", "2025-02-30", "CN")
    with pytest.raises(UsageError, match="buyer"):
        status(cat, "h20", "2025-02-01", "China")
    with pytest.raises(UsageError, match="unknown chip id"):
        status(cat, "h-20", "2025-02-01", "CN")


# ---------------------------------------------------------------- properties

@settings(max_examples=200, deadline=None)
@given(tflops=st.floats(10, 3000), extra=st.floats(1.0, 4.0), area=st.floats(100, 2500),
       datacenter=st.booleans())
def test_more_compute_is_never_less_restricted(tflops, extra, area, datacenter):
    r = rules_catalog(chips=()).extra["rules"]["us-3a090-2023"]
    lo = evaluate_rule(r, classify(_synthetic(tflops, area, datacenter)))
    hi = evaluate_rule(r, classify(_synthetic(tflops * extra, area, datacenter)))
    assert level_rank(hi.level) >= level_rank(lo.level)


@settings(max_examples=100, deadline=None)
@given(mem_gbs=st.floats(100, 9000), io_gbs=st.floats(0, 3000))
def test_unit_rescaling_changes_nothing(mem_gbs, io_gbs):
    r = rules_catalog(chips=()).extra["rules"]["us-bandwidth-letters-2025-04"]
    in_gb = chip("x", compute={"bf16": q(100, "TFLOP/s")}, mem_bw=mem_gbs, host=io_gbs or None)
    data = in_gb.model_dump()
    data["memory"]["bandwidth"] = {**data["memory"]["bandwidth"], "value": mem_gbs / 1000, "unit": "TB/s"}
    if data["host_interface"]:
        data["host_interface"]["bandwidth"] = {**data["host_interface"]["bandwidth"], "value": io_gbs * 8,
                                               "unit": "Gb/s"}
    in_tb = type(in_gb).model_validate(data)
    a, b = evaluate_rule(r, classify(in_gb)), evaluate_rule(r, classify(in_tb))
    assert (a.label, a.level) == (b.label, b.level)


# ---------------------------------------------------------------- rule files: one-line errors

_GOOD = """id: x-rule
jurisdiction: US
title: t
instrument: i
effective_date: 2025-01-01
source: fr_2023
locator: l
buyers: [CN]
clauses:
  - label: big
    when: {attr: tpp, op: ">=", value: 4800}
    level: licence_required
    note: n
default_note: d
"""


@pytest.mark.parametrize("edit, field", [
    (("source: fr_2023", "source: fr_2023\ncolour: red"), "colour: unknown key"),
    (("op: \">=\", value: 4800", "op: \">=\", value: 4800, unit: GB/s"), "clauses.0.when"),
    (("attr: tpp", "attr: memory_bandwidth"), "unit must be a bandwidth unit"),
    (("effective_date: 2025-01-01", "effective_date: 2025-02-30"), "effective_date"),
    (("effective_date: 2025-01-01", "effective_date: 2025-01-01\nend_date: 2025-06-01"), "end_date needs"),
    (("buyers: [CN]", "buyers: [China]"), "buyers: country 'China'"),
    (("buyers: [CN]", "buyers: [CN, XX]"), "buyers: country 'XX'"),
    (("level: licence_required", "level: forbidden"), "clauses.0.level"),
])
def test_bad_rule_file_is_one_line_error(tmp_path, edit, field):
    from supernode.catalog.loader import parse_item
    from supernode.errors import CatalogError
    from supernode.rules.schema import Rule

    path = tmp_path / "x-rule.yaml"
    path.write_text(_GOOD.replace(*edit))
    with pytest.raises(CatalogError) as err:
        parse_item(path, Rule)
    msg = str(err.value)
    assert str(path) in msg and field in msg and "\n" not in msg


def test_good_rule_file_parses(tmp_path):
    from supernode.catalog.loader import parse_item
    from supernode.rules.schema import Rule

    path = tmp_path / "x-rule.yaml"
    path.write_text(_GOOD)
    assert parse_item(path, Rule).effective_date == dt.date(2025, 1, 1)


def test_cross_reference_checks(cat):
    from supernode.errors import CatalogError
    from supernode.rules import check_rules

    check_rules(cat)  # the shipped rules are consistent
    bad = rules_catalog(chips=())
    r = bad.extra["rules"]["us-3a090-2022"]
    bad.extra["rules"]["us-3a090-2022"] = r.model_copy(update={"end_date": dt.date(2023, 11, 18)})
    with pytest.raises(CatalogError, match="end_date"):
        check_rules(bad)
    bad = rules_catalog(chips=())
    bad.sources.pop("fr_2022")
    with pytest.raises(CatalogError, match="unknown source id 'fr_2022'"):
        check_rules(bad)
