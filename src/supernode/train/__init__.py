"""LLM training model: step time and memory under a parallel plan, plan search, validation.

``estimate(model, cluster, workload, plan)`` evaluates one or many configurations (arrays);
``search(...)`` returns the best plans; ``train_plans(...)`` is the dictionary API used by the CLI;
``training_answers(catalog)`` is a report section (registered in ``supernode.report.REPORT_SECTIONS``).
"""

import supernode.workload  # noqa: F401  (registers the models kind)
from supernode.train.answers import training_answers
from supernode.train.api import train_plans
from supernode.train.plan import Plan, TrainWorkload
from supernode.train.search import search
from supernode.train.step import StepBreakdown, estimate

__all__ = ["Plan", "TrainWorkload", "StepBreakdown", "estimate", "search", "train_plans", "training_answers"]


def _register() -> None:
    from supernode import report

    if training_answers not in report.REPORT_SECTIONS:
        report.REPORT_SECTIONS.append(training_answers)


_register()
