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
                       (["--input", "0"], "--input"), (["--ep", "4"], "--ep")):
        rc = main(["infer", "llama-3.1-8b", "--on", "h100", "--chips", "8", *argv])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and name in err and len(err.splitlines()) == 1, (argv, err)
