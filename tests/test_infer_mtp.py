"""Multi-token-prediction (MTP) / speculative-decoding draft passes (docs/inference.md I14).

A draft pass is one block of the model's layer shape + the projection 2D -> D + the shared LM head, run m times
in sequence on the last stage after each verify pass; the step becomes p (T_stage + m T_draft)."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hw_variants import faster_variants

from supernode import workload
from supernode.catalog import load_catalog
from supernode.hardware import resolve_cluster
from supernode.infer import SLO, Workload, search, serving_arch
from supernode.infer import serving
from supernode.infer.arch import from_model_spec
from supernode.infer.kernels import efficiency
from supernode.infer.plan import PlanGrid
from supernode.infer.serving import Options, evaluate_colocated, evaluate_decode
from supernode.infer.step import DRAFT_EXTRA_KERNELS, draft_pass_time, stage_time

CAT = load_catalog()
USABLE = 0.9
DS = serving_arch(CAT, "deepseek-r1")


def plan1(tp=1, pp=1, dp=1, ep=1, batch=1, overlap=0):
    return PlanGrid(tp=np.array([tp]), pp=pp, dp=dp, ep=ep, batch=batch, overlap=overlap)


def one_layer(model_id: str):
    """The catalog model cut to one layer of its draft-block shape (a MoE layer for a MoE model)."""
    spec = workload.load_model(CAT, model_id)
    upd = {"layers": 1}
    if spec.moe is not None:
        upd["moe"] = spec.moe.model_copy(update={"first_dense_layers": 0})
    return from_model_spec(spec.model_copy(update=upd))


def decode(arch, cl, plan, m, a, ctx=2048.0, precision="fp8"):
    return evaluate_decode(arch, cl, plan, Workload(ctx, 1.0), SLO(), Options(precision, "bf16", m, a), USABLE,
                           context_tokens=ctx)


@pytest.mark.parametrize("on,n,tp,dp,ep", [("h200", 8, 8, 1, 4), ("h20", 16, 1, 16, 16)])
def test_deepseek_draft_pass_is_one_moe_layer_plus_head_plus_projection(on, n, tp, dp, ep):
    """T_draft - T_stage(1-layer DeepSeek-R1, 1 token/seq) = projection + 4 kernel floors + one more all-reduce (t > 1).
    The 1-layer stage already holds one MoE block (MLA + router + shared + hit routed experts), the LM head, the
    block's 10 non-GEMM kernels, two all-reduces and one dispatch + combine."""
    cl = resolve_cluster(CAT, on, n)
    e = efficiency(cl)
    plan = plan1(tp=tp, dp=dp, ep=ep, batch=dp)
    kw = dict(precision="fp8", kv_precision_bytes=1.0, decode_seqs=1.0, context_tokens=2048.0)
    draft = draft_pass_time(DS, cl, plan, **kw)
    layer = stage_time(one_layer("deepseek-r1"), cl, plan, **kw)
    assert draft.attention_s[0] == pytest.approx(layer.attention_s[0], rel=1e-12)
    assert draft.moe_comm_s[0] == pytest.approx(layer.moe_comm_s[0], rel=1e-12)
    assert (draft.moe_comm_s[0] > 0) == (dp > 1)  # one attention group (dp = 1): the all-reduce combines
    assert draft.tp_comm_s[0] == pytest.approx(1.5 * layer.tp_comm_s[0], rel=1e-12)  # 3 all-reduces vs 2
    assert (draft.tp_comm_s[0] > 0) == (tp > 1)
    proj = draft.gemm_s[0] - layer.gemm_s[0] - DRAFT_EXTRA_KERNELS * e.kernel_floor_s
    # projection [h; e] 2D -> D in BF16, row-split over t: at batch 1 it streams 2 D^2 2 / t bytes
    stream = 2 * DS.hidden ** 2 * 2 / tp / (cl.chip.memory_bandwidth_bytes_per_s * e.memory_bandwidth_fraction)
    assert max(stream, e.kernel_floor_s) <= proj <= 1.2 * max(stream, e.kernel_floor_s)
    assert draft.stage_s[0] == pytest.approx(layer.stage_s[0] + proj + DRAFT_EXTRA_KERNELS * e.kernel_floor_s
                                             + draft.tp_comm_s[0] / 3, rel=1e-12)


