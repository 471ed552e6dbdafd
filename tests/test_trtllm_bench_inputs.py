"""The TensorRT-LLM perf-overview Llama 3.1 405B cases (stop 33) re-derive their inputs from the steps their notes state.

trtllm-bench's memory heuristic (tensorrt_llm/bench/build/tuning.py calc_engine_setting / finetune_setting, and
bench/benchmark/utils/general.py's no-chunking floor, as read at the commits the notes name) sets max_batch_size and
max_num_tokens; the batch in flight is the midpoint of the runtime KV pool's estimate. Each case's ``max_num_tokens``
and ``batch`` must be what those steps give from the published hardware and checkpoint facts, so that a hand edit of a
case cannot drift from its notes."""

import math
from pathlib import Path

import pytest
import yaml

CASES = Path(__file__).resolve().parents[1] / "validation" / "cases"
GIB = 2**30
LAYERS, HIDDEN, FFN, Q_HEADS, KV_HEADS, HEAD, VOCAB = 126, 16384, 53248, 128, 8, 128, 128256  # Llama 3.1 405B
LINEAR = LAYERS * (HIDDEN * (Q_HEADS + 2 * KV_HEADS) * HEAD + HIDDEN * HIDDEN + 3 * HIDDEN * FFN)
EMBED = VOCAB * HIDDEN  # the embedding and the LM head, each, kept at BF16
# chip: (TP, NVML total MiB per GPU, real weight bytes per GPU, heuristic parameter count, heuristic bytes per parameter)
SETUP = {
    "b200": (4, 183_359, (LINEAR * 0.5625 + 2 * EMBED * 2) / 4, LINEAR / 2 + LINEAR / 16 + 2 * EMBED, 0.5),
    "h200": (8, 143_771, (LINEAR * 1.0 + 2 * EMBED * 2) / 8, LINEAR + 2 * EMBED, 1.0),
}


def heuristic(tp: int, nvml_gib: float, params: float, bytes_per_param: float, isl: int, osl: int, fraction: float,
              layers: int = LAYERS):
    """(max_batch_size, max_num_tokens) of trtllm-bench with no user values: the whole model's FP8 KV bytes per token
    (``layers`` x max(TP, 8 KV heads) x head 128) against (NVML total x GPUs - 'engine size') x fraction, rounded up,
    then the no-chunking floor ISL + batch."""
    kv_gib_per_token = 2 * layers * max(tp, KV_HEADS) * HEAD * 1 / GIB
    requests = (nvml_gib * tp - params * bytes_per_param / GIB) * fraction / (kv_gib_per_token * (isl + osl))
    bs = min(requests, 4096)
    tokens = min(bs * (1 + isl / osl), 32768)
    if bs < 256:
        max_bs = max(64, 32 * math.ceil(bs / 32))
    else:
        max_bs = (128 if bs < 1024 else 256) * math.ceil(bs / (128 if bs < 1024 else 256))
    if tokens < 4096:
        max_tokens = max(2048, 256 * math.ceil(tokens / 256))  # at least 2,048 for context/generation overlap
    else:
        step = 512 if tokens < 8192 else 1024
        max_tokens = step * math.ceil(tokens / step)
    return max_bs, max(max_tokens, isl + max_bs)


def kv_pool_range(tp: int, nvml_gib: float, weights_bytes: float, isl: int, osl: int):
    """Sequences the runtime KV pool holds at guaranteed_no_evict: (NVML total - weights - 6 or 3 GiB) x 0.90 or 0.95
    over the FP8 KV of ISL + OSL tokens in 32-token blocks, on one GPU's share of the KV heads."""
    per_seq = LAYERS * (KV_HEADS // tp) * HEAD * 2 * 1 / GIB * 32 * math.ceil((isl + osl) / 32)
    free = nvml_gib - weights_bytes / GIB
    return (free - 6) * 0.90 / per_seq, (free - 3) * 0.95 / per_seq


PATHS = sorted(CASES.glob("infer-trtllm-*-llama3.1-405b-*.yaml"))


def test_the_eight_rows_are_there():
    assert len(PATHS) == 8
    assert {yaml.safe_load(p.read_text())["inputs"]["system"] for p in PATHS} == {"b200", "h200"}


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_inputs_follow_the_stated_heuristic(path):
    x = yaml.safe_load(path.read_text())["inputs"]
    tp, nvml_mib, weights, params, bpp = SETUP[x["system"]]
    assert x["tp"] == x["chips"] == tp and x["pp"] == 1
    isl, osl = x["input_tokens"], x["output_tokens"]
    max_bs, max_tokens = heuristic(tp, nvml_mib / 1024, params, bpp, isl, osl, 0.90)
    assert x["max_num_tokens"] == max_tokens  # throughput.py's default fraction
    lo, hi = kv_pool_range(tp, nvml_mib / 1024, weights, isl, osl)
    assert x["batch"] == round((lo + hi) / 2)
    assert x["batch"] < max_bs  # the cap does not bind: KV memory sets the batch


def test_heuristic_reproduces_the_70b_notes():
    """The same steps on the 70B NVFP4 checkpoint give the figures the Llama 3.3 70B B200 5000/500 case states
    ('the heuristic fits 172 / 181 requests ... -> max_batch_size 192', max_num_tokens 5192)."""
    lin70 = 80 * (8192 * (64 + 16) * 128 + 8192 * 8192 + 3 * 8192 * 28672)
    params = lin70 / 2 + lin70 / 16 + 2 * 128256 * 8192
    kv = 2 * 80 * 8 * 128 / GIB
    req = (183_359 / 1024 - params * 0.5 / GIB) * 0.90 / (kv * 5500)
    assert round(req) == 172
    assert heuristic(1, 183_359 / 1024, params, 0.5, 5000, 500, 0.90, layers=80) == (192, 5192)
