"""Training step model, memory, search and CLI: hand-checkable cases and properties."""

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from supernode.hardware import resolve_cluster
from supernode.perf.compute import efficiency, gemm_time_s
from supernode.train.memory import activation_bytes_per_token_layer
from supernode.train.plan import Plan, TrainWorkload
from supernode.train.search import search
from supernode.train.step import estimate
from supernode.workload import load_model


@pytest.fixture(scope="module")
def setup(catalog):
    m = load_model(catalog, "llama-3.1-8b")
    cl = resolve_cluster(catalog, "h100", 64)
    w = TrainWorkload(global_batch=256, seq_len=4096)
    return m, cl, w


def test_korthikanti_34_sbh(catalog):
    m = load_model(catalog, "megatron-gpt-1.7b")  # MHA, GeLU, F = 4D, dropout
    assert activation_bytes_per_token_layer(m, "dense") == 34 * m.hidden


def test_gemm_time_roofline(catalog):
    cl = resolve_cluster(catalog, "h100", 8)
    eff = efficiency("nvidia-hopper")
    t = gemm_time_s(cl.chip, eff, 8192, 8192, 8192)
    flops = 2 * 8192 ** 3
    assert flops / t <= cl.chip.peak("bf16") * eff.gemm_fraction("bf16")
    assert flops / t > 0.9 * cl.chip.peak("bf16") * eff.gemm_fraction("bf16")
    skinny = gemm_time_s(cl.chip, eff, 1, 8192, 8192)  # decode-like: memory bound, plus the fixed kernel latency
    assert skinny == pytest.approx(8192 * 8192 * 2 / (cl.chip.memory_bandwidth_bytes_per_s * eff.memory_bandwidth_fraction)
                                   + eff.gemm_kernel_latency_s, rel=0.01)
    assert eff.gemm_kernel_latency_s > 0


def test_single_plan_breakdown_adds_up(setup):
    m, cl, w = setup
    b = estimate(m, cl, w, Plan(tp=2, pp=2, vpp=2, dp=16, micro_batch=1, zero=1)).row()
    parts = b["compute_s"] + b["exposed_tp_comm_s"] + b["exposed_cp_comm_s"] + b["exposed_ep_comm_s"] + \
        b["bubble_s"] + b["exposed_pp_comm_s"] + b["exposed_dp_comm_s"] + b["optimizer_s"]
    assert b["step_time_s"] == pytest.approx(parts, rel=1e-9)
    assert b["tokens_per_s"] == pytest.approx(256 * 4096 / b["step_time_s"])
    assert 0 < b["mfu"] <= b["hfu"] < 1
    assert b["valid"] and b["fits"]


def test_zero_stages_shrink_memory(setup):
    m, cl, w = setup
    mem = [estimate(m, cl, w, Plan(tp=1, dp=64, micro_batch=1, zero=z)).row()["memory_bytes_per_chip"] for z in range(4)]
    assert mem[0] > mem[1] > mem[2] > mem[3]
    b0 = estimate(m, cl, w, Plan(tp=1, dp=64, micro_batch=1, zero=0)).row()
    total, _ = 8.03e9, None
    assert b0["optimizer_bytes"] == pytest.approx(12 * total, rel=0.01)  # ZeRO paper: 12 bytes/param


def test_recompute_full_saves_memory_costs_time(setup):
    m, cl, w = setup
    a = estimate(m, cl, w, Plan(tp=1, dp=64, micro_batch=4, recompute=0)).row()
    f = estimate(m, cl, w, Plan(tp=1, dp=64, micro_batch=4, recompute=2)).row()
    assert f["activations_bytes"] < a["activations_bytes"]
    assert f["step_time_s"] > a["step_time_s"]
    assert f["hfu"] > f["mfu"]


def test_search_plans_use_all_chips_and_beat_single(setup):
    m, cl, w = setup
    res = search(m, cl, w, top=5)
    p = res.plans.arrays()
    assert np.all(p.tp * p.cp * p.dp * p.pp == cl.chips)
    assert np.all(res.breakdown.fits)
    single = estimate(m, cl, w, Plan(tp=8, pp=1, dp=8, micro_batch=1, zero=1)).row()
    assert res.breakdown.row(0)["step_time_s"] <= single["step_time_s"] + 1e-12


def test_nothing_fits_is_reported(catalog):
    m = load_model(catalog, "llama-3.1-405b")
    cl = resolve_cluster(catalog, "h100", 8)
    res = search(m, cl, TrainWorkload(64, 4096), top=1)
    assert not res.breakdown.row(0)["fits"]


def test_moe_plan_uses_ep(catalog):
    m = load_model(catalog, "mixtral-8x7b")
    cl = resolve_cluster(catalog, "h100", 64)
    b = estimate(m, cl, TrainWorkload(256, 4096), Plan(tp=1, dp=64, ep=8, micro_batch=1)).row()
    assert b["exposed_ep_comm_s"] > 0 and b["valid"]


