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
# 'Multi-stream optimizations': "Running the shared and routed experts in 2 streams combined with other
# multi-streaming optimizations in the MLA modules, contributing a 5.3% E2E speedup".
BLOG3_MULTI_STREAM_GAIN = 0.053
BLOG3_SETTING = "infer-trtllm-b200-deepseek-r1-maxthroughput"


@pytest.fixture(scope="module")
def blog3_gain(catalog):
    """The model's end-to-end gain at blog 3's setting from changing only the given inputs."""
    case = yaml.safe_load((CASES / f"{BLOG3_SETTING}.yaml").read_text())

    def run(**change):
        c = copy.deepcopy(case)
        c["inputs"].update(change)
        return predict(catalog, c, CASES)

    base = run()
    return lambda **change: run(**change) / base - 1.0


@pytest.fixture(scope="module")
def fp8_kv_gains(blog3_gain):
    return blog3_gain(kv_precision="fp8"), blog3_gain(kv_precision="fp8", attention_precision="fp8")


def test_setting_is_the_bf16_kv_run_without_the_ablated_inputs():
    x = yaml.safe_load((CASES / f"{BLOG3_SETTING}.yaml").read_text())["inputs"]
    assert x["kv_precision"] == "bf16"
    assert "attention_precision" not in x and "shared_experts_stream" not in x


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


def test_shared_expert_stream_gain_is_part_of_the_published_multi_stream_gain(blog3_gain):
    """I38 prices only the shared/routed expert overlap (the MLA streams are not priced), and only fixed latencies
    overlap at this batch, so its gain must be positive and below the published total for all the streams."""
    assert 0.0 < blog3_gain(shared_experts_stream="overlap") < BLOG3_MULTI_STREAM_GAIN
