"""Worked figures of issue 5 on the shipped catalog (chips, rules, sources) and the `comply` CLI.

Figures from rules.md part F: H100 TPP 15,832 (3A090.a.1); A100 4,992; H20 TPP 2,368, PD 2.91,
not 3A090 under the Oct 2023 text, caught by the Apr 2025 letters by its 4.0 TB/s; L20 TPP about
1,914, PD just under 3.2; RTX PRO 6000D memory bandwidth just under 1,400 GB/s.
"""

from __future__ import annotations

import json

import pytest

from supernode.rules import allowed_chips, allowed_systems, classify, status
from supernode.rules.schema import iter_atoms


def test_every_rule_loads_and_cites_known_sources(catalog):
    rules = catalog.extra["rules"]
    assert {"us-3a090-2022", "us-3a090-2023", "us-hbm-2024-12", "us-ai-diffusion-2025-01",
            "us-bandwidth-letters-2025-04", "us-h20-licences-2025-08", "cn-h20-guidance-2025-08",
            "cn-cac-rtx-pro-6000d-2025-09", "cn-customs-nvidia-2025-10"} <= set(rules)
    for r in rules.values():
        for _, source_id in r.source_ids():
            assert source_id in catalog.sources, (r.id, source_id)


def test_every_chip_id_named_in_a_rule_exists(catalog):
    for r in catalog.extra["rules"].values():
        preds = [c.when for c in r.clauses] + ([r.scope] if r.scope is not None else [])
        for pred in preds:
            for atom in iter_atoms(pred):
                if atom.attr == "chip_id":
                    for chip_id in ([atom.value] if isinstance(atom.value, str) else atom.value):
                        assert chip_id in catalog.chips, (r.id, chip_id)


@pytest.mark.parametrize("chip_id, tpp", [("h100", 15_832), ("a100", 4_992), ("h20", 2_368)])
def test_catalog_tpp(catalog, chip_id, tpp):
    assert classify(catalog.chip(chip_id)).tpp.value == pytest.approx(tpp)


def test_catalog_h20_pd_and_bandwidth(catalog):
    c = classify(catalog.chip("h20"))
    assert c.performance_density_tpp_per_mm2.value == pytest.approx(2.91, abs=0.005)
    assert c.memory_bandwidth_bytes_per_s.value == pytest.approx(4.0e12)


def test_catalog_l20_tpp_about_1914_pd_just_under_3_2(catalog):
    c = classify(catalog.chip("l20"))
    assert c.tpp.low == pytest.approx(1_913.6)
    assert 3.1 < c.tpp.low / c.die_area_mm2 < 3.2


def test_catalog_l20_not_3a090(catalog):
    v = {v.rule_id: v for v in status(catalog, "l20", "2025-03-01", "CN").verdicts}["us-3a090-2023"]
    assert v.label == "not 3A090"


@pytest.mark.parametrize("chip_id, label, level", [
    ("rtx-pro-6000-server", "3A090.a.1", "licence_required"),
    ("rtx-pro-6000", "3A090.a.1 (not datacenter)", "licensed_with_conditions"),
    ("rtx-pro-6000-maxq", "3A090.a.1 (not datacenter)", "licensed_with_conditions"),
])
def test_catalog_rtx_pro_6000_editions_split_on_datacenter_marketing(catalog, chip_id, label, level):
    """rules.md's worked table: every RTX PRO 6000 Blackwell edition is 3A090.a.1 by TPP (7,000-8,100), but only the
    Server Edition is marketed for datacenters; the Workstation and Max-Q editions are NAC-eligible (Note 2's
    non-datacenter branch) rather than licence with a presumption of denial."""
    v = {v.rule_id: v for v in status(catalog, chip_id, "2025-03-01", "CN").verdicts}["us-3a090-2023"]
    assert (v.label, v.level) == (label, level)


def test_catalog_rtx_pro_6000d_bandwidth_just_under_1400(catalog):
    c = classify(catalog.chip("rtx-pro-6000d"))
    assert 1.39e12 < c.memory_bandwidth_bytes_per_s.value < 1.4e12
    assert c.io_bandwidth_bytes_per_s.value == pytest.approx(128e9)  # PCIe only, counted once