def test_dense_model_draft_is_one_dense_layer_eagle_head():
    """A model without MTP modules: an EAGLE-style one-layer draft head of its own (dense) layer shape."""
    arch = serving_arch(CAT, "llama-3.1-70b")
    cl = resolve_cluster(CAT, "h100", 8)
    e = efficiency(cl)
    plan = plan1(tp=8)
    kw = dict(precision="fp8", kv_precision_bytes=2.0, decode_seqs=4.0, context_tokens=3000.0)
    draft = draft_pass_time(arch, cl, plan, **kw)
    layer = stage_time(one_layer("llama-3.1-70b"), cl, plan, **kw)
    assert draft.moe_comm_s[0] == 0
    extra = draft.stage_s[0] - layer.stage_s[0]
    assert extra > DRAFT_EXTRA_KERNELS * e.kernel_floor_s + draft.tp_comm_s[0] / 3
    # one layer of 80 plus the head: far below the 80-layer verify pass
    full = stage_time(arch, cl, plan, **kw).stage_s[0]
    assert 1 / 80 * full < draft.stage_s[0] < 0.1 * full


def test_no_draft_tokens_is_bit_identical_to_stage_only_accounting():
    cl = resolve_cluster(CAT, "h200", 16)
    plan = PlanGrid(tp=np.array([8, 8, 4]), pp=np.array([1, 2, 1]), dp=np.array([1, 1, 4]), ep=np.array([8, 8, 16]),
                    batch=np.array([8, 16, 64]), overlap=np.array([0, 0, 1]))
    ev = decode(DS, cl, plan, 0, 1.0)
    st = stage_time(DS, cl, plan, precision="fp8", kv_precision_bytes=2.0, decode_seqs=plan.batch / (plan.dp * plan.pp),
                    context_tokens=2048.0, expert_balance=Options("fp8").expert_balance)
    assert ev.breakdown.draft_s is None and "draft_s" not in ev.breakdown.row(0)
    assert np.array_equal(ev.tpot_s, plan.pp * st.stage_s)
    assert np.array_equal(ev.breakdown.stage_s, st.stage_s)


def test_draft_cost_is_linear_in_draft_tokens_and_sits_on_top_of_the_verify_pass():
    """draft_s = m T_draft (T_draft does not depend on m); step = p (T_stage(1 + m query tokens) + m T_draft)."""
    cl = resolve_cluster(CAT, "h200", 16)
    plan = PlanGrid(tp=np.array([8, 8]), pp=np.array([1, 2]), dp=1, ep=8, batch=np.array([1, 2]), overlap=0)
    t1 = draft_pass_time(DS, cl, plan, precision="fp8", kv_precision_bytes=2.0, decode_seqs=1.0,
                         context_tokens=2048.0, expert_balance=Options("fp8").expert_balance).stage_s
    assert np.all(t1 > 0)
    for m in (1, 2, 3):
        a = 1.0 + 0.8 * m
        ev = decode(DS, cl, plan, m, a)
        assert ev.breakdown.draft_s == pytest.approx(m * t1, rel=1e-12)
        step = plan.pp * (ev.breakdown.stage_s + m * t1)
        assert ev.tpot_s == pytest.approx(step / a, rel=1e-12)
        # the last stage runs the drafts of each of the p micro-batches: p m T_draft, not m T_draft
        assert ev.tpot_s[1] * a > (plan.pp[1] * ev.breakdown.stage_s[1] + m * t1[1]) * (1 + 1e-9)


