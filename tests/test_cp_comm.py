"""All-gather context parallelism (T3, --cp-comm all-gather; Llama 3 sec. 3.3.2)."""

import pytest

from supernode.errors import UsageError
from supernode.hardware import resolve_cluster
from supernode.perf import collectives as coll
from supernode.train.api import train_plans
from supernode.train.plan import TrainWorkload

# Llama 3.1 405B at 32K on 1,024 H100: TP8 (one node), CP4 across four nodes, PP 8, DP 4
ARGS = dict(chips=1024, seq_len=32768, global_batch=64, top=1,
            fixed=dict(tp=8, cp=4, pp=8, dp=4, vpp=1, micro_batch=1, zero=1, recompute="none"))


def _plan(catalog, cp_comm):
    return train_plans(catalog, "llama-3.1-405b", "h100", cp_comm=cp_comm, pipeline_split="uniform",
                       **ARGS)["plans"][0]


def test_cp_comm_validated():
    with pytest.raises(UsageError, match="--cp-comm"):
        TrainWorkload(global_batch=8, seq_len=4096, cp_comm="ulysses")


def test_all_gather_cp_is_exposed_and_priced_as_gathers(catalog):
    """Per layer and micro-batch: forward all-gather of K and V, backward re-gather + reduce-scatter
    of dK, dV, each of the gathered size c·(b·s/c)·2·kv_heads·d_head/t·2 bytes over the CP group at
    stride t (C1); the most loaded stage holds ceil(L/p) = 16 layers and runs m micro-batches."""
    ring = _plan(catalog, "ring")
    ag = _plan(catalog, "all-gather")
    cluster = resolve_cluster(catalog, "h100", 1024)
    from supernode.perf.compute import efficiency, tier_bw_efficiency

    eff = efficiency(cluster.chip.family)
    gathered = 32768 * 2 * 8 * 128 / 8 * 2.0
    one = float(coll.reduce_scatter_s(cluster, gathered, 4, 8, tier_bw_efficiency(cluster, eff)))
    layers, m = 16, 64 / 4
    expected = 3 * one * layers * m
    assert ag["breakdown"]["exposed_cp_comm_s"] == pytest.approx(expected, rel=1e-9)
    assert ring["breakdown"]["exposed_cp_comm_s"] < 0.1 * expected  # ring passes hide behind attention
    assert ag["step_time_s"] > ring["step_time_s"]
    # one layer's gathered K, V and their gradient held as buffers
    extra = ag["breakdown"]["comm_buffers_bytes"] - ring["breakdown"]["comm_buffers_bytes"]
    assert extra == pytest.approx(2 * gathered, rel=1e-9)


def test_all_gather_cp_is_free_without_cp(catalog):
    args = dict(ARGS, fixed=dict(tp=8, cp=1, pp=8, dp=16, vpp=1, micro_batch=1, zero=1, recompute="full"))
    a = train_plans(catalog, "llama-3.1-405b", "h100", cp_comm="all-gather", **args)["plans"][0]
    b = train_plans(catalog, "llama-3.1-405b", "h100", cp_comm="ring", **args)["plans"][0]
    assert a["step_time_s"] == pytest.approx(b["step_time_s"], rel=1e-12)
    assert a["breakdown"]["exposed_cp_comm_s"] == 0.0
