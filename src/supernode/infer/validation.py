"""Inference validation cases (``validation/cases/infer-*.yaml``): predict each measured figure
with the same estimate the CLI uses and compare. A case says ``expected: pass`` or ``xfail``
(a known, explained gap that must turn red when fixed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from supernode.catalog.loader import Catalog
from supernode.errors import SupernodeError, UsageError
from supernode.hardware import resolve_cluster


@dataclass(frozen=True)
class CaseResult:
    id: str
    kind: str
    measured: float
    predicted: float
    unit: str
    tolerance: float
    expected: str
    family: str = ""  # the chip family of the case's system
    # sequences in flight per chip in the estimate (decode and offline cases; None for prefill)
    sequences_per_chip: float | None = None

    @property
    def error_fraction(self) -> float:
        return self.predicted / self.measured - 1.0

    @property
    def within(self) -> bool:
        return abs(self.error_fraction) <= self.tolerance


def case_files(root: Path) -> list[Path]:
    """The inference cases of ``root``: every ``*.yaml`` whose ``kind`` is an inference kind (``CASE_INPUTS``),
    whatever its name (the shipped ones are named ``infer-*.yaml``). Any kind is checked by
    :func:`supernode.train.validation.load_cases`, which refuses a file that is no case."""
    from supernode.catalog.loader import read_yaml

    out = []
    for p in sorted(Path(root).glob("*.yaml")):
        raw = read_yaml(p)
        if isinstance(raw, dict) and raw.get("kind") in CASE_INPUTS:
            out.append(p)
    return out


# The inputs each case kind reads (``estimate``). Any other key is refused with a one-line error rather than silently
# ignored: a misspelt or misplaced fact of the source would otherwise leave the estimate at a default.
_COMMON_INPUTS = frozenset({
    "model", "system", "chips", "precision", "kv_precision", "attention_precision", "tp", "pp", "dp", "ep",
    "micro_batch_overlap", "expert_balance", "serving_stack", "module_precision", "effective_bits", "glue_fusion",
    "moe_backend", "shared_experts_stream", "weight_offload", "moe_comm"})
CASE_INPUTS = {
    "decode": _COMMON_INPUTS | {"batch_per_rank", "context_tokens", "draft_tokens", "acceptance_length"},
    "prefill": _COMMON_INPUTS | {"input_tokens", "tokens_per_rank", "prefill_dispatch"},
    "offline": _COMMON_INPUTS | {
        "batch", "max_batch", "input_tokens", "output_tokens", "lengths", "lengths_output_mean_tokens",
        "max_output_tokens", "requests", "prefill_chunk_tokens", "max_num_tokens", "moe_dp_padding", "admission",
        "draft_tokens", "acceptance_length"},
}


_REQUIRED_INPUTS = {
    "decode": ("model", "system", "precision", "tp", "pp", "dp", "ep", "batch_per_rank", "context_tokens"),
    "prefill": ("model", "system", "precision", "tp", "pp", "dp", "ep", "input_tokens", "tokens_per_rank"),
    "offline": ("model", "system", "precision"),
}


def _check_inputs(kind: str, x: dict) -> None:
    """One-line errors for a case's inputs: an unknown kind, an input its kind does not read, a missing one."""
    if kind not in CASE_INPUTS:
        raise UsageError(f"kind: unknown inference case kind {kind!r}; expected one of {', '.join(CASE_INPUTS)}")
    unknown = sorted(set(x) - CASE_INPUTS[kind])
    if unknown:
        raise UsageError(f"inputs: {unknown[0]}: not an input of a {kind} case; expected some of "
                         f"{', '.join(sorted(CASE_INPUTS[kind]))}")
    missing = [k for k in _REQUIRED_INPUTS[kind] if k not in x]
    if kind == "offline" and "lengths" not in x:
        missing += [k for k in ("input_tokens", "output_tokens") if k not in x]
    if missing:
        extra = " (or lengths: a length file)" if kind == "offline" and "lengths" not in x else ""
        raise UsageError(f"inputs: {missing[0]}: missing; a {kind} case needs {', '.join(_REQUIRED_INPUTS[kind])}"
                         + (", input_tokens, output_tokens" + extra if kind == "offline" else ""))


def _samples(x: dict, base: Path | None):
    """The case's request lengths (:class:`LengthSamples`): ``input_tokens`` / ``output_tokens``, or ``lengths:`` a
    length file (I27) relative to the case file's folder, whose outputs stop at ``max_output_tokens`` (the engine's
    output limit) and are rescaled to ``lengths_output_mean_tokens`` (the run's own measured mean)."""
    from supernode.infer.finite_run import LengthSamples
    from supernode.infer.lengths import read_length_samples

    if "lengths" not in x:
        return LengthSamples.fixed(x["input_tokens"], x["output_tokens"])
    path = Path(x["lengths"])
    return read_length_samples(path if path.is_absolute() or base is None else base / path,
                               output_mean_tokens=x.get("lengths_output_mean_tokens"),
                               max_output_tokens=x.get("max_output_tokens"))


