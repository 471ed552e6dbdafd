"""A decode-inclusive token budget per rank and iteration (I29: TensorRT-LLM's max_num_tokens, vLLM's
max_num_batched_tokens): the batch it sustains, the prompts it leaves beside the decodes, and the ramp of a finite
run under it."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supernode.catalog import load_catalog
from supernode.cli import main
from supernode.errors import UsageError
from supernode.infer import Workload, search
from supernode.infer.finite_run import PromptBudget, ready_iterations
from supernode.infer.plan import PlanGrid
from supernode.infer.search import PREFILL_CHUNK_CANDIDATES
from supernode.infer.scheduling import chunk_mix
from supernode.infer.serving import Options, prompt_budget_tokens, token_budget_batch

CAT = load_catalog()


def _plans(batch, dp=1, pp=1):
    batch = np.asarray(batch)
    return PlanGrid(tp=np.ones(len(batch), np.int64), pp=pp, dp=dp, ep=1, batch=batch, overlap=0)


def test_sustained_batch_by_hand():
    """b* = floor(M / (1 + m + a I / O)) per rank, times d p: M 12,000, I 870, O 129 (MLPerf's Llama 3.1 8B means)
    gives floor(12,000 / 7.7442) = 1,549 sequences; with 2 draft tokens accepted 2.5 at a time, I 1,000, O 500:
    floor(4,096 / 8) = 512 per rank, 2,048 over 4 attention-DP ranks; a decode instance: floor(4,096 / 3) = 1,365."""
    assert token_budget_batch(_plans([1]), Options("fp8", max_num_tokens=12000), Workload(870, 129))[0] == 1549
    opts = Options("fp8", draft_tokens=2, acceptance_length=2.5, max_num_tokens=4096)
    assert token_budget_batch(_plans([4], dp=4), opts, Workload(1000, 500))[0] == 2048
    assert token_budget_batch(_plans([1]), opts)[0] == 1365
    assert token_budget_batch(_plans([1]), Options("fp8"), Workload(870, 129)) is None


def test_prompt_budget_is_what_the_decodes_leave():
    """C_b = min(chunk, M - b (1 + m)) per rank: 2,048 - 405 = 1,643 at 405 sequences; a chunk of 1,000 caps it;
    without M the chunk (default 8,192) alone."""
    plans = _plans([405, 1600, 4 * 100], dp=[1, 1, 4])
    assert prompt_budget_tokens(plans, Options("fp8", max_num_tokens=2048)).tolist() == [1643, 448, 1948]
    capped = Options("fp8", max_num_tokens=2048, prefill_chunk_tokens=1000)
    assert prompt_budget_tokens(plans, capped).tolist() == [1000, 448, 1000]
    assert prompt_budget_tokens(plans, Options("fp8")).tolist() == [8192] * 3


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5000), st.floats(1, 20000)), min_size=1, max_size=6),
       st.floats(100, 5000), st.integers(1, 64))
def test_chunk_mix_takes_one_budget_per_plan(rows, prompt, ranks):
    """The I15 mixture with an array of budgets equals the mixture of each plan at its own budget."""
    c = np.array([r[0] for r in rows])
    budget = np.array([r[1] for r in rows])
    both = chunk_mix(c, prompt_tokens=prompt, chunk_budget_tokens=budget, ranks=ranks, synchronized=True)
    for i in range(len(rows)):
        one = chunk_mix(c[i], prompt_tokens=prompt, chunk_budget_tokens=budget[i], ranks=ranks, synchronized=True)
        for f in ("base_tokens", "burst_tokens", "burst_probability", "burst_ranks"):
            assert getattr(both, f)[i] == pytest.approx(float(getattr(one, f)))


def test_ramp_under_a_decode_inclusive_budget_by_hand():
    """M = 10 per rank, 4-token prompts, 9 slots: iteration 0 has 10 tokens for prompts (two whole prompts); then
    the admitted sequences decode and leave 8, 6, 5, 4 (one prompt each from 6 down), then 3 and 2 (chunks of 3 and 2
    tokens: a cumulative budget, so the eighth prompt, 28 tokens in, enters at 31 and the ninth, 32 in, at 33)."""
    inputs = np.full(12, 4.0)
    budget = PromptBudget(chunk_tokens=10, unit_tokens=4, ranks=1, max_num_tokens=10)
    assert [budget.per_iteration(k) for k in (0, 2, 4, 5, 6, 7, 8, 10)] == [8, 8, 4, 4, 4, 3, 2, 0]
    ready = ready_iterations(inputs, 9, budget)
    assert ready.tolist() == [0, 0, 1, 1, 2, 3, 4, 5, 6, 0, 0, 0]
    # without the decodes' share the same budget is constant: 8 tokens, two prompts per iteration
    const = ready_iterations(inputs, 9, PromptBudget(10, 4, 1))
    assert const.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 0, 0, 0]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(1, 3000), min_size=1, max_size=60), st.integers(1, 40), st.integers(200, 20000),
       st.integers(1, 8))
def test_a_decode_inclusive_ramp_never_beats_the_prompt_only_one(prompts, slots, m, ranks):
    """Every request of the initial fill enters no earlier under M than under a prompt-only budget of the same M
    (the decodes only take tokens away), and never before its prompt's turn in the cumulative budget."""
    inputs = np.array(prompts)
    fill = min(slots, len(inputs))
    if np.ceil((fill - 1) / ranks) >= m:  # the last sequences would leave no room: not a sustainable fill
        return
    budget = PromptBudget(m, float(inputs.mean()), ranks, max_num_tokens=m)
    with_m = ready_iterations(inputs, slots, budget)
    without = ready_iterations(inputs, slots, PromptBudget(m, float(inputs.mean()), ranks))
    assert (with_m[:fill] >= without[:fill]).all() and (np.diff(with_m[:fill]) >= 0).all()
    before = np.cumsum(inputs) - inputs
    cum = np.cumsum([budget.per_iteration(int((with_m[:fill] < t).sum())) for t in range(int(with_m.max()) + 1)])
    assert (before[:fill] < cum[with_m[:fill]] * (1 + 1e-9)).all()


def test_search_caps_the_batch_at_what_the_budget_sustains():
    """A memory-filled batch (I8) over b* is capped there: Llama 3.1 8B on one B200 (FP8 KV), I 870, O 129, M 12,000 holds
    at most 1,549 sequences (the memory would hold more), and every iteration then carries at most M tokens."""
    wl = Workload(870, 129)
    kw = dict(workload=wl, precision="fp8", kv_precision="fp8", disaggregated=False, fixed={"tp": 1, "pp": 1})
    free = search(CAT, "llama-3.1-8b", "b200", 1, **kw)["colocated"]
    capped = search(CAT, "llama-3.1-8b", "b200", 1, max_num_tokens=12000, **kw)["colocated"]
    assert free["batch"] > 1549 and capped["batch"] == 1549
    assert capped["batch"] * (1 + 870 / 129) <= 12000
    assert capped["meets_slo"]


def test_search_without_a_budget_runs_the_chunk_it_chose():
    """Without --prefill-chunk or --max-num-tokens the search chooses the chunk (I39); the finite run (I28) and every
    figure are then those of that chunk given explicitly, and the stacks' default 8,192 given explicitly is never
    better in the steady state."""
    wl = Workload(1000, 1000)
    kw = dict(workload=wl, precision="fp8", disaggregated=False, fixed={"tp": 1, "pp": 1, "batch": 128}, requests=600)
    a = search(CAT, "llama-3.1-70b", "h200", 1, **kw)["colocated"]
    assert a["prefill_chunk_searched"] and a["prefill_chunk_tokens"] in PREFILL_CHUNK_CANDIDATES
    b = search(CAT, "llama-3.1-70b", "h200", 1, prefill_chunk_tokens=a["prefill_chunk_tokens"], **kw)["colocated"]
    assert not b["prefill_chunk_searched"]
    assert a["finite_run"]["duration_s"] == b["finite_run"]["duration_s"] and a["tpot_s"] == b["tpot_s"]
    d = search(CAT, "llama-3.1-70b", "h200", 1, prefill_chunk_tokens=8192, **kw)["colocated"]
    assert d["decode_tokens_per_s_per_chip"] <= a["decode_tokens_per_s_per_chip"]


def test_the_budget_shortens_a_ramp_that_the_full_batch_budget_overstates():
    """trtllm-bench's budget M = 2,048 with 1,000-token prompts: an empty engine prefills two prompts per iteration
    until 49 sequences decode, then one; a prompt budget fixed at the full batch's 2,048 - 511 admits one from the
    start, so its ramp is longer."""
    wl = Workload(1000, 1000)
    kw = dict(workload=wl, precision="fp8", disaggregated=False, fixed={"tp": 1, "pp": 1, "batch": 128},
              requests=512)
    m = search(CAT, "llama-3.1-70b", "h200", 1, max_num_tokens=2048, **kw)["colocated"]["finite_run"]
    fixed = search(CAT, "llama-3.1-70b", "h200", 1, prefill_chunk_tokens=2048 - 511, **kw)["colocated"]["finite_run"]
    assert m["prompt_tokens_per_iteration"] == 2000 and m["prompt_tokens_per_iteration_full"] == 1000
    assert fixed["prompt_tokens_per_iteration"] == 1000
    assert m["ramp_iterations"] < fixed["ramp_iterations"] and m["ramp_s"] < fixed["ramp_s"]


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_bad_budgets_are_refused(bad):
    with pytest.raises(UsageError, match="--max-num-tokens"):
        Options("fp8", max_num_tokens=bad)


def test_cli_budget_errors_and_json(capsys):
    assert main(["infer", "llama-3.1-70b", "--on", "h100", "--chips", "8", "--tp", "8", "--batch", "4096",
                 "--max-num-tokens", "512"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--batch" in err and "--max-num-tokens 512" in err
    assert main(["infer", "llama-3.1-8b", "--on", "b200", "--chips", "1", "--input", "870", "--output", "129",
                 "--tp", "1", "--kv-precision", "fp8", "--max-num-tokens", "12000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["colocated"]["batch"] <= 1549
    assert any("I29" in a for a in out["assumptions"])


@pytest.mark.parametrize("budget, mtp, ok", [(8, 0, False), (9, 0, True), (16, 1, False), (17, 1, True)])
def test_a_budget_below_one_sequence_is_an_impossible_configuration(budget, mtp, ok, capsys):
    """At input 2,048 / output 256 a co-located sequence needs 1 + m decode tokens and a I / O prompt tokens per
    iteration: 9 without drafts, 1 + 1 + 1.8 x 8 = 16.4 with one draft accepted 1.8 at a time. A budget below that
    sustains no sequence in any plan: a one-line error naming the flag, not a plan shown as over budget."""
    args = ["infer", "llama-3.1-70b", "--on", "h100", "--chips", "8", "--max-num-tokens", str(budget), "--json"]
    if mtp:
        args += ["--mtp", str(mtp), "--acceptance", "1.8"]
    rc = main(args)
    out, err = capsys.readouterr()
    if ok:
        assert rc == 0
        col = json.loads(out)["colocated"]
        assert col["fits"] and col["token_budget"]["within"] and col["batch"] >= 1
    else:
        assert rc == 2 and out == ""
        assert err.strip().count("\n") == 0 and err.startswith("supernode: error: --max-num-tokens:")
        assert ("16.4" if mtp else "9.0") in err


def test_a_bad_budget_in_a_case_names_the_file(tmp_path, capsys):
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "validation" / "cases" / \
        "infer-trtllm-h200-llama3.3-70b-fp8-isl1000-osl1000.yaml"
    import yaml

    case = yaml.safe_load(src.read_text())
    case["inputs"]["max_num_tokens"] = -1
    (tmp_path / "infer-bad.yaml").write_text(yaml.safe_dump(case))
    assert main(["validate", "--cases", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "infer-bad.yaml" in err and "--max-num-tokens" in err and err.count("\n") == 0


def test_the_result_reports_the_chosen_plan_against_the_budget():
    """150 sequences of 1,000 / 1,000 tokens carry 150 decode + 150 prompt tokens per iteration on average: over a
    budget of 200, which sustains 100 (the plan is flagged, not offered as meeting everything); within 2,048."""
    kw = dict(workload=Workload(1000, 1000), precision="fp8", kv_precision="fp8", disaggregated=False)
    over = search(CAT, "llama-3.1-70b", "h200", 1, fixed={"tp": 1, "batch": 150}, max_num_tokens=200, **kw)
    tb = over["colocated"]["token_budget"]
    assert (tb["decode_tokens_per_iteration"], tb["prompt_tokens_per_iteration"]) == (150, 150)
    assert tb["sustained_batch"] == 100 and not tb["within"] and not over["colocated"]["meets_slo"]
    ok = search(CAT, "llama-3.1-70b", "h200", 1, fixed={"tp": 1}, max_num_tokens=2048, **kw)["colocated"]
    assert ok["token_budget"]["within"] and ok["token_budget"]["sustained_batch"] == 1024
    assert "token_budget" not in search(CAT, "llama-3.1-70b", "h200", 1, fixed={"tp": 1}, **kw)["colocated"]
