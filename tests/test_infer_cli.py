"""`supernode infer` through the real entry point."""

import json

from supernode.cli import main


def test_infer_json(capsys):
    rc = main(["infer", "llama-3.1-8b", "--on", "h100", "--chips", "8", "--input", "1024", "--output", "128",
               "--ttft", "2s", "--tpot", "50ms", "--disaggregated", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    c = out["colocated"]
    for key in ("prefill_tokens_per_s_per_chip", "decode_tokens_per_s_per_chip", "decode_tokens_per_s", "ttft_s",
                "tpot_s", "batch", "memory_bytes_per_chip", "fits", "plan", "breakdown"):
        assert key in c
    assert c["tpot_s"] <= 0.05 and c["fits"]
    assert out["disaggregated"]["feasible"]
    assert any("usable memory" in a for a in out["assumptions"])


def test_infer_table_runs(capsys):
    assert main(["infer", "mixtral-8x7b", "--on", "h100", "--chips", "8", "--tpot", "40ms"]) == 0
    assert "memory verdict" in capsys.readouterr().out


def test_infer_bad_inputs_exit_2_with_one_line(capsys):
    for argv, name in ((["--tp", "3"], "--tp"), (["--tpot", "fast"], "--tpot"), (["--precision", "fp4"], "--precision"),
                       (["--input", "0"], "--input"), (["--ep", "4"], "--ep"), (["--admission", "sync"], "--admission"),
                       (["--prefill-dispatch", "per-node"], "--prefill-dispatch")):
        rc = main(["infer", "llama-3.1-8b", "--on", "h100", "--chips", "8", *argv])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and name in err and len(err.splitlines()) == 1, (argv, err)


def test_micro_batch_overlap_can_be_fixed(capsys):
    """--micro-batch-overlap / --no-micro-batch-overlap fix the plan's two-micro-batch overlap (a fact of the
    serving stack); the choice is reported in the plan and the assumptions."""
    common = ["infer", "deepseek-r1", "--on", "h100", "--chips", "16", "--input", "1024", "--output", "256",
              "--precision", "fp8", "--attention-dp", "16", "--ep", "16", "--batch", "2048", "--prefill-chunk", "8192",
              "--json"]
    seen = {}
    for flag, want in (("--micro-batch-overlap", True), ("--no-micro-batch-overlap", False)):
        assert main(common + [flag]) == 0
        out = json.loads(capsys.readouterr().out)
        seen[want] = out["colocated"]
        assert out["colocated"]["plan"]["micro_batch_overlap"] is want
        assert any("two-micro-batch overlap" in a for a in out["assumptions"])
        assert out["configurations_evaluated"] == 1
    assert seen[True]["tpot_s"] != seen[False]["tpot_s"]


def test_candidate_plans_overlap_fixed():
    from supernode.catalog import load_catalog
    from supernode.infer import serving_arch
    from supernode.infer.plan import candidate_plans

    arch = serving_arch(load_catalog(), "deepseek-r1")
    both = candidate_plans(arch, 16, 8, tp=1, dp=16, ep=16, batch=2048)
    assert sorted(both.overlap.tolist()) == [0, 1]
    for flag in (False, True):
        assert candidate_plans(arch, 16, 8, tp=1, dp=16, ep=16, batch=2048, overlap=flag).overlap.tolist() == [int(flag)]


def test_admission_aligned_from_the_cli(capsys):
    """--admission aligned: the attention-DP ranks prefill in the same iterations; stated in the assumptions
    and never slower than independent admission (I15)."""
    common = ["infer", "deepseek-r1", "--on", "b200", "--chips", "8", "--input", "1024", "--output", "2048",
              "--precision", "fp4", "--tp", "1", "--attention-dp", "8", "--ep", "8", "--batch", "3072",
              "--prefill-chunk", "1153", "--json"]
    tpot = {}
    for mode in ("independent", "aligned"):
        assert main(common + ["--admission", mode]) == 0
        out = json.loads(capsys.readouterr().out)
        tpot[mode] = out["colocated"]["tpot_s"]
        assert any("admission aligned" in a for a in out["assumptions"]) is (mode == "aligned")
    assert tpot["aligned"] < tpot["independent"]


def test_prefill_dispatch_from_the_cli(capsys):
    """--prefill-dispatch (I24): the disaggregated search states the prefill kernels; with prefill instances that
    span several 8-GPU nodes, deduplicated dispatch gives at least the all-to-all's prefill throughput."""
    common = ["infer", "deepseek-r1", "--on", "h100", "--chips", "64", "--input", "4096", "--output", "256",
              "--precision", "fp8", "--disaggregated", "--json"]
    best = {}
    for mode in ("dedup", "all-to-all"):
        assert main(common + ["--prefill-dispatch", mode]) == 0
        out = json.loads(capsys.readouterr().out)
        assert any(("once per remote scale-up domain" in a) is (mode == "dedup") and "prefill MoE dispatch" in a
                   for a in out["assumptions"])
        best[mode] = out["disaggregated"]
    assert best["dedup"]["feasible"] and best["all-to-all"]["feasible"]
    rate = {m: b["prefill"]["prefill_tokens_per_s_per_chip"] for m, b in best.items()}
    assert rate["dedup"] >= 0.999 * rate["all-to-all"]
