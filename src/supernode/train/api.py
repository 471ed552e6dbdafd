"""Public entry point of the training model: the dictionary the CLI, web and report use."""

from __future__ import annotations

from typing import Any

from supernode.catalog.loader import Catalog
from supernode.hardware import device_cluster, resolve_cluster
from supernode.train.plan import TrainWorkload
from supernode.train.search import search
from supernode.workload.model import load_model

DEFAULT_TOKENS_PER_STEP = 16 * 2 ** 20  # ~16M tokens per step when --global-batch is not given


def training_time(tokens: float, tokens_per_s: float, chips: int, power_w: float | None) -> dict[str, Any]:
    """Time (s), chip-hours and energy (J = W x s; None when power is unknown) for a token budget (T9)."""
    time_s = tokens / tokens_per_s
    return {"tokens": tokens, "time_s": time_s, "chip_hours": time_s * chips / 3600.0,
            "energy_j": power_w * time_s if power_w else None}


def train_plans(catalog: Catalog, model: str, on: str, chips: int | None = None, precision: str = "bf16",
                seq_len: int = 4096, global_batch: int | None = None, tokens: float | None = None, top: int = 3,
                fixed: dict[str, Any] | None = None, workload: TrainWorkload | None = None,
                grad_dtype: str = "fp32", param_dtype: str = "bf16", schedule: str = "1f1b",
                pipeline_split: str = "uniform", ep_dispatch: str = "all-to-all",
                cp_comm: str = "ring") -> dict[str, Any]:
    """Search the best plans of ``model`` on ``on`` (system or chip id) and return them with their
    breakdowns, memory, fit, and (with ``tokens``) time, chip-hours and energy."""
    m = load_model(catalog, model)
    # a package of several runtime devices trains as its devices, one rank each (I40: the Ascend 910C's dies); the
    # plans count devices, the per-chip figures below are per package
    cluster = device_cluster(resolve_cluster(catalog, on, chips))
    d = cluster.devices_per_chip
    cluster.chip.peak(precision)  # one-line error when the chip lacks the precision
    if workload is None:
        B = global_batch
        if B is None:
            B = max(1, DEFAULT_TOKENS_PER_STEP // seq_len) if isinstance(seq_len, int) and seq_len > 0 else 1
        workload = TrainWorkload(global_batch=B, seq_len=seq_len, precision=precision, tokens=tokens,
                                 grad_dtype=grad_dtype, param_dtype=param_dtype, schedule=schedule,
                                 pipeline_split=pipeline_split, ep_dispatch=ep_dispatch, cp_comm=cp_comm)
    res = search(m, cluster, workload, fixed=fixed, top=top)
    plans = []
    for i in range(len(res)):
        b = res.breakdown.row(i)
        entry = {
            "plan": res.plans.row(i),
            "step_time_s": b["step_time_s"],
            "tokens_per_s": b["tokens_per_s"],
            "mfu": b["mfu"],
            "hfu": b["hfu"],
            "memory_bytes_per_chip": b["memory_bytes_per_chip"] * d,
            "memory_capacity_bytes": b["memory_capacity_bytes"] * d,
            "fits": bool(b["fits"]),
            "breakdown": {k: b[k] * (d if k.endswith("_bytes") else 1)
                          for k in ("compute_s", "exposed_tp_comm_s", "exposed_cp_comm_s", "exposed_ep_comm_s",
                                    "exposed_pp_comm_s", "exposed_dp_comm_s", "bubble_s", "optimizer_s",
                                    "weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes",
                                    "comm_buffers_bytes")},
        }
        if workload.tokens:
            entry["training"] = training_time(workload.tokens, b["tokens_per_s"], cluster.chips // d, cluster.power_w)
        plans.append(entry)
    assumptions = list(res.assumptions) + [
        "rank order: TP innermost, then CP, DP (EP within DP), PP outermost",
        "FlashAttention-style fused attention; perfect expert load balance; bf16 activations; "
        f"{workload.grad_dtype} gradients, {workload.param_dtype} weights, fp32 Adam states",
        "MFU counts 6·N_active·tokens + causal attention against the dense peak of the stated precision",
    ]
    return {
        "model": m.id, "cluster": cluster.id, "chip": cluster.chip.id, "chips": cluster.chips // d,
        **({"devices_per_chip": d, "devices": cluster.chips} if d > 1 else {}),
        "workload": {"global_batch": workload.global_batch, "seq_len": workload.seq_len,
                     "precision": workload.precision, "tokens": workload.tokens,
                     "grad_dtype": workload.grad_dtype, "param_dtype": workload.param_dtype,
                     "schedule": workload.schedule, "pipeline_split": workload.pipeline_split,
                     "ep_dispatch": workload.ep_dispatch, "cp_comm": workload.cp_comm},
        "search": {"evaluated": res.evaluated, "fitting": res.fitting},
        "plans": plans,
        "assumptions": assumptions,
    }
