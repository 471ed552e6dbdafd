"""The serving model's track record (supernode.infer.track_record): the stored signed errors match the model as it is,
comparable cases are picked by chip family and load, and every serving estimate carries them."""

from __future__ import annotations

import pytest

from supernode.catalog.loader import parse_item
from supernode.errors import CatalogError
from supernode.infer import track_record as tr
from supernode.infer.validation import CaseResult


def test_stored_record_matches_the_model(inference_result, inference_case_files):
    """Any change of an estimate or a case makes this fail until `supernode validate --write-track-record` is run."""
    fresh = {c["id"]: c for c in tr.build([inference_result(p) for p in inference_case_files])["cases"]}
    stored = {c.id: c for c in tr.load().cases}
    hint = "run `supernode validate --write-track-record`"
    assert set(stored) == set(fresh), f"track record cases differ from validation/cases: {hint}"
    for cid, c in stored.items():
        f = fresh[cid]
        assert (c.family, c.kind, c.expected) == (f["family"], f["kind"], f["expected"]), f"{cid}: {hint}"
        assert c.error_fraction == pytest.approx(f["error_fraction"], abs=1e-4), f"{cid}: {hint}"
        if f["sequences_per_chip"] is None:
            assert c.sequences_per_chip is None, f"{cid}: {hint}"
        else:
            assert c.sequences_per_chip == pytest.approx(f["sequences_per_chip"], rel=1e-3), f"{cid}: {hint}"


def _record(cases):
    return tr.TrackRecord(id="inference-track-record", title="t", note="n", window=4.0, min_cases=3,
                          cases=[tr.TrackCase(id=i, family=fam, kind=k, sequences_per_chip=s, error_fraction=e,
                                              expected="pass") for i, fam, k, s, e in cases])


def test_comparable_takes_the_family_within_the_window():
    rec = _record([("a", "f", "offline", 10.0, 0.10), ("b", "f", "decode", 40.0, 0.30), ("c", "f", "offline", 2.5, -0.2),
                   ("d", "f", "offline", 41.0, 0.9),  # outside 10 x 4
                   ("e", "g", "offline", 10.0, 0.5),  # another family
                   ("p", "f", "prefill", None, 0.7)])  # a prefill case has no decode load
    r = tr.comparable("f", 10.0, rec)
    assert r["case_ids"] == ["c", "a", "b"]  # sorted by error
    assert r["median_error_fraction"] == pytest.approx(0.10)
    assert (r["min_error_fraction"], r["max_error_fraction"]) == pytest.approx((-0.2, 0.30))
    assert r["window_sequences_per_chip"] == pytest.approx([2.5, 40.0])
    assert r["family_cases"] == 4
    assert "+10% at the median" in tr.describe(r)


def test_too_few_comparable_cases_give_no_track_record():
    rec = _record([("a", "f", "offline", 10.0, 0.10), ("b", "f", "offline", 12.0, 0.2), ("c", "f", "offline", 500.0, 0)])
    r = tr.comparable("f", 10.0, rec)
    assert r["cases"] == 2 and r["median_error_fraction"] is None
    assert tr.describe(r).startswith("no track record: 2 published f runs")
    assert tr.comparable("h", 10.0, rec)["cases"] == 0


def test_the_stored_blackwell_record_shows_the_documented_split():
    """The pattern validation/notes/blackwell-sustained-clocks.md describes, read back from the stored record: at a
    few sequences per chip the model is pessimistic on Blackwell, at hundreds optimistic."""
    small, large = tr.comparable("nvidia-blackwell", 1.0), tr.comparable("nvidia-blackwell", 400.0)
    assert small["cases"] >= 10 and small["max_error_fraction"] < 0
    assert large["cases"] >= 10 and large["median_error_fraction"] > 0.05


def test_serving_estimates_carry_their_track_record(catalog):
    from supernode.infer.search import search
    from supernode.infer.serving import Workload

    res = search(catalog, "llama-3.1-70b", "h200", 8, workload=Workload(1000.0, 1000.0), disaggregated=True)
    c = res["colocated"]
    assert c["track_record"]["family"] == "nvidia-hopper"
    assert c["track_record"]["sequences_per_chip"] == pytest.approx(c["batch"] / c["plan"]["chips_per_instance"])
    d = res["disaggregated"]
    assert d["track_record"]["sequences_per_chip"] == pytest.approx(
        d["decode"]["batch"] / d["decode"]["plan"]["chips_per_instance"])


def test_cli_prints_the_track_record(run_cli):
    code, out, _ = run_cli("infer", "llama-3.1-70b", "--on", "h200", "--chips", "8", "--input", "1000", "--output",
                           "1000")
    assert code == 0
    assert "track record (co-located):" in out and "nvidia-hopper runs" in out


def test_write_is_whole_and_reloads(tmp_path):
    r = CaseResult("x", "offline", 100.0, 110.0, "tokens/s", 0.3, "pass", "f", 8.0)
    path = tr.write([r], tmp_path / "track-record.yaml")
    rec = parse_item(path, tr.TrackRecord)
    assert [(c.id, c.error_fraction, c.sequences_per_chip) for c in rec.cases] == [("x", pytest.approx(0.1), 8.0)]
    assert not list(tmp_path.glob("*.tmp"))


def test_malformed_record_names_the_file_and_field(tmp_path):
    bad = tmp_path / "track-record.yaml"
    bad.write_text("id: inference-track-record\ntitle: t\nnote: n\nwindow: 4\nmin_cases: 3\n"
                   "cases:\n- {id: x, family: f, kind: online, sequences_per_chip: 1, error_fraction: 0, expected: pass}\n")
    with pytest.raises(CatalogError) as e:
        parse_item(bad, tr.TrackRecord)
    msg = str(e.value)
    assert str(bad) in msg and "kind" in msg and "\n" not in msg
