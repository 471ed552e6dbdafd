"""Fixed per-step costs of small-batch decode beyond streaming weights (docs/inference.md, I18, I19, I21).

At one sequence per GPU a decode step of a large MoE is not bound by its weight reads alone: every MoE
layer pays a dispatch and a combine kernel whose time does not fall below a floor however few tokens
they carry (I18), and a serving stack that does not overlap its scheduler with the GPU leaves the host
work of every iteration on the critical path (I19). Both are data in
``data/inference/small-batch-costs.yaml``, one value for every case and chip:

    I18  T_dispatch = alpha_d + max_l S_d f_l / B_l,   T_combine = alpha_c + max_l S_c f_l / B_l
         alpha_d = 18.9 us, alpha_c = 31.0 us: the NVLinkOneSided kernels of TensorRT-LLM at one token per
         rank (GB200 NVL72, ep 8); the bandwidth term is the all-to-all's (perf/collectives.py).
    I19  T_step = p (T_stage + m T_draft) + t_host,  t_host = 0 for a stack that overlaps its scheduler
         (the default: SGLang's overlap scheduler, TensorRT-LLM's overlap scheduler), 1.96 ms for SGLang
         with EAGLE/MTP speculative decoding before spec v2 (overlap scheduler disabled; PR #12128) on one
         node, 6.10 ms when the instance's attention-DP ranks span nodes (SGLang MTP blog, two H200 nodes).
    I21  T_stage += L t_layer for a MoE model run with expert parallelism (ep > 1): the family's fixed time per
         layer beyond the priced kernels, calibrated on the same two-node table (supernode.infer.calibration);
         Hopper 128 us, others 0.
    I34  a serving stack calibrated on a family of its own (``stack_layer_overhead``) replaces the family's
         t_layer where a run names it: SGLang's Ascend backend on the Ascend 910 family, from a batch-1 row
         of SGLang's Ascend best-practice tables; SGLang's ROCm backend on CDNA 3 (sglang-rocm), from a 4-request
         row of an InferenceX MI325X run (supernode.infer.calibration). MoE models only, except for the stacks of
         ``stack_layer_overhead_dense``, whose value a dense row of the same stack shows too (sglang-ascend, stop 42).

How far off: I18's alpha is one kernel family's (NVLink, one-sided); DeepEP's low-latency RDMA kernels
are reproduced within 10% at 128 tokens and EP 16-256 (README table, ``checks``), but no published
DeepEP measurement at one token per rank was found, so their floor is assumed equal. I19's t_host values
are lower bounds (overlap hides host work only up to the GPU time). I21 is a residual of one table, so it
carries that table's stack (SGLang July 2025, DeepEP low-latency, BF16 KV) into every Hopper MoE estimate.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from supernode.catalog.loader import builtin_dir, parse_item
from supernode.catalog.schema import Quantity, Strict
from supernode.errors import UsageError
from supernode.hardware import si

OVERLAPPED = "overlapped"  # default serving stack: host work hidden behind the GPU (t_host = 0)


class KernelFloors(Strict):
    dispatch: Quantity
    combine: Quantity


class KernelCheck(Strict):
    """Published dispatch/combine kernel times or bandwidths (not used by the model; tests assert I18, and I24 for
    ``kernel: dedup``, against them). ``nodes_hit``: distinct nodes a token reaches under the benchmark's routing
    (the count its bandwidth figure divides by; ``note`` says how it follows)."""

    id: str
    source: str
    locator: str
    system: str
    kernel: Literal["all-to-all", "dedup"] = "all-to-all"
    dispatch_bytes_per_token: float
    combine_bytes_per_token: float
    experts_per_token: int
    expert_groups: int | None = None
    groups_per_token: int | None = None
    columns: list[Literal["ep", "tokens_per_rank", "dispatch_us", "combine_us", "dispatch_gb_per_s",
                          "combine_gb_per_s", "nodes_hit"]]
    rows: list[list[float]]
    note: str | None = None


class HostOverhead(Strict):
    """t_host of one serving stack (I19): an instance on one scale-up domain, and one whose attention-DP ranks
    span several (batch synchronization across nodes)."""

    single_node: Quantity
    multi_node: Quantity


class DenseScope(Strict):
    """Why a stack's own t_layer (I34) also applies to dense models: the published row that shows it."""

    source: str
    locator: str
    note: str


class SmallBatchCosts(Strict):
    id: str
    moe_kernel_floor: KernelFloors
    host_overhead: dict[str, HostOverhead]
    layer_overhead: dict[str, Quantity] = {}  # I21: chip family -> fixed time per layer of a MoE model
    # I34: serving stack -> chip family -> its own t_layer; a stack listed here runs only on those families
    stack_layer_overhead: dict[str, dict[str, Quantity]] = {}
    # I34: the stacks whose own t_layer applies to dense models too (the others: MoE models only)
    stack_layer_overhead_dense: dict[str, DenseScope] = {}
    checks: list[KernelCheck]


@lru_cache(maxsize=1)
def record() -> SmallBatchCosts:
    return parse_item(Path(builtin_dir()) / "inference" / "small-batch-costs.yaml", SmallBatchCosts)


def moe_kernel_floor_s(op: Literal["dispatch", "combine"]) -> float:
    """alpha of I18 (s): least time of one MoE dispatch or combine kernel."""
    return float(si(getattr(record().moe_kernel_floor, op)))


