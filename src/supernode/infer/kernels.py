"""Kernel times for the inference model, all delegated to the shared roofline in
:mod:`supernode.perf.compute` (per-family achievable efficiencies from ``data/efficiency/``) and
to :mod:`supernode.perf.collectives`. This module only adapts shapes (``workload.Gemm`` lists)
and picks the efficiency record; it holds no cost formula of its own."""

from __future__ import annotations

import numpy as np

from supernode.hardware import ChipSpec, ClusterSpec
from supernode.perf import compute


def efficiency(cluster: ClusterSpec) -> compute.Efficiency:
    return compute.efficiency(cluster.chip.family)


def gemms_s(chip: ChipSpec, eff: compute.Efficiency, gemms, precision: str, bytes_per_element: float) -> np.ndarray:
    """Sum of the roofline times (K1) of ``gemms`` on one chip at ``precision``."""
    total = 0.0
    for g in gemms:
        m = np.asarray(g.m, float)
        count = np.asarray(g.count, float)
        live = (m > 0) & (count > 0)  # an empty GEMM (no tokens, no expert hit) takes no time
        with np.errstate(invalid="ignore", divide="ignore"):
            t = compute.gemm_time_s(chip, eff, np.where(live, m, 1.0), np.asarray(g.n, float), np.asarray(g.k, float),
                                    precision, count, bytes_per_element)
        total = total + np.where(live, t, 0.0)
    return np.asarray(total, dtype=float)


def attention_s(chip: ChipSpec, eff: compute.Efficiency, flops, kv_bytes, precision: str) -> np.ndarray:
    """Fused attention: smooth roofline (K1) of its FLOPs (K3) and streaming its KV cache from HBM (K4)."""
    return compute.roofline_s(eff, compute.attention_time_s(chip, eff, np.asarray(flops, float), precision),
                              compute.memory_time_s(chip, eff, np.asarray(kv_bytes, float)))


def collective_efficiency(cluster: ClusterSpec, eff: compute.Efficiency) -> np.ndarray:
    return compute.tier_bw_efficiency(cluster, eff)
