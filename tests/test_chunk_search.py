"""I39: the co-located search chooses the chunked-prefill budget when the user gives none (an operator's knob, like the
batch), and the validation cases never get the search's choice: a run's chunk is a fact of its configuration."""

from __future__ import annotations

import json

from supernode.catalog import load_catalog
from supernode.cli import main
from supernode.infer import SLO, Workload, search
from supernode.infer.search import PREFILL_CHUNK_CANDIDATES
from supernode.infer.serving import DEFAULT_PREFILL_CHUNK
from supernode.infer.validation import estimate

CAT = load_catalog()
KW = dict(workload=Workload(2048, 256), slo=SLO(None, 0.050), disaggregated=False)


def test_the_searched_chunk_is_reported_and_reproduced_when_given():
    free = search(CAT, "deepseek-r1", "cloudmatrix-384", **KW)
    c = free["colocated"]
    assert c["prefill_chunk_searched"] and c["prefill_chunk_tokens"] in PREFILL_CHUNK_CANDIDATES
    assert any("searched over" in a and "I39" in a for a in free["assumptions"])
    fixed = search(CAT, "deepseek-r1", "cloudmatrix-384", prefill_chunk_tokens=c["prefill_chunk_tokens"],
                   **KW)["colocated"]
    assert not fixed["prefill_chunk_searched"]
    for k in ("plan", "ttft_s", "tpot_s", "decode_tokens_per_s_per_chip"):
        assert fixed[k] == c[k], k
    assert free["configurations_evaluated"] > 1


def test_the_search_never_does_worse_than_the_stacks_default_chunk():
    """8,192 is among the candidates, so the searched plan meets the SLO whenever the default's does and serves at
    least as many tokens per system. Where the default's plan must stall a 50 ms TPOT for a whole 8,192-token chunk
    on every attention-DP rank (I15), a smaller chunk lets DeepSeek-R1 run wide expert parallelism co-located."""
    for on in ("cloudmatrix-384", "gb200-nvl72", "h200"):
        free = search(CAT, "deepseek-r1" if on != "h200" else "llama-3.1-70b", on, **KW)["colocated"]
        dflt = search(CAT, "deepseek-r1" if on != "h200" else "llama-3.1-70b", on,
                      prefill_chunk_tokens=DEFAULT_PREFILL_CHUNK, **KW)["colocated"]
        assert free["meets_slo"] >= dflt["meets_slo"]
        assert free["decode_tokens_per_s"] >= dflt["decode_tokens_per_s"] * (1 - 1e-12), on
    free = search(CAT, "deepseek-r1", "cloudmatrix-384", **KW)["colocated"]
    dflt = search(CAT, "deepseek-r1", "cloudmatrix-384", prefill_chunk_tokens=DEFAULT_PREFILL_CHUNK, **KW)["colocated"]
    assert free["prefill_chunk_tokens"] < DEFAULT_PREFILL_CHUNK and free["plan"]["attention_dp"] > 1
    assert free["decode_tokens_per_s_per_chip"] > 2 * dflt["decode_tokens_per_s_per_chip"]


def test_a_token_budget_is_not_searched():
    c = search(CAT, "llama-3.1-8b", "b200", 1, workload=Workload(870, 129), precision="fp8", disaggregated=False,
               max_num_tokens=12000)["colocated"]
    assert not c["prefill_chunk_searched"] and c["prefill_chunk_tokens"] == 12000


def test_a_validation_case_without_a_stated_chunk_runs_the_stacks_default():
    case = {"id": "t", "kind": "offline",
            "inputs": {"model": "llama-3.1-70b", "system": "h200", "chips": 1, "precision": "fp8",
                       "input_tokens": 2048, "output_tokens": 256, "tp": 1, "pp": 1}}
    _, view = estimate(CAT, case)
    assert view["prefill_chunk_tokens"] == DEFAULT_PREFILL_CHUNK and not view["prefill_chunk_searched"]
    case["inputs"]["prefill_chunk_tokens"] = 1024
    assert estimate(CAT, case)[1]["prefill_chunk_tokens"] == 1024


def test_cli_shows_the_chunk_and_whether_it_was_searched(capsys):
    base = ["infer", "llama-3.1-70b", "--on", "h200", "--chips", "8", "--tpot", "50ms"]
    assert main(base) == 0
    assert "(searched)" in capsys.readouterr().out
    assert main(base + ["--prefill-chunk", "2048", "--json"]) == 0
    c = json.loads(capsys.readouterr().out)["colocated"]
    assert c["prefill_chunk_tokens"] == 2048 and c["prefill_chunk_searched"] is False


def test_where_the_chunk_does_not_matter_the_search_keeps_the_default():
    """Prompts shorter than every candidate enter whole whatever the budget: the plans at each chunk are equal (to
    rounding), and the search reports the stacks' default rather than an arbitrary one of them."""
    c = search(CAT, "llama-3.1-8b", "h100", 1, workload=Workload(128, 128), disaggregated=False)["colocated"]
    assert c["prefill_chunk_searched"] and c["prefill_chunk_tokens"] == DEFAULT_PREFILL_CHUNK
