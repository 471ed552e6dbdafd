"""The September 2025 headline claims, reproduced from the catalog (data/claims/*.yaml)."""

from __future__ import annotations

import json

import pytest

from supernode.claims import check_claim, claims


def _checks(catalog):
    return [(c.id, ch.metric) for c in claims(catalog) for ch in check_claim(catalog, c)]


def test_claims_exist(catalog):
    ids = {c.id for c in claims(catalog)}
    assert {"atlas950-superpod-vs-nvl144", "atlas950-supercluster-vs-colossus",
            "cloudmatrix384-vs-gb200-nvl72"} <= ids


@pytest.mark.parametrize("claim_id", ["atlas950-superpod-vs-nvl144", "atlas950-supercluster-vs-colossus",
                                      "cloudmatrix384-vs-gb200-nvl72"])
def test_claim_reproduced(catalog, claim_id):
    claim = catalog.extra["claims"][claim_id]
    for ch in check_claim(catalog, claim):
        assert ch.computed_ratio is not None, ch.metric
        assert ch.holds, f"{claim_id} {ch.metric}: claimed {ch.claimed_ratio}, computed {ch.computed_ratio:.3f}"


def test_atlas950_vs_nvl144_numbers(run_cli):
    code, out, _ = run_cli("compare", "vera-rubin-nvl144", "atlas-950-superpod", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["ratios"]["dense_fp8_flop_per_s"][0] == pytest.approx(6.67, rel=0.01)
    assert data["ratios"]["chips"][0] == pytest.approx(8192 / 72)
    pod = data["systems"][1]
    assert pod["figures"]["dense_fp8_flop_per_s"]["kind"] == "spec"


def test_colossus_composition_is_stated(run_cli):
    code, out, _ = run_cli("compare", "xai-colossus", "atlas-950-supercluster", "--json")
    assert code == 0
    data = json.loads(out)
    colossus = data["systems"][0]
    assert colossus["chips"] == 200_000
    assert colossus["assumptions"], "the Colossus composition must be stated as an assumption"
    assert colossus["figures"]["dense_fp8_flop_per_s"]["kind"] in ("derived", "estimate")
    assert data["ratios"]["dense_fp8_flop_per_s"][0] == pytest.approx(1.32, rel=0.02)


def test_cm384_vs_nvl72_per_chip_third(run_cli):
    code, out, _ = run_cli("compare", "gb200-nvl72", "cloudmatrix-384", "--json")
    data = json.loads(out)
    r = data["ratios"]
    assert r["dense_bf16_flop_per_s"][0] == pytest.approx(1.66, rel=0.02)
    assert r["memory_bytes"][0] == pytest.approx(3.6, rel=0.03)
    assert r["memory_bandwidth_bytes_per_s"][0] == pytest.approx(2.13, rel=0.02)
    assert r["power_w"][0] == pytest.approx(3.86, rel=0.02)
    assert r["chips"][0] == pytest.approx(384 / 72)
    assert r["dense_bf16_flop_per_s_per_chip"][0] == pytest.approx(0.312, rel=0.02)
    for key in ("chips", "dense_fp8_flop_per_s", "dense_bf16_flop_per_s", "memory_bytes",
                "memory_bandwidth_bytes_per_s", "scale_up_bandwidth_bytes_per_s", "power_w"):
        assert key in r


def test_memory_bandwidth_line_rtx_pro_6000d_and_h20(catalog):
    from supernode.hardware import chip_spec

    line = 1400e9  # April 2025 licence-letter DRAM bandwidth parameter (rules.md)
    d = chip_spec(catalog.chip("rtx-pro-6000d")).memory_bandwidth_bytes_per_s
    h20 = chip_spec(catalog.chip("h20")).memory_bandwidth_bytes_per_s
    assert 0.98 * line < d < line
    assert h20 == pytest.approx(4.0e12) and h20 > 2.5 * line


def test_compare_table_human(run_cli):
    code, out, _ = run_cli("compare", "gb200-nvl72", "cloudmatrix-384")
    assert code == 0
    assert "cloudmatrix-384 / gb200-nvl72" in out and "1.66x" in out


def test_report_markdown_and_html(run_cli, tmp_path):
    code, out, _ = run_cli("report")
    assert code == 0 and "6.7x" in out and "reproduced" in out and "NOT reproduced" not in out
    html_path = tmp_path / "r.html"
    code, out, _ = run_cli("report", "--out", str(html_path))
    assert code == 0 and html_path.read_text().startswith("<!doctype html>")


def test_catalog_listing_commands(run_cli):
    for what in ("chips", "systems", "sources"):
        code, out, err = run_cli("catalog", what, "--json")
        assert code == 0, err
        data = json.loads(out)
        assert len(data[what]) >= 10
    code, out, _ = run_cli("catalog", "chips")
    assert code == 0 and "ascend-910c" in out


def test_show_every_field(run_cli):
    code, out, _ = run_cli("show", "cloudmatrix-384", "--json")
    assert code == 0
    data = json.loads(out)
    up = data["numbers"]["tiers.0.bandwidth"]
    assert up["per_chip_per_direction_bytes_per_s"] == pytest.approx(7 * 400e9 / 8)
    assert up["kind"] and up["source"]
