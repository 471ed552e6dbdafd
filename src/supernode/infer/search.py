"""Serving search: the best plan meeting the SLOs, co-located and disaggregated, with energy and
cost per token. A loop over the same vectorized estimate a single plan uses (no second model)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from supernode import errors
from supernode.catalog.loader import Catalog, builtin_dir, parse_item
from supernode.catalog.schema import Quantity
from supernode.errors import CatalogError, UsageError
from supernode.hardware import ClusterSpec, device_cluster, resolve_cluster, si
from supernode.infer import balance, finite_run, fixed_costs, glue, kernels, offload, track_record
from supernode.infer.arch import ServingArch, serving_arch
from supernode.infer.plan import PlanGrid
from supernode.infer.moe_backend import describe as describe_moe_backend
from supernode.infer.shared_stream import describe as describe_shared_stream
from supernode.infer.precision import (UNQUANTIZED_PARTS, check_attention_precision, default_precision,
                                       describe_module_formats, format_names, module_formats, resolve_module_precision,
                                       weight_formats)
from supernode.infer.precision import recipes as precision_recipes
from supernode.infer.serving import (DEFAULT_PREFILL_CHUNK, SLO, Evaluation, Options, Workload,
                                     budget_tokens_per_sequence, evaluate_colocated,
                                     evaluate_decode, evaluate_prefill, grid, token_budget_batch, tokens_per_iteration,
                                     with_memory_filled)


class ServingAssumptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    usable_memory_fraction: Quantity
    amortisation_period: Quantity


@lru_cache(maxsize=1)
def assumptions_record() -> ServingAssumptions:
    return parse_item(Path(builtin_dir()) / "inference" / "serving-assumptions.yaml", ServingAssumptions)


def _check_sources(catalog: Catalog) -> None:
    rec = assumptions_record()
    for name in ("usable_memory_fraction", "amortisation_period"):
        src = getattr(rec, name).source
        if src not in catalog.sources:
            raise UsageError(f"data/inference/serving-assumptions.yaml: {name}.source: unknown source id {src!r}")
    for name, r in precision_recipes().recipes.items():
        for module, f in r.modules.items():
            if f.source not in catalog.sources:
                raise CatalogError(f"data/inference/precision-recipes.yaml: {name}.{module}.source: unknown source id "
                                 f"{f.source!r}")


@dataclass(frozen=True)
class Choice:
    """One chosen plan of an :class:`Evaluation` (index ``i``)."""

    ev: Evaluation
    i: int
    meets_slo: bool

    def as_dict(self, cluster: ClusterSpec) -> dict:
        ev, i = self.ev, self.i
        plan = ev.plan.row(i)
        n = plan["tp"] * plan["pp"] * plan["dp"]
        applied = ev.breakdown.overlap_applied
        overlap = bool(plan["overlap"]) and (applied is None or bool(np.asarray(applied)[i]))
        out = {
            "plan": {"tp": plan["tp"], "pp": plan["pp"], "attention_dp": plan["dp"], "ep": plan["ep"],
                     "batch": plan["batch"], "micro_batch_overlap": overlap, "chips_per_instance": n},
            "meets_slo": self.meets_slo,
            "ttft_s": float(ev.ttft_s[i]), "tpot_s": float(ev.tpot_s[i]),
            "prefill_tokens_per_s_per_chip": float(ev.prefill_tokens_per_s_per_chip[i]),
            "decode_tokens_per_s_per_chip": float(ev.decode_tokens_per_s_per_chip[i]),
            "batch": plan["batch"],
            "memory_bytes_per_chip": float(ev.memory.total_bytes[i]),
            "fits": bool(ev.memory.fits[i]),
            "memory": ev.memory.row(i),
            "breakdown": ev.breakdown.row(i),
        }
        return out


_PACKAGE_BYTES = ("weights_bytes", "kv_cache_bytes", "activation_bytes", "total_bytes", "usable_bytes",
                  "capacity_bytes")
_PACKAGE_COUNTS = ("chips_used", "prefill_chips", "decode_chips")


# the degrees and caps a caller may fix (``fixed`` of :func:`search`): tp, pp, attention DP, EP, the batch per instance,
# two-micro-batch overlap (bool) and a cap on the batch (an engine's maximum batch)
FIXED_KEYS = ("tp", "pp", "dp", "ep", "batch", "overlap", "max_batch")


def _per_package(view: dict, d: int) -> dict:
    """A serving view computed on the runtime devices of :func:`supernode.hardware.device_cluster` (``d`` per
    package) in per-package units: per-chip rates and memory bytes times ``d``, chip counts over ``d``; a plan keeps
    its ranks (tp, attention DP and EP count devices) and gains ``devices_per_instance``. Tokens per joule and per
    dollar, times and batches do not change. ``d`` 1: the view itself."""
    if d <= 1:
        return view
    out: dict = {}
    for k, v in view.items():
        if k == "plan" and isinstance(v, dict):
            n = v["chips_per_instance"]
            v = {**v, "chips_per_instance": n / d, "devices_per_instance": n}
        elif k == "memory" and isinstance(v, dict):
            v = {kk: vv * d if kk in _PACKAGE_BYTES else vv for kk, vv in v.items()}
        elif isinstance(v, dict):
            v = _per_package(v, d)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            if k.endswith(("_per_chip", "_per_chip_used")):
                v = v * d
            elif k in _PACKAGE_COUNTS:
                v = v / d
        out[k] = v
    return out


def _pick(ev: Evaluation, key: np.ndarray) -> Choice | None:
    """Best ``key`` among plans that meet everything; else the best that fits memory (flagged)."""
    if ev.ok.any():
        return Choice(ev, int(np.argmax(np.where(ev.ok, key, -np.inf))), True)
    if ev.memory.fits.any():
        return Choice(ev, int(np.argmax(np.where(ev.memory.fits, key, -np.inf))), False)
    return None


PREFILL_PROMPTS_PER_RANK = [1, 2, 4, 8, 16, 32, 64]
# I39: the chunked-prefill budgets (prompt tokens per rank and iteration) the co-located search tries when neither
# --prefill-chunk nor --max-num-tokens is given: the operator's knob (vLLM max_num_batched_tokens, SGLang
# --chunked-prefill-size) that trades a TPOT stall per prompt chunk against TTFT. Of equal plans the search keeps the
# larger chunk; the stacks' common default (8,192) is among them, so the search never does worse than it; the
# smallest is vLLM V0's chunked-prefill default (512), below which MLA's per-chunk re-projection of the prefix
# (not priced) would grow large against the chunk's own work
PREFILL_CHUNK_CANDIDATES = (8192, 4096, 2048, 1024, 512)
assert DEFAULT_PREFILL_CHUNK in PREFILL_CHUNK_CANDIDATES
MAX_PREFILL_TOKENS_PER_RANK = 65536


DESCRIBE_ALLGATHER = (
    "MoE communication by all-gather and reduce-scatter (I41, --moe-comm allgather): the attention-DP ranks gather "
    "the group's tokens (NVFP4 for FP4 experts, else BF16) and reduce-scatter the BF16 outputs, each priced as half "
    "the family's library all-reduce of the gathered buffer; the MoE op's work over tokens a rank holds no expert for "
    "is not priced")


def _describe_prefill_dispatch(mode: str) -> str:
    if mode == "dedup":
        return ("prefill MoE dispatch/combine by high-throughput kernels (I24, DeepEP normal mode): a token crosses "
                "the scale-out fabric once per remote scale-up domain holding one of its experts and is forwarded "
                "over scale-up; decode and co-located iterations send every routed copy (low-latency kernels, I18)")
    return "prefill MoE dispatch/combine sends every routed copy to its expert's chip (all-to-all, I24)"


def _describe_chunks(budget_words: str) -> str:
    return (f"mean request lengths; steady state; co-located TTFT = prompt prefilled in chunks of {budget_words} per "
            "rank, mixed into decode iterations, no queueing before admission; "
            "an iteration carries a whole chunk or none, and a MoE instance's attention-DP ranks wait for the "
            "slowest (I15)")


def search(catalog: Catalog, model: str | ServingArch, on: str | ClusterSpec, chips: int | None = None, *,
           workload: Workload, slo: SLO = SLO(), precision: str | None = None, kv_precision: str = "bf16",
           draft_tokens: int = 0, acceptance_length: float = 1.0, fixed: dict | None = None,
           disaggregated: bool = True, prefill_chunk_tokens: int | None = None, max_num_tokens: int | None = None,
           attention_precision: str | None = None, expert_balance: str = balance.DEFAULT_MODE,
           serving_stack: str | None = None, module_precision=None, glue_fusion: str | None = None,
           moe_backend: str | None = None, moe_dp_padding: bool = False, admission: str = "independent",
           prefill_dispatch: str = "dedup", shared_experts_stream: str | None = None,
           weight_offload=None, requests: int | None = None,
           length_samples: finite_run.LengthSamples | None = None, effective_bits: float | None = None,
           moe_comm: str = "all-to-all") -> dict:
    """Best co-located and (optionally) disaggregated serving of ``model`` on ``on`` (system or chip
    id with ``chips``) for ``workload`` under ``slo``. ``fixed``: degrees the user fixes (``tp``, ``pp``, ``dp``,
    ``ep``, ``batch``; ``overlap``: True/False two-micro-batch overlap; ``max_batch``: a cap on the batch, as a
    serving engine's maximum batch). Unless the batch is fixed, each plan is tried at power-of-two batches per rank
    and at the largest batch that fits in memory (at most ``max_batch``). ``expert_balance``: the expert-load
    balancer of the deployment, ``eplb`` (default: EPLB with redundant experts, as large-EP deployments run),
    ``none`` or ``ideal`` (simulated balanced routing); I17. ``serving_stack``: None / ``overlapped`` (default: host
    scheduling hidden behind the GPU) or a stack in ``data/inference/small-batch-costs.yaml`` whose host
    time per iteration is exposed (I19) or which carries its own fixed time per MoE layer for the chip's family
    (I34; such a stack runs only on the families it is calibrated on). ``module_precision``: weight format per
    part, a mapping (``{"attention": "bf16", ...}``), ``"module=format,..."`` or a recipe name from
    ``data/inference/precision-recipes.yaml`` (I20); parts not named at ``precision``. ``glue_fusion``: the
    stack's glue-kernel fusions, a profile of ``data/inference/glue-fusions.yaml`` (I22; None: ``unfused``).
    ``moe_backend``: the stack's kernels for the routed experts, ``grouped`` (None, default: grouped GEMMs and glue
    kernels) or ``trtllm-fused`` (TensorRT-LLM's fused MoE op, I37; :mod:`supernode.infer.moe_backend`).
    ``shared_experts_stream``: ``serial`` (None, default) or ``overlap`` (the shared experts on a second stream beside
    the routed experts in passes without prompt tokens, SGLang's dual-stream MoE; I38, :mod:`supernode.infer.
    shared_stream`). ``moe_dp_padding``: the attention-DP ranks pad their MoE input to the largest rank's token count (I23,
    co-located serving). ``admission``: how the attention-DP ranks of an MoE instance admit prompts in co-located
    serving, ``independent`` (default) or ``aligned`` (the same iterations on every rank, as in a fixed-length
    offline run started all at once; I15). ``prefill_dispatch``: the MoE dispatch/combine kernels of prefill
    forwards, ``dedup`` (default: once per remote scale-up domain, DeepEP normal mode) or ``all-to-all`` (I24).
    ``weight_offload``: (G, N) or "G/N", N of every G layers' routed experts in host memory, prefetched over the
    host link (I26); None: every weight on the chip. ``requests``: also time a finite offline run of this many
    requests issued at once on the co-located plan, drain included (I28; ``colocated.finite_run``), with lengths
    drawn from ``length_samples`` (default: every request at the workload's means). ``prefill_chunk_tokens``: the
    prompt tokens a rank adds to an iteration (None: the co-located search tries ``PREFILL_CHUNK_CANDIDATES`` and keeps
    the best plan, I39, reported as ``colocated.prefill_chunk_tokens``; with ``max_num_tokens`` what that leaves);
    ``max_num_tokens``: the engine's token budget per rank and iteration counting decode and draft tokens too
    (TensorRT-LLM's max_num_tokens, vLLM's max_num_batched_tokens), which bounds the batch the engine sustains and
    the prompt tokens beside the decodes (I29). ``effective_bits``: the checkpoint's ModelOpt AutoQuantize target,
    mean bits per searched weight (I32): the parts left at ``precision`` are priced as a mix of it and FP16 with that
    mean (:func:`supernode.infer.precision.apply_effective_bits`); None: every such part at ``precision``.
    ``moe_comm``: how an MoE instance's attention-DP ranks reach the experts, ``all-to-all`` (default: the
    dispatch/combine kernels, I18 / I24) or ``allgather`` (every rank gathers the group's tokens and a reduce-scatter
    returns the outputs, TensorRT-LLM's 2025 MoE without MNNVL or with EP <= top-k; I41). Returns a JSON-ready dict
    (SI units)."""
    _check_sources(catalog)
    unknown = sorted(set(fixed or {}) - set(FIXED_KEYS))
    if unknown:
        raise UsageError(f"fixed: unknown key {unknown[0]!r} (expected one of {', '.join(FIXED_KEYS)})")
    if requests is not None:
        requests = finite_run.check_requests(requests)
    arch = serving_arch(catalog, model) if isinstance(model, str) else model
    _check_context_window(arch, workload)
    # the serving model runs on the runtime devices (one rank each: the Ascend 910C's two dies); per-chip figures are
    # reported per package (_per_package)
    cluster = device_cluster(resolve_cluster(catalog, on, chips) if isinstance(on, str) else on)
    d = cluster.devices_per_chip
    prec = precision or default_precision(cluster.chip)
    cluster.chip.peak(prec)  # one-line error when the chip lacks the format
    named = resolve_module_precision(module_precision) or {}
    modules = weight_formats(cluster.chip, prec, named, effective_bits)
    kept16 = [m for m in UNQUANTIZED_PARTS
              if m not in named and m in (modules or {}) and (m != "router" or arch.is_moe)]
    check_attention_precision(cluster.chip, attention_precision, kv_precision)
    opts = Options(prec, kv_precision, draft_tokens, acceptance_length, dict(fixed or {}), prefill_chunk_tokens,
                   attention_precision, expert_balance, modules, glue_fusion, moe_backend=moe_backend,
                   shared_experts_stream=shared_experts_stream, moe_dp_padding=bool(moe_dp_padding),
                   admission=admission, prefill_dispatch=prefill_dispatch, moe_comm=moe_comm,
                   weight_offload=offload.parse(weight_offload), max_num_tokens=max_num_tokens,
                   serving_stack=fixed_costs.check_stack_family(serving_stack, cluster.chip.family))
    budget_words = (f"{opts.chunk_cap:,.0f} prompt tokens" if max_num_tokens is None else
                    f"the prompt tokens a budget of {max_num_tokens:,} leaves beside the decode"
                    f"{' and draft' if draft_tokens else ''} tokens (I29)"
                    + (f", at most {prefill_chunk_tokens:,}" if prefill_chunk_tokens is not None else ""))
    rec = assumptions_record()
    usable = float(rec.usable_memory_fraction.number)
    eff = kernels.efficiency(cluster)
    assumptions = list(cluster.assumptions) + list(eff.assumptions) + [
        f"weights and GEMMs at {prec}{'' if precision else ' (default: the narrowest of fp8/int8/bf16 the chip has)'}"
        f"{' except the parts named below (I20)' if modules else ''}; "
        f"KV cache at {kv_precision}; attention at {attention_precision or 'bf16'}",
        f"usable memory = {usable:.2f} x capacity ({rec.usable_memory_fraction.note.strip().split(';')[0]})",
        (chunk_line := _describe_chunks(budget_words)),
    ]
    if modules:
        label = module_precision if isinstance(module_precision, str) else None
        assumptions.insert(len(assumptions) - 2, describe_module_formats(prec, modules, label))
    if kept16:
        assumptions.insert(len(assumptions) - 2, (
            f"{' and '.join(kept16)} at {modules[kept16[0]]} (I33): the quantization tools of the serving stacks "
            "(ModelOpt's default configurations, TensorRT-LLM's quantize script, AMD Quark's decoder-block recipe) "
            "leave them unquantized; name them in --module-precision to change"))
    if effective_bits is not None:
        assumptions.insert(len(assumptions) - 2, (
            f"effective bits {float(effective_bits):g} (I32): ModelOpt AutoQuantize stored each searched layer at "
            f"{prec} or unquantized (FP16), which layers not known; the parts left at {prec} are priced as the "
            "share-weighted mean of the two formats (their GEMMs, weight bytes and glue traffic), the LM head not "
            "searched"))
    if arch.is_moe:
        assumptions.append(balance.describe(expert_balance))
    assumptions.append(fixed_costs.describe(serving_stack, arch.is_moe))
    assumptions.append(glue.describe(glue_fusion))
    if arch.is_moe:
        assumptions.append(describe_moe_backend(eff, moe_backend, module_formats(prec, modules)["experts"]))
        if arch.model.moe.shared_experts:
            assumptions.append(describe_shared_stream(shared_experts_stream))
    assumptions.append(kernels.describe_tp_all_reduce(eff))
    sa = getattr(arch.model, "sparse_attention", None)
    if sa is not None:
        assumptions.append(
            f"sparse attention (I43): an indexer of {sa.index_heads} heads of {sa.index_head_dim} scores every cached "
            f"token at FP8 for each query token (replicated over TP; FP8 index keys, {sa.index_key_bytes:g} bytes per "
            f"token and layer, in the KV cache) and attention reads the top {sa.topk:,}; the sparse kernels are priced "
            "at the dense attention fractions (no sparse-kernel measurement entered)")
    if moe_dp_padding and arch.is_moe:
        assumptions.append("MoE input padded to the largest attention-DP rank's token count (I23): in an iteration "
                           "where one rank prefills, the routed experts see every rank at its load")
    if admission == "aligned" and arch.is_moe:
        assumptions.append("prompt admission aligned across the attention-DP ranks (I15): the ranks prefill in the "
                           "same iterations (a fixed-length offline run started all at once), so no rank waits "
                           "for another's prompt")
    if arch.is_moe and moe_comm == "allgather":
        assumptions.append(DESCRIBE_ALLGATHER)
    elif arch.is_moe and disaggregated:
        assumptions.append(_describe_prefill_dispatch(prefill_dispatch))
    if opts.weight_offload is not None:
        g, n = opts.weight_offload
        assumptions.append(f"weight offload (I26): the routed experts of {n} in every {g} layers in host memory, "
                           f"copied back over the host link while the resident layers run")
    if "overlap" in opts.fixed:
        assumptions.append("two-micro-batch overlap of communication with compute fixed "
                           + ("on" if opts.fixed["overlap"] else "off (the serving stack has none)"))
    if draft_tokens:
        assumptions.append(f"speculative decoding / MTP: {draft_tokens} draft token(s) verified per step, "
                           f"{acceptance_length:g} tokens accepted per step on average")
        assumptions.append(f"draft cost (I14): {draft_tokens} sequential pass(es) per step, after the verify pass on the "
                           "last stage, of " + ("the model's MTP module" if getattr(arch.model, "mtp_layers", 0) else
                                                "an EAGLE-style one-layer draft head of the model's own layer shape "
                                                "(the model has no MTP module; assumed)")
                           + ": one block + projection 2D -> D + the shared LM head, one token per sequence")

    plans = grid(arch, cluster, opts)
    if max_num_tokens is not None:
        assumptions.append(
            f"token budget (I29): {max_num_tokens:,} tokens per rank and iteration, decode and draft tokens counted, "
            "as TensorRT-LLM's max_num_tokens and vLLM's max_num_batched_tokens; a co-located batch is sustained only "
            "while b (1 + m) + b a I / O fits in it (a decode instance's while b (1 + m) does), and the memory-filled "
            "batch is capped there")
        per_sequence = budget_tokens_per_sequence(opts, workload)
        if max_num_tokens < per_sequence:
            raise UsageError(f"--max-num-tokens: a budget of {max_num_tokens:,} per rank and iteration sustains "
                             f"no co-located sequence, which needs {per_sequence:,.1f} tokens per iteration on "
                             f"average ({1 + draft_tokens} "
                             f"decode{' and draft' if draft_tokens else ''} + {per_sequence - 1 - draft_tokens:,.1f} "
                             f"prompt at input {workload.input_tokens:,.0f} / output {workload.output_tokens:,.0f})")
        if "batch" in opts.fixed:
            decode = tokens_per_iteration(plans, opts, workload)[0]
            over = decode >= max_num_tokens
            if over.all():
                raise UsageError(f"--batch: {opts.fixed['batch']} sequences need at least {decode.min():,.0f} decode "
                                 f"tokens per rank and iteration, which leaves no room for prompts in "
                                 f"--max-num-tokens {max_num_tokens:,}")
            plans = plans.take(np.flatnonzero(~over))

    def decode(pl):
        return evaluate_decode(arch, cluster, pl, workload, slo, opts, usable,
                               host_overhead_s=_host_s(serving_stack, cluster, pl))

    def colocated(pl):
        return evaluate_colocated(arch, cluster, pl, workload, slo, opts, usable,
                                  host_overhead_s=_host_s(serving_stack, cluster, pl))

    # I39: with no chunk given, every plan at every candidate chunk, in one evaluation
    chunk_searched = prefill_chunk_tokens is None and max_num_tokens is None
    colo = _filled(colocated, PlanGrid.concat([replace(plans, chunk_tokens=np.full(len(plans), c))
                                               for c in PREFILL_CHUNK_CANDIDATES]) if chunk_searched else plans,
                   opts, workload)
    evaluated = len(colo.plan)
    used = (cluster.chips // colo.plan.chips_per_instance) * colo.plan.chips_per_instance
    key = colo.decode_tokens_per_s_per_chip * used
    best = _pick(colo, key)  # best per system, then per chip
    if best is None and "batch" in opts.fixed:  # the user fixed the batch: show the verdict, do not refuse
        best = Choice(colo, int(np.argmax(colo.decode_tokens_per_s_per_chip)), False)
    if best is None:
        raise UsageError(f"--chips: {arch.id} does not fit in the memory of {cluster.chips // d} x {cluster.chip.id} "
                         f"at {prec} for any plan")
    if chunk_searched:  # of plans equal to a millionth, the larger chunk (the default where the chunk does not matter)
        k = np.where(colo.ok if best.meets_slo else colo.memory.fits, key, -np.inf)
        ties = np.flatnonzero(k >= k[best.i] * (1 - 1e-6))
        best = Choice(colo, int(ties[np.argmax(colo.plan.chunk_tokens[ties])]), best.meets_slo)
        opts = replace(opts, prefill_chunk_tokens=int(colo.plan.chunk_tokens[best.i]))
        budget_words = (f"{opts.chunk_cap:,.0f} prompt tokens (searched over "
                        f"{', '.join(f'{c:,}' for c in sorted(PREFILL_CHUNK_CANDIDATES))} since --prefill-chunk was "
                        "not given, I39; a chunk's reads of its prompt's cached prefix, and MLA's re-projection of "
                        "it, are not priced, which favours small chunks slightly)")
        assumptions[assumptions.index(chunk_line)] = _describe_chunks(budget_words)
    result = {
        "model": arch.id, "system": cluster.id, "chip": cluster.chip.id, "chips": cluster.chips // d,
        **({"devices_per_chip": d, "devices": cluster.chips} if d > 1 else {}),
        "precision": prec, "kv_precision": kv_precision,
        **({"module_precision": format_names(module_formats(prec, modules))} if modules else {}),
        **({"effective_bits": float(effective_bits)} if effective_bits is not None else {}),
        **({"expert_balance": expert_balance} if arch.is_moe else {}),
        "workload": {"input_tokens": workload.input_tokens, "output_tokens": workload.output_tokens,
                     # the effective lengths of I27 (equal to the fixed-length formulas when samples is 0)
                     "decode_context_tokens": workload.decode_context_tokens,
                     "prefill_attention_tokens": workload.prefill_attention_tokens,
                     "ttft_input_tokens": workload.ttft_input_tokens, "samples": workload.samples},
        "slo": {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s},
        "colocated": _per_package(_system_view(best, cluster, workload, rec), d),
    }
    # the prompt tokens a rank may add to an iteration (I15's chunk; under --max-num-tokens what the budget leaves,
    # at most this) and whether the search chose it (I39)
    result["colocated"]["prefill_chunk_tokens"] = int(opts.chunk_cap)
    result["colocated"]["prefill_chunk_searched"] = chunk_searched
    # the model's signed error on published runs of this chip family at a comparable load (reported, never applied)
    result["colocated"]["track_record"] = track_record.comparable(
        cluster.chip.family, result["colocated"]["batch"] / result["colocated"]["plan"]["chips_per_instance"])
    if max_num_tokens is not None:
        result["colocated"]["token_budget"] = _token_budget_view(best, opts, workload)
    if requests is not None:
        result["colocated"]["finite_run"] = _per_package(_finite_run(
            best, arch, cluster, workload, opts, usable, serving_stack, requests,
            length_samples or finite_run.LengthSamples.fixed(workload.input_tokens, workload.output_tokens)), d)
        assumptions.append(f"finite run (I28): {requests:,} requests issued at once, dealt round-robin to the "
                           "co-located instances and admitted in a seeded shuffled order into the first free slot, "
                           f"each prompt in its turn at {budget_words} per rank and iteration in whole I15 "
                           "units (the ramp while the slots fill); timed to the last token, "
                           "so the drain (the batch thinning out once the queue is empty) counts; the sequences in "
                           "flight spread evenly over the attention ranks")
    if disaggregated:
        pre_plans = grid(arch, cluster, Options(prec, kv_precision, 0, 1.0, {k: v for k, v in opts.fixed.items()
                                                                            if k not in ("batch", "max_batch")},
                                                module_precision=modules, glue_fusion=glue_fusion,
                                                moe_backend=moe_backend),
                         batches=[b for b in PREFILL_PROMPTS_PER_RANK
                                  if b * workload.input_tokens <= MAX_PREFILL_TOKENS_PER_RANK] or [1])
        pre = evaluate_prefill(arch, cluster, pre_plans, workload, slo, opts, usable)
        dec = _filled(decode, plans, opts)
        evaluated += len(pre_plans) + len(dec.plan)
        result["disaggregated"] = _per_package(_disaggregate(pre, dec, cluster, workload, rec), d)
        if result["disaggregated"]["feasible"]:
            dec_view = result["disaggregated"]["decode"]
            result["disaggregated"]["track_record"] = track_record.comparable(
                cluster.chip.family, dec_view["batch"] / dec_view["plan"]["chips_per_instance"])
    result["configurations_evaluated"] = evaluated
    result["assumptions"] = assumptions
    return result


def _check_context_window(arch: ServingArch, wl: Workload) -> None:
    """A request longer than the model's context window (its ``max_seq_len``, the checkpoint's
    max_position_embeddings) cannot be served: a one-line error, not an estimate of a run that cannot happen. A model
    file that does not state ``max_seq_len`` (its schema default is for learned position embeddings) is not checked."""
    what = (f"--lengths: the longest request, {wl.longest_tokens:,.0f} tokens (prompt + output),"
            if wl.samples else
            f"--input/--output: a request of {wl.input_tokens:,.0f} + {wl.output_tokens:,.0f} = "
            f"{wl.longest_tokens:,.0f} tokens")
    _check_window(arch, wl.longest_tokens, what)


def _check_window(arch: ServingArch, tokens: float, what: str) -> None:
    """The check of :func:`_check_context_window` for ``tokens`` held at once; ``what`` opens the message."""
    m = arch.model
    limit = m.max_seq_len if m is not None and "max_seq_len" in m.model_fields_set else None
    if not limit or tokens <= limit:
        return
    raise UsageError(f"{what} exceeds the context window of {arch.id}, max_seq_len {limit:,} (a context extension "
                     "such as YaRN: pass a model YAML file with a larger max_seq_len)")


def _check_fixed_plan(arch: ServingArch, tokens_name: str, tokens: float, counts: dict[str, object],
                      positive: dict[str, float] | None = None) -> None:
    """Arguments of :func:`estimate_decode` / :func:`estimate_prefill`: a one-line error naming the parameter for a
    token count that is not a positive finite number or exceeds the context window, a degree that is not a whole
    number >= 1, or another amount (``positive``: a batch or token budget per rank) that is not positive."""
    for name, value in ((tokens_name, tokens), *(positive or {}).items()):
        if not errors.is_positive_number(value):
            raise UsageError(f"{name}: expected a positive number, got {value!r}")
    for name, value in counts.items():
        if not errors.is_positive_int(value):
            raise UsageError(f"{name}: expected a whole number >= 1, got {value!r}")
    _check_window(arch, tokens, f"{tokens_name}: {tokens:,.0f} tokens")


def _money(cluster: ClusterSpec, rec: ServingAssumptions, tokens_per_s_per_chip: float) -> dict:
    out: dict = {"tokens_per_joule": None, "usd_per_million_tokens": None}
    if cluster.power_w and tokens_per_s_per_chip > 0:
        out["tokens_per_joule"] = tokens_per_s_per_chip / (cluster.power_w / cluster.chips)
    if cluster.price_usd and tokens_per_s_per_chip > 0:
        amort_s = si(rec.amortisation_period)
        out["usd_per_million_tokens"] = cluster.price_usd / cluster.chips / amort_s / tokens_per_s_per_chip * 1e6
        out["cost_assumption"] = (f"hardware price {cluster.price_usd:,.0f} USD for "
                                  f"{cluster.chips // cluster.devices_per_chip} chips spread over "
                                  f"{amort_s / 3600 / 8766:g} years of continuous use; capital only (no energy, hosting)")
    return out


def _system_view(ch, cluster: ClusterSpec, wl: Workload, rec) -> dict:
    d = ch.as_dict(cluster)
    n = d["plan"]["chips_per_instance"]
    inst = cluster.chips // n
    d["instances"] = inst
    d["chips_used"] = inst * n
    d["decode_tokens_per_s"] = d["decode_tokens_per_s_per_chip"] * inst * n
    d["prefill_tokens_per_s"] = d["prefill_tokens_per_s_per_chip"] * inst * n
    d.update(_money(cluster, rec, d["decode_tokens_per_s_per_chip"]))
    return d


def _token_budget_view(ch: Choice, opts: Options, wl: Workload) -> dict:
    """The chosen co-located plan against a decode-inclusive budget M (I29), per rank and micro-batch: the tokens an
    iteration carries on average, b (1 + m) decode and c = b a I / O prompt, and the largest batch M sustains."""
    one = ch.ev.plan.take([ch.i])
    decode, prompt = (float(x[0]) for x in tokens_per_iteration(one, opts, wl))
    sustained = int(token_budget_batch(one, opts, wl)[0])
    return {"max_num_tokens": int(opts.max_num_tokens), "decode_tokens_per_iteration": decode,
            "prompt_tokens_per_iteration": prompt, "sustained_batch": sustained,
            "within": bool(one.batch[0] <= sustained)}


def _best_by_size(ev: Evaluation, key: np.ndarray) -> dict[int, Choice]:
    """Best plan per instance size (chips), among plans meeting everything (else fitting ones)."""
    out: dict[int, Choice] = {}
    sizes = ev.plan.chips_per_instance
    mask = ev.ok if ev.ok.any() else ev.memory.fits
    for n in np.unique(sizes[mask]):
        sel = np.where(mask & (sizes == n), key, -np.inf)
        out[int(n)] = Choice(ev, int(np.argmax(sel)), bool(ev.ok.any()))
    return out


def _disaggregate(pre: Evaluation, dec: Evaluation, cluster: ClusterSpec, wl: Workload, rec) -> dict:
    """Best prefill and decode plan pair and instance counts on the cluster (I10, I11)."""
    I, O = wl.input_tokens, wl.output_tokens
    ps = _best_by_size(pre, pre.prefill_tokens_per_s_per_chip)
    ds = _best_by_size(dec, dec.decode_tokens_per_s_per_chip)
    best = (0.0, None)
    for n_p, cp in ps.items():
        P = float(pre.prefill_tokens_per_s_per_chip[cp.i])
        for n_d, cd in ds.items():
            G = float(dec.decode_tokens_per_s_per_chip[cd.i])
            for k_p in range(1, cluster.chips // n_p + 1):
                k_d = (cluster.chips - k_p * n_p) // n_d
                if k_d < 1:
                    break
                rate = min(k_p * n_p * P / I, k_d * n_d * G / O)  # requests/s
                if rate > best[0]:
                    best = (rate, (cp, cd, k_p, k_d, n_p, n_d))
    if best[1] is None:
        return {"feasible": False, "reason": f"no prefill + decode instance pair fits in "
                                             f"{cluster.chips // cluster.devices_per_chip} chips"}
    rate, (cp, cd, k_p, k_d, n_p, n_d) = best
    P = float(pre.prefill_tokens_per_s_per_chip[cp.i])
    G = float(dec.decode_tokens_per_s_per_chip[cd.i])
    used = k_p * n_p + k_d * n_d
    out = {
        "feasible": True,
        "meets_slo": cp.meets_slo and cd.meets_slo,
        "prefill": cp.as_dict(cluster), "decode": cd.as_dict(cluster),
        "ttft_s": float(pre.ttft_s[cp.i]), "tpot_s": float(dec.tpot_s[cd.i]),
        "prefill_instances": k_p, "decode_instances": k_d, "prefill_chips": k_p * n_p, "decode_chips": k_d * n_d,
        "prefill_to_decode_chip_ratio": (k_p * n_p) / (k_d * n_d),
        "ideal_prefill_to_decode_chip_ratio": (I / P) / (O / G),
        "requests_per_s": rate, "output_tokens_per_s": rate * O, "prefill_tokens_per_s": rate * I,
        "output_tokens_per_s_per_chip": rate * O / cluster.chips,
        "output_tokens_per_s_per_chip_used": rate * O / used,
    }
    out.update(_money(cluster, rec, out["output_tokens_per_s_per_chip"]))
    return out


def _finite_run(best: Choice, arch, cluster: ClusterSpec, wl: Workload, opts: Options, usable: float,
                serving_stack: str | None, requests: int, samples: finite_run.LengthSamples) -> dict:
    """I28 on the chosen co-located plan: its steady iteration and its decode-only step at fewer sequences."""
    one = best.ev.plan.take([best.i])
    ranks = int(one.dp[0] * one.pp[0])
    a = opts.acceptance_length

    def decode_step_s(per_rank: np.ndarray, context: float) -> np.ndarray:
        plans = one.take(np.zeros(len(per_rank), np.int64)).with_batch(np.round(per_rank).astype(np.int64) * ranks)
        ev = evaluate_decode(arch, cluster, plans, wl, SLO(), opts, usable, context_tokens=context,
                             host_overhead_s=_host_s(serving_stack, cluster, plans))
        return ev.tpot_s * a

    n = int(one.chips_per_instance[0])
    inst = cluster.chips // n
    return finite_run.estimate(requests=requests, samples=samples, instances=inst, slots=int(one.batch[0]),
                               ranks=ranks, acceptance=a, iteration_s=float(best.ev.tpot_s[best.i]) * a,
                               steady_context_tokens=wl.decode_context_tokens, mean_output_tokens=wl.output_tokens,
                               decode_step_s=decode_step_s, chips=inst * n,
                               chunk_budget_tokens=opts.chunk_cap, max_num_tokens=opts.max_num_tokens,
                               query_tokens=1 + opts.draft_tokens)


def _filled(evaluate, plans, opts: Options, wl: Workload | None = None) -> Evaluation:
    """``evaluate(plans)``, and unless the batch is fixed, every plan also at the largest batch that fits under the
    engine's cap ``max_batch`` if one is given and under the batch its token budget sustains (I29; ``wl`` the
    co-located workload, None for a decode instance) (:func:`supernode.infer.serving.with_memory_filled`)."""
    ev = evaluate(plans)
    if "batch" in opts.fixed:
        return ev
    cap = opts.fixed.get("max_batch")

    def caps(pl):
        budget = token_budget_batch(pl, opts, wl)
        if budget is None:
            return cap
        return budget if cap is None else np.minimum(budget, cap)

    return with_memory_filled(evaluate, plans, ev, caps)


def _host_s(serving_stack: str | None, cluster: ClusterSpec, plans) -> np.ndarray:
    """t_host of I19 per plan: the stack's multi-node value where the instance spans more than one
    scale-up domain (its attention-DP ranks synchronize across nodes), else the single-node value."""
    return fixed_costs.host_overhead_s(serving_stack, plans.chips_per_instance > cluster.scale_up.domain_chips)


def estimate_decode(catalog: Catalog, model: str, on: str, chips: int | None, *, context_tokens: float,
                    batch_per_rank: int, tp: int, pp: int, dp: int, ep: int, precision: str,
                    kv_precision: str = "bf16", draft_tokens: int = 0, acceptance_length: float = 1.0,
                    overlap: bool | None = None, attention_precision: str | None = None,
                    expert_balance: str = balance.DEFAULT_MODE, serving_stack: str | None = None,
                    module_precision=None, glue_fusion: str | None = None, weight_offload=None,
                    effective_bits: float | None = None, moe_backend: str | None = None,
                    shared_experts_stream: str | None = None, moe_comm: str = "all-to-all") -> dict:
    """Decode throughput of one fixed plan at a fixed KV length (validation against published
    saturated decode figures). ``overlap=None`` takes the faster of with and without; ``expert_balance``,
    ``serving_stack``, ``module_precision``, ``glue_fusion``, ``weight_offload``, ``effective_bits``, ``moe_backend``,
    ``shared_experts_stream`` and ``moe_comm`` as in :func:`search`."""

    arch = serving_arch(catalog, model)
    _check_fixed_plan(arch, "context_tokens", context_tokens, {"tp": tp, "pp": pp, "dp": dp, "ep": ep},
                      {"batch_per_rank": batch_per_rank})  # a mean over ranks may be fractional
    cluster = device_cluster(resolve_cluster(catalog, on, chips))
    ov = [int(overlap)] if overlap is not None else [0, 1]
    plan = PlanGrid(tp=np.full(len(ov), tp), pp=pp, dp=dp, ep=ep, batch=batch_per_rank * dp * pp, overlap=np.array(ov))
    check_attention_precision(cluster.chip, attention_precision, kv_precision)
    modules = weight_formats(cluster.chip, precision, module_precision, effective_bits)
    opts = Options(precision, kv_precision, draft_tokens, acceptance_length, attention_precision=attention_precision,
                   expert_balance=expert_balance, module_precision=modules, glue_fusion=glue_fusion,
                   moe_backend=moe_backend, shared_experts_stream=shared_experts_stream, moe_comm=moe_comm,
                   weight_offload=offload.parse(weight_offload),
                   serving_stack=fixed_costs.check_stack_family(serving_stack, cluster.chip.family))
    usable = float(assumptions_record().usable_memory_fraction.number)
    ev = evaluate_decode(arch, cluster, plan, Workload(context_tokens, 1.0), SLO(), opts, usable,
                         context_tokens=context_tokens, host_overhead_s=_host_s(serving_stack, cluster, plan))
    i = int(np.argmax(ev.decode_tokens_per_s_per_chip))
    return _per_package(Choice(ev, i, True).as_dict(cluster), cluster.devices_per_chip)


def estimate_prefill(catalog: Catalog, model: str, on: str, chips: int | None, *, input_tokens: float,
                     tokens_per_rank: int, tp: int, pp: int, dp: int, ep: int, precision: str,
                     overlap: bool | None = None, kv_precision: str = "bf16",
                     attention_precision: str | None = None, expert_balance: str = balance.DEFAULT_MODE,
                     module_precision=None, glue_fusion: str | None = None, prefill_dispatch: str = "dedup",
                     weight_offload=None, effective_bits: float | None = None,
                     serving_stack: str | None = None, moe_backend: str | None = None,
                     moe_comm: str = "all-to-all") -> dict:
    """Saturated prefill throughput of one fixed plan (validation); ``expert_balance``, ``module_precision``,
    ``glue_fusion``, ``moe_backend``, ``prefill_dispatch``, ``moe_comm``, ``weight_offload`` and ``effective_bits`` as
    in :func:`search`;
    ``serving_stack`` only for its fixed time per MoE layer (I34; a prefill forward has no per-token host time
    here)."""

    arch = serving_arch(catalog, model)
    _check_fixed_plan(arch, "input_tokens", input_tokens, {"tp": tp, "pp": pp, "dp": dp, "ep": ep},
                      {"tokens_per_rank": tokens_per_rank})
    cluster = device_cluster(resolve_cluster(catalog, on, chips))
    ov = [int(overlap)] if overlap is not None else [0, 1]
    prompts = max(tokens_per_rank / input_tokens, 1e-9)
    plan = PlanGrid(tp=np.full(len(ov), tp), pp=pp, dp=dp, ep=ep, batch=1, overlap=np.array(ov))
    plan = PlanGrid(tp=plan.tp, pp=plan.pp, dp=plan.dp, ep=plan.ep, batch=np.maximum(1, np.round(prompts * dp * pp)),
                    overlap=plan.overlap)
    check_attention_precision(cluster.chip, attention_precision, kv_precision)
    modules = weight_formats(cluster.chip, precision, module_precision, effective_bits)
    opts = Options(precision, kv_precision, attention_precision=attention_precision, expert_balance=expert_balance,
                   module_precision=modules, glue_fusion=glue_fusion, moe_backend=moe_backend,
                   prefill_dispatch=prefill_dispatch, moe_comm=moe_comm,
                   weight_offload=offload.parse(weight_offload),
                   serving_stack=fixed_costs.check_stack_family(serving_stack, cluster.chip.family))
    usable = float(assumptions_record().usable_memory_fraction.number)
    ev = evaluate_prefill(arch, cluster, plan, Workload(input_tokens, 1.0), SLO(), opts, usable)
    i = int(np.argmax(ev.prefill_tokens_per_s_per_chip))
    return _per_package(Choice(ev, i, True).as_dict(cluster), cluster.devices_per_chip)
