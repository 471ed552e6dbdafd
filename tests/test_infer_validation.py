"""Published inference measurements (validation/cases/infer-*.yaml) against the model."""

from pathlib import Path

import numpy as np
import pytest

from supernode.infer.validation import case_files

CASES = case_files(Path(__file__).resolve().parents[1] / "validation" / "cases")


def _marks(path):
    import yaml
    case = yaml.safe_load(path.read_text())
    if case.get("expected") == "xfail":
        return [pytest.mark.xfail(strict=True, reason=case.get("reason", ""))]
    return []


@pytest.mark.parametrize("path", [pytest.param(p, marks=_marks(p), id=p.stem) for p in CASES])
def test_case_within_tolerance(path, inference_result):
    r = inference_result(path)
    assert r.within, f"{r.id}: predicted {r.predicted:,.0f} vs measured {r.measured:,.0f} ({100 * r.error_fraction:+.1f}%)"


def test_median_error_target(inference_result):
    rs = [inference_result(p) for p in CASES]
    errs = [abs(r.error_fraction) for r in rs if r.expected == "pass"]
    assert len(errs) >= 4
    assert np.median(errs) <= 0.12 and max(errs) <= 0.30


def test_median_target_over_every_case(inference_result):
    """The issue's median target (<= 12%) over every case, known gaps included: met since stop 26 at 11.6% over 84
    (12.4% over 82 before; the MI355X's own CDNA 4 efficiency record moved its two ATOM cases under the median, and two
    MLPerf v6.1 cases entered by a rule fixed before they ran, -28.8% and +1.4%). Earlier: 14.6% before stop 22's finite
    MLPerf runs (I28), 14.2% before stop 23's finite client benchmarks, 13.6% after stop 24's token budgets (I29), 12.4%
    after stop 25's chip GEMM fractions (K1b) and MoE / MLA glue traffic (I30, I31). 11.0% since stop 27 takes the
    MLPerf v5.0 Mixtral checkpoints' effective bits as inputs (I32), 10.3% since its 16-bit LM head and router by
    default (I33; the 42nd and 43rd of 84 sorted errors 10.3% and 10.4%), 10.2% after stop 28's SGLang Ascend per-layer
    time (I34), 9.8% over 85 after stop 29's prefill attention fractions (I35) and CloudMatrix384's 30 ms row, 10.1%
    over 86 with its default-EPLB prefill row. Stop 31: 10.5% over 124 with SemiAnalysis InferenceX's single-node
    DeepSeek-R1 curves (H200, B200, B300, MI325X). Stop 32: 10.4% over 124 with SGLang's ROCm backend's own fixed
    time per MoE layer (I34, sglang-rocm), calibrated on another InferenceX MI325X run. Stop 33: 10.5% over 132 with
    TensorRT-LLM 1.0's Llama 3.1 405B table (the 70B cases' four rows on B200 FP4 and H200 FP8). Stop 34: 10.7% over
    132 with NCCL's measured all-reduce curve above the stacks' custom-kernel limit (C3). Stop 35: 11.9% over 144 with
    InferenceX's SGLang NVFP4 curve on B300 (twelve rows by a rule fixed before they ran, all -31% to -38%). Stop 36:
    11.99% over 144 with TensorRT-LLM's fused MoE op (I37) for the stacks that run it (nine of those twelve rows
    inside 30%, vLLM's GB200 decode rows +2..+6% -> +9..+13%). Stop 37: 11.99% over 144 with SGLang's dual-stream
    shared experts (I38) on the same twelve rows (all above the median before and after; the last three inside 30%).
    Stop 40: 12.17% over 144 (missed) with FlashInfer PR #1979's B200 rows in Blackwell's kernel-latency fit (5.0 -> 5.1
    us), by the kernel-table rule that admits any table naming its GPU and timing pre-quantized GEMMs. Stop 41: 11.5%
    over 144 (met again) since the serving model runs the Ascend 910C's two dies as the two devices every one of its
    runs puts a rank on (hardware.device_cluster); the eleven Ascend cases moved six toward zero and five away.
    Stop 42: 11.5% over 156 with the rest of SGLang's Ascend best-practice rows (twelve, by a rule fixed before they
    ran), the dense Qwen3-32B rows priced with the stack's per-layer time (I34, scoped to dense models after their
    estimates). Stop 55: 11.58% over 191 with the RTX Blackwell efficiency file. Stop 56: 12.10% over 191 (missed)
    with I41's all-gather and reduce-scatter for the 24 TensorRT-LLM attention-DP MoE cases whose stack runs them.
    Stop 57: 11.42% over 191 (met again) with I42, the residual add + RMSNorm inside the TP all-reduce for the 34 runs
    whose stack and flags fuse them (validation/notes/allreduce-norm-fusion-rule.md) and trtllm-1.0's TP > 1 rows."""
    errs = [abs(inference_result(p).error_fraction) for p in CASES]
    assert np.median(errs) <= 0.12


