"""Calibration of the serving model's fixed costs on a published decode table
(``data/calibration/serving/*.yaml``; docs/inference.md, I19 and I21).

The table is SGLang's two-node H200 decode of DeepSeek-V3 (attention DP16 + EP16, 2 requests per rank,
65,536-token prompts), run once without and once with the overlap scheduler:

    t_host (I19, cross-node attention DP) = b/X_no_overlap - b/X_overlap
        the host time per iteration that the overlap scheduler hides (b requests per rank, X tokens/s
        per rank; one token per request and step without speculative decoding);
    t_layer (I21, per layer of a MoE model on the family) = (b/X_overlap - T_model) / L
        the GPU time of the overlapped step that the model's priced items (GEMMs with their kernel floors,
        attention, the all-to-all kernels, I4-I18) leave unexplained, spread over the L layers of the pass;
        T_model is the model's step at the row with t_layer taken out.

Both values are what ``data/inference/small-batch-costs.yaml`` records; the test suite re-derives them
from the table (tests/test_serving_calibration.py), so a model change that moves them is caught. The
table is calibration data, never a validation case; its MTP rows are validation cases.

A table that names a ``serving_stack`` calibrates that stack's own t_layer on the family (I34,
``stack_layer_overhead``): SGLang's Ascend backend decoding one Qwen3-235B request with EAGLE3 on one Atlas 800I
A3 server. With m draft passes per verify iteration and acceptance a, the measured iteration is b a / X and

    t_layer = (b a / X - T_model) / (L + m),   T_model = T_stage + m T_draft without t_layer,

each draft pass being one block's pass (I14), which I21 charges one t_layer. A table without the no-overlap row
gives no t_host.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from supernode.catalog.loader import Catalog, builtin_dir, parse_item
from supernode.catalog.schema import Strict


class ServingCalibration(Strict):
    id: str
    kind: Literal["serving"]
    description: str
    source: str
    locator: str
    model: str
    system: str
    chips: int
    precision: str
    kv_precision: str
    tp: int
    dp: int
    ep: int
    expert_balance: str
    requests_per_rank: int
    input_tokens: float
    output_tokens: float
    no_overlap_tokens_per_s_per_rank: float | None = None  # absent: the table gives no host time (I19)
    overlap_tokens_per_s_per_rank: float
    draft_tokens: int = 0  # draft passes per verify iteration (I14)
    acceptance_length: float = 1.0  # tokens emitted per verify iteration
    module_precision: dict[str, str] | None = None  # I20
    serving_stack: str | None = None  # the stack whose own t_layer the table calibrates (I34); None: the family's
    note: str | None = None


def serving_tables() -> list[ServingCalibration]:
    folder = builtin_dir() / "calibration" / "serving"
    return [parse_item(p, ServingCalibration) for p in sorted(Path(folder).glob("*.yaml"))]


@dataclass(frozen=True)
class FixedCostFit:
    table: ServingCalibration
    measured_step_s: float  # overlapped iteration: b a / X_overlap
    host_s: float | None  # t_host of I19 for this deployment; None: the table has no no-overlap row
    modelled_step_s: float  # the model's iteration at the row (stage + drafts), without t_layer
    layers: int  # block passes per iteration charged t_layer: the model's layers + the draft passes
    family: str
    layer_overhead_s: float  # t_layer of I21 (I34 for a table that names a serving stack)


def fit(catalog: Catalog, table: ServingCalibration) -> FixedCostFit:
    from supernode.infer import fixed_costs
    from supernode.infer.search import estimate_decode
    from supernode.hardware import resolve_cluster
    from supernode.workload import load_model

    b, a, m = float(table.requests_per_rank), table.acceptance_length, table.draft_tokens
    step_overlap = b * a / table.overlap_tokens_per_s_per_rank
    host = (None if table.no_overlap_tokens_per_s_per_rank is None
            else b * a / table.no_overlap_tokens_per_s_per_rank - step_overlap)
    r = estimate_decode(catalog, table.model, table.system, table.chips,
                        context_tokens=table.input_tokens + table.output_tokens / 2.0,
                        batch_per_rank=table.requests_per_rank, tp=table.tp, pp=1, dp=table.dp, ep=table.ep,
                        precision=table.precision, kv_precision=table.kv_precision,
                        expert_balance=table.expert_balance, draft_tokens=m, acceptance_length=a,
                        module_precision=table.module_precision, serving_stack=table.serving_stack)
    passes = load_model(catalog, table.model).layers + m
    family = resolve_cluster(catalog, table.system, table.chips).chip.family
    t_now = float(fixed_costs.layer_overhead_s(family, True, table.serving_stack, table.ep))
    br = r["breakdown"]
    modelled = float(br["stage_s"]) + float(br.get("draft_s", 0.0)) - passes * t_now
    return FixedCostFit(table, step_overlap, host, modelled, passes, family, (step_overlap - modelled) / passes)
