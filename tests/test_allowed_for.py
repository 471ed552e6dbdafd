"""--allowed-for on compare: only what a buyer can obtain on a date, with the exclusions said."""

from __future__ import annotations

import json


def test_compare_allowed_for_cn_excludes_h100(run_cli):
    code, out, err = run_cli("compare", "hgx-h20", "hgx-h100", "cloudmatrix-384", "--allowed-for", "CN",
                             "--date", "2025-09-20", "--json")
    assert code == 0, err
    data = json.loads(out)
    ids = [s["id"] for s in data["systems"]]
    assert ids == ["hgx-h20", "cloudmatrix-384"]
    assert "hgx-h100" in data["allowed_for"]["excluded"]
    assert "us-3a090" in data["allowed_for"]["excluded"]["hgx-h100"]


def test_compare_allowed_for_before_april_letters_keeps_h20(run_cli):
    code, out, _ = run_cli("compare", "hgx-h20", "cloudmatrix-384", "--allowed-for", "CN", "--date", "2025-03-01",
                           "--json")
    assert code == 0
    assert [s["id"] for s in json.loads(out)["systems"]] == ["hgx-h20", "cloudmatrix-384"]


def test_allowed_for_bad_date(run_cli):
    code, _, err = run_cli("compare", "hgx-h20", "cloudmatrix-384", "--allowed-for", "CN", "--date", "2025-13-01")
    assert code == 2 and "--date" in err and len(err.strip().splitlines()) == 1


def test_allowed_for_too_few_left(run_cli):
    code, _, err = run_cli("compare", "hgx-h100", "gb200-nvl72", "--allowed-for", "CN", "--date", "2025-09-20")
    assert code == 2 and "at least two" in err


def test_infer_allowed_for_refuses_h100_for_cn(run_cli):
    code, out, err = run_cli("infer", "llama-3.1-8b", "--on", "hgx-h100", "--allowed-for", "CN", "--date",
                             "2025-09-20", "--json")
    assert code == 2 and out == ""
    assert "hgx-h100 is excluded" in err and "us-3a090-2023" in err


def test_infer_allowed_for_keeps_h20_for_cn(run_cli):
    code, out, err = run_cli("infer", "llama-3.1-8b", "--on", "hgx-h20", "--allowed-for", "CN", "--date",
                             "2025-09-20", "--json")
    assert code == 0, err
    assert any("obtainable" in a for a in json.loads(out)["assumptions"])


def test_train_allowed_for(run_cli):
    code, out, err = run_cli("train", "llama-3.1-8b", "--on", "h100", "--chips", "64", "--allowed-for", "CN",
                             "--date", "2025-09-20", "--json")
    assert code == 2 and "h100 is excluded" in err
    code, out, err = run_cli("train", "llama-3.1-8b", "--on", "h20", "--chips", "64", "--allowed-for", "CN",
                             "--date", "2025-03-01", "--json", "--top", "1")
    assert code == 0, err
    assert json.loads(out)["allowed_for"]["country"] == "CN"
