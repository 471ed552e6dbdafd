"""A finite offline run (I28): list scheduling of N requests into S slots, the drain, and the run's rate."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supernode.catalog import load_catalog
from supernode.cli import main
from supernode.errors import UsageError
from supernode.infer import Workload, search
from supernode.infer.finite_run import (LengthSamples, drain, estimate, prompt_tokens_per_iteration,
                                        ready_iterations, request_order, schedule)
from supernode.infer.lengths import read_length_samples

CAT = load_catalog()


def test_schedule_and_drain_by_hand():
    """Two slots, outputs 4, 1, 1 in that order: the first two start at 0, the third takes the slot freed at 1.
    After the last admission (k = 1) the tail holds 2, 1, 1 sequences, with mean contexts (11 + 30)/2, 12, 13
    (prompts 10, 20, 30; a sequence's context is its prompt plus the tokens it has generated)."""
    starts, ends = schedule(np.array([4, 1, 1]), 2)
    assert starts.tolist() == [0, 0, 1] and ends.tolist() == [4, 1, 2]
    d = drain(np.array([10.0, 20.0, 30.0]), np.array([4.0, 1.0, 1.0]), 2)
    assert (d.last_admission, d.end) == (1, 4)
    assert d.active.tolist() == [2, 1, 1]
    assert d.context.tolist() == pytest.approx([20.5, 12.0, 13.0])


def test_ramp_by_hand():
    """Four slots, six requests of 1,000-token prompts and 10 outputs, 1,000 prompt tokens per iteration: the
    first four enter one per iteration (0, 1, 2, 3), the fifth and sixth take the slots freed at 10 and 11. Before
    the last admission (k = 11) three iterations run with a slot still empty (1, 2, 3 sequences)."""
    inputs = np.full(6, 1000.0)
    ready = ready_iterations(inputs, 4, 1000.0)
    assert ready.tolist() == [0, 1, 2, 3, 0, 0]  # only the initial fill waits for its prompt's turn
    starts, ends = schedule(np.full(6, 10), 4, ready)
    assert starts.tolist() == [0, 1, 2, 3, 10, 11] and ends.tolist() == [10, 11, 12, 13, 20, 21]
    d = drain(inputs, np.full(6, 10.0), 4, prompt_tokens_per_iteration=1000.0)
    assert (d.last_admission, d.end) == (11, 21)
    assert d.ramp_active[:4].tolist() == [1, 2, 3, 4] and (d.ramp_active[3:] == 4).all()
    assert d.ramp_context[:3].tolist() == pytest.approx([1000.0, 1000.5, 1001.0])

    def step(per_rank, ctx):
        return 0.010 + 0.001 * np.asarray(per_rank, float)

    r = estimate(requests=6, samples=LengthSamples.fixed(1000, 10), instances=1, slots=4, ranks=1,
                 acceptance=1.0, iteration_s=0.014, steady_context_tokens=1005.0, mean_output_tokens=10.0,
                 decode_step_s=step, chips=1, chunk_budget_tokens=1537)
    assert r["prompt_tokens_per_iteration"] == 1000.0 and r["ramp_iterations"] == 3
    assert r["ramp_s"] == pytest.approx(0.011 + 0.012 + 0.013)
    assert r["steady_s"] == pytest.approx((11 - 3) * 0.014)
    assert r["drain_s"] == pytest.approx(float((0.010 + 0.001 * d.active).sum()))


def test_prompt_budget_in_whole_units():
    """B = d p floor(C_b / u) u, u = min(C_b, E[I]): one whole 1,000-token prompt in a 1,537-token budget; 36
    prompts of 222 tokens in 8,192, on two ranks; a 5,000-token prompt in 2,048-token chunks."""
    assert prompt_tokens_per_iteration(1537, 1000, 1) == 1000
    assert prompt_tokens_per_iteration(8192, 222, 2) == 2 * 36 * 222
    assert prompt_tokens_per_iteration(2048, 5000, 1) == 2048
    assert prompt_tokens_per_iteration(None, 1000, 1) is None


def test_the_ramp_slows_a_run_of_whole_waves():
    """Five waves of equal requests run at the steady rate when the slots fill at once; filling them one prompt
    per iteration adds the ramp, and the staggered last wave ends that many iterations later."""
    s = LengthSamples.fixed(100, 100)
    kw = dict(requests=5 * 64, samples=s, instances=1, slots=64, ranks=1, acceptance=1.0, iteration_s=0.02,
              steady_context_tokens=150, mean_output_tokens=100, chips=1)
    step = lambda per_rank, ctx: 0.01 + 0.01 * np.asarray(per_rank, float) / 64  # noqa: E731
    at_once = estimate(**kw, decode_step_s=step)
    ramped = estimate(**kw, decode_step_s=step, chunk_budget_tokens=100)
    assert at_once["ratio_to_steady"] == pytest.approx(1.0) and at_once["ramp_iterations"] == 0
    assert ramped["ramp_iterations"] == 63 and ramped["iterations"] == 500 + 63
    assert ramped["ratio_to_steady"] < 1.0


def test_request_order_cycles_the_sample_set_and_follows_weights():
    s = LengthSamples(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0]), np.ones(3))
    i, o = request_order(s, 12)
    assert sorted(i.tolist()) == [1.0] * 4 + [2.0] * 4 + [3.0] * 4
    assert (o == 10 * i).all()  # rows stay paired
    w = LengthSamples(np.array([1.0, 2.0]), np.array([5.0, 6.0]), np.array([3.0, 1.0]))
    i, _ = request_order(w, 8)
    assert (i == 1.0).sum() == 6 and (i == 2.0).sum() == 2


