"""Weight offload with prefetch (I26, docs/inference.md): the routed experts of N in every G consecutive layers live
in host memory and are copied back over the chip's host link on a side stream while the resident layers before them
run (SGLang's OffloaderV2 ``--offload-group-size G --offload-num-in-group N --offload-prefetch-step 1``; vLLM's
prefetch offloader).

With phi = N / G of a stage's MoE layers offloaded:

    resident weights = weights - (phi L_moe - 1) W_exp      one layer's experts stay as the copy buffer
    T_stage' = T_stage + max(0, phi L_moe W_exp / B_host - (1 - phi) T_stage)

W_exp the routed-expert bytes of one MoE layer on the chip, B_host its host link per direction. The copy stream runs
beside the compute: the stage waits only when the copies take longer than the resident layers' share of the stage.
Not priced: the copies' share of HBM bandwidth, and the copy engine or SMs they occupy."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from supernode.errors import UsageError
from supernode.infer.arch import ServingArch
from supernode.infer.memory import WEIGHT_PARTS, weights_bytes_per_chip
from supernode.infer.plan import PlanGrid
from supernode.infer.step import _layers_per_stage


def parse(value) -> tuple[int, int] | None:
    """``G/N`` (CLI), a pair [G, N] (validation input, Python) or None; a one-line UsageError otherwise."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            g, n = (int(x) for x in value.split("/"))
        else:
            g, n = (int(x) for x in value)
    except (TypeError, ValueError):
        raise UsageError(f"--weight-offload: expected G/N (N of every G layers' experts in host memory, "
                         f"e.g. 3/1), got {value!r}") from None
    if not (g >= 1 and 1 <= n <= g):
        raise UsageError(f"--weight-offload: expected 1 <= N <= G, got {g}/{n}")
    return g, n


def fraction(offload: tuple[int, int] | None) -> float:
    """phi = N / G (0 without offload)."""
    return 0.0 if offload is None else offload[1] / offload[0]


def expert_layer_bytes(arch: ServingArch, plan: PlanGrid, bytes_per_weight) -> tuple[np.ndarray, np.ndarray]:
    """(routed-expert bytes of one MoE layer on a chip, MoE layers of the fullest stage) of every plan."""
    if isinstance(bytes_per_weight, Mapping):
        only = {part: (bytes_per_weight[part] if part == "experts" else 0.0) for part in WEIGHT_PARTS}
    else:
        only = {part: (float(bytes_per_weight) if part == "experts" else 0.0) for part in WEIGHT_PARTS}
    _, moe_l = _layers_per_stage(arch, plan.pp.astype(float))
    total = weights_bytes_per_chip(arch, plan, only)
    return np.where(moe_l > 0, total / np.maximum(moe_l, 1e-30), 0.0), moe_l


def resident_saving_bytes(arch: ServingArch, plan: PlanGrid, bytes_per_weight, phi: float) -> np.ndarray:
    """Weight bytes per chip that offload moves to host memory (one layer's experts kept as the copy buffer)."""
    if phi <= 0 or not arch.is_moe:
        return np.zeros(len(plan.tp))
    w, moe_l = expert_layer_bytes(arch, plan, bytes_per_weight)
    return np.maximum(0.0, phi * moe_l - 1.0) * w


def exposed_s(arch: ServingArch, host_bytes_per_s: float | None, chip_id: str, plan: PlanGrid, bytes_per_weight,
              phi: float, stage_s) -> np.ndarray:
    """Stage time the offload copies add (I26): max(0, copy time of the stage's offloaded layers - the resident
    layers' share of the stage)."""
    stage = np.asarray(stage_s, float)
    if phi <= 0 or not arch.is_moe:
        return np.zeros_like(stage)
    if not host_bytes_per_s:
        raise UsageError(f"--weight-offload: chip {chip_id!r} has no known host-link bandwidth to price the copies")
    w, moe_l = expert_layer_bytes(arch, plan, bytes_per_weight)
    return np.maximum(0.0, phi * moe_l * w / host_bytes_per_s - (1.0 - phi) * stage)