def serving_stacks() -> tuple[str, ...]:
    """The stacks: overlapped, those with exposed host time (I19) and those with their own t_layer (I34; host
    time overlapped unless also listed under I19)."""
    rec = record()
    return (OVERLAPPED, *rec.host_overhead, *(s for s in rec.stack_layer_overhead if s not in rec.host_overhead))


def check_stack(stack: str | None) -> str:
    stack = stack or OVERLAPPED
    if stack not in serving_stacks():
        raise UsageError(f"--serving-stack: expected one of {', '.join(serving_stacks())}, got {stack!r}")
    return stack


def host_overhead_s(stack: str | None, multi_node=False):
    """t_host of I19 (s): host time per iteration left on the critical path by serving stack ``stack``
    (None or ``overlapped``: 0, the scheduler runs one batch ahead of the GPU). ``multi_node`` (bool or
    array over plans): the instance spans more than one scale-up domain, so its attention-DP ranks
    synchronize their batches across nodes every iteration."""
    stack = check_stack(stack)
    if stack not in record().host_overhead:  # overlapped, or a stack with only its own t_layer (I34)
        return np.zeros(np.shape(multi_node)) if np.ndim(multi_node) else 0.0
    rec = record().host_overhead[stack]
    single, multi = float(si(rec.single_node)), float(si(rec.multi_node))
    return np.where(multi_node, multi, single) if np.ndim(multi_node) else (multi if multi_node else single)


def check_stack_family(stack: str | None, family: str) -> str:
    """``stack`` (checked) where it may run on chip ``family``: a stack with its own t_layer (I34) is calibrated
    on the families it lists and only those."""
    stack = check_stack(stack)
    scope = record().stack_layer_overhead.get(stack)
    if scope is not None and family not in scope:
        raise UsageError(f"--serving-stack: {stack} is a stack of {', '.join(sorted(scope))} chips, "
                         f"not of the plan's {family}")
    return stack


def layer_overhead_s(family: str, moe: bool, stack: str | None = None,
                     ep: ArrayLike | None = None) -> float | np.ndarray:
    """t_layer of I21 (s): fixed GPU time per layer of a forward pass of a MoE model on chip ``family``
    beyond the priced kernels (calibrated, ``supernode.infer.calibration``); 0 for a dense model and for a
    family without a calibration (unknown, not guessed). ``stack``: the serving stack; one calibrated on
    ``family`` (I34, ``stack_layer_overhead``) replaces the family's value. ``ep`` (a number or an array of
    plans' expert-parallel degrees; None: as with expert parallelism): the family's value applies where the MoE
    layers run expert parallelism (ep > 1), the deployment class it was calibrated on (attention DP16 with EP16 and
    DeepEP on two H200 nodes); experts sharded by tensor parallelism (ep 1) take none of it (stop 31: SGLang's TP8
    H200 runs in InferenceX's tables show no such residual). A stack's own value (I34) applies at every ep: it was
    calibrated at ep 1 and checked at EP16. ``moe`` False (a dense model): 0, unless the stack's own value is scoped
    to dense models too (``stack_layer_overhead_dense``: SGLang's Ascend backend since stop 42)."""
    rec = record()
    t, every_ep = 0.0, True
    own = rec.stack_layer_overhead.get(stack or OVERLAPPED, {}).get(family)
    if own is not None and (moe or (stack or OVERLAPPED) in rec.stack_layer_overhead_dense):
        t = float(si(own))
    elif moe:
        q = rec.layer_overhead.get(family)
        t = float(si(q)) if q is not None else 0.0
        every_ep = False
    return t if ep is None else np.where(every_ep | (np.asarray(ep) > 1), t, 0.0)


def describe(stack: str | None, moe: bool = True) -> str:
    """One line for the assumptions list; ``moe`` False (a dense model) says the stack's own per-layer time,
    calibrated on MoE models only, is not applied."""
    stack = check_stack(stack)
    rec = record()
    overlapped = ("host scheduling overlapped with the GPU (no per-iteration host time, I19); overlap hides host "
                  "work only up to the GPU step, so with ~1,000 requests per rank and short steps the estimate may "
                  "be optimistic")
    if stack == OVERLAPPED:
        return overlapped
    if stack in rec.host_overhead:
        h = rec.host_overhead[stack]
        line = (f"serving stack {stack}: {float(si(h.single_node)) * 1e3:.2f} ms (one node) / "
                f"{float(si(h.multi_node)) * 1e3:.2f} ms (attention DP across nodes) of host time per iteration not "
                "overlapped with the GPU (I19)")
    else:
        line = f"serving stack {stack}: {overlapped}"
    own = rec.stack_layer_overhead.get(stack, {})
    if own:
        per = ", ".join(f"{fam} {float(si(q)) * 1e6:.0f} us" for fam, q in sorted(own.items()))
        dense = stack in rec.stack_layer_overhead_dense
        line += f"; its own fixed time per layer{'' if dense else ' of a MoE model'} (I34): {per}"
        if not moe and dense:
            line += (" - applied to this dense model too: calibrated on a MoE row, it matches a dense row of the same "
                     "stack (stop 42)")
        elif not moe:
            line += (" - not applied to this dense model: no dense model is calibrated on this stack, so its "
                     "per-layer costs are not priced (the estimate is optimistic by an amount not known)")
    return line
