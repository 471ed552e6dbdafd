"""Overlay catalogs and malformed input: one-line errors naming file and field, exit 2, no traceback."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

GOOD_CHIP = """
id: my-npu
name: My NPU
vendor: Example
family: example
status: announced
compute_dense:
  bf16: {value: 500, unit: TFLOP/s, kind: spec, source: my_src}
unsupported_precisions: [fp8]
memory:
  type: HBM3
  capacity: {value: 64, unit: GB, kind: spec, source: my_src}
  bandwidth: {value: 2, unit: TB/s, kind: spec, source: my_src}
scale_up:
  tech: Example link
  bandwidth: {value: 200, unit: GB/s, direction: unidirectional, per: chip, kind: spec, source: my_src}
  domain_size: {value: 16, unit: count, kind: spec, source: my_src}
  topology: switched
"""
GOOD_SOURCE = """
id: my_src
title: My NPU datasheet
publisher: Example Corp
url: https://example.com/npu.pdf
locator: table 1
date: 2026-01-01
"""


def make_overlay(tmp_path: Path, chip: str = GOOD_CHIP, source: str = GOOD_SOURCE, extra: dict | None = None) -> Path:
    root = tmp_path / "cat"
    (root / "chips").mkdir(parents=True)
    (root / "sources").mkdir()
    (root / "chips" / "my-npu.yaml").write_text(textwrap.dedent(chip))
    (root / "sources" / "my_src.yaml").write_text(textwrap.dedent(source))
    for rel, text in (extra or {}).items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return root


def test_overlay_adds_chip(tmp_path, run_cli):
    root = make_overlay(tmp_path)
    code, out, err = run_cli("--catalog", str(root), "show", "my-npu", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["numbers"]["compute_dense.bf16"]["si_value"] == pytest.approx(5e14)


def test_overlay_by_environment(tmp_path, run_cli, monkeypatch):
    root = make_overlay(tmp_path)
    monkeypatch.setenv("SUPERNODE_CATALOG", str(root))
    from supernode.cli import main

    assert main(["show", "my-npu", "--json"]) == 0


def test_overlay_overrides_builtin(tmp_path, run_cli):
    chip = GOOD_CHIP.replace("id: my-npu", "id: h100").replace("name: My NPU", "name: Overridden H100")
    root = make_overlay(tmp_path, chip=chip)
    code, out, _ = run_cli("--catalog", str(root), "show", "h100", "--json")
    assert code == 0
    assert json.loads(out)["name"] == "Overridden H100"


def test_generic_cluster_of_overlay_chip_compares(tmp_path, run_cli):
    root = make_overlay(tmp_path)
    code, out, err = run_cli("--catalog", str(root), "compare", "my-npu:16", "my-npu:32", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["ratios"]["dense_bf16_flop_per_s"][0] == pytest.approx(2.0)


BAD = {
    "unknown key": (GOOD_CHIP.replace("status: announced", "status: announced\ncolour: red"), "colour", "unknown key"),
    "missing unit": (GOOD_CHIP.replace("{value: 64, unit: GB,", "{value: 64,"), "memory.capacity.unit", "missing"),
    "bad unit": (GOOD_CHIP.replace("unit: TB/s", "unit: furlongs"), "memory.bandwidth.unit", "unknown unit"),
    "zero bandwidth": (GOOD_CHIP.replace("{value: 200, unit: GB/s", "{value: 0, unit: GB/s"), "scale_up.bandwidth",
                       "> 0"),
    "negative bandwidth": (GOOD_CHIP.replace("{value: 2, unit: TB/s", "{value: -2, unit: TB/s"),
                           "memory.bandwidth", "> 0"),
    "no direction": (GOOD_CHIP.replace("direction: unidirectional, ", ""), "scale_up.bandwidth.direction", "missing"),
    "unknown source": (GOOD_CHIP.replace("kind: spec, source: my_src}\nunsupported", "kind: spec, source: nope}\nunsupported"),
                       "compute_dense.bf16.source", "unknown source id 'nope'"),
    "bandwidth as compute": (GOOD_CHIP.replace("{value: 500, unit: TFLOP/s", "{value: 500, unit: GB/s"),
                             "compute_dense.bf16", "not a FLOP/s unit"),
    "bad yaml": (GOOD_CHIP + "\n  - : [", "", "invalid YAML"),
    "half a device": (GOOD_CHIP + "runtime_devices: {value: 1.5, unit: count, kind: spec, source: my_src}\n",
                      "runtime_devices", "whole number of devices"),
    "devices in GB": (GOOD_CHIP + "runtime_devices: {value: 2, unit: GB, kind: spec, source: my_src}\n",
                      "runtime_devices", "count"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_chip_file(tmp_path, run_cli, case):
    text, field, expect = BAD[case]
    root = make_overlay(tmp_path, chip=text)
    code, out, err = run_cli("--catalog", str(root), "catalog", "chips")
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "my-npu.yaml" in lines[0] and field in lines[0] and expect in lines[0], lines[0]
    assert "Traceback" not in err


def test_duplicate_id(tmp_path, run_cli):
    root = make_overlay(tmp_path, extra={"chips/copy.yaml": GOOD_CHIP})
    code, _, err = run_cli("--catalog", str(root), "catalog", "chips")
    assert code == 2
    assert "duplicate id 'my-npu'" in err and len(err.strip().splitlines()) == 1


def test_unknown_id_on_command_line(run_cli):
    code, out, err = run_cli("show", "h1000")
    assert code == 2 and out == ""
    assert "unknown id 'h1000'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("compare", "gb200-nvl72", "nvl1000")
    assert code == 2 and "nvl1000" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("typed, first", [("cloudmatrix384", "cloudmatrix-384"), ("GB200-NVL72x", "gb200-nvl72"),
                                           ("ascend910c", "ascend-910c")])
def test_mistyped_on_id_suggests_the_catalog_id(run_cli, typed, first):
    code, out, err = run_cli("infer", "deepseek-r1", "--on", typed, "--input", "100", "--output", "10")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert f"did you mean {first}" in err


def test_mistyped_model_id_suggests_the_catalog_id(run_cli):
    code, _, err = run_cli("infer", "llama3.1-70b", "--on", "h100", "--chips", "8")
    assert code == 2 and "did you mean llama-3.1-70b" in err and len(err.strip().splitlines()) == 1


def test_close_ids_is_empty_when_nothing_is_close():
    from supernode.errors import close_ids

    assert close_ids("zzz", ["h100", "b200"]) == [] and close_ids("--", ["h100"]) == []
    assert close_ids("H-100", ["h100", "h200", "gh100"]) == ["h100", "gh100"]


def test_missing_catalog_dir(tmp_path, run_cli):
    code, _, err = run_cli("--catalog", str(tmp_path / "nope"), "catalog", "chips")
    assert code == 2 and "does not exist" in err


def test_report_write_is_atomic(tmp_path, run_cli):
    code, _, err = run_cli("report", "--out", str(tmp_path / "missing-dir" / "r.html"))
    assert code == 2 and "--out" in err
    assert not (tmp_path / "missing-dir").exists()


@pytest.mark.parametrize("name", ["r.pdf", "r.json", "report"])
def test_report_unknown_suffix_is_one_line_error(tmp_path, run_cli, name):
    """Markdown under a .pdf (or suffix-less) name was written silently; now nothing is written."""
    code, _, err = run_cli("report", "--out", str(tmp_path / name))
    assert code == 2 and "--out" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / name).exists()


def test_report_txt_is_markdown(tmp_path, run_cli):
    code, _, _ = run_cli("report", "--out", str(tmp_path / "r.txt"))
    assert code == 0 and (tmp_path / "r.txt").read_text(encoding="utf-8").lstrip().startswith("#")


@pytest.mark.parametrize("args, flag", [
    (["--seq-len", "0"], "--seq-len"), (["--seq-len", "-4"], "--seq-len"),
    (["--global-batch", "0"], "--global-batch"), (["--global-batch", "-8"], "--global-batch"),
    (["--tokens", "0"], "--tokens"), (["--tokens", "-1"], "--tokens"), (["--tokens", "nan"], "--tokens"),
    (["--tokens", "inf"], "--tokens"), (["--vpp", "0"], "--vpp"), (["--ep", "0"], "--ep"),
    (["--micro-batch", "0"], "--micro-batch"), (["--tp", "-2"], "--tp"), (["--top", "0"], "--top"),
])
def test_impossible_training_inputs_are_one_line_errors(run_cli, args, flag):
    """A zero or negative size, a non-finite token budget or a zero degree is refused before any search, naming
    the flag (no traceback, no numpy warning, nothing on stdout): before this test --seq-len 0 raised a
    ZeroDivisionError, --global-batch 0 fell back to the default batch, --tokens -1 printed negative days and
    --top 0 an empty plan list with exit 0."""
    code, out, err = run_cli("train", "llama-3.1-70b", "--on", "h100", "--chips", "8", *args, "--json")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"supernode: error: {flag}:"), err


def test_catalog_models_lists_every_model_the_infer_hint_points_to(run_cli):
    """The unknown-model hint of `train` / `infer` says `supernode catalog models`, which did not exist; it lists
    every catalog model with its shape and context window."""
    import json

    from supernode.catalog import load_catalog
    from supernode.workload import models

    code, _, err = run_cli("infer", "zz-no-model", "--on", "h100")
    assert code == 2 and "supernode catalog models" in err
    code, out, _ = run_cli("catalog", "models", "--json")
    assert code == 0
    rows = {r["id"]: r for r in json.loads(out)["models"]}
    assert set(rows) == set(models(load_catalog()))
    r1 = rows["deepseek-r1"]
    assert (r1["layers"], r1["routed_experts"], r1["active_experts"], r1["shared_experts"], r1["max_seq_len"]) == \
        (61, 256, 8, 1, 163840)
    assert rows["llama-3.1-70b"]["routed_experts"] is None and rows["llama-3.1-70b"]["active_params"] is None
    code, out, _ = run_cli("catalog", "models")
    assert code == 0 and "qwen3-30b-a3b" in out and "671 B" in out


def test_a_model_file_without_max_seq_len_is_not_held_to_the_schema_default(tmp_path, run_cli):
    """max_seq_len's schema default (4,096, for learned position embeddings) is no context window: a user's model
    file that does not state it serves an 8,000-token prompt; the same file stating 4,096 is refused."""
    from pathlib import Path

    src = (Path(__file__).resolve().parents[1] / "src" / "supernode" / "data" / "models" / "llama-3.1-8b.yaml")
    text = src.read_text()
    assert "max_seq_len: 131072\n" in text
    free = tmp_path / "mine.yaml"
    free.write_text(text.replace("max_seq_len: 131072\n", ""))
    code, _, err = run_cli("infer", str(free), "--on", "h100", "--chips", "1", "--input", "8000", "--output", "100")
    assert code == 0, err
    short = tmp_path / "short.yaml"
    short.write_text(text.replace("max_seq_len: 131072\n", "max_seq_len: 4096\n"))
    code, _, err = run_cli("infer", str(short), "--on", "h100", "--chips", "1", "--input", "8000", "--output", "100")
    assert code == 2 and "max_seq_len 4,096" in err


def test_allowed_for_error_names_the_flag(run_cli):
    code, _, err = run_cli("compare", "h100", "h200", "--allowed-for", "china", "--date", "2025-09-20")
    assert code == 2 and err.startswith("supernode: error: --allowed-for:")
