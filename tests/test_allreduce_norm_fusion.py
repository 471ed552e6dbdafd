"""I42: where the serving stack fuses the residual add and RMSNorm into the TP all-reduce before them, each of a
layer's two norms loses its kernel (one floor, I13) and its read of the all-reduced x (h A per token, I22)
(validation/notes/allreduce-norm-fusion-rule.md)."""

import numpy as np
import pytest

from supernode.hardware import resolve_cluster
from supernode.infer import glue
from supernode.infer.search import estimate_decode
from supernode.perf import compute


def _decode(catalog, fusion, **kw):
    base = dict(context_tokens=1536, batch_per_rank=4, tp=8, pp=1, dp=1, ep=1, precision="fp8", kv_precision="fp8",
                overlap=False, expert_balance="none", glue_fusion=fusion)
    base.update(kw)
    return estimate_decode(catalog, "deepseek-r1", "b200", 8, **base)["breakdown"]


@pytest.mark.parametrize("tp, dp, tokens, expected", [(8, 1, 4, 2.0), (1, 1, 4, 0.0), (8, 2, 4, 0.0),
                                                      (8, 1, 2048, 2.0), (8, 1, 2049, 0.0)])
def test_sglang_fuses_at_tp_without_attention_dp_up_to_2048_tokens(tp, dp, tokens, expected):
    got = glue.fused_norms_per_layer("sglang-ar-fusion", np.array([tp]), np.array([dp]), np.array([tokens]), 7168.0,
                                     np.array([8e6]))
    assert got[0] == expected


def test_trtllm_fuses_below_its_custom_all_reduce_limit():
    """TensorRT-LLM: the stack's own fused kernel below custom_all_reduce_max_bytes, NCCL and a separate norm above.
    At hidden 7,168 BF16 a message below TP > 2's 8 MB holds up to 558 tokens; below TP 2's 16 MB, 1,116."""
    t = np.array([8, 8, 2, 2])
    tok = np.array([558, 559, 1116, 1117])
    limit = np.where(t <= 2, 16e6, 8e6)
    got = glue.fused_norms_per_layer("trtllm-ar-fusion", t, 1, tok, 7168.0, limit)
    assert list(got) == [2.0, 0.0, 2.0, 0.0]


def test_unfused_profile_fuses_nothing():
    assert not glue.fused_norms_per_layer("unfused", np.array([8]), 1, np.array([4]), 7168.0, 8e6).any()


def test_decode_step_saves_two_floors_and_two_reads_per_layer(catalog):
    """DeepSeek-R1 FP8 on 8 x B200, TP8, 4 sequences: 61 layers x (2 kernel floors + 2 x 4 x 7,168 x 2 bytes at the
    glue fraction of HBM); nothing else moves (the all-reduce keeps its price)."""
    eff = compute.efficiency("nvidia-blackwell")
    hbm = resolve_cluster(catalog, "b200", 8).chip.memory_bandwidth_bytes_per_s
    saved_bytes = 61 * 2 * 4 * 7168 * 2.0
    expected = 61 * 2 * eff.kernel_floor_s + saved_bytes / (hbm * eff.glue_fraction)
    off, on = _decode(catalog, None), _decode(catalog, "sglang-ar-fusion")
    assert off["gemm_s"] - on["gemm_s"] == pytest.approx(expected, rel=1e-6)
    assert on["tp_comm_s"] == pytest.approx(off["tp_comm_s"])
    assert on["attention_s"] == pytest.approx(off["attention_s"])


def test_attention_dp_plan_is_untouched(catalog):
    """With attention DP (dp > 1, t = 1) there is no TP all-reduce to fuse with."""
    kw = dict(tp=1, dp=8, ep=8, batch_per_rank=64)
    assert _decode(catalog, "sglang-ar-fusion", **kw)["stage_s"] == pytest.approx(_decode(catalog, None, **kw)["stage_s"])


def test_draft_pass_fuses_its_block_norms_too(catalog):
    """An MTP draft pass's block has the same two norms after its all-reduces (I14)."""
    kw = dict(batch_per_rank=1, draft_tokens=3, acceptance_length=2.8)
    off, on = _decode(catalog, None, **kw), _decode(catalog, "sglang-ar-fusion", **kw)
    assert on["draft_s"] < off["draft_s"]
