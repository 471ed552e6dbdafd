"""I37: TensorRT-LLM's fused MoE op (``moe_backend: trtllm-fused``) against published timings of the op
(data/fused-moe-kernels, perf/calibration.fit_fused_moe) and in the serving step (infer/step.py)."""

from __future__ import annotations

import numpy as np
import pytest

from supernode.catalog.loader import load_catalog
from supernode.errors import UsageError
from supernode.hardware import resolve_cluster
from supernode.infer import glue, kernels, moe_backend, serving_arch
from supernode.infer.plan import PlanGrid
from supernode.infer.precision import module_formats
from supernode.infer.step import stage_time
from supernode.perf import calibration, compute
from supernode.workload import shapes

CAT = load_catalog(use_env=False)
DS = serving_arch(CAT, "deepseek-r1")


def _chip(name):
    return resolve_cluster(CAT, name, 1).chip


def test_fused_moe_tables_load_and_cite_sources():
    tables = calibration.fused_moe_tables()
    campaign = {f"aiconfigurator-vllm020-trtllmgen-nvfp4-b200-{g}" for g in (
        "deepseek-v3-tp1-ep2", "glm-5-tp1-ep1", "kimi-k2-tp16-ep1", "mixtral-8x22b-tp1-ep4", "qwen3-235b-a22b-tp1-ep64",
        "qwen3-30b-a3b-tp2-ep1", "qwen3.5-397b-a17b-tp1-ep8")}
    first_two = {"flashinfer-pr4985-trtllm-nvfp4-b300", "trtllm-blog24-trtllmgen-nvfp4-b200"}
    assert {t.id for t in tables} == first_two | campaign
    for t in tables:
        assert t.source in CAT.sources and t.chip in CAT.chips, t.id
    rec = compute.efficiency_file("nvidia-blackwell").fused_moe["fp4"]
    assert {f.source for f in rec.values()} <= set(CAT.sources)
    with pytest.raises(ValueError, match="no fused-MoE tables"):
        calibration.fit_fused_moe(CAT, "nvidia-blackwell", "fp8")


def test_blackwell_fp4_fit_is_the_stated_rule():
    """The family's pair in data/efficiency/nvidia-blackwell.yaml is what the rule fixed before the fit gives on the
    tables (rows <= 512 tokens, each source weighing once, grid search)."""
    t_f, phi = calibration.fit_fused_moe(CAT, "nvidia-blackwell", "fp4")
    fm = compute.efficiency("nvidia-blackwell").fused_moe["fp4"]
    assert fm["fixed_s"] == pytest.approx(t_f, abs=0.05e-6)
    assert fm["bandwidth_fraction"] == pytest.approx(phi, abs=0.0025)
    assert 20e-6 < t_f < 30e-6 and 0.70 < phi < 0.80


def test_fit_rows_are_reproduced():
    """With the fitted pair the 24 decode-size rows of the first two sources (B300 and B200) are priced within 41%,
    half of them within 5%. The campaign's 119 rows (seven shapes on B200) are priced at a median |error| under 20%,
    its widest misses being the groups the op's form cannot hold (two local experts of an EP64 rank, Mixtral's two of an
    EP4 rank, Kimi-K2's 128-wide TP16 shards). Above the rule's 512 tokens the B300 op (a tactic switch) and the
    Qwen3-30B-A3B TP2 group are under-priced."""
    errs, campaign, above = [], [], {}
    for t in calibration.fused_moe_tables():
        f = calibration.fused_moe_fit(t, _chip(t.chip))
        use = f.tokens <= calibration.FUSED_MOE_MAX_TOKENS
        (campaign if t.source == "aiconfigurator_campaign_vllm020_moe_b200" else errs).extend(f.error_fraction[use])
        above[t.id] = f.error_fraction[~use]
    assert len(errs) == 24 and np.max(np.abs(errs)) <= 0.41 and np.median(np.abs(errs)) <= 0.05
    assert len(campaign) == 7 * 17 and np.median(np.abs(campaign)) <= 0.20 and min(campaign) < -0.5
    assert max(above["flashinfer-pr4985-trtllm-nvfp4-b300"]) < -0.25
    assert max(above["aiconfigurator-vllm020-trtllmgen-nvfp4-b200-qwen3-30b-a3b-tp2-ep1"]) < -0.10


