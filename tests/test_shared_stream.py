"""I38: a MoE layer's shared experts on a second stream beside the routed experts (``shared_experts_stream:
overlap``, SGLang's dual-stream MoE; infer/shared_stream.py, infer/step.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from supernode.catalog.loader import load_catalog
from supernode.errors import UsageError
from supernode.hardware import resolve_cluster
from supernode.infer import glue, serving_arch, shared_stream
from supernode.infer.plan import PlanGrid
from supernode.infer.precision import module_formats
from supernode.infer.step import _moe_paths_s, draft_pass_time, shared_stream_saving_s, stage_time
from supernode.infer.validation import predict
from supernode.perf import compute

CAT = load_catalog(use_env=False)
DS = serving_arch(CAT, "deepseek-r1")
FMT = module_formats("fp4", {"attention": "fp8", "router": "bf16", "lm_head": "bf16"})


def _plan(tp=8, ep=8):
    return PlanGrid(tp=np.array([tp]), pp=1, dp=1, ep=np.array([ep]), batch=np.array([8]), overlap=0)


def _b300():
    return resolve_cluster(CAT, "b300", 8)


def _stage(stream, seqs=1.0, prefill=0.0, arch=DS):
    return stage_time(arch, _b300(), _plan(), precision="fp4", kv_precision_bytes=1.0, decode_seqs=seqs,
                      context_tokens=1500.0, prefill_tokens=prefill, prefill_len=1024.0, expert_balance="none",
                      moe_backend="trtllm-fused", shared_experts_stream=stream)


def test_serial_is_the_default_and_a_bad_mode_is_a_one_line_error(run_cli):
    assert float(_stage(None).stage_s[0]) == float(_stage("serial").stage_s[0])
    with pytest.raises(UsageError, match="--shared-experts-stream"):
        shared_stream.check("sideways")
    code, out, err = run_cli("infer", "deepseek-r1", "--on", "b300", "--chips", "8", "--shared-experts-stream", "x")
    assert code == 2 and not out and err.strip().count("\n") == 0 and "--shared-experts-stream" in err


def test_one_token_hides_the_whole_shared_path():
    """One token on a TP8/EP8 B300 rank: the routed path (router GEMM + the fused op, ~30 us) outlasts the shared
    experts' path (two latency-bound NVFP4 GEMMs, their activation's kernel floor and glue traffic), and the roofline
    work of both is far below either, so the whole shared path is hidden: saving = T_s."""
    chip, eff, plan = _b300().chip, compute.efficiency("nvidia-blackwell"), _plan()
    q = np.array([1.0])
    t_r, t_s = _moe_paths_s(DS, chip, eff, plan, q, FMT, fused_moe=True)
    glue_s = compute.memory_time_s(chip, eff, glue.shared_experts_bytes_per_token(
        DS, FMT, tuple(chip.peak_flop_per_s), plan.tp.astype(float)), eff.glue_fraction)
    shared = float(t_s[0] + glue_s[0]) + eff.kernel_floor_s
    assert float(t_r[0]) > shared > 2 * eff.gemm_kernel_latency_s
    saved = shared_stream_saving_s(DS, chip, eff, plan, q, FMT, tuple(chip.peak_flop_per_s), fused_moe=True)
    assert float(saved[0]) == pytest.approx(shared, rel=1e-9)


def test_saving_is_bounded_by_the_shorter_path_and_the_fixed_latencies():
    """At every batch 0 <= saving <= min(T_r, T_s), and never more than the two paths' fixed latencies together
    (T_moe >= W_r + W_s: the roofline work of the two streams shares the chip). At prefill sizes it is a small share
    of the layer."""
    chip, eff, plan = _b300().chip, compute.efficiency("nvidia-blackwell"), _plan()
    fmts = tuple(chip.peak_flop_per_s)
    free = dataclasses.replace(eff, gemm_kernel_latency_s=0.0, kernel_floor_s=0.0,
                               fused_moe={p: {**f, "fixed_s": 0.0} for p, f in eff.fused_moe.items()})
    for q in (1.0, 4.0, 32.0, 256.0, 4096.0, 65536.0):
        qq = np.array([q])
        saved = float(shared_stream_saving_s(DS, chip, eff, plan, qq, FMT, fmts, fused_moe=True)[0])
        glue_s = float(compute.memory_time_s(chip, eff, q * glue.shared_experts_bytes_per_token(
            DS, FMT, fmts, plan.tp.astype(float)), eff.glue_fraction)[0])
        t_r, t_s = (float(x[0]) for x in _moe_paths_s(DS, chip, eff, plan, qq, FMT, fused_moe=True))
        w_r, w_s = (float(x[0]) for x in _moe_paths_s(DS, chip, free, plan, qq, FMT, fused_moe=True))
        t_s += glue_s + eff.kernel_floor_s
        w_s += glue_s
        assert 0.0 <= saved <= min(t_r, t_s) + 1e-15, q
        assert saved <= (t_r - w_r) + (t_s - w_s) + 1e-15, q
        if q >= 65536.0:
            assert saved < 0.03 * (t_r + t_s)


def test_only_passes_without_prompt_tokens_overlap():
    """SGLang captures decode in CUDA graphs; a pass carrying prompt tokens runs outside them, in series. The
    collectives and attention are untouched; the saving comes off the GEMM time once per MoE layer."""
    ser, ov = _stage("serial"), _stage("overlap")
    assert float(ov.gemm_s[0]) < float(ser.gemm_s[0])
    assert float(ov.tp_comm_s[0]) == float(ser.tp_comm_s[0]) and float(ov.attention_s[0]) == float(ser.attention_s[0])
    chip, eff = _b300().chip, compute.efficiency("nvidia-blackwell")
    per_layer = shared_stream_saving_s(DS, chip, eff, _plan(), np.array([1.0]), FMT, tuple(chip.peak_flop_per_s),
                                       fused_moe=True)
    assert float(ser.gemm_s[0] - ov.gemm_s[0]) == pytest.approx(DS.moe_layers * float(per_layer[0]), rel=1e-9)
    assert float(_stage("overlap", prefill=512.0).stage_s[0]) == float(_stage("serial", prefill=512.0).stage_s[0])


def test_models_without_shared_experts_and_dense_models_are_unchanged():
    for name in ("qwen3-235b-a22b", "llama-3.1-70b"):
        arch = serving_arch(CAT, name)
        kw = dict(precision="fp8", kv_precision_bytes=1.0, decode_seqs=8.0, context_tokens=1500.0,
                  expert_balance="none")
        c = resolve_cluster(CAT, "b200", 8)
        plan = _plan(8, 8 if arch.is_moe else 1)
        assert float(stage_time(arch, c, plan, shared_experts_stream="overlap", **kw).stage_s[0]) == float(
            stage_time(arch, c, plan, **kw).stage_s[0]), name


def test_draft_passes_overlap_too():
    kw = dict(precision="fp4", kv_precision_bytes=1.0, decode_seqs=1.0, context_tokens=1500.0, expert_balance="none",
              moe_backend="trtllm-fused")
    ser = draft_pass_time(DS, _b300(), _plan(), **kw)
    ov = draft_pass_time(DS, _b300(), _plan(), shared_experts_stream="overlap", **kw)
    assert float(ov.stage_s[0]) < float(ser.stage_s[0])


def test_search_states_it_and_a_prefill_case_rejects_it(tmp_path):
    from supernode.infer.search import search
    from supernode.infer.serving import Workload

    kw = dict(workload=Workload(1024.0, 1024.0), precision="fp4", kv_precision="fp8", disaggregated=False,
              fixed={"tp": 8, "ep": 8, "dp": 1, "pp": 1, "batch": 1, "overlap": False}, expert_balance="none",
              moe_backend="trtllm-fused")
    s = search(CAT, "deepseek-r1", "b300", 8, **kw)
    o = search(CAT, "deepseek-r1", "b300", 8, shared_experts_stream="overlap", **kw)
    assert any("in series with them" in a for a in s["assumptions"])
    assert any("I38" in a and "second stream" in a for a in o["assumptions"])
    assert o["colocated"]["tpot_s"] < s["colocated"]["tpot_s"]
    case = {"id": "x", "kind": "prefill", "inputs": {"model": "deepseek-r1", "system": "h100", "chips": 8,
                                                     "precision": "fp8", "tp": 8, "pp": 1, "dp": 1, "ep": 8,
                                                     "input_tokens": 1024, "tokens_per_rank": 8192,
                                                     "shared_experts_stream": "overlap"}}
    with pytest.raises(UsageError, match="shared_experts_stream"):
        predict(CAT, case, Path(tmp_path))