def test_fewer_requests_than_rows_draw_rows_at_random():
    """100 requests from a 10,000-row file take 100 distinct rows spread over the file, not its first 100."""
    s = LengthSamples(np.arange(10000.0), np.ones(10000), np.ones(10000))
    i, _ = request_order(s, 100)
    assert len(set(i.tolist())) == 100 and i.max() > 5000 and i.min() < 5000


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=80), st.integers(1, 12))
def test_list_scheduling_keeps_every_slot_busy_until_the_queue_empties(lengths, slots):
    """At most ``slots`` in flight at any iteration; before the last admission every slot is busy; every request's
    iterations are served once (sum over iterations of sequences in flight = sum of lengths)."""
    its = np.array(lengths)
    starts, ends = schedule(its, slots)
    K = int(ends.max())
    inflight = np.zeros(K + 1, int)
    np.add.at(inflight, starts, 1)
    np.add.at(inflight, ends, -1)
    inflight = np.cumsum(inflight)[:K]
    assert inflight.max() <= slots
    ke = int(starts.max())
    assert (inflight[:ke] == min(slots, len(its))).all()
    assert inflight.sum() == its.sum()
    d = drain(np.ones(len(its)), its.astype(float), slots)
    assert d.active.sum() == inflight[ke:].sum() and (d.last_admission, d.end) == (ke, K)


def _list_schedule_oracle(its, slots, ready):
    """List scheduling by its definition: each request in order takes the slot that frees first (O(N S))."""
    free = [0] * min(slots, len(its))
    starts = []
    for it, r in zip(its, ready):
        k = min(range(len(free)), key=free.__getitem__)
        starts.append(max(free[k], r))
        free[k] = starts[-1] + it
    return starts


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=400), st.integers(1, 64), st.integers(0, 6),
       st.booleans())
def test_block_schedule_equals_list_scheduling_by_definition(lengths, slots, ramp_step, short_tail):
    """The blocked schedule (thin blocks by a heap pass included) gives every request the start that list
    scheduling by its definition gives, with and without a ramp of the initial fill."""
    its = np.array(lengths)
    if short_tail:  # many one-iteration requests beside long ones: thin blocks
        its[::2] = 1
    fill = min(slots, len(its))
    ready = np.zeros(len(its), np.int64)
    ready[:fill] = np.arange(fill) // 3 * ramp_step
    starts, ends = schedule(its, slots, ready)
    assert starts.tolist() == _list_schedule_oracle(its.tolist(), slots, ready.tolist())
    assert (ends - starts).tolist() == its.tolist()
    assert schedule(its, slots)[0].tolist() == _list_schedule_oracle(its.tolist(), slots, [0] * len(its))


