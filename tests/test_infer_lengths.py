"""I27: request-length distributions (Workload.from_samples, infer/lengths.py, --lengths)."""

import json

import numpy as np
import pytest

from supernode import workload
from supernode.catalog.loader import load_catalog
from supernode.cli import main
from supernode.errors import UsageError
from supernode.infer.lengths import read_lengths
from supernode.infer.search import search
from supernode.infer.serving import SLO, Workload

CAT = load_catalog()
# two request kinds with the same means as a fixed 2,750 / 400 workload: three short chats, one long document
MIX = dict(inputs=[1000, 8000], outputs=[200, 1000], weights=[3, 1])


def test_fixed_lengths_keep_the_mean_formulas():
    w = Workload(2048, 256)
    assert (w.decode_context_tokens, w.prefill_attention_tokens, w.ttft_input_tokens, w.samples) == \
        (2176, 2048, 2048, 0)
    same = Workload.from_samples([2048] * 5, [256] * 5)
    assert (same.input_tokens, same.output_tokens, same.decode_context_tokens, same.prefill_attention_tokens,
            same.ttft_input_tokens, same.samples) == (2048, 256, 2176, 2048, 2048, 5)


def test_lengths_must_be_finite_and_positive():
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(UsageError, match="--input: must be a positive token count"):
            Workload(bad, 100)
    with pytest.raises(UsageError, match="lengths must be positive"):
        Workload.from_samples([100, float("inf")], [10, 10])


def test_a_mix_by_hand():
    w = Workload.from_samples(**MIX)
    assert (w.input_tokens, w.output_tokens, w.samples) == (2750, 400, 4)
    # E[O (I + O/2)] / E[O] = (3*200*1100 + 1000*8500) / (3*200 + 1000)
    assert w.decode_context_tokens == pytest.approx((3 * 200 * 1100 + 1000 * 8500) / 1600)
    assert w.prefill_attention_tokens == pytest.approx((3 * 1000 ** 2 + 8000 ** 2) / 11000)
    assert w.ttft_input_tokens == 8000  # 75% of requests are at 1,000 tokens: the 90th percentile is the long one


def test_decoding_context_matches_a_continuous_batching_simulation():
    """B slots each decode one request after another, one token per step; the KV length averaged over slots and
    steps is the time-weighted E[O (I + O/2)] / E[O], not the per-request mean I + O/2."""
    rng = np.random.default_rng(7)
    kinds = np.array([[1000, 200], [8000, 1000]])
    slots, steps = 64, 20_000
    total, count = 0.0, 0
    for _ in range(slots):
        t = 0
        while t < steps:
            i, o = kinds[rng.choice(2, p=[0.75, 0.25])]
            n = min(o, steps - t)
            total += n * i + n * (n + 1) / 2.0  # contexts i+1 .. i+n
            count += n
            t += n
    simulated = total / count
    w = Workload.from_samples(**MIX)
    assert simulated == pytest.approx(w.decode_context_tokens, rel=0.02)
    assert abs(simulated / (w.input_tokens + w.output_tokens / 2.0) - 1.0) > 0.5  # the naive mean is far off


def test_prompt_attention_length_sums_the_prompts_causal_attention():
    m = workload.load_model(CAT, "llama-3.1-70b")
    i = np.array([500.0, 3000.0, 12000.0])
    w = Workload.from_samples(i, [100, 100, 100])
    exact = sum(workload.attention_core_flops(m, x, x, True) for x in i)
    assert workload.attention_core_flops(m, i.sum(), w.prefill_attention_tokens, True) == pytest.approx(exact)


def _colocated(wl):
    r = search(CAT, "llama-3.1-70b", "h100", 8, workload=wl, precision="fp8", slo=SLO(),
               fixed=dict(tp=8, pp=1, batch=64))
    return r["colocated"]


