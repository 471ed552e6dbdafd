"""Inference model: hand-checkable numbers, memory verdict, SLO filtering, properties."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hw_variants import faster_variants

from supernode.catalog import load_catalog
from supernode.errors import UsageError
from supernode.hardware import resolve_cluster
from supernode.infer import SLO, Workload, search, serving_arch
from supernode.infer.kernels import efficiency
from supernode.infer.memory import weights_bytes_per_chip
from supernode.infer.plan import PlanGrid
from supernode.infer.step import stage_time

CAT = load_catalog()


def one(tp=1, pp=1, dp=1, ep=1, batch=1, overlap=0):
    return PlanGrid(tp=np.array([tp]), pp=pp, dp=dp, ep=ep, batch=batch, overlap=overlap)


@pytest.mark.parametrize("model,kv_bytes_per_token", [
    ("llama-3.1-70b", 2 * 80 * 8 * 128 * 2),      # GQA: 2 L K d_h b
    ("gpt3-175b", 2 * 96 * 96 * 128 * 2),         # MHA: K = H
    ("deepseek-r1", 61 * (512 + 64) * 2),         # MLA: L (d_c + d_r) b
])
def test_kv_cache_bytes_per_token(model, kv_bytes_per_token):
    assert serving_arch(CAT, model).kv_bytes_per_token(2.0) == pytest.approx(kv_bytes_per_token)


def test_decode_step_at_batch_one_is_weight_bytes_over_bandwidth():
    """Llama-3.1-8B, BF16, one H100, batch 1: GEMM time = weight bytes / (B_mem e_mem) (+ <3% activations
    and smooth-roofline excess) + the family's fixed latency per GEMM kernel (K1: qkv, o, gate_up, down per layer and
    the head) + the non-GEMM kernels' floors (I13)."""
    arch = serving_arch(CAT, "llama-3.1-8b")
    cl = resolve_cluster(CAT, "h100", 1)
    br = stage_time(arch, cl, one(), precision="bf16", kv_precision_bytes=2, decode_seqs=1, context_tokens=1)
    w = float(weights_bytes_per_chip(arch, one(), 2.0)[0]) - arch.vocab * arch.hidden * 2  # input embedding not read
    e = efficiency(cl)
    aux = e.kernel_floor_s * 6 * arch.layers + e.gemm_kernel_latency_s * (4 * arch.layers + 1)
    stream = w / (3.35e12 * e.memory_bandwidth_fraction)
    assert stream + aux <= br.gemm_s[0] <= 1.03 * stream + aux
    assert br.tp_comm_s[0] == 0 and br.moe_comm_s[0] == 0


def test_mla_kv_is_not_split_by_tp_but_gqa_is():
    from supernode.infer.memory import kv_bytes_per_sequence_per_chip
    ds, ll = serving_arch(CAT, "deepseek-r1"), serving_arch(CAT, "llama-3.1-70b")
    assert kv_bytes_per_sequence_per_chip(ds, one(tp=8), 1000, 2)[0] == kv_bytes_per_sequence_per_chip(ds, one(), 1000, 2)[0]
    assert kv_bytes_per_sequence_per_chip(ll, one(tp=8), 1000, 2)[0] == pytest.approx(
        kv_bytes_per_sequence_per_chip(ll, one(), 1000, 2)[0] / 8)


def test_memory_verdict_deepseek_needs_more_than_one_h100_node():
    with pytest.raises(UsageError, match="does not fit"):
        search(CAT, "deepseek-r1", "h100", 8, workload=Workload(2048, 256), precision="fp8", disaggregated=False)
    r = search(CAT, "deepseek-r1", "h100", 16, workload=Workload(2048, 256), precision="fp8", disaggregated=False)
    c = r["colocated"]
    assert c["fits"] and c["memory_bytes_per_chip"] <= c["memory"]["usable_bytes"]
    assert c["memory"]["weights_bytes"] > 671e9 / 16 * 0.9


def test_fixed_batch_that_does_not_fit_is_reported_not_hidden():
    r = search(CAT, "llama-3.1-70b", "h100", 1, workload=Workload(2048, 256), precision="fp8",
               fixed=dict(tp=1, batch=4096), disaggregated=False)
    assert r["colocated"]["fits"] is False


def test_slo_filtering_and_tighter_slo_never_helps():
    loose = search(CAT, "llama-3.1-70b", "h100", 8, workload=Workload(1024, 256), slo=SLO(2.0, 0.1))
    tight = search(CAT, "llama-3.1-70b", "h100", 8, workload=Workload(1024, 256), slo=SLO(2.0, 0.02))
    for r, tpot in ((loose, 0.1), (tight, 0.02)):
        assert r["colocated"]["meets_slo"]
        assert r["colocated"]["tpot_s"] <= tpot and r["colocated"]["ttft_s"] <= 2.0
        assert r["disaggregated"]["tpot_s"] <= tpot
    assert tight["colocated"]["decode_tokens_per_s"] <= loose["colocated"]["decode_tokens_per_s"]