def test_tpot_with_mtp_exceeds_accounting_without_draft_cost(monkeypatch):
    """Decode and co-located TPOT, and co-located TTFT, grow by the draft passes; zeroing them gives the old figures."""
    cl = resolve_cluster(CAT, "h200", 16)
    plan = PlanGrid(tp=np.array([8, 8, 4]), pp=1, dp=np.array([1, 2, 4]), ep=np.array([8, 16, 16]),
                    batch=np.array([4, 32, 256]), overlap=np.array([0, 1, 1]))
    opts = Options("fp8", "bf16", 2, 2.4)
    wl = Workload(2048, 512)
    with_draft = [evaluate_decode(DS, cl, plan, wl, SLO(), opts, USABLE),
                  evaluate_colocated(DS, cl, plan, wl, SLO(), opts, USABLE)]
    real = serving.draft_pass_time

    def free(*args, **kw):
        br = real(*args, **kw)
        return replace(br, stage_s=0.0 * br.stage_s)

    monkeypatch.setattr(serving, "draft_pass_time", free)
    without = [evaluate_decode(DS, cl, plan, wl, SLO(), opts, USABLE),
               evaluate_colocated(DS, cl, plan, wl, SLO(), opts, USABLE)]
    for w, wo in zip(with_draft, without):
        assert np.all(w.tpot_s > wo.tpot_s)
        assert w.tpot_s == pytest.approx(wo.tpot_s + plan.pp * w.breakdown.draft_s / 2.4, rel=1e-12)
        assert np.all(w.decode_tokens_per_s_per_chip < wo.decode_tokens_per_s_per_chip)
    assert np.all(with_draft[1].ttft_s > without[1].ttft_s)


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(1.0, 4.0), batch=st.sampled_from([1, 8, 64]), ctx=st.sampled_from([256, 4096]))
def test_more_bandwidth_or_flops_never_makes_a_draft_pass_slower(scale, batch, ctx):
    cl = resolve_cluster(CAT, "h200", 16)
    faster = faster_variants(cl, scale)
    plan = PlanGrid(tp=np.array([1, 8, 4]), pp=np.array([1, 1, 2]), dp=np.array([16, 1, 2]), ep=np.array([16, 8, 8]),
                    batch=batch, overlap=0)
    kw = dict(precision="fp8", kv_precision_bytes=1.0, decode_seqs=batch, context_tokens=ctx)
    base = draft_pass_time(DS, cl, plan, **kw).stage_s
    for f in faster:
        assert np.all(draft_pass_time(DS, f, plan, **kw).stage_s <= base * (1 + 1e-9))


@pytest.mark.parametrize("model,on,n,kind", [("deepseek-r1", "h200", 16, "the model's MTP module"),
                                             ("llama-3.1-70b", "h100", 8, "EAGLE-style one-layer draft head")])
def test_search_states_the_draft_assumption(model, on, n, kind):
    r = search(CAT, model, on, n, workload=Workload(2048, 256), precision="fp8", draft_tokens=2,
               acceptance_length=2.0, disaggregated=False)
    lines = [a for a in r["assumptions"] if a.startswith("draft cost (I14)")]
    assert len(lines) == 1 and kind in lines[0]
    assert r["colocated"]["breakdown"]["draft_s"] > 0
    r0 = search(CAT, model, on, n, workload=Workload(2048, 256), precision="fp8", disaggregated=False)
    assert not any(a.startswith("draft cost") for a in r0["assumptions"])
    assert "draft_s" not in r0["colocated"]["breakdown"]


def test_moe_layer_communication_is_the_i18_kernels_or_the_all_reduce():
    """Attention-DP ranks (dp > 1) exchange tokens by the MoE dispatch + combine kernels (I18) of the
    mean rank's bytes; one TP attention group over the stage (dp = 1) has every token on every chip and
    combines the experts' outputs in its FFN all-reduce, so no all-to-all is priced."""
    from supernode.infer import kernels
    from supernode.infer.precision import ACTIVATION_BYTES, dispatch_bytes

    cl = resolve_cluster(CAT, "h200", 8)
    kw = dict(precision="fp8", kv_precision_bytes=1.0, decode_seqs=4.0, context_tokens=2048.0,
              expert_balance="ideal")
    arch = one_layer("deepseek-r1")
    adp = stage_time(arch, cl, plan1(tp=1, dp=8, ep=8, batch=32), **kw)
    tok = 4.0 * arch.experts_per_token * arch.hidden
    ceff = kernels.collective_efficiency(cl, efficiency(cl))
    expected = (kernels.moe_dispatch_s(cl, tok * dispatch_bytes("fp8"), 8, ceff)
                + kernels.moe_combine_s(cl, tok * ACTIVATION_BYTES, 8, ceff))
    assert adp.moe_comm_s[0] == pytest.approx(float(np.ravel(expected)[0]), rel=0.05)
    tp_attention = stage_time(arch, cl, plan1(tp=8, dp=1, ep=8, batch=4), **kw)
    assert tp_attention.moe_comm_s[0] == 0.0 and tp_attention.tp_comm_s[0] > 0
