"""Inference performance model: prefill and decode step times, memory verdict, SLO-bound serving
search (co-located and prefill/decode-disaggregated) for dense and MoE models. Formulas: docs/inference.md.

Public API: :func:`search`, :func:`estimate_decode`, :func:`estimate_prefill`, :class:`Workload`,
:class:`SLO`, :func:`inference_answers`, :func:`serving_arch`.
"""

from supernode.infer.answers import inference_answers
from supernode.infer.arch import ServingArch, serving_arch
from supernode.infer.search import estimate_decode, estimate_prefill, search
from supernode.infer.serving import SLO, Workload

__all__ = ["ServingArch", "SLO", "Workload", "estimate_decode", "estimate_prefill", "inference_answers", "search",
           "serving_arch"]


def _register() -> None:
    from supernode import report

    if inference_answers not in report.REPORT_SECTIONS:
        report.REPORT_SECTIONS.append(inference_answers)


_register()