@pytest.mark.parametrize("slots,requests,longest", [(64, 400, 40), (32, 2000, 200), (64, 3000, 300), (7, 500, 9)])
def test_block_schedule_with_thin_blocks_equals_list_scheduling(slots, requests, longest):
    """Half the requests one iteration long beside up to ``longest``: blocks thin out and heap passes take over
    (each of these draws takes that path several times); the starts still equal list scheduling's."""
    its = np.random.default_rng(1).integers(1, longest, requests)
    its[::2] = 1
    assert schedule(its, slots)[0].tolist() == _list_schedule_oracle(its.tolist(), slots, [0] * requests)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3000), st.integers(1, 50)), min_size=1, max_size=80), st.integers(1, 12),
       st.integers(100, 5000))
def test_the_ramp_never_admits_a_prompt_before_its_turn(reqs, slots, budget):
    """With a prompt budget the initial fill enters no earlier than the budget allows, the run still serves every
    request's iterations once, and never holds more than ``slots`` sequences."""
    inputs = np.array([r[0] for r in reqs], float)
    its = np.array([r[1] for r in reqs])
    ready = ready_iterations(inputs, slots, float(budget))
    starts, ends = schedule(its, slots, ready)
    assert (starts >= ready).all()
    first = starts[:slots]
    before = np.cumsum(inputs[:slots]) - inputs[:slots]
    assert ((first + 1) * budget > before - 1e-6).all()  # the earlier prompts fit in the iterations up to its own
    d = drain(inputs, its.astype(float), slots, prompt_tokens_per_iteration=float(budget))
    assert d.active.sum() + d.ramp_active.sum() == its.sum()
    assert max(d.active.max(initial=0), d.ramp_active.max(initial=0)) <= slots


def _const(step_s):
    return lambda per_rank, ctx: np.full(len(per_rank), step_s)


def test_whole_waves_of_equal_requests_run_at_the_steady_rate():
    """Equal lengths and N = 5 S: five full waves, no thinning tail; with no prefill share (iteration = decode
    step) the run's rate is the steady rate exactly."""
    s = LengthSamples.fixed(100, 40)
    r = estimate(requests=5 * 64, samples=s, instances=1, slots=64, ranks=1, acceptance=1.0, iteration_s=0.02,
                 steady_context_tokens=120, mean_output_tokens=40, decode_step_s=_const(0.02), chips=1)
    assert r["duration_s"] == pytest.approx(5 * 40 * 0.02)
    assert r["ratio_to_steady"] == pytest.approx(1.0)


def test_prompt_share_is_charged_once_per_request():
    """Iteration 30 ms of which the decode step is 20 ms: at 64 slots and 40 outputs each, 64/40 prompts enter
    per iteration, so a prompt costs 10 ms x 40/64 = 6.25 ms; N = 320 prompts add 2.0 s to 4.0 s of decoding."""
    s = LengthSamples.fixed(100, 40)
    r = estimate(requests=320, samples=s, instances=1, slots=64, ranks=1, acceptance=1.0, iteration_s=0.03,
                 steady_context_tokens=120, mean_output_tokens=40, decode_step_s=_const(0.02), chips=1)
    assert r["prefill_s"] == pytest.approx(2.0)
    assert r["duration_s"] == pytest.approx(6.0)


