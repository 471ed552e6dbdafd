"""I41: an MoE instance whose attention-DP ranks all-gather the group's tokens and reduce-scatter the outputs
(TensorRT-LLM's 2025 CutlassFusedMoE without MNNVL or with EP <= top-k; validation/notes/trtllm-moe-allgather-rule.md).
Each collective is half the family's C3 library all-reduce of the gathered buffer."""

import math

import numpy as np
import pytest

from supernode.errors import UsageError
from supernode.hardware import resolve_cluster
from supernode.infer.precision import gather_bytes
from supernode.infer.search import estimate_decode, search
from supernode.infer.serving import Options, Workload
from supernode.perf import collectives as coll
from supernode.perf import compute


def _decode(catalog, **kw):
    base = dict(context_tokens=1536, batch_per_rank=384, tp=1, pp=1, dp=8, ep=8, precision="fp8", kv_precision="fp8",
                overlap=False, expert_balance="none")
    base.update(kw)
    return estimate_decode(catalog, "deepseek-r1", "h200", 8, **base)


def test_library_all_gather_is_half_the_library_all_reduce():
    s, n, b = np.array([1e6, 4.4e7]), np.array([4, 8]), 450e9
    half = coll.library_all_gather_s(s, n, b, 8.9e-6, 0.98)
    assert np.allclose(2.0 * half, coll.library_all_reduce_s(s, n, b, 8.9e-6, 0.98))
    # ceil(log2 8) a + 7/8 S / (f B) for the 8-rank row
    assert half[1] == pytest.approx(3 * 8.9e-6 + 7 / 8 * 4.4e7 / (0.98 * b))


@pytest.mark.parametrize("precision, expected", [("fp4", 0.5625), ("fp8", 2.0), ("bf16", 2.0), ("int8", 2.0)])
def test_gathered_format_is_nvfp4_for_fp4_experts_else_bf16(precision, expected):
    """NVFP4 is quantized before the gather (with its 1-per-16 FP8 scales); FP8 block-scale activations are gathered
    BF16 and quantized 1x128 inside the op."""
    assert gather_bytes(precision) == pytest.approx(expected)


def test_h200_dep8_decode_step_comm_is_the_hand_sum(catalog):
    """DeepSeek-R1 FP8 on 8 x H200, 384 sequences per rank: per MoE layer an all-gather and a reduce-scatter of
    8 x 384 x 7,168 BF16 elements (44.0 MB), each 3 a + 7/8 S / (f B) with Hopper's C3 fit, over 58 MoE layers."""
    eff = compute.efficiency("nvidia-hopper")
    fit = eff.nccl_all_reduce
    link = resolve_cluster(catalog, "h200", 8).tiers[0].bandwidth_bytes_per_s  # NVLink per direction, 450 GB/s
    assert link == 450e9
    size = 8 * 384 * 7168 * 2.0
    one = math.ceil(math.log2(8)) * fit["latency_step_s"] + 7 / 8 * size / (fit["bandwidth_fraction"] * link)
    r = _decode(catalog, moe_comm="allgather")
    assert r["breakdown"]["moe_comm_s"] == pytest.approx(58 * 2 * one, rel=1e-6)


def test_allgather_ignores_expert_imbalance_and_all_to_all_does_not(catalog):
    """The gather moves every token whatever its routing (I17 applies to the GEMMs only)."""
    ag = [_decode(catalog, moe_comm="allgather", expert_balance=m)["breakdown"]["moe_comm_s"] for m in ("ideal", "none")]
    a2a = [_decode(catalog, expert_balance=m)["breakdown"]["moe_comm_s"] for m in ("ideal", "none")]
    assert ag[0] == pytest.approx(ag[1])
    assert a2a[1] > a2a[0]


def test_one_attention_group_has_no_moe_collective(catalog):
    """dp = 1: the experts' outputs are summed by the FFN all-reduce under either mode."""
    kw = dict(tp=8, dp=1, batch_per_rank=64)
    assert _decode(catalog, moe_comm="allgather", **kw)["breakdown"]["moe_comm_s"] == 0.0
    assert _decode(catalog, **kw)["breakdown"]["moe_comm_s"] == 0.0


def test_search_states_the_allgather_assumption(catalog):
    r = search(catalog, "deepseek-r1", "h200", 8, workload=Workload(1024, 1024), precision="fp8",
               fixed={"tp": 1, "dp": 8, "ep": 8, "batch": 1024}, disaggregated=False, moe_comm="allgather")
    assert any("I41" in a for a in r["assumptions"])


def test_unknown_moe_comm_is_a_one_line_error():
    with pytest.raises(UsageError, match="--moe-comm: expected one of all-to-all, allgather"):
        Options("fp8", moe_comm="alltoall")
