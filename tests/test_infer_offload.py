"""I26: layer-wise weight offload with prefetch (infer/offload.py)."""

import json

import numpy as np
import pytest

from supernode.catalog.loader import load_catalog
from supernode.cli import main
from supernode.errors import UsageError
from supernode.hardware import resolve_cluster
from supernode.infer import offload
from supernode.infer.arch import serving_arch
from supernode.infer.plan import PlanGrid
from supernode.infer.search import estimate_decode, estimate_prefill

CAT = load_catalog()
PREFILL = dict(input_tokens=2000, tokens_per_rank=32768, tp=1, pp=1, dp=4, ep=4, precision="fp8",
               expert_balance="eplb", overlap=False)


def test_parse_accepts_cli_and_pairs_and_names_the_flag_on_bad_input():
    assert offload.parse("3/1") == (3, 1) and offload.parse([4, 3]) == (4, 3) and offload.parse(None) is None
    for bad in ("x", "3", "3/0", "3/4", [2], "0/0"):
        with pytest.raises(UsageError, match="--weight-offload"):
            offload.parse(bad)


def test_offload_moves_one_in_three_expert_layers_to_the_host_and_the_gb200_instance_fits():
    """SGLang's 4-GPU GB200 FP8 prefill instance: all 61 layers do not fit in 172.8 GB usable; with every third layer's
    routed experts in host memory (one layer's worth kept as the copy buffer) they do, and the copies (~6 ms each over
    NVLink-C2C) hide behind the two resident layers before them, so throughput is unchanged."""
    base = estimate_prefill(CAT, "deepseek-r1", "gb200-nvl72", 4, **PREFILL)
    off = estimate_prefill(CAT, "deepseek-r1", "gb200-nvl72", 4, weight_offload=(3, 1), **PREFILL)
    assert not base["fits"] and off["fits"]
    arch = serving_arch(CAT, "deepseek-r1")
    plan = PlanGrid(tp=np.array([1]), pp=1, dp=4, ep=4, batch=1, overlap=np.array([0]))
    w_layer, moe_l = offload.expert_layer_bytes(arch, plan, 1.0)
    saved = base["memory"]["weights_bytes"] - off["memory"]["weights_bytes"]
    assert saved == pytest.approx(float(((moe_l / 3 - 1) * w_layer)[0]), rel=0.02)
    assert off["breakdown"]["offload_s"] == 0.0
    assert off["prefill_tokens_per_s_per_chip"] == pytest.approx(base["prefill_tokens_per_s_per_chip"])


def test_offload_over_pcie_is_exposed_and_follows_the_formula():
    """On H100 (PCIe Gen5, 64 GB/s each way) decode cannot hide the copies: the stage grows by
    phi L_moe W_exp / B_host - (1 - phi) T_stage, and more offload is slower."""
    kw = dict(context_tokens=2000, batch_per_rank=64, tp=1, pp=1, dp=8, ep=8, precision="fp8", overlap=False)
    base = estimate_decode(CAT, "deepseek-r1", "h100", 8, **kw)
    third = estimate_decode(CAT, "deepseek-r1", "h100", 8, weight_offload=(3, 1), **kw)
    half = estimate_decode(CAT, "deepseek-r1", "h100", 8, weight_offload="2/1", **kw)
    assert half["decode_tokens_per_s_per_chip"] < third["decode_tokens_per_s_per_chip"] \
        < 0.5 * base["decode_tokens_per_s_per_chip"]
    arch = serving_arch(CAT, "deepseek-r1")
    chip = resolve_cluster(CAT, "h100", 8).chip
    plan = PlanGrid(tp=np.array([1]), pp=1, dp=8, ep=8, batch=512, overlap=np.array([0]))
    w_layer, moe_l = offload.expert_layer_bytes(arch, plan, 1.0)
    stage = base["breakdown"]["stage_s"]
    expect = (moe_l[0] / 3) * w_layer[0] / chip.host_bytes_per_s - (2 / 3) * stage
    assert third["breakdown"]["offload_s"] == pytest.approx(expect, rel=0.02)
    assert chip.host_bytes_per_s == pytest.approx(64e9)


def test_offload_needs_a_known_host_link():
    with pytest.raises(UsageError, match="--weight-offload: chip 'ascend-910c' has no known host-link bandwidth"):
        estimate_decode(CAT, "deepseek-r1", "ascend-910c", 16, context_tokens=2000, batch_per_rank=16, tp=1, pp=1,
                        dp=16, ep=16, precision="int8", weight_offload=(3, 1))


def test_weight_offload_from_the_cli(capsys):
    common = ["infer", "deepseek-r1", "--on", "gb200-nvl72", "--chips", "4", "--input", "2000", "--output", "200",
              "--precision", "fp8", "--tp", "1", "--attention-dp", "4", "--ep", "4", "--json"]
    assert main(common + ["--weight-offload", "3/1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["colocated"]["fits"] and "offload_s" in out["colocated"]["breakdown"]
    assert any("weight offload (I26)" in a for a in out["assumptions"])
    assert main(common + ["--weight-offload", "1/2"]) == 2
    assert "--weight-offload: expected 1 <= N <= G" in capsys.readouterr().err
