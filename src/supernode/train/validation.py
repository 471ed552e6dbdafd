"""Validation of the training model against published measurements (``validation/cases/*.yaml``).

Each case states its source and locator, the exact metric definition, the inputs (model, hardware,
precision, batch, and the published plan), the measured value, a tolerance, and notes. Degrees the
publication does not give are chosen by the search (best plan), which the case says in
``searched``. A known gap is ``expected_failure: <reason>``; it must fail (strict), so it turns red
when the model improves. Efficiencies are per chip family (data/efficiency), never per case.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from supernode.catalog.loader import Catalog, parse_item
from supernode.catalog.schema import Strict
from supernode.hardware import resolve_cluster
from supernode.train.plan import TrainWorkload
from supernode.train.search import search
from supernode.workload.model import load_model
from supernode.workload.shapes import megatron_flops_per_step


class Metric(Strict):
    name: Literal["step_time_s", "megatron_tflops_per_chip", "megatron_model_tflops_per_chip", "tokens_per_s"]
    value: float = Field(gt=0)
    unit: str
    definition: str


class CaseInputs(Strict):
    model: str
    on: str
    chips: int | None = None
    precision: str = "bf16"
    seq_len: int
    global_batch: int
    attention_kernel: Literal["flash", "unfused"] = "flash"
    grad_dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    param_dtype: Literal["bf16", "fp16", "fp8"] = "bf16"
    schedule: Literal["1f1b", "dualpipe"] = "1f1b"
    pipeline_split: Literal["uniform", "balanced"] = "uniform"
    ep_dispatch: Literal["all-to-all", "dedup"] = "all-to-all"
    cp_comm: Literal["ring", "all-gather"] = "ring"
    plan: dict[str, Any] = {}


class Case(Strict):
    id: str
    kind: Literal["train"]
    title: str
    source: str
    locator: str
    metric: Metric
    inputs: CaseInputs
    searched: str | None = None
    tolerance: float = Field(gt=0, le=1)
    expected_failure: str | None = None
    notes: str | None = None
    history: str | None = None  # how the model's figure for this case moved, and why


@dataclass(frozen=True)
class CaseResult:
    case: Case
    predicted: float
    measured: float
    error_fraction: float  # predicted / measured - 1
    plan: dict[str, Any]
    step_time_s: float

    @property
    def within(self) -> bool:
        return abs(self.error_fraction) <= self.case.tolerance


def cases_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "validation" / "cases"


def load_cases(folder: Path | None = None) -> list[Case]:
    """Training cases (``kind: train``) of ``folder``; the inference kinds are skipped (they are read by
    :func:`supernode.infer.validation.case_files`), and a file of any other kind, or a folder with no ``*.yaml``,
    is a one-line error: a case that silently drops out of validation would read as a pass."""
    from supernode.catalog.loader import read_yaml
    from supernode.errors import UsageError
    from supernode.infer.validation import CASE_INPUTS

    folder = folder or cases_dir()
    if not folder.is_dir():
        raise UsageError(f"--cases: folder {folder} not found (the cases ship with the source checkout's "
                         "validation/cases; pass --cases DIR)")
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise UsageError(f"--cases: no case files (*.yaml) in {folder}")
    out = []
    for p in files:
        raw = read_yaml(p)
        kind = raw.get("kind") if isinstance(raw, dict) else None
        if kind == "train":
            out.append(parse_item(p, Case))
        elif kind not in CASE_INPUTS:
            raise UsageError(f"{p}: kind: expected train or an inference kind ({', '.join(CASE_INPUTS)}), "
                             f"got {kind!r}")
    return out


def run_case(catalog: Catalog, case: Case) -> CaseResult:
    """Predict the case's metric with the model (published degrees fixed, the rest searched)."""
    i = case.inputs
    m = load_model(catalog, i.model)
    cluster = resolve_cluster(catalog, i.on, i.chips)
    w = TrainWorkload(i.global_batch, i.seq_len, i.precision, attention_kernel=i.attention_kernel,
                      grad_dtype=i.grad_dtype, param_dtype=i.param_dtype, schedule=i.schedule,
                      pipeline_split=i.pipeline_split, ep_dispatch=i.ep_dispatch, cp_comm=i.cp_comm)
    res = search(m, cluster, w, fixed=dict(i.plan), top=1)
    row = res.breakdown.row(0)
    step = float(row["step_time_s"])
    N = cluster.chips
    name = case.metric.name
    if name == "step_time_s":
        pred = step
    elif name == "tokens_per_s":
        pred = w.tokens_per_step / step
    elif name == "megatron_tflops_per_chip":
        pred = megatron_flops_per_step(m, i.global_batch, i.seq_len, True) / step / N / 1e12
    else:
        pred = megatron_flops_per_step(m, i.global_batch, i.seq_len, False) / step / N / 1e12
    meas = case.metric.value
    return CaseResult(case, pred, meas, pred / meas - 1.0, res.plans.row(0), step)


def summary(results: list[CaseResult]) -> dict[str, Any]:
    errs = np.array([abs(r.error_fraction) for r in results]) if results else np.array([0.0])
    return {"cases": len(results), "median_abs_error_fraction": float(np.median(errs)),
            "mean_abs_error_fraction": float(np.mean(errs)), "max_abs_error_fraction": float(np.max(errs)),
            "outside_tolerance": [r.case.id for r in results if not r.within and not r.case.expected_failure],
            "expected_failures": [r.case.id for r in results if r.case.expected_failure]}
