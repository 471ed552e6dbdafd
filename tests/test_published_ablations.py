"""End-to-end ablations that a serving stack's authors published (one setting, one change), against the model's ratio
for the same change. The setting is a validation case's inputs; only the ablated input changes."""

import copy
from pathlib import Path

import pytest
import yaml

from supernode.infer.validation import predict

CASES = Path(__file__).resolve().parents[1] / "validation" / "cases"

# TensorRT-LLM tech blog 3 (source trtllm_r1_blackwell_throughput_blog), 'FP8 KV Cache': "a 6% E2E throughput increase
# when assuming the concurrency was identical"; DeepSeek R1 FP4 max throughput on 8 B200, 1K/2K, ADP 8 / EP 8. The
# blog states no concurrency: the FP16-KV run of the same team and commit (3,072 in flight) stands for it.
BLOG3_FP8_KV_GAIN = 0.06
BLOG3_SETTING = "infer-trtllm-b200-deepseek-r1-maxthroughput"


@pytest.fixture(scope="module")
def fp8_kv_gains(catalog):
    case = yaml.safe_load((CASES / f"{BLOG3_SETTING}.yaml").read_text())
    assert case["inputs"]["kv_precision"] == "bf16" and "attention_precision" not in case["inputs"]

    def run(**change):
        c = copy.deepcopy(case)
        c["inputs"].update(change)
        return predict(catalog, c, CASES)

    base = run()
    kv_only = run(kv_precision="fp8")
    kv_and_math = run(kv_precision="fp8", attention_precision="fp8")
    return kv_only / base - 1.0, kv_and_math / base - 1.0


def test_published_fp8_kv_gain_lies_between_the_models_kv_only_and_kv_plus_math_gains(fp8_kv_gains):
    """The blog's 6% bounds the FP8 attention kernel: more than the halved KV reads alone give in the model, less than
    FP8 math at twice the BF16 rate (validation/notes/trtllm-fp8-kv-ablation.md: about 1.12x by interpolation)."""
    kv_only, kv_and_math = fp8_kv_gains
    assert 0.0 < kv_only < BLOG3_FP8_KV_GAIN < kv_and_math


@pytest.mark.xfail(strict=True, reason=(
    "the model prices FP8 MLA decode attention at twice the BF16 rate (a 2026 kernel's rate, FlashInfer PR #2805), "
    "giving +14.5% at this setting against the published +6% of TensorRT-LLM's mid-2025 kernels; no per-release "
    "attention rate is modelled (validation/notes/trtllm-fp8-kv-ablation.md)"))
def test_fp8_kv_gain_is_the_published_six_percent(fp8_kv_gains):
    _, kv_and_math = fp8_kv_gains
    assert abs(kv_and_math - BLOG3_FP8_KV_GAIN) <= 0.03


# Blog 3, 'Multi-stream optimizations': "Running the shared and routed experts in 2 streams combined with other
# multi-streaming optimizations in the MLA modules, contributing a 5.3% E2E speedup" (same setting as above).
BLOG3_MULTI_STREAM_GAIN = 0.053


def test_shared_expert_stream_gain_is_part_of_the_published_multi_stream_gain(catalog):
    """I38 prices only the shared/routed expert overlap (the MLA streams are not priced), and only fixed latencies
    overlap at this batch, so its gain must be positive and below the published total for all the streams."""
    case = yaml.safe_load((CASES / f"{BLOG3_SETTING}.yaml").read_text())
    assert "shared_experts_stream" not in case["inputs"]
    base = predict(catalog, case, CASES)
    c = copy.deepcopy(case)
    c["inputs"]["shared_experts_stream"] = "overlap"
    gain = predict(catalog, c, CASES) / base - 1.0
    assert 0.0 < gain < BLOG3_MULTI_STREAM_GAIN
