"""The inference report section (issue 4, 'Answer with numbers'): DeepSeek-R1 and Llama 3.1 70B decode per chip at
TPOT 50 ms on the five systems the question names, and CloudMatrix 384 once more under SGLang's Ascend backend (I34)."""

import pytest

from supernode.infer import answers


@pytest.fixture(scope="module")
def md(catalog):
    return answers.inference_answers(catalog)


def test_every_system_has_a_row_for_both_models(md):
    for model in ("deepseek-r1", "llama-3.1-70b"):
        section = md.split(f"### {model}")[1].split("###")[0]
        for label, *_ in answers.SYSTEMS:
            row = [ln for ln in section.splitlines() if ln.startswith(f"| {label} |")]
            assert len(row) == 1, (model, label)
            assert "unknown:" not in row[0] and "SLO missed" not in row[0], row[0]


def test_sglang_ascend_row_prices_the_stack(catalog):
    """The two CloudMatrix 384 rows differ only in the serving stack: SGLang's Ascend backend's fixed time per layer
    (I34) lowers DeepSeek-R1's decode per chip at the same TPOT bound, and since stop 42 the dense Llama's too (the
    document's dense Qwen3-32B rows show the same per-layer time)."""
    huawei = answers.decode_row(catalog, "deepseek-r1", "cloudmatrix-384", 384)
    sglang = answers.decode_row(catalog, "deepseek-r1", "cloudmatrix-384", 384, "sglang-ascend")
    assert sglang["meets_slo"] and sglang["tpot_s"] <= answers.TPOT_S
    assert sglang["tokens_per_s_per_chip"] < 0.9 * huawei["tokens_per_s_per_chip"]
    assert sglang["breakdown"]["layer_fixed_s"] > 0.0 == huawei["breakdown"]["layer_fixed_s"]
    dense = [answers.decode_row(catalog, "llama-3.1-70b", "cloudmatrix-384", 384, s)["tokens_per_s_per_chip"]
             for s in (None, "sglang-ascend")]
    assert dense[1] < dense[0]