def test_plan_degrees_multiply_to_instance_chips_and_fit_the_system():
    """On CloudMatrix 384 the ranks are the 910C's dies, two per package: the plan's degrees multiply to the
    instance's devices, twice its packages."""
    r = search(CAT, "deepseek-r1", "cloudmatrix-384", workload=Workload(2048, 256), slo=SLO(2.0, 0.05))
    assert (r["chips"], r["devices"], r["devices_per_chip"]) == (384, 768, 2)
    for key in ("colocated",):
        p = r[key]["plan"]
        assert p["tp"] * p["pp"] * p["attention_dp"] == p["devices_per_instance"] == 2 * p["chips_per_instance"]
        assert r[key]["chips_used"] <= 384
    d = r["disaggregated"]
    assert d["prefill_chips"] + d["decode_chips"] <= 384


def test_search_optimum_no_worse_than_a_single_plan():
    wl = Workload(1024, 256)
    best = search(CAT, "llama-3.1-70b", "h100", 8, workload=wl, slo=SLO(None, 0.05), disaggregated=False)
    fixed = search(CAT, "llama-3.1-70b", "h100", 8, workload=wl, slo=SLO(None, 0.05), disaggregated=False,
                   fixed=dict(tp=4, pp=1, batch=64))
    if fixed["colocated"]["meets_slo"]:
        assert best["colocated"]["decode_tokens_per_s"] >= fixed["colocated"]["decode_tokens_per_s"] * (1 - 1e-9)


def test_chip_without_fp4_refuses_fp4():
    with pytest.raises(UsageError, match="--precision"):
        search(CAT, "llama-3.1-8b", "h100", 1, workload=Workload(128, 128), precision="fp4")


def test_mtp_acceptance_raises_throughput():
    kw = dict(workload=Workload(2048, 256), precision="fp8", disaggregated=False, fixed=dict(tp=8, batch=64))
    base = search(CAT, "llama-3.1-70b", "h100", 8, **kw)["colocated"]
    mtp = search(CAT, "llama-3.1-70b", "h100", 8, draft_tokens=1, acceptance_length=1.8, **kw)["colocated"]
    assert mtp["tpot_s"] < base["tpot_s"]


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(1.0, 4.0), batch=st.sampled_from([1, 8, 64, 256]), ctx=st.sampled_from([128, 2048, 8192]))
def test_more_memory_bandwidth_or_flops_never_slower(scale, batch, ctx):
    arch = serving_arch(CAT, "mixtral-8x7b")
    cl = resolve_cluster(CAT, "h100", 8)
    faster = faster_variants(cl, scale)
    plan = PlanGrid(tp=np.array([1, 2, 8, 2]), pp=np.array([1, 1, 1, 2]), dp=np.array([1, 4, 1, 2]),
                    ep=np.array([1, 8, 8, 4]), batch=batch, overlap=np.array([0, 1, 0, 1]))
    kw = dict(precision="fp8", kv_precision_bytes=2, decode_seqs=batch, context_tokens=ctx, prefill_tokens=64,
              prefill_len=512)
    base = stage_time(arch, cl, plan, **kw).stage_s
    for f in faster:
        assert np.all(stage_time(arch, f, plan, **kw).stage_s <= base * (1 + 1e-9))


def test_fp8_attention_is_priced_at_the_fp8_rate_and_needs_an_fp8_kv_cache():
    from supernode.infer.search import estimate_decode

    kw = dict(context_tokens=4864, batch_per_rank=32, tp=1, pp=1, dp=16, ep=16, precision="fp8", kv_precision="fp8")
    bf16 = estimate_decode(CAT, "deepseek-r1", "h20", 16, **kw)
    fp8 = estimate_decode(CAT, "deepseek-r1", "h20", 16, attention_precision="fp8", **kw)
    assert fp8["breakdown"]["attention_s"] < 0.6 * bf16["breakdown"]["attention_s"]
    with pytest.raises(UsageError, match="--attention-precision"):
        estimate_decode(CAT, "deepseek-r1", "h20", 16, attention_precision="fp8",
                        **{**kw, "kv_precision": "bf16"})


def test_overlap_is_reported_only_when_it_applies():
    from supernode.infer.search import estimate_decode

    kw = dict(context_tokens=2000, tp=1, pp=1, dp=16, ep=16, precision="fp8", overlap=True)
    assert not estimate_decode(CAT, "deepseek-r1", "h100", 16, batch_per_rank=1, **kw)["plan"]["micro_batch_overlap"]
    assert estimate_decode(CAT, "deepseek-r1", "h100", 16, batch_per_rank=32, **kw)["plan"]["micro_batch_overlap"]
