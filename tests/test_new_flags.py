"""Bad values of the storage-dtype, attention-precision and prefill-chunk options: one line, exit 2."""

import pytest


@pytest.mark.parametrize("args, needle", [
    (("train", "llama-3.1-8b", "--on", "h100", "--chips", "8", "--grad-dtype", "fp64"), "--grad-dtype"),
    (("train", "llama-3.1-8b", "--on", "h100", "--chips", "8", "--param-dtype", "int4"), "--param-dtype"),
    (("infer", "llama-3.1-8b", "--on", "h100", "--chips", "1", "--attention-precision", "fp4"), "--attention-precision"),
    (("infer", "llama-3.1-8b", "--on", "h100", "--chips", "1", "--attention-precision", "fp8"), "--kv-precision fp8"),
    (("infer", "llama-3.1-8b", "--on", "h100", "--chips", "1", "--prefill-chunk", "0"), "--prefill-chunk"),
])
def test_bad_values_give_one_line_and_exit_2(run_cli, args, needle):
    code, out, err = run_cli(*args)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1


def test_bf16_gradients_and_fp8_weights_shrink_model_state(run_cli):
    import json

    def state(*extra):
        code, out, _ = run_cli("train", "llama-3.1-70b", "--on", "h100", "--chips", "64", "--precision", "fp8",
                               "--tp", "8", "--pp", "1", "--dp", "8", "--zero", "1", "--recompute", "full",
                               "--micro-batch", "1", "--json", *extra)
        assert code == 0
        b = json.loads(out)["plans"][0]["breakdown"]
        return b["weights_bytes"], b["gradients_bytes"]

    w32, g32 = state()
    w8, g16 = state("--grad-dtype", "bf16", "--param-dtype", "fp8")
    assert g16 == pytest.approx(g32 / 2) and w8 == pytest.approx(w32 / 2)
