"""The model's decode attention (a serving step's KV stream at the family's HBM streaming fraction, K3 / K4) against
published decode attention kernel timings (data/decode-attention-kernels): a check, not a calibration. On the rows of
a saturated stream (the regime of a serving batch) the model prices the kernels within a quarter at the median; the
unsaturated rows (one sequence over a long cache, a handful of (sequence, head) blocks) run far below the stream and
are not what a serving step runs."""

import numpy as np
import pytest

from supernode.perf import calibration as cal


def test_decode_tables_load_and_cite_sources(catalog):
    tables = cal.decode_attention_tables()
    assert len(tables) >= 30
    for t in tables:
        assert t.source in catalog.sources and t.chip in catalog.chips, t.id


def test_printed_bandwidths_agree_with_the_kv_bytes_and_times():
    """Where a source prints its achieved bandwidth (its bytes: K and V, plus the small Q and O), the KV bytes the
    check counts over the printed time give it within 1% on the saturated rows: shapes and times are transcribed
    right."""
    checked = 0
    for t in cal.decode_attention_tables():
        col = {c: i for i, c in enumerate(t.columns)}
        for r in cal.decode_saturated_rows(t):
            if r[col["bytes_per_s"]] is None:
                continue
            kv_rate = cal.decode_kv_bytes(t, r) / (float(r[col["time_us"]]) * 1e-6)
            assert kv_rate == pytest.approx(float(r[col["bytes_per_s"]]), rel=0.01), (t.id, r)
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("family,kv_format", [("nvidia-blackwell", "bf16"), ("nvidia-blackwell", "fp8"),
                                              ("nvidia-hopper", "bf16")])
def test_the_model_prices_saturated_decode_kernels_within_a_quarter(catalog, family, kv_format):
    """Median over sources of each source's median model / measured time: Blackwell 16-bit 0.97 (cuDNN 1.08,
    TensorRT-LLM's trtllm-gen 0.86), FP8 1.11 (cuDNN), Hopper 16-bit 0.93 (cuDNN on H200 1.13, TileOPs / FA3 on H200
    0.93, FA3 and FlashInfer on H20 0.42: their CUDA-core decode paths run far below the H20's bandwidth)."""
    per_source = cal.decode_attention_model_ratio_by_source(catalog, family, kv_format)
    assert per_source
    assert 0.8 <= float(np.median(list(per_source.values()))) <= 1.25


def test_hopper_fp8_decode_has_only_a_slow_path_on_record(catalog):
    """The one Hopper FP8-KV source with saturated rows is FlashInfer's FA2-template decode on H20, which its issue
    (#1753) reports slower with an FP8 cache than with BF16: the model, streaming FP8 at the family's rate, is faster
    than it. No TensorRT-LLM (XQA) FP8 decode table was found; the check stays open for Hopper FP8."""
    per_source = cal.decode_attention_model_ratio_by_source(catalog, "nvidia-hopper", "fp8")
    assert set(per_source) == {"therainstorm_attention_tests_h20"}
    assert per_source["therainstorm_attention_tests_h20"] < 0.8


def test_unsaturated_rows_are_left_out():
    t = cal.DecodeAttentionKernelTable(
        id="x", description="d", source="s", chip="h200", attention="mha", kv_bytes_per_element=2,
        q_bytes_per_element=2,
        columns=["batch", "q_len", "kv_len", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v", "time_us",
                 "bytes_per_s"],
        rows=[[1, 1, 262144, 32, 4, 128, 128, 100.0, None],    # one sequence: 4 blocks
              [64, 1, 8192, 64, 8, 128, 128, 100.0, None],     # 512 blocks
              [64, 4, 8192, 64, 8, 128, 128, 100.0, None],     # four new tokens
              [256, 1, 512, 64, 8, 128, 128, 100.0, None]])    # short cache
    assert cal.decode_saturated_rows(t) == [t.rows[1]]
    assert cal.decode_kv_bytes(t, t.rows[1]) == 64 * 8192 * 8 * 256 * 2