def _scaled(cl, bw=1.0, flops=1.0):
    chip = dataclasses.replace(cl.chip, peak_flop_per_s={k: v * flops for k, v in cl.chip.peak_flop_per_s.items()})
    tiers = tuple(dataclasses.replace(t, bandwidth_bytes_per_s=t.bandwidth_bytes_per_s * bw) for t in cl.tiers)
    return dataclasses.replace(cl, chip=chip, tiers=tiers)


@settings(max_examples=15, deadline=None)
@given(bw=st.floats(1.0, 8.0), fl=st.floats(1.0, 8.0), tp=st.sampled_from([1, 2, 4, 8]),
       pp=st.sampled_from([1, 2, 4]), z=st.integers(0, 3), r=st.integers(0, 2))
def test_more_bandwidth_or_flops_never_slower(setup, bw, fl, tp, pp, z, r):
    m, cl, w = setup
    plan = Plan(tp=tp, pp=pp, dp=64 // (tp * pp), micro_batch=1, zero=z, recompute=r)
    base = estimate(m, cl, w, plan).row()["step_time_s"]
    assert estimate(m, _scaled(cl, bw=bw), w, plan).row()["step_time_s"] <= base * (1 + 1e-12)
    assert estimate(m, _scaled(cl, flops=fl), w, plan).row()["step_time_s"] <= base * (1 + 1e-12)


@settings(max_examples=10, deadline=None)
@given(n=st.sampled_from([8, 16, 32, 48, 64, 96, 128]), tp=st.sampled_from([None, 1, 2, 4, 8]))
def test_search_optimum_no_worse_than_any_direct_plan(catalog, n, tp):
    m = load_model(catalog, "llama-3.1-8b")
    cl = resolve_cluster(catalog, "h100", n)
    w = TrainWorkload(768, 4096)
    res = search(m, cl, w, fixed={"tp": tp}, top=1)
    p = res.plans.arrays()
    assert np.all(p.tp * p.cp * p.dp * p.pp == n)
    best = res.breakdown.row(0)["step_time_s"]
    t = tp or 1
    direct = estimate(m, cl, w, Plan(tp=t, pp=1, dp=n // t, micro_batch=1, zero=1, recompute=2)).row()
    if direct["valid"] and direct["fits"]:
        assert best <= direct["step_time_s"] + 1e-12


def test_cli_train_json(run_cli):
    code, out, err = run_cli("train", "llama-3.1-8b", "--on", "h100", "--chips", "16", "--tokens", "1e12",
                             "--top", "2", "--json")
    assert code == 0, err
    d = json.loads(out)
    p = d["plans"][0]
    for k in ("step_time_s", "tokens_per_s", "mfu", "hfu", "memory_bytes_per_chip", "fits", "plan", "breakdown"):
        assert k in p
    assert p["training"]["chip_hours"] > 0


def test_cli_train_fixed_plan_and_impossible(run_cli):
    code, out, _ = run_cli("train", "llama-3.1-8b", "--on", "h100", "--chips", "16", "--tp", "4", "--pp", "2",
                           "--json", "--top", "1")
    assert code == 0 and json.loads(out)["plans"][0]["plan"]["tp"] == 4
    code, _, err = run_cli("train", "llama-3.1-8b", "--on", "h100", "--chips", "16", "--tp", "3")
    assert code == 2 and "--tp" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("train", "llama-3.1-8b", "--on", "h100", "--chips", "16", "--tp", "16")
    assert code == 2 and "--tp" in err


def test_training_answers(catalog):
    from supernode.train.answers import training_answers

    md = training_answers(catalog)
    assert "DeepSeek-V3" in md and "chip-hours" in md


def test_dualpipe_halves_the_bubble_hides_ep_traffic_and_doubles_weights(catalog):
    from supernode.hardware import resolve_cluster
    from supernode.train.plan import Plan, TrainWorkload
    from supernode.train.step import estimate
    from supernode.workload import load_model

    m = load_model(catalog, "deepseek-v3")
    cl = resolve_cluster(catalog, "h800", 2048)
    plan = Plan(tp=1, pp=16, dp=128, ep=64, micro_batch=1, zero=1, recompute=2)
    one = estimate(m, cl, TrainWorkload(15360, 4096, "fp8"), plan).row()
    dual = estimate(m, cl, TrainWorkload(15360, 4096, "fp8", schedule="dualpipe"), plan).row()
    assert dual["bubble_s"] < 0.5 * one["bubble_s"]
    assert dual["exposed_ep_comm_s"] <= one["exposed_ep_comm_s"]
    assert dual["weights_bytes"] == pytest.approx(2 * one["weights_bytes"])
    bad = estimate(m, cl, TrainWorkload(15360, 4096, "fp8", schedule="dualpipe"),
                   Plan(tp=1, pp=16, vpp=2, dp=128, ep=64)).row()
    assert not bad["valid"]