def _workload(x: dict, samples):
    """The case's :class:`Workload`: fixed lengths, or the means and effective lengths of ``samples`` (I27)."""
    from supernode.infer.serving import Workload

    if "lengths" not in x:
        return Workload(x["input_tokens"], x["output_tokens"])
    return samples.workload()


def predict(catalog: Catalog, case: dict, base: Path | None = None) -> float:
    """The case's metric predicted by the model (unit as the case's metric); ``base``: the case file's folder."""
    return estimate(catalog, case, base)[0]


def estimate(catalog: Catalog, case: dict, base: Path | None = None) -> tuple[float, dict]:
    """The case's predicted metric and the estimate's plan view (``plan``, ``batch``: the sequences in flight, or
    prompts for a prefill case, per instance of ``plan.chips_per_instance`` chips)."""
    from supernode.infer.search import estimate_decode, estimate_prefill, search
    from supernode.infer.serving import DEFAULT_PREFILL_CHUNK

    x = dict(case["inputs"])
    kind = case["kind"]
    _check_inputs(kind, x)
    bal = {"expert_balance": x["expert_balance"]} if "expert_balance" in x else {}  # a fact of the source (I17)
    # serving_stack: a fact of the source (I19); absent = "overlapped" (host scheduling hidden behind the GPU)
    stack = {"serving_stack": x["serving_stack"]} if "serving_stack" in x else {}
    # module_precision: a fact of the source (I20), part -> weight format (a mapping) or a recipe name; absent = every
    # part at precision
    mods = {"module_precision": x["module_precision"]} if "module_precision" in x else {}
    # effective_bits: the checkpoint's ModelOpt AutoQuantize target, a fact of the run's configuration (I32); absent =
    # every part left at precision stored at it
    mods.update({"effective_bits": x["effective_bits"]} if "effective_bits" in x else {})
    # glue_fusion: the stack's glue-kernel fusions, a fact of the source (I22); absent = "unfused"
    fusion = {"glue_fusion": x["glue_fusion"]} if "glue_fusion" in x else {}
    # moe_backend: the stack's kernels for the routed experts, a fact of the source (I37); absent = "grouped"
    fusion.update({"moe_backend": x["moe_backend"]} if "moe_backend" in x else {})
    # shared_experts_stream: the MoE shared experts on a second stream in CUDA-graph passes, a fact of the source
    # (I38); absent = "serial". A prefill pass never takes it (SGLang runs prefill outside CUDA graphs)
    stream = {"shared_experts_stream": x["shared_experts_stream"]} if "shared_experts_stream" in x else {}
    # weight_offload: [G, N], the run's layer-wise offload of routed experts to host memory (I26); absent = none
    fusion.update({"weight_offload": x["weight_offload"]} if "weight_offload" in x else {})
    # moe_comm: how the run's attention-DP ranks reach the experts, a fact of its stack, system and release (I41);
    # absent = "all-to-all"
    fusion.update({"moe_comm": x["moe_comm"]} if "moe_comm" in x else {})
    if kind == "decode":
        r = estimate_decode(catalog, x["model"], x["system"], x.get("chips"), context_tokens=x["context_tokens"],
                            batch_per_rank=x["batch_per_rank"], tp=x["tp"], pp=x["pp"], dp=x["dp"], ep=x["ep"],
                            precision=x["precision"], kv_precision=x.get("kv_precision", "bf16"),
                            draft_tokens=x.get("draft_tokens", 0), acceptance_length=x.get("acceptance_length", 1.0),
                            attention_precision=x.get("attention_precision"), overlap=x.get("micro_batch_overlap"),
                            **bal, **stack, **mods, **fusion, **stream)
        return r["decode_tokens_per_s_per_chip"], r
    if kind == "prefill":
        if stream:
            raise UsageError("shared_experts_stream: a prefill pass runs outside CUDA graphs, in series (I38); "
                             "expected no such input on a prefill case")
        r = estimate_prefill(catalog, x["model"], x["system"], x.get("chips"), input_tokens=x["input_tokens"],
                             tokens_per_rank=x["tokens_per_rank"], tp=x["tp"], pp=x["pp"], dp=x["dp"], ep=x["ep"],
                             precision=x["precision"], kv_precision=x.get("kv_precision", "bf16"),
                             attention_precision=x.get("attention_precision"), overlap=x.get("micro_batch_overlap"),
                             # the prefill MoE kernels, a fact of the stack (I24); absent = "dedup"
                             **({"prefill_dispatch": x["prefill_dispatch"]} if "prefill_dispatch" in x else {}),
                             **bal, **stack, **mods, **fusion)
        return r["prefill_tokens_per_s_per_chip"], r
    if kind == "offline":
        # batch: the run's sequences in flight; max_batch: the engine's cap on them (the run holds as many as fit
        # under it); neither: as many as fit (the search's memory-filled batch)
        fixed = {k: x[k] for k in ("tp", "pp", "dp", "ep", "batch", "max_batch") if k in x}
        if "micro_batch_overlap" in x:  # a fact of the serving stack (absent: the faster of with and without)
            fixed["overlap"] = bool(x["micro_batch_overlap"])
        # requests: the requests the run issued (MLPerf: LoadGen's padded query): a finite run timed to its last
        # token, drain included (I28); absent = the steady state
        samples = _samples(x, base)
        finite = {"requests": x["requests"], "length_samples": samples} if "requests" in x else {}
        # draft_tokens / acceptance_length: the run's speculative decoding (draft steps, the accept length as the
        # run printed it), facts of its configuration and log; absent = none
        r = search(catalog, x["model"], x["system"], x.get("chips"),
                   workload=_workload(x, samples), precision=x["precision"], **finite,
                   draft_tokens=x.get("draft_tokens", 0), acceptance_length=x.get("acceptance_length", 1.0),
                   kv_precision=x.get("kv_precision", "bf16"), fixed=fixed, disaggregated=False,
                   attention_precision=x.get("attention_precision"), **bal, **stack, **mods, **fusion, **stream,
                   moe_dp_padding=bool(x.get("moe_dp_padding", False)),  # a fact of the stack (I23)
                   admission=x.get("admission", "independent"),  # a fact of the run (I15)
                   # prefill_chunk_tokens: the run's chunked-prefill budget, a fact of its configuration; absent
                   # (and no max_num_tokens) = the stacks' common default, 8,192, never the search's choice (I39)
                   **({"prefill_chunk_tokens": int(x["prefill_chunk_tokens"])} if "prefill_chunk_tokens" in x else
                      {} if "max_num_tokens" in x else {"prefill_chunk_tokens": DEFAULT_PREFILL_CHUNK}),
                   # max_num_tokens: the engine's token budget per rank and iteration, decode tokens counted (I29), a
                   # fact of the run's configuration; absent = none
                   **({"max_num_tokens": x["max_num_tokens"]} if "max_num_tokens" in x else {}))
        if finite:
            return r["colocated"]["finite_run"]["decode_tokens_per_s"], r["colocated"]
        return r["colocated"]["decode_tokens_per_s"], r["colocated"]
    raise AssertionError(kind)  # unreachable: _check_inputs refuses an unknown kind