def test_a_long_tail_decodes_slower_and_reports_the_tail_prompts_ttft():
    """Same means, but the long requests hold the slots for longer: more KV per step (slower TPOT, more memory) and
    the 90th-percentile prompt takes longer to prefill than the mean one."""
    flat, mix = _colocated(Workload(2750, 400)), _colocated(Workload.from_samples(**MIX))
    assert mix["tpot_s"] > flat["tpot_s"] * 1.02
    assert mix["memory"]["kv_cache_bytes"] == pytest.approx(flat["memory"]["kv_cache_bytes"] * 5725 / 2950, rel=1e-6)
    assert mix["ttft_s"] > 2 * flat["ttft_s"]
    same = _colocated(Workload.from_samples([2750] * 3, [400] * 3))
    assert same["tpot_s"] == flat["tpot_s"] and same["ttft_s"] == flat["ttft_s"]


def test_read_lengths_csv_jsonl_and_weights(tmp_path):
    csv_path = tmp_path / "mix.csv"
    csv_path.write_text("id,ISL,osl,weight\na,1000,200,3\nb,8000,1000,1\n")
    jl = tmp_path / "mix.jsonl"
    jl.write_text("".join(json.dumps({"input_tokens": i, "output_tokens": o}) + "\n"
                          for i, o in [(1000, 200)] * 3 + [(8000, 1000)]))
    a, b = read_lengths(csv_path), read_lengths(jl)
    ref = Workload.from_samples(**MIX)
    for w in (a, b):
        assert (w.input_tokens, w.output_tokens, w.decode_context_tokens, w.prefill_attention_tokens,
                w.ttft_input_tokens, w.samples) == pytest.approx((ref.input_tokens, ref.output_tokens,
                                                                  ref.decode_context_tokens,
                                                                  ref.prefill_attention_tokens,
                                                                  ref.ttft_input_tokens, 4))


def test_a_length_file_is_read_again_when_it_changes_and_callers_get_their_own_arrays(tmp_path):
    """The parse is memoized on the file's size and modification time: an edited file is read again, and what one
    caller does to its arrays does not reach the next caller."""
    import os

    from supernode.infer.lengths import read_length_samples

    p = tmp_path / "mix.csv"
    p.write_text("input,output\n100,10\n200,20\n")
    a = read_length_samples(p)
    a.inputs[0] = 7.0
    a.outputs[:] = 1.0
    b = read_length_samples(p)
    assert b.inputs.tolist() == [100.0, 200.0] and b.outputs.tolist() == [10.0, 20.0]
    p.write_text("input,output\n300,30\n")
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a new modification time even on coarse clocks
    c = read_length_samples(p)
    assert c.inputs.tolist() == [300.0] and c.outputs.tolist() == [30.0]
    assert read_length_samples(p, max_output_tokens=25).outputs.tolist() == [25.0]
    assert read_length_samples(p).outputs.tolist() == [30.0]


@pytest.mark.parametrize("text,suffix,message", [
    ("input,output\n100,abc\n", ".csv", r"row 2: column output: expected a positive token count, got 'abc'"),
    ("input,output\n100,0\n", ".csv", r"row 2: column output: expected a positive token count"),
    ("input,output\n100,inf\n", ".csv", r"row 2: column output: expected a positive token count, got 'inf'"),
    ("prompt,output\n100,10\n", ".csv", r"row 2: no 'input' column \(expected one of input, input_tokens, isl\)"),
    ("input,output,weight\n100,10,-1\n", ".csv", r"column weight: expected a non-negative weight"),
    ("", ".csv", r"empty file"),
    ("input,output\n", ".csv", r"no requests"),
    ('{"input": 10, "output": 5}\n[1, 2]\n', ".jsonl", r"line 2: expected an object"),
    ('{"input": 10, "output": 5}\n{oops\n', ".jsonl", r"line 2: not JSON"),
])
def test_read_lengths_errors_name_file_row_and_column(tmp_path, text, suffix, message):
    p = tmp_path / f"bad{suffix}"
    p.write_text(text)
    with pytest.raises(UsageError, match=r"--lengths: .*bad" + suffix.replace(".", r"\.") + ".*" + message):
        read_lengths(p)


