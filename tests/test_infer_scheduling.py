"""Chunked-prefill scheduling mixture (I15, supernode.infer.scheduling): hand-checkable limits,
properties, and its use in the co-located estimate."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supernode.catalog import load_catalog
from supernode.hardware import resolve_cluster
from supernode.infer import SLO, Workload, serving_arch
from supernode.infer.plan import PlanGrid
from supernode.infer.precision import kv_bytes
from supernode.infer.scheduling import chunk_mix, expected_iteration_s, routed_tokens_per_rank
from supernode.infer.serving import Options, evaluate_colocated
from supernode.infer.step import stage_time

CAT = load_catalog()


def linear(alpha, beta):
    return lambda tokens: alpha + beta * np.asarray(tokens, float)


def mixture_s(t_of_tokens, b, c, prompt, budget, d, synchronized):
    mix = chunk_mix(c, prompt_tokens=prompt, chunk_budget_tokens=budget, ranks=d, synchronized=synchronized)
    return expected_iteration_s(mix, t_of_tokens(b + mix.base_tokens), t_of_tokens(b + mix.burst_tokens)), mix


def test_one_rank_with_linear_time_is_the_even_spread_formula():
    """d = 1, T = 1 ms + 2 us/token, b = 100, c = 50, C = 1024: pi = 50/1024 and
    E[T] = pi T(1124) + (1 - pi) T(100) = T(150) = 1.3 ms."""
    t = linear(1e-3, 2e-6)
    e, mix = mixture_s(t, 100, 50.0, 1024, 8192, 1, synchronized=True)
    assert float(mix.burst_probability) == pytest.approx(50 / 1024)
    assert float(mix.burst_tokens) == 1024 and float(mix.base_tokens) == 0
    assert float(e) == pytest.approx(1.3e-3)


def test_convex_time_costs_more_than_the_even_spread():
    t = lambda x: 1e-3 + 1e-9 * np.asarray(x, float) ** 2  # noqa: E731
    e, _ = mixture_s(t, 100, 50.0, 1024, 8192, 1, synchronized=False)
    assert float(e) > float(t(150))


def test_burst_probability_to_one_gives_the_chunk_iteration():
    """c -> C: every iteration carries a chunk, E[T] -> T(b + C); c = C exactly: T(b + C)."""
    t = linear(1e-3, 2e-6)
    for c in (1024 * (1 - 1e-12), 1024.0):
        for d in (1, 8):
            for sync in (True, False):
                e, _ = mixture_s(t, 100, c, 1024, 8192, d, sync)
                assert float(e) == pytest.approx(float(t(1124)), rel=1e-9)


def test_budget_bound_keeps_the_mean_load():
    """c >= C_b: every iteration at the mean load c (the I9 even-spread figure)."""
    t = linear(1e-3, 2e-6)
    e, mix = mixture_s(t, 100, 3000.0, 4096, 2048, 8, True)
    assert float(mix.base_tokens) == float(mix.burst_tokens) == 3000.0
    assert float(e) == pytest.approx(float(t(3100)))


def test_several_prompts_per_iteration_floor_ceil():
    """c = 2.5 prompts of u = I = 300 per iteration (budget 8192): 600 or 900 tokens, half each (d = 1)."""
    mix = chunk_mix(750.0, prompt_tokens=300, chunk_budget_tokens=8192, ranks=1, synchronized=True)
    assert (float(mix.base_tokens), float(mix.burst_tokens)) == (600.0, 900.0)
    assert float(mix.burst_probability) == pytest.approx(0.5)


def test_moe_iteration_time_grows_with_the_attention_dp_ranks():
    """pi = 1/8: P = 1 - (7/8)^d, so 1/8 at d = 1 and 1 - (7/8)^8 = 0.656 at d = 8."""
    t = linear(1e-3, 2e-6)
    es = [float(mixture_s(t, 100, 128.0, 1024, 8192, d, True)[0]) for d in (1, 2, 4, 8, 16, 64)]
    assert all(a < b for a, b in zip(es, es[1:]))
    p8 = chunk_mix(128.0, prompt_tokens=1024, chunk_budget_tokens=8192, ranks=8, synchronized=True).burst_probability
    assert float(p8) == pytest.approx(1 - (7 / 8) ** 8)


def test_dense_ranks_are_independent_of_d():
    t = linear(1e-3, 2e-6)
    es = [float(mixture_s(t, 100, 128.0, 1024, 8192, d, False)[0]) for d in (1, 2, 8, 64)]
    assert es == pytest.approx([es[0]] * 4)


@settings(max_examples=200, deadline=None)
@given(c=st.floats(0.0, 20000.0), prompt=st.floats(1.0, 10000.0), budget=st.integers(1, 16384),
       d=st.sampled_from([1, 2, 4, 8, 32, 128]), sync=st.booleans())
def test_mixture_properties(c, prompt, budget, d, sync):
    mix = chunk_mix(c, prompt_tokens=prompt, chunk_budget_tokens=budget, ranks=d, synchronized=sync)
    p, lo, hi, k = (float(mix.burst_probability), float(mix.base_tokens), float(mix.burst_tokens),
                    float(mix.burst_ranks))
    assert 0.0 <= p <= 1.0 and lo <= hi and 1.0 - 1e-9 <= k <= d + 1e-9
    assert hi <= max(budget, c) + 1e-9
    b = 64.0
    if sync:  # the expected routed-expert load over all iterations is the mean load b + c (tokens conserved)
        routed = p * float(routed_tokens_per_rank(b, mix, d)) + (1 - p) * (b + lo)
        assert routed == pytest.approx(b + c, rel=1e-9, abs=1e-6)
    # any T increasing in tokens: the mixture is bounded by T(b + L) and T(b + H), and is never below the
    # even spread when T is linear (equal for d = 1 or unsynchronized ranks)
    t = linear(1e-3, 2e-6)
    e = float(expected_iteration_s(mix, t(b + lo), t(b + hi)))
    assert float(t(b + lo)) - 1e-15 <= e <= float(t(b + hi)) + 1e-15
    assert e >= float(t(b + c)) * (1 - 1e-12)
    if d == 1 or not sync:
        assert e == pytest.approx(float(t(b + c)), rel=1e-9)


def _plan(tp, dp, ep, batch):
    return PlanGrid(tp=np.array([tp]), pp=1, dp=dp, ep=ep, batch=batch, overlap=0)


def test_colocated_moe_is_slower_than_the_even_spread():
    """DeepSeek-R1 FP4 on 8 B200, ADP8/EP8, 384 sequences per rank, 1K/2K (the TensorRT-LLM max-throughput
    recipe): the I15 iteration is longer than the even-spread T(b + c) of I9."""
    arch, cl = serving_arch(CAT, "deepseek-r1"), resolve_cluster(CAT, "b200", 8)
    plan, wl = _plan(1, 8, 8, 3072), Workload(1024, 2048)
    opts = Options("fp4", "bf16", prefill_chunk_tokens=1153)
    ev = evaluate_colocated(arch, cl, plan, wl, SLO(), opts, 0.9)
    even = stage_time(arch, cl, plan, precision="fp4", kv_precision_bytes=kv_bytes("bf16"), decode_seqs=384,
                      context_tokens=1024 + 1024, prefill_tokens=384 * 1024 / 2048, prefill_len=1024).stage_s
    assert ev.tpot_s[0] > 1.1 * even[0]


def test_colocated_dense_replicas_do_not_depend_on_dp():
    """A dense model's attention-DP ranks are independent replicas: the same per-rank load gives the
    same iteration time at d = 1 and d = 4."""
    arch, cl = serving_arch(CAT, "llama-3.1-70b"), resolve_cluster(CAT, "h100", 8)
    wl, opts = Workload(1024, 256), Options("fp8", "bf16")
    t1 = evaluate_colocated(arch, cl, _plan(2, 1, 1, 256), wl, SLO(), opts, 0.9).tpot_s[0]
    t4 = evaluate_colocated(arch, cl, _plan(2, 4, 1, 1024), wl, SLO(), opts, 0.9).tpot_s[0]
    assert t4 == pytest.approx(t1, rel=1e-9)


def test_moe_dp_padding_makes_the_experts_work_at_the_loaded_rank():
    """I23: with every attention-DP rank padding its MoE input to the largest rank's token count, a burst
    iteration's routed experts see d x (b + H) tokens instead of the group mean, so the iteration is longer;
    the routed-expert load it prices equals that of a group whose ranks all carry b + H."""
    arch, cl = serving_arch(CAT, "deepseek-r1"), resolve_cluster(CAT, "b200", 8)
    plan, wl = _plan(1, 8, 8, 3072), Workload(1024, 2048)
    base = Options("fp4", "bf16", prefill_chunk_tokens=1153, expert_balance="none")
    padded = Options("fp4", "bf16", prefill_chunk_tokens=1153, expert_balance="none", moe_dp_padding=True)
    t0 = evaluate_colocated(arch, cl, plan, wl, SLO(), base, 0.9).tpot_s[0]
    t1 = evaluate_colocated(arch, cl, plan, wl, SLO(), padded, 0.9).tpot_s[0]
    assert t1 > 1.05 * t0
    mix = chunk_mix(384 * 1024 / 2048, prompt_tokens=1024, chunk_budget_tokens=1153, ranks=8, synchronized=True)
    burst_all_loaded = stage_time(arch, cl, plan, precision="fp4", kv_precision_bytes=kv_bytes("bf16"),
                                  decode_seqs=384, context_tokens=2048, prefill_tokens=float(mix.burst_tokens),
                                  prefill_len=1024, expert_balance="none").stage_s[0]
    no_burst = stage_time(arch, cl, plan, precision="fp4", kv_precision_bytes=kv_bytes("bf16"), decode_seqs=384,
                          context_tokens=2048, prefill_tokens=0.0, prefill_len=1024, expert_balance="none").stage_s[0]
    p = float(mix.burst_probability)
    assert t1 == pytest.approx(p * burst_all_loaded + (1 - p) * no_burst, rel=1e-9)


def test_moe_dp_padding_changes_nothing_for_one_rank_or_a_dense_model():
    """With one attention-DP rank there is no other rank to pad to; a dense model has no MoE input."""
    wl = Workload(1024, 2048)
    arch, cl = serving_arch(CAT, "deepseek-r1"), resolve_cluster(CAT, "b200", 8)
    one = _plan(8, 1, 8, 384)
    kw = dict(prefill_chunk_tokens=1153, expert_balance="none")
    a = evaluate_colocated(arch, cl, one, wl, SLO(), Options("fp4", "bf16", **kw), 0.9).tpot_s[0]
    b = evaluate_colocated(arch, cl, one, wl, SLO(), Options("fp4", "bf16", moe_dp_padding=True, **kw), 0.9).tpot_s[0]
    assert b == pytest.approx(a, rel=1e-12)
    arch, cl = serving_arch(CAT, "llama-3.1-70b"), resolve_cluster(CAT, "h100", 8)
    plan = _plan(2, 4, 1, 1024)
    a = evaluate_colocated(arch, cl, plan, wl, SLO(), Options("fp8", "bf16"), 0.9).tpot_s[0]
    b = evaluate_colocated(arch, cl, plan, wl, SLO(), Options("fp8", "bf16", moe_dp_padding=True), 0.9).tpot_s[0]
    assert b == pytest.approx(a, rel=1e-12)


def test_aligned_admission_bursts_every_rank_together():
    """Aligned admission: the ranks carry H in the same iterations, so P = pi (not 1 - (1 - pi)^d) and all d
    ranks are at H (K = d); for replicas of a dense model nothing changes."""
    ind = chunk_mix(192.0, prompt_tokens=1024, chunk_budget_tokens=1153, ranks=8, synchronized=True)
    al = chunk_mix(192.0, prompt_tokens=1024, chunk_budget_tokens=1153, ranks=8, synchronized=True,
                   admission="aligned")
    assert float(al.burst_probability) == pytest.approx(192 / 1024)
    assert float(ind.burst_probability) == pytest.approx(1 - (1 - 192 / 1024) ** 8)
    assert float(al.burst_ranks) == 8 and float(al.base_tokens) == 0 and float(al.burst_tokens) == 1024
    dense = [chunk_mix(192.0, prompt_tokens=1024, chunk_budget_tokens=1153, ranks=8, synchronized=False,
                       admission=a) for a in ("independent", "aligned")]
    assert float(dense[0].burst_probability) == float(dense[1].burst_probability)
    with pytest.raises(Exception, match="--admission"):
        chunk_mix(192.0, prompt_tokens=1024, chunk_budget_tokens=1153, ranks=8, synchronized=True, admission="x")


def test_aligned_admission_prices_the_all_ranks_burst_and_is_never_slower():
    """Co-located MoE: with aligned admission E[T] = pi T(every rank at b + H) + (1 - pi) T(b); it is at most
    the independent figure, because (P - pi)(T(b + H) - T(b)) >= 0 with the experts' extra work the same
    (d pi ranks' prompts per iteration on average in both)."""
    arch, cl = serving_arch(CAT, "deepseek-r1"), resolve_cluster(CAT, "b200", 8)
    plan, wl = _plan(1, 8, 8, 3072), Workload(1024, 2048)
    kw = dict(prefill_chunk_tokens=1153, expert_balance="none")
    t_ind = evaluate_colocated(arch, cl, plan, wl, SLO(), Options("fp4", "bf16", **kw), 0.9).tpot_s[0]
    t_al = evaluate_colocated(arch, cl, plan, wl, SLO(), Options("fp4", "bf16", admission="aligned", **kw),
                              0.9).tpot_s[0]
    assert t_al < t_ind
    sk = dict(precision="fp4", kv_precision_bytes=kv_bytes("bf16"), decode_seqs=384, context_tokens=2048,
              prefill_len=1024, expert_balance="none")
    all_loaded = stage_time(arch, cl, plan, prefill_tokens=1024.0, **sk).stage_s[0]
    no_burst = stage_time(arch, cl, plan, prefill_tokens=0.0, **sk).stage_s[0]
    pi = 384 * 1024 / 2048 / 1024
    assert t_al == pytest.approx(pi * all_loaded + (1 - pi) * no_burst, rel=1e-9)
    # with I23 padding an aligned burst is already every rank at b + H: padding changes nothing
    t_alp = evaluate_colocated(arch, cl, plan, wl, SLO(),
                               Options("fp4", "bf16", admission="aligned", moe_dp_padding=True, **kw), 0.9).tpot_s[0]
    assert t_alp == pytest.approx(t_al, rel=1e-9)