def _check_case(case) -> None:
    """One-line errors for a case file's shape: the fields ``run_case`` reads, then its inputs (``_check_inputs``)."""
    if not isinstance(case, dict):
        raise UsageError("(top level): expected a mapping with id, kind, source, metric, inputs, tolerance")
    for key in ("id", "kind", "inputs", "metric", "tolerance"):
        if key not in case:
            raise UsageError(f"{key}: required field is missing")
    metric, inputs = case["metric"], case["inputs"]
    if not isinstance(inputs, dict):
        raise UsageError("inputs: expected a mapping of input names to values")
    if not isinstance(metric, dict) or "value" not in metric or "unit" not in metric:
        raise UsageError("metric: expected a mapping with value and unit")
    value, tolerance = metric["value"], case["tolerance"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UsageError(f"metric.value: expected a positive number, got {value!r}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 < tolerance <= 1:
        raise UsageError(f"tolerance: expected a fraction in (0, 1], got {tolerance!r}")
    if case.get("expected", "pass") not in ("pass", "xfail"):
        raise UsageError(f"expected: expected pass or xfail, got {case.get('expected')!r}")
    _check_inputs(case["kind"], inputs)


def run_case(catalog: Catalog, path: Path) -> CaseResult:
    """One case file against the model; a malformed file or a bad input value gives a one-line error that names the
    file."""
    from supernode.catalog.loader import read_yaml

    case = read_yaml(Path(path))
    try:
        _check_case(case)
    except SupernodeError as err:
        raise type(err)(f"{path}: {err}") from err
    try:
        predicted, view = estimate(catalog, case, Path(path).parent)
        x = case["inputs"]
        family = resolve_cluster(catalog, x["system"], x.get("chips")).chip.family
    except SupernodeError as err:  # e.g. "--admission: expected ..." -> "<file>: inputs: --admission: expected ..."
        raise type(err)(f"{path}: inputs: {err}") from err
    per_chip = None if case["kind"] == "prefill" else float(view["batch"]) / view["plan"]["chips_per_instance"]
    return CaseResult(case["id"], case["kind"], float(case["metric"]["value"]), float(predicted),
                      case["metric"]["unit"], float(case["tolerance"]), case.get("expected", "pass"), family, per_chip)