def test_a_long_tail_drains_slowly():
    """One request in 100 is 50x longer: the last long ones decode nearly alone. With a step of 10 ms + 1 ms per
    sequence the run's rate falls well below the steady rate; the tail time is the hand sum over its iterations."""
    out = np.array([10.0] * 99 + [500.0])
    s = LengthSamples(np.full(100, 50.0), out, np.ones(100))

    def step(per_rank, ctx):
        return 0.010 + 0.001 * np.asarray(per_rank, float)

    r = estimate(requests=1000, samples=s, instances=1, slots=50, ranks=1, acceptance=1.0,
                 iteration_s=0.060, steady_context_tokens=60.0, mean_output_tokens=float(out.mean()),
                 decode_step_s=step, chips=1)
    i, o = request_order(s, 1000)
    d = drain(i, o, 50)
    assert r["drain_s"] == pytest.approx(float((0.010 + 0.001 * d.active).sum()))
    assert r["steady_s"] == pytest.approx(d.last_admission * 0.060)
    assert r["ratio_to_steady"] < 0.85


def test_search_reports_the_finite_run_and_its_drain():
    """Llama 3.1 70B on 8 H200: 100 requests (fewer than the slots) are all in flight at once and the run is all
    prefill and drain; 100 x the slots runs close to the steady rate."""
    wl = Workload(1024, 256)
    few = search(CAT, "llama-3.1-70b", "h200", 8, workload=wl, precision="fp8", kv_precision="fp8",
                 disaggregated=False, requests=100)["colocated"]["finite_run"]
    assert few["steady_s"] == 0 and few["drain_iterations"] == 256
    c = search(CAT, "llama-3.1-70b", "h200", 8, workload=wl, precision="fp8", kv_precision="fp8",
               disaggregated=False, requests=1)["colocated"]
    many = search(CAT, "llama-3.1-70b", "h200", 8, workload=wl, precision="fp8", kv_precision="fp8",
                  disaggregated=False, requests=100 * c["batch"] * c["instances"])["colocated"]["finite_run"]
    assert 0.95 < many["ratio_to_steady"] <= 1.0 + 1e-4  # the last wave's mean context is I + (O - 1)/2
    assert few["decode_tokens_per_s"] < many["decode_tokens_per_s"]


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_request_counts_are_refused(bad):
    with pytest.raises(UsageError, match="--requests"):
        search(CAT, "llama-3.1-8b", "h100", 8, workload=Workload(512, 128), disaggregated=False, requests=bad)


def test_cli_requests(capsys):
    rc = main(["infer", "llama-3.1-8b", "--on", "h100", "--chips", "8", "--input", "512", "--output", "128",
               "--requests", "5000", "--json"])
    f = json.loads(capsys.readouterr().out)["colocated"]["finite_run"]
    assert rc == 0 and f["requests"] == 5000 and f["output_tokens"] == 5000 * 128
    assert main(["infer", "llama-3.1-8b", "--on", "h100", "--chips", "8", "--requests", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--requests" in err[0]


def test_output_limit_and_rescale_keep_the_measured_mean(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("input,output\n" + "".join(f"10,{o}\n" for o in (100, 200, 300, 5000)))
    s = read_length_samples(p, output_mean_tokens=800, max_output_tokens=1000)
    assert s.outputs.max() <= 1000 and s.outputs.mean() == pytest.approx(800)
    with pytest.raises(UsageError, match="not below the output limit"):
        read_length_samples(p, output_mean_tokens=1000, max_output_tokens=1000)
    assert read_length_samples(p, max_output_tokens=250).outputs.tolist() == [100, 200, 250, 250]


@pytest.mark.parametrize("bad", ["lots", "0", "2.5"])
def test_a_bad_request_count_in_a_case_names_the_file(tmp_path, capsys, bad):
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "validation"
    src = root / "cases" / "infer-mlperf-v5.1-deepseek-r1-8xb200-offline.yaml"
    text = src.read_text().replace("requests: 26328", f"requests: {bad}").replace("../lengths/", f"{root}/lengths/")
    case = tmp_path / "infer-bad.yaml"
    case.write_text(text)
    assert main(["validate", "--cases", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(case) in err[0] and "--requests" in err[0]