def test_lengths_from_the_cli(tmp_path, capsys):
    p = tmp_path / "mix.csv"
    p.write_text("input,output,weight\n1000,200,3\n8000,1000,1\n")
    common = ["infer", "llama-3.1-70b", "--on", "h100", "--chips", "8", "--tp", "8", "--batch", "64", "--json"]
    assert main(common + ["--lengths", str(p)]) == 0
    w = json.loads(capsys.readouterr().out)["workload"]
    assert w["samples"] == 4 and w["ttft_input_tokens"] == 8000 and w["decode_context_tokens"] == pytest.approx(5725)
    assert main(common + ["--lengths", str(p), "--input", "100"]) == 2
    assert "--lengths: give either a length distribution or --input/--output" in capsys.readouterr().err
    assert main(common + ["--lengths", str(tmp_path / "missing.csv")]) == 2
    err = capsys.readouterr().err
    assert "missing.csv: no such file" in err and len(err.strip().splitlines()) == 1


def test_the_readme_example_mix_loads():
    from pathlib import Path

    w = read_lengths(Path(__file__).parents[1] / "docs" / "examples" / "lengths-synthetic-mix.csv")
    assert w.samples == 100 and w.input_tokens == pytest.approx(3120) and w.ttft_input_tokens == 8000


def test_the_mlperf_deepseek_r1_lengths_match_their_published_means():
    """validation/lengths/mlperf-deepseek-r1-4388.csv against MLCommons' printed reference output mean and NVIDIA's
    max_input_len (the transcription check its README states)."""
    from pathlib import Path

    path = Path(__file__).parents[1] / "validation" / "lengths" / "mlperf-deepseek-r1-4388.csv"
    w = read_lengths(path)
    assert w.samples == 4388 and w.output_tokens == pytest.approx(4043.449863263446, rel=1e-12)
    data = np.loadtxt(path, delimiter=",", skiprows=1)
    assert data[:, 0].max() == 3140
    scaled = read_lengths(path, output_mean_tokens=3714)
    assert scaled.output_tokens == pytest.approx(3714) and scaled.input_tokens == w.input_tokens


def test_mlperf_llama_length_files_match_their_published_checks():
    """validation/lengths/mlperf-llama2-70b-24576.csv: 24,576 rows, inputs inside processorca.py's filter (under 1,024
    tokens, none empty); mlperf-llama3.1-405b-8313.csv: 8,313 rows whose output mean is MLCommons' reference
    tokens_per_sample 684.68 (0.9 x 684.68 = 616.212, the v5.1 accuracy threshold), longest prompt under the
    20,000-token cap. The transcriptions' checks as the lengths README states them."""
    from pathlib import Path

    root = Path(__file__).parents[1] / "validation" / "lengths"
    l2 = read_lengths(root / "mlperf-llama2-70b-24576.csv")
    assert l2.samples == 24576 and l2.input_tokens == pytest.approx(222.32975, rel=1e-6)
    d2 = np.loadtxt(root / "mlperf-llama2-70b-24576.csv", delimiter=",", skiprows=1)
    assert d2[:, 0].min() >= 1 and d2[:, 0].max() < 1024 and d2[:, 1].max() < 1024
    l405 = read_lengths(root / "mlperf-llama3.1-405b-8313.csv")
    assert l405.samples == 8313 and l405.output_tokens == pytest.approx(684.68, abs=0.005)
    assert 0.9 * l405.output_tokens == pytest.approx(616.212, abs=0.005)
    d405 = np.loadtxt(root / "mlperf-llama3.1-405b-8313.csv", delimiter=",", skiprows=1)
    assert d405[:, 0].max() <= 20000 and l405.input_tokens == pytest.approx(9428.6447, rel=1e-6)


def test_mlperf_mixtral_length_file_matches_the_reference_output_mean():
    from pathlib import Path

    path = Path(__file__).parents[1] / "validation" / "lengths" / "mlperf-mixtral-8x7b-15000.csv"
    w = read_lengths(path)
    assert w.samples == 15000 and w.output_tokens == pytest.approx(144.84, abs=0.005)
    d = np.loadtxt(path, delimiter=",", skiprows=1)
    assert d[:, 1].min() == 2 and w.input_tokens == pytest.approx(427.3937, rel=1e-6)