def test_catalog_h100_is_3a090_a1(catalog):
    v = {v.rule_id: v for v in status(catalog, "h100", "2024-01-01", "CN").verdicts}["us-3a090-2023"]
    assert (v.label, v.level) == ("3A090.a.1", "licence_required")


@pytest.mark.parametrize("day, export, import_, obtainable", [
    ("2025-03-01", "free", "free", True),
    ("2025-04-09", "licence_required", "free", False),
    ("2025-08-08", "licensed_with_conditions", "free", True),
    ("2025-08-12", "licensed_with_conditions", "discouraged", True),
])
def test_catalog_h20_for_cn(catalog, day, export, import_, obtainable):
    s = status(catalog, "h20", day, "CN")
    assert (s.export_side.level, s.import_side.level, s.obtainable) == (export, import_, obtainable)
    oct23 = {v.rule_id: v for v in s.verdicts}["us-3a090-2023"]
    assert oct23.label == "not 3A090"


@pytest.mark.parametrize("day, obtainable", [("2025-09-16", True), ("2025-09-17", False)])
def test_catalog_rtx_pro_6000d_for_cn(catalog, day, obtainable):
    s = status(catalog, "rtx-pro-6000d", day, "CN")
    assert s.export_side.level == "free"
    assert s.obtainable is obtainable


def test_catalog_allowed_for_cn(catalog):
    allowed, excluded = allowed_chips(catalog, "CN", "2025-09-20")
    assert "h20" in allowed and "ascend-910c" in allowed
    assert {"h100", "b200", "rtx-pro-6000d"} <= set(excluded)
    sys_allowed, sys_excluded = allowed_systems(catalog, "CN", "2025-09-20")
    assert set(sys_allowed) | set(sys_excluded) == set(catalog.systems)


# ---------------------------------------------------------------- CLI through the real entry point

def test_cli_comply_json(run_cli):
    code, out, err = run_cli("comply", "--date", "2025-04-09", "--buyer", "cn", "--chip", "h20", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["buyer"] == "CN" and data["date"] == "2025-04-09"
    h20 = data["chips"][0]
    assert h20["tpp"] == pytest.approx(2368)
    assert h20["performance_density_tpp_per_mm2"] == pytest.approx(2.909, abs=0.001)
    assert h20["memory_bandwidth_bytes_per_s"] == pytest.approx(4e12)
    assert h20["export_side"]["level"] == "licence_required" and h20["obtainable"] is False
    letter = [v for v in h20["verdicts"] if v["rule_id"] == "us-bandwidth-letters-2025-04"][0]
    assert letter["source_id"] in data["sources"] and letter["side"] == "export"


def test_cli_comply_human(run_cli):
    code, out, _ = run_cli("comply", "--date", "2025-09-17", "--buyer", "CN", "--chip", "rtx-pro-6000d")
    assert code == 0
    assert "banned" in out and "cn-cac-rtx-pro-6000d-2025-09" in out and "not obtainable" in out


@pytest.mark.parametrize("args, needle", [
    (("--date", "2025-13-01"), "--date"),
    (("--chip", "no-such-chip"), "--chip"),
    (("--buyer", "China"), "--buyer"),
    (("--buyer", "XX"), "--buyer: 'XX' is not an assigned ISO 3166-1"),
    (("--buyer", "zz"), "--buyer: 'zz' is not an assigned ISO 3166-1"),
])
def test_cli_comply_bad_input_is_one_line_exit_2(run_cli, args, needle):
    code, out, err = run_cli("comply", *args)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1


def test_country_list_is_iso_3166_1_alpha_2():
    """The 249 assigned codes, Norway's "NO" read as a string (YAML 1.1 reads a bare NO as false), no duplicates."""
    from supernode.rules import countries

    names = countries._names()
    assert len(names) == 249 and all(len(c) == 2 and c.isupper() for c in names)
    assert names["NO"] == "Norway" and names["CN"] == "China"
    assert not any(countries.is_assigned(c) for c in ("XX", "ZZ", "AA", "QM", "EU", "UK"))

