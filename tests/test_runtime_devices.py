"""Packages of several runtime devices (I40): the Ascend 910C's two dies are two NPU devices, each run as one rank by
every serving stack on record, so the serving model plans and prices per die and reports per-chip figures per
package."""

import numpy as np
import pytest

from supernode.hardware import device_cluster, resolve_cluster
from supernode.infer.arch import serving_arch
from supernode.infer.memory import weights_bytes_per_chip
from supernode.infer.plan import PlanGrid
from supernode.infer.precision import module_formats, module_weight_bytes, weight_formats
from supernode.infer.search import estimate_decode, search
from supernode.infer.serving import SLO, Workload


def test_the_910c_is_two_devices_and_a_gpu_is_one(catalog):
    assert resolve_cluster(catalog, "ascend-910c", 8).chip.devices == 2
    for chip in ("h100", "b200", "mi300x", "ascend-910b"):
        assert resolve_cluster(catalog, chip, 8).chip.devices == 1
    h100 = resolve_cluster(catalog, "h100", 8)
    assert device_cluster(h100) is h100


def test_device_cluster_splits_each_package_evenly(catalog):
    pkg = resolve_cluster(catalog, "cloudmatrix-384")
    dev = device_cluster(pkg)
    assert (dev.chips, dev.devices_per_chip, pkg.devices_per_chip) == (768, 2, 1)
    assert dev.chip.peak("int8") == pytest.approx(pkg.chip.peak("int8") / 2)
    assert dev.chip.memory_bytes == pytest.approx(pkg.chip.memory_bytes / 2)
    assert dev.chip.memory_bandwidth_bytes_per_s == pytest.approx(pkg.chip.memory_bandwidth_bytes_per_s / 2)
    for a, b in zip(pkg.tiers, dev.tiers):
        assert b.domain_chips == 2 * a.domain_chips
        assert b.bandwidth_bytes_per_s == pytest.approx(a.bandwidth_bytes_per_s / 2)
        assert b.latency_s == a.latency_s
    assert (dev.power_w, dev.price_usd) == (pkg.power_w, pkg.price_usd)  # totals do not change
    assert device_cluster(dev) is dev  # already per device
    assert any("2 runtime devices" in a for a in dev.assumptions)


def test_per_chip_figures_are_per_package(catalog):
    """The same plan priced on the device view and reported per package: the per-chip rate and memory are two dies'
    worth, the plan's degrees count dies, and the instance is half as many packages as dies."""
    kw = dict(context_tokens=4096, batch_per_rank=8, tp=1, pp=1, dp=32, ep=32, precision="int8", overlap=False,
              expert_balance="none")
    r = estimate_decode(catalog, "deepseek-r1", "ascend-910c", 16, **kw)
    assert r["plan"]["devices_per_instance"] == 32 and r["plan"]["chips_per_instance"] == 16
    per_die_rate = 32 * 8 / r["tpot_s"] / 32
    assert r["decode_tokens_per_s_per_chip"] == pytest.approx(2 * per_die_rate)
    assert r["memory_bytes_per_chip"] == pytest.approx(r["memory"]["total_bytes"])
    assert r["memory"]["capacity_bytes"] == pytest.approx(
        resolve_cluster(catalog, "ascend-910c", 16).chip.memory_bytes)


def test_a_die_holds_its_own_copy_of_the_replicated_weights(catalog):
    """Attention-DP ranks replicate the attention, shared-expert, dense-FFN, router and embedding weights: a package
    of two one-rank dies stores them twice, where the package taken as one rank stored them once; the routed experts
    are spread over the ranks either way."""
    kw = dict(context_tokens=4096, tp=1, pp=1, precision="int8", overlap=False, expert_balance="none")
    dies = estimate_decode(catalog, "deepseek-r1", "ascend-910c", 16, batch_per_rank=4, dp=32, ep=32, **kw)
    arch = serving_arch(catalog, "deepseek-r1")
    one = PlanGrid(tp=np.array([1]), pp=1, dp=16, ep=16, batch=128, overlap=0)
    two = PlanGrid(tp=np.array([1]), pp=1, dp=32, ep=32, batch=128, overlap=0)
    formats = module_formats("int8", weight_formats(resolve_cluster(catalog, "ascend-910c", 16).chip, "int8", None))
    per_package_as_one_rank = float(weights_bytes_per_chip(arch, one, module_weight_bytes(formats))[0])
    per_die = float(weights_bytes_per_chip(arch, two, module_weight_bytes(formats))[0])
    assert dies["memory"]["weights_bytes"] == pytest.approx(2 * per_die)
    assert 2 * per_die > 1.2 * per_package_as_one_rank


def test_search_counts_devices_in_plans_and_packages_in_totals(catalog):
    r = search(catalog, "llama-3.1-70b", "ascend-910c", 8, workload=Workload(1024, 128), slo=SLO(None, 0.1),
               disaggregated=True)
    assert (r["chips"], r["devices"], r["devices_per_chip"]) == (8, 16, 2)
    c = r["colocated"]
    assert c["plan"]["tp"] * c["plan"]["pp"] * c["plan"]["attention_dp"] == c["plan"]["devices_per_instance"]
    assert c["chips_used"] * 2 == c["instances"] * c["plan"]["devices_per_instance"]
    assert c["decode_tokens_per_s"] == pytest.approx(c["decode_tokens_per_s_per_chip"] * c["chips_used"])
    d = r["disaggregated"]
    assert d["prefill_chips"] + d["decode_chips"] <= 8
    assert d["output_tokens_per_s_per_chip"] == pytest.approx(d["output_tokens_per_s"] / 8)


def test_fixed_degrees_beyond_the_devices_name_the_devices(run_cli):
    code, out, err = run_cli("infer", "deepseek-r1", "--on", "ascend-910c", "--chips", "16", "--tp", "64")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "exceeds the 32 devices (2 per chip" in err


def test_the_text_plan_says_plans_count_devices(run_cli):
    code, out, err = run_cli("infer", "llama-3.1-70b", "--on", "ascend-910c", "--chips", "8", "--input", "1024",
                             "--output", "128")
    assert code == 0, err
    assert "8 x ascend-910c = 16 devices, 2 per chip: plans count devices" in " ".join(out.split())


def test_training_plans_count_devices_and_report_per_package(catalog):
    """The training model runs on the same device view: the plan's degrees multiply to the dies, the memory per chip
    is two dies' worth and within a package's capacity, chip-hours count packages."""
    from supernode.train.api import train_plans

    r = train_plans(catalog, "llama-3.1-8b", "ascend-910c", 8, seq_len=4096, global_batch=256, tokens=1e9, top=1)
    assert (r["chips"], r["devices"], r["devices_per_chip"]) == (8, 16, 2)
    best = r["plans"][0]
    p = best["plan"]
    assert p["tp"] * p["cp"] * p["dp"] * p["pp"] == 16
    package = resolve_cluster(catalog, "ascend-910c", 8).chip.memory_bytes
    assert 0.8 * package <= best["memory_capacity_bytes"] <= package  # two dies' usable memory
    parts = sum(v for k, v in best["breakdown"].items() if k.endswith("_bytes"))
    assert best["memory_bytes_per_chip"] == pytest.approx(parts, rel=1e-6)
    assert best["training"]["chip_hours"] == pytest.approx(best["training"]["time_s"] * 8 / 3600)