def test_mlperf_llama31_8b_length_file_matches_its_checks():
    from pathlib import Path

    path = Path(__file__).parents[1] / "validation" / "lengths" / "mlperf-llama3.1-8b-13368.csv"
    w = read_lengths(path)
    assert w.samples == 13368 and w.input_tokens == pytest.approx(11639915 / 13368, rel=1e-12)
    d = np.loadtxt(path, delimiter=",", skiprows=1)
    assert d[:, 0].max() == 2540


def test_a_request_longer_than_the_context_window_is_refused(tmp_path, capsys):
    """Prompt + output beyond the model's max_seq_len cannot be served: a one-line error naming the flags and the
    window, not an estimate (before, llama-3.1-8b served a 200,000-token prompt on 8 B200). A distribution is
    judged by its longest request (a zero-weight row does not count); the window itself is still served."""
    assert Workload(4000, 200).longest_tokens == 4200
    assert Workload.from_samples([100, 131000, 9e5], [10, 500, 1], weights=[1, 1, 0]).longest_tokens == 131500
    assert main(["infer", "llama-2-70b", "--on", "h100", "--chips", "8", "--input", "4000", "--output", "200"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip().count("\n") == 0
    assert err.startswith("supernode: error: --input/--output:") and "4,200" in err and "4,096" in err
    mix = tmp_path / "long.csv"
    mix.write_text("input,output\n100,10\n131000,500\n")
    assert main(["infer", "llama-3.1-8b", "--on", "b200", "--chips", "8", "--lengths", str(mix)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("supernode: error: --lengths:") and "131,500" in err and "131,072" in err
    r = search(CAT, "llama-2-70b", "h100", 8, workload=Workload(3840, 256), disaggregated=False)
    assert r["colocated"]["fits"]


@pytest.mark.parametrize("fn, kw, message", [
    ("estimate_decode", {"context_tokens": 200_000}, "context_tokens: 200,000 tokens exceeds the context window"),
    ("estimate_decode", {"context_tokens": -5}, "context_tokens: expected a positive number"),
    ("estimate_decode", {"batch_per_rank": 0}, "batch_per_rank: expected a positive number"),
    ("estimate_decode", {"tp": 0}, "tp: expected a whole number >= 1"),
    ("estimate_decode", {"ep": 1.5}, "ep: expected a whole number >= 1"),
    ("estimate_prefill", {"input_tokens": 200_000}, "input_tokens: 200,000 tokens exceeds the context window"),
    ("estimate_prefill", {"tokens_per_rank": 0}, "tokens_per_rank: expected a positive number"),
    ("estimate_prefill", {"dp": True}, "dp: expected a whole number >= 1"),
])
def test_fixed_plan_api_refuses_impossible_arguments(fn, kw, message):
    """The API behind the decode/prefill validation cases: before, a 200,000-token context on llama-3.1-8b was
    estimated, batch 0 gave 0 tokens/s and a zero token budget a throughput; now each is a one-line error naming the
    parameter. A fractional batch per rank (a mean over ranks) stays allowed."""
    from supernode.infer.search import estimate_decode, estimate_prefill

    fns = {"estimate_decode": estimate_decode, "estimate_prefill": estimate_prefill}
    args = {"tp": 1, "pp": 1, "dp": 1, "ep": 1, "precision": "fp8"}
    args.update({"context_tokens": 1000, "batch_per_rank": 8} if fn == "estimate_decode"
                else {"input_tokens": 1000, "tokens_per_rank": 8192})
    args.update(kw)
    with pytest.raises(UsageError) as err:
        fns[fn](CAT, "llama-3.1-8b", "h100", 1, **args)
    assert message in str(err.value) and "\n" not in str(err.value)
    ok = estimate_decode(CAT, "llama-3.1-8b", "h100", 1, tp=1, pp=1, dp=1, ep=1, precision="fp8",
                         context_tokens=131_000, batch_per_rank=1.46)
    assert ok["decode_tokens_per_s_per_chip"] > 0