def test_campaign_tables_hold_the_published_rows():
    """Spot rows of aiconfigurator's B200 file (latency ms x 1000), and each group's 27 token counts."""
    tables = {t.id: t for t in calibration.fused_moe_tables()}
    pre = "aiconfigurator-vllm020-trtllmgen-nvfp4-b200-"
    for group, tokens, us in (("qwen3-30b-a3b-tp2-ep1", 16384, 528.2507), ("deepseek-v3-tp1-ep2", 512, 484.7573),
                              ("glm-5-tp1-ep1", 1, 48.0640), ("qwen3-235b-a22b-tp1-ep64", 16384, 186.2187)):
        t = tables[pre + group]
        assert dict((int(r[0]), float(r[1])) for r in t.rows)[tokens] == pytest.approx(us, abs=1e-4), group
    for tid, t in tables.items():
        if tid.startswith(pre):
            assert [int(r[0]) for r in t.rows][:3] == [1, 2, 4] and len(t.rows) == 27 and int(t.rows[-1][0]) == 16384
    q = tables[pre + "qwen3-30b-a3b-tp2-ep1"]
    assert (q.hidden, q.expert_ffn, q.experts, q.local_experts, q.experts_per_token) == (2048, 384, 128, 128, 8)


def test_fused_op_by_hand_at_one_token():
    """One token on a TP8/EP8 rank of DeepSeek-R1 (32 local experts, top-8 of 256): uniform routing hits 1 expert on
    average; the op is t_f plus that expert's NVFP4 FC1 + FC2 weights (3 x 7168 x 2048 x 0.5625 bytes) at phi_f of
    B300's HBM bandwidth (the math and activations are negligible)."""
    b300 = _chip("b300")
    eff = compute.efficiency("nvidia-blackwell")
    slots, hit, tph = shapes.uniform_routing(np.array([1.0]), 8.0, 256.0, np.array([8.0]))
    assert slots[0] == 32 and slots[0] * hit[0] == pytest.approx(1.0) and tph[0] == pytest.approx(1.0)
    gemms = shapes.mlp_gemms(DS.model, tph, DS.model.moe.expert_ffn, 1, slots * hit, "expert", "expert")
    t = float(kernels.fused_moe_s(b300, eff, gemms, "fp4")[0])
    fm = eff.fused_moe["fp4"]
    weights_s = 3 * 7168 * 2048 * 0.5625 / (b300.memory_bandwidth_bytes_per_s * fm["bandwidth_fraction"])
    assert t == pytest.approx(fm["fixed_s"] + weights_s, rel=0.02)


def test_fused_op_grows_with_tokens_and_is_zero_without_any():
    b300 = _chip("b300")
    eff = compute.efficiency("nvidia-blackwell")
    tok = np.array([0.0, 1.0, 8.0, 64.0, 512.0, 8192.0, 65536.0])
    slots, hit, tph = shapes.uniform_routing(tok, 8.0, 256.0, np.full(tok.shape, 8.0))
    gemms = shapes.mlp_gemms(DS.model, tph, DS.model.moe.expert_ffn, 1, slots * hit, "expert", "expert")
    t = kernels.fused_moe_s(b300, eff, gemms, "fp4")
    assert t[0] == 0.0 and np.all(np.diff(t) > 0)
    # at prefill sizes it is compute-bound at the grouped GEMMs' compute rate, like the grouped price's math part
    grouped = kernels.gemms_s(b300, eff, gemms, "fp4", 0.5625)
    assert t[-1] == pytest.approx(grouped[-1], rel=0.15)


def _plan(tp, ep):
    return PlanGrid(tp=np.array([tp]), pp=1, dp=1, ep=np.array([ep]), batch=np.array([32]), overlap=0)