@pytest.mark.xfail(strict=True, reason="the issue's 'no case above 30%' over every case is not met: 7 known "
                   "gaps (TensorRT-LLM's DeepSeek-R1-0528 NVFP4 FP8-KV run +43% as a finite run; MLPerf Llama 3.1 "
                   "405B NVFP4 with the engine's 1,536-token budget (I29, stop 24): GB200 NVL72 v5.0 +39%, 8 B200 "
                   "v5.0 +32%; MLPerf v4.1 Llama 2 70B on 8 MI300X +33%; SGLang's Qwen3-235B decode on Atlas 800I A3 "
                   "+31%; stop 42's SGLang A3 rows Qwen3-30B-A3B on one card +64% and Qwen3-32B one request at TP8 "
                   "-34%), "
                   "whose files say why (stop 25 passed GB300 NVL72 405B at Blackwell Ultra's "
                   "own FP4 fraction, the Mixtral H200 and MI325X runs with the MoE FFNs' glue, I30, MLPerf v5.1 "
                   "DeepSeek-R1 on GB200 NVL72 with MLA's, I31, and SGLang's H20 prefill at the H20's own FP8 "
                   "fraction; stop 27 the MLPerf v5.0 Mixtral run on B200 at its checkpoint's effective bits, I32, and "
                   "MLPerf v5.1 Llama 3.1 8B on B200, at the edge (+29.8%), with its LM head at BF16, I33; stop 28 "
                   "SGLang's two DeepSeek-R1 runs on Atlas 800I A3 at its Ascend backend's own fixed time per MoE "
                   "layer, I34, calibrated on another row of their document; stop 29's fitted prefill attention "
                   "fractions, I35, moved the 405B rows 0.4 points down; stop 32 InferenceX's SGLang ROCm curve of "
                   "DeepSeek-R1 FP8 on 8 MI325X, five points that were +32% to +60%, at SGLang's ROCm backend's own "
                   "fixed time per MoE layer, I34, calibrated on another InferenceX MI325X run; stop 34 TensorRT-LLM 1.0's "
                   "Llama 3.1 405B NVFP4 1000/2000 row on 4 B200, +38% -> +28%, and MLPerf v5.1 405B on GB200 NVL72, "
                   "+31% -> +30%, with NCCL's measured all-reduce curve above the stacks' custom-kernel limit, C3; "
                   "stops 36 and 37 InferenceX's twelve SGLang NVFP4 DeepSeek-R1 rows on B300, entered in stop 35 at "
                   "-31% to -38%, with TensorRT-LLM's fused MoE op, I37, and SGLang's dual-stream shared experts, I38: "
                   "-14.9% to -28.6%); turns red when none is")
def test_no_case_above_30_percent_over_every_case(inference_result):
    errs = [abs(inference_result(p).error_fraction) for p in CASES]
    assert max(errs) <= 0.30


def test_bad_case_input_names_the_file(tmp_path, capsys):
    """A case file with a bad input value: one line naming the file and the input, exit 2."""
    from supernode.cli import main

    src = next(p for p in CASES if p.stem == "infer-trtllm-h200-deepseek-r1-maxthroughput").read_text()
    assert "admission: aligned" in src
    bad = tmp_path / "infer-bad.yaml"
    bad.write_text(src.replace("admission: aligned", "admission: sometimes"))
    assert main(["validate", "--cases", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "--admission" in err and "sometimes" in err


def test_cases_are_found_by_kind_not_file_name_and_an_empty_folder_is_refused(tmp_path, capsys):
    """A user's own case folder: an inference case named without the ``infer-`` prefix is run, not skipped (it
    used to drop out of validation silently, exit 0 with no case), and a folder with no case file is an error."""
    import json

    from supernode.cli import main

    assert main(["validate", "--cases", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--cases: no case files" in err
    src = next(p for p in CASES if p.stem == _DECODE_CASE)
    (tmp_path / "my-run.yaml").write_text(src.read_text())
    assert main(["validate", "--cases", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["id"] for c in out["inference_cases"]] == [_DECODE_CASE] and out["cases"] == []


_DECODE_CASE = "infer-sglang-a3-deepseek-r1-w8a8-decode-50ms"


@pytest.mark.parametrize("edit, names", [
    # an input its kind does not read: refused, not ignored (a misspelt fact would leave the estimate at a default)
    (lambda c: c["inputs"].update(context_token=4096), ["inputs: context_token", "not an input of a decode case"]),
    (lambda c: c["inputs"].pop("context_tokens"), ["inputs: context_tokens: missing"]),
    (lambda c: c.update(kind="serving"), ["kind: expected train or an inference kind", "got 'serving'"]),
    (lambda c: c.pop("tolerance"), ["tolerance: required field is missing"]),
    (lambda c: c["metric"].update(value="fast"), ["metric.value: expected a positive number"]),
    (lambda c: c.update(expected="maybe"), ["expected: expected pass or xfail"]),
])
def test_malformed_case_is_one_line_naming_the_file_and_field(tmp_path, capsys, edit, names):
    import yaml

    from supernode.cli import main

    case = yaml.safe_load(next(p for p in CASES if p.stem == _DECODE_CASE).read_text())
    edit(case)
    bad = tmp_path / "infer-bad.yaml"
    bad.write_text(yaml.safe_dump(case))
    assert main(["validate", "--cases", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err
    for name in names:
        assert name in err


def test_offline_case_takes_speculative_decoding():
    """The offline (co-located) kind passes the run's draft steps and accept length to the search: with an accept
    length above one, the same run emits more tokens per iteration and its throughput rises."""
    import yaml

    from supernode.catalog.loader import load_catalog
    from supernode.infer.validation import estimate

    path = next(p for p in CASES if p.stem == "infer-sglang-a3-qwen3-coder-480b-w8a8-colocated-8card")
    case = yaml.safe_load(path.read_text())
    assert "draft_tokens" not in case["inputs"]
    cat = load_catalog()
    plain, _ = estimate(cat, case, path.parent)
    case["inputs"].update(draft_tokens=1, acceptance_length=1.8)
    drafted, _ = estimate(cat, case, path.parent)
    assert drafted > 1.2 * plain
