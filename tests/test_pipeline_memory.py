"""Layers x micro-batches in flight (T8) against a brute-force replay of Megatron's 1F1B and
interleaved schedules, the balanced pipeline split, and the device-memory capacity."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supernode.errors import UsageError
from supernode.hardware import resolve_cluster
from supernode.train.memory import chunk_layers, layers_in_flight
from supernode.train.plan import TrainWorkload


def replay_peak(L: int, p: int, v: int, m: int, balanced: bool) -> int:
    """Peak live transformer layers (summed over live micro-batch chunks) over all ranks, replaying
    the op order of Megatron's schedules: rank r runs W warm-up forwards (1F1B: p-1-r; interleaved:
    2(p-1-r) + (v-1)p, capped at m·v), then one-forward-one-backward, then the remaining backwards.
    Forward k runs chunk (k mod pv) div p, backward k chunk v-1 - (k mod pv) div p."""
    cs = -(-(L + (2 if balanced else 0)) // (p * v)) if p > 1 else L

    def layers(r, c):
        short = balanced and p > 1 and ((r == 0 and c == 0) or (r == p - 1 and c == v - 1))
        return cs - 1 if short else cs

    peak = 0
    for r in range(p):
        total = m * v
        w = min(2 * (p - 1 - r) + (v - 1) * p if v > 1 else p - 1 - r, total)
        ops = ["F"] * w + ["F", "B"] * (total - w) + ["B"] * w
        live = f = b = 0
        for op in ops:
            if op == "F":
                live += layers(r, (f % (p * v)) // p); f += 1
            else:
                live -= layers(r, v - 1 - (b % (p * v)) // p); b += 1
            peak = max(peak, live)
    return peak


@settings(max_examples=150, deadline=None)
@given(L=st.integers(8, 130), p=st.sampled_from([1, 2, 3, 4, 6, 8, 16]), v=st.sampled_from([1, 2, 3, 4, 8]),
       k=st.integers(1, 6), balanced=st.booleans())
def test_layers_in_flight_matches_schedule_replay(L, p, v, k, balanced):
    if p == 1:
        v = 1
    if p * v > L + (2 if balanced else 0):
        return
    m = k * p if v > 1 else k  # Megatron's interleaved schedule needs m divisible by p
    model = SimpleNamespace(layers=L)
    got = float(layers_in_flight(model, np.array(float(p)), np.array(float(v)), np.array(1.0), np.array(1.0), m,
                                 "1f1b", "balanced" if balanced else "uniform"))
    assert got == replay_peak(L, p, v, m, balanced)


def test_llama3_balanced_split_counts():
    """Llama 3 405B, 16 stages x 8 one-layer chunks (paper sec. 3.3.2): rank 1 holds 141 chunks at
    32 micro-batches; at m = p every rank runs all m·v forwards first (128)."""
    m = SimpleNamespace(layers=126)
    p, v = np.array(16.0), np.array(8.0)
    assert float(chunk_layers(m, p, v, "balanced")) == 1.0
    assert float(layers_in_flight(m, p, v, np.array(64.0), np.array(1.0), 2048, "1f1b", "balanced")) == 141
    assert float(layers_in_flight(m, p, v, np.array(128.0), np.array(1.0), 2048, "1f1b", "balanced")) == 128
    # the uniform split cannot place 126 layers on 128 chunks; with 4 chunks per stage it holds more in flight
    assert float(layers_in_flight(m, p, np.array(4.0), np.array(64.0), np.array(1.0), 2048)) == 2 * 79


def test_balanced_split_rejected_with_dualpipe():
    with pytest.raises(UsageError, match="--pipeline-split"):
        TrainWorkload(global_batch=8, seq_len=4096, schedule="dualpipe", pipeline_split="balanced")
    with pytest.raises(UsageError, match="--pipeline-split"):
        TrainWorkload(global_batch=8, seq_len=4096, pipeline_split="even")


def test_balanced_split_admits_one_layer_chunks(catalog):
    from supernode.train.api import train_plans

    fixed = dict(tp=8, pp=16, dp=64, vpp=8, recompute="none")
    args = dict(chips=8192, seq_len=8192, global_batch=2048, fixed=fixed, top=1)
    with pytest.raises(UsageError):  # 16 x 8 = 128 chunks > 126 layers
        train_plans(catalog, "llama-3.1-405b", "h100", **args)
    res = train_plans(catalog, "llama-3.1-405b", "h100", pipeline_split="balanced", **args)
    assert res["workload"]["pipeline_split"] == "balanced"
    assert res["plans"][0]["plan"]["vpp"] == 8


def test_device_capacity_used_by_models_not_by_comparisons(catalog):
    """NVIDIA's "80 GB" H100 exposes 81,559 MiB (nvidia-smi); plans fit into that, spec tables keep 80 GB."""
    from supernode.compare import system_figures

    cl = resolve_cluster(catalog, "h100", 8)
    assert cl.chip.memory_bytes == pytest.approx(81559 * 2**20)
    assert resolve_cluster(catalog, "h200", 8).chip.memory_bytes == pytest.approx(141e9)  # no device figure
    figs = system_figures(catalog, "h100").figures
    assert figs["memory_bytes"].value / figs["chips"].value == pytest.approx(80e9)