def _decode(system, backend, precision="fp4", seqs=32.0, tp=8, ep=8):
    c = resolve_cluster(CAT, system, 8)
    return stage_time(DS, c, _plan(tp, ep), precision=precision, kv_precision_bytes=1.0, decode_seqs=seqs,
                      context_tokens=1500.0, expert_balance="none", moe_backend=backend)


def test_grouped_is_the_default_and_fused_is_faster_at_decode_on_blackwell_fp4():
    base = _decode("b300", None)
    assert float(_decode("b300", "grouped").stage_s[0]) == float(base.stage_s[0])
    fused = _decode("b300", "trtllm-fused")
    assert float(fused.gemm_s[0]) < float(base.gemm_s[0])
    # collectives and attention are untouched
    assert float(fused.tp_comm_s[0]) == float(base.tp_comm_s[0])
    assert float(fused.attention_s[0]) == float(base.attention_s[0])


def test_family_without_a_fit_at_the_format_keeps_the_grouped_price():
    """No fused-MoE fit at FP8 on Blackwell, and none on Hopper: trtllm-fused is priced as grouped, and the
    assumption line says so."""
    for system, prec in (("b200", "fp8"), ("h200", "fp8")):
        g = _decode(system, None, prec)
        f = _decode(system, "trtllm-fused", prec)
        assert float(f.stage_s[0]) == float(g.stage_s[0]), system
    eff = compute.efficiency("nvidia-blackwell")
    assert "no fused-MoE fit" in moe_backend.describe(eff, "trtllm-fused", "fp8")
    assert "fused MoE op, 27.9 us" in moe_backend.describe(eff, "trtllm-fused", "fp4")


def test_fused_moe_layer_counts_a_dense_layers_glue_kernels():
    eff = compute.efficiency("nvidia-blackwell")
    assert float(kernels.aux_kernels_s(eff, 3, 58, fused_moe=True)) == pytest.approx(61 * 6 * eff.kernel_floor_s)
    assert float(kernels.aux_kernels_s(eff, 3, 58)) == pytest.approx((3 * 6 + 58 * 10) * eff.kernel_floor_s)


def test_fused_moe_glue_traffic_is_the_shared_experts_only():
    """The op's fitted time holds the routed path's quantization, activation and finalize (I37); what is left of a
    MoE FFN's glue traffic (I30) is the shared experts', as a dense FFN of their width."""
    fm = module_formats("fp4")
    fmts = ("bf16", "fp8", "fp4")
    t = np.array([8.0])
    fused = glue.moe_ffn_bytes_per_token(DS, fm, fmts, t, 1.0, 1.0, 8.0, None, True)
    grouped = glue.moe_ffn_bytes_per_token(DS, fm, fmts, t, 1.0, 1.0, 8.0)
    shared = glue._ffn_bytes(DS, DS.model.moe.shared_experts * DS.model.moe.expert_ffn / 8.0, "fp4", fmts, None)
    assert fused[0] == pytest.approx(shared) and grouped[0] > fused[0]


def test_unknown_backend_is_a_one_line_error(run_cli):
    with pytest.raises(UsageError, match="--moe-backend"):
        moe_backend.check("cutlass-magic")
    code, out, err = run_cli("infer", "deepseek-r1", "--on", "b200", "--chips", "8", "--moe-backend", "bogus")
    assert code == 2 and not out and err.strip().count("\n") == 0 and "--moe-backend" in err


def test_search_states_the_backend_and_prices_it():
    from supernode.infer.search import search
    from supernode.infer.serving import Workload

    kw = dict(workload=Workload(1024.0, 1024.0), precision="fp4", kv_precision="fp8", disaggregated=False,
              fixed={"tp": 8, "ep": 8, "dp": 1, "pp": 1, "batch": 16, "overlap": False}, expert_balance="none")
    g = search(CAT, "deepseek-r1", "b300", 8, **kw)
    f = search(CAT, "deepseek-r1", "b300", 8, moe_backend="trtllm-fused", **kw)
    assert any("grouped GEMM kernels" in a for a in g["assumptions"])
    assert any("TensorRT-LLM's fused MoE op" in a for a in f["assumptions"])
    assert f["colocated"]["tpot_s"] < g["colocated"]["tpot_s"]
