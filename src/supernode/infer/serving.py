"""SLO-bound serving: evaluate plans for a workload and search the best one, co-located or
prefill/decode-disaggregated. One estimate (:func:`supernode.infer.step.stage_time`) serves both.

Co-located (chunked prefill mixed into decode iterations, Sarathi/vLLM style), per instance with
B sequences, b = B / (dp pp) per rank and micro-batch, acceptance length a, prompts of I tokens
and outputs of O tokens (formula I9):

    prefill tokens per rank and iteration  c = b I a / O      (steady state: prompts enter as outputs end)
    T_iter = pp (E[T_stage] + m T_draft) + t_host  (I15: whole chunks, not c spread evenly; I14 drafts;
             I19 host time of a stack that does not overlap its scheduler, 0 by default);  TPOT = T_iter / a
    output throughput = B a / T_iter
    TTFT = ceil(I / C) [pp (T_stage(b decode seqs + C prefill tokens) + m T_draft) + t_host],  C = min(chunk, I)

A prompt is prefilled in bursts of the scheduler's chunk budget (``--prefill-chunk``, vLLM
max_num_batched_tokens / SGLang chunked_prefill_size), so its TTFT is ceil(I / C) such iterations
(no queueing before admission), and an iteration carries a chunk or none: the mean iteration time
is the mixture of :mod:`supernode.infer.scheduling` (I15), in which the attention-DP ranks of a MoE
instance wait for the slowest one at every all-to-all; dense replicas do not. With ``moe_dp_padding``
(I23) every rank pads its MoE input to the slowest rank's token count, so in such an iteration the routed
experts see d times the loaded rank's tokens instead of the group's mean (padded rows routed like real
ones: a lower bound, since a stack's zero rows all pick the same bias-preferred experts).

Disaggregated (I10): prefill instances run prompts only, TTFT = pp T_stage(n I tokens per rank)
+ the KV hand-over (I12); prefill throughput = n dp I / T_stage. Decode instances run decode
only at mean context I + O/2. With P prefill tokens/s/chip and G output tokens/s/chip the
system delivers 1 / (I / (O P) + 1 / G) output tokens/s per chip at a prefill:decode chip ratio
of (I / P) : (O / G); on a finite system the integer instance counts are searched.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace

import numpy as np

from supernode.errors import UsageError, is_positive_int
from supernode.hardware import ClusterSpec
from supernode.infer import balance, fixed_costs, glue, offload, scheduling
from supernode.infer.arch import ServingArch
from supernode.infer.memory import MemoryVerdict, verdict
from supernode.infer.moe_backend import check as check_moe_backend
from supernode.infer.shared_stream import check as check_shared_stream
from supernode.infer.plan import PlanGrid, candidate_plans, memory_filled
from supernode.infer.precision import (check_module_precision, kv_bytes, module_formats, module_weight_bytes,
                                       weight_bytes)
from supernode.infer.step import StageBreakdown, draft_pass_time, stage_time
from supernode.perf import collectives as coll


@dataclass(frozen=True)
class Workload:
    """Prompt and output lengths (tokens, means) and the effective lengths the model takes from them (I27).

    ``decode_context_tokens``: the mean KV length of a decoding sequence, weighted by time (one step per output
    token): E[O (I + O/2)] / E[O]; I + O/2 for fixed lengths. ``prefill_attention_tokens``: the prompt length
    whose causal attention per token equals the mix's, E[I^2] / E[I]; I for fixed lengths.
    ``ttft_input_tokens``: the prompt the TTFT is reported and checked for; I for fixed lengths, the 90th
    percentile of a distribution. ``samples``: requests in the distribution (0: fixed lengths).
    ``from_samples`` builds one from a length distribution."""

    input_tokens: float
    output_tokens: float
    decode_context_tokens: float | None = None
    prefill_attention_tokens: float | None = None
    ttft_input_tokens: float | None = None
    samples: int = 0
    # the longest request, prompt + output (tokens): I + O for fixed lengths, the distribution's maximum; checked
    # against the model's context window
    longest_tokens: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.input_tokens < np.inf:
            raise UsageError(f"--input: must be a positive token count, got {self.input_tokens}")
        if not 0 < self.output_tokens < np.inf:
            raise UsageError(f"--output: must be a positive token count, got {self.output_tokens}")
        for name, default in (("decode_context_tokens", self.input_tokens + self.output_tokens / 2.0),
                              ("prefill_attention_tokens", self.input_tokens),
                              ("ttft_input_tokens", self.input_tokens),
                              ("longest_tokens", self.input_tokens + self.output_tokens)):
            v = getattr(self, name)
            if v is None:
                object.__setattr__(self, name, float(default))
            elif not 0 < v < np.inf:
                raise UsageError(f"workload: {name} must be a positive token count, got {v}")

    @classmethod
    def from_samples(cls, inputs, outputs, weights=None, ttft_quantile: float = 0.9) -> "Workload":
        """A length distribution (one entry per request, or per group of ``weights`` requests): means for the
        token counts, E[O (I + O/2)] / E[O] for the decoding context, E[I^2] / E[I] for prefill attention and
        the ``ttft_quantile`` prompt for the TTFT (I27)."""
        i = np.asarray(inputs, float)
        o = np.asarray(outputs, float)
        w = np.ones(len(i)) if weights is None else np.asarray(weights, float)
        if not (len(i) == len(o) == len(w)) or len(i) == 0:
            raise UsageError("workload: inputs, outputs and weights must be non-empty and of the same length")
        if not (np.all((i > 0) & (i < np.inf)) and np.all((o > 0) & (o < np.inf)) and np.all((w >= 0) & (w < np.inf))
                and w.sum() > 0):
            raise UsageError("workload: lengths must be positive and weights non-negative with a positive sum")
        mean_i, mean_o = float(np.average(i, weights=w)), float(np.average(o, weights=w))
        ctx = float(np.sum(w * o * (i + o / 2.0)) / np.sum(w * o))
        attn = float(np.sum(w * i * i) / np.sum(w * i))
        order = np.argsort(i, kind="stable")
        cum = np.cumsum(w[order]) / w.sum()
        ttft = float(i[order][min(int(np.searchsorted(cum, ttft_quantile - 1e-12)), len(i) - 1)])
        return cls(mean_i, mean_o, ctx, attn, ttft, int(len(i)) if weights is None else int(round(w.sum())),
                   float(np.max((i + o)[w > 0])))


@dataclass(frozen=True)
class SLO:
    ttft_s: float | None = None
    tpot_s: float | None = None

    def __post_init__(self) -> None:
        for name, v in (("--ttft", self.ttft_s), ("--tpot", self.tpot_s)):
            if v is not None and not v > 0:
                raise UsageError(f"{name}: must be a positive duration")


@dataclass(frozen=True)
class Options:
    """Serving options: formats, speculative decoding (``draft_tokens`` verified per step,
    ``acceptance_length`` tokens emitted per step, >= 1), degrees fixed by the user and the expert-load
    balancer (``expert_balance``: eplb, none or ideal; I17, :mod:`supernode.infer.balance`).
    ``module_precision``: weight format per part (``attention``, ``dense_ffn``, ``shared_experts``, ``experts``,
    ``router``, ``mtp``, ``lm_head``; I20, :func:`supernode.infer.precision.module_formats`); a part not named
    runs at ``precision``."""

    precision: str
    kv_precision: str = "bf16"
    draft_tokens: int = 0
    acceptance_length: float = 1.0
    fixed: dict = field(default_factory=dict)  # tp, pp, dp, ep, batch, overlap (bool)
    # prompt tokens a rank adds to an iteration (a chunk); None: 8,192 (SGLang's default), or only what
    # max_num_tokens leaves when that is given (the search itself tries several chunks when none is given, I39)
    prefill_chunk_tokens: int | None = None
    attention_precision: str | None = None  # None: BF16 attention; "fp8": FP8 attention kernels on an FP8 KV cache
    expert_balance: str = balance.DEFAULT_MODE  # eplb (default), none, ideal: the most loaded EP rank sets the step (I17)
    module_precision: dict[str, str] | None = None  # part -> weight format (I20); None: every part at precision
    glue_fusion: str | None = None  # the stack's glue-kernel fusions (I22); None: unfused
    moe_backend: str | None = None  # the stack's MoE kernels for the routed experts (I37); None: grouped
    # the MoE layers' shared experts on a second stream beside the routed experts in CUDA-graph passes (I38,
    # "overlap": SGLang's dual-stream MoE); None: serial
    shared_experts_stream: str | None = None
    # attention-DP ranks pad their MoE input to the largest rank's token count (I23): the routed experts see
    # d x the loaded rank's tokens in an iteration where one rank prefills (TensorRT-LLM 0.20's NVFP4 MoE path)
    moe_dp_padding: bool = False
    # how the attention-DP ranks of an MoE instance admit prompts (I15): "independent" (default) or "aligned"
    # (the same iterations on every rank: a fixed-length offline run started all at once)
    admission: str = "independent"
    # the MoE dispatch/combine kernels of prefill forwards (I24): "dedup" (default; high-throughput kernels that
    # cross the scale-out fabric once per remote scale-up domain, DeepEP normal mode) or "all-to-all" (every copy)
    prefill_dispatch: str = "dedup"
    # how an MoE instance's attention-DP ranks exchange tokens with the experts (I41): "all-to-all" (default; the
    # dispatch/combine kernels of I18 / I24) or "allgather" (every rank gathers the group's tokens and a
    # reduce-scatter returns the outputs: TensorRT-LLM's MoE without MNNVL or with EP <= top-k, 2025 releases)
    moe_comm: str = "all-to-all"
    # N of every G layers' routed experts in host memory, copied back with prefetch (I26); None: all on the chip
    weight_offload: tuple[int, int] | None = None
    # the engine's token budget per rank and iteration counting decode and draft tokens as well as prompt tokens
    # (TensorRT-LLM's max_num_tokens, vLLM's max_num_batched_tokens; I29); None: no such budget
    max_num_tokens: int | None = None
    # the serving stack (I19's host time per iteration, applied by the search; I34: a stack calibrated on the chip's
    # family brings its own fixed time per MoE layer); None: overlapped, the family's I21 value
    serving_stack: str | None = None

    @property
    def chunk_cap(self) -> float:
        """The prompt tokens a rank may add to one iteration before the decode-inclusive budget (I15's C_b)."""
        if self.prefill_chunk_tokens is not None:
            return float(self.prefill_chunk_tokens)
        return float(self.max_num_tokens) if self.max_num_tokens is not None else float(DEFAULT_PREFILL_CHUNK)

    def __post_init__(self) -> None:
        offload.parse(self.weight_offload)
        for flag, v in (("--prefill-chunk", self.prefill_chunk_tokens), ("--max-num-tokens", self.max_num_tokens)):
            if v is not None and not is_positive_int(v):
                raise UsageError(f"{flag}: must be a positive whole number of tokens, got {v!r}")
        weight_bytes(self.precision)
        check_module_precision(self.module_precision)
        kv_bytes(self.kv_precision)
        balance.check_mode(self.expert_balance)
        glue.profile(self.glue_fusion)
        check_moe_backend(self.moe_backend)
        check_shared_stream(self.shared_experts_stream)
        fixed_costs.check_stack(self.serving_stack)
        scheduling.check_admission(self.admission)
        if self.prefill_dispatch not in PREFILL_DISPATCH:
            raise UsageError(f"--prefill-dispatch: expected one of {', '.join(PREFILL_DISPATCH)}, "
                             f"got {self.prefill_dispatch!r}")
        if self.moe_comm not in MOE_COMM:
            raise UsageError(f"--moe-comm: expected one of {', '.join(MOE_COMM)}, got {self.moe_comm!r}")
        if self.draft_tokens < 0:
            raise UsageError("--mtp: draft tokens must be >= 0")
        if not 1.0 <= self.acceptance_length <= 1 + self.draft_tokens:
            raise UsageError(f"--acceptance: must lie in [1, 1 + draft tokens = {1 + self.draft_tokens}]")


PREFILL_DISPATCH = ("dedup", "all-to-all")  # I24
MOE_COMM = ("all-to-all", "allgather")  # I41
DEFAULT_PREFILL_CHUNK = 8192  # SGLang's chunked_prefill_size default


@dataclass(frozen=True)
class Evaluation:
    """Every plan's metrics (arrays); ``ok`` = fits in memory and meets the SLOs."""

    plan: PlanGrid
    breakdown: StageBreakdown
    memory: MemoryVerdict
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    prefill_tokens_per_s_per_chip: np.ndarray
    decode_tokens_per_s_per_chip: np.ndarray
    ok: np.ndarray


def _per_rank(plan: PlanGrid) -> np.ndarray:
    return plan.batch / (plan.dp * plan.pp)


def _memory(arch, cluster, plan, opts, context, tokens_per_rank, usable_fraction) -> MemoryVerdict:
    cap = cluster.chip.memory_bytes
    if not cap:
        raise UsageError(f"--on: memory capacity of chip {cluster.chip.id!r} is unknown; the batch cannot be bounded")
    bpw = module_weight_bytes(module_formats(opts.precision, opts.module_precision))
    return verdict(arch, plan, capacity_bytes=cap, usable_fraction=usable_fraction, bytes_per_weight=bpw,
                   kv_bytes=kv_bytes(opts.kv_precision),
                   context_tokens=context, tokens_per_forward_per_rank=tokens_per_rank,
                   offloaded_bytes=offload.resident_saving_bytes(arch, plan, bpw,
                                                                 offload.fraction(opts.weight_offload)))


def prompt_budget_tokens(plan: PlanGrid, opts: Options) -> np.ndarray:
    """C_b per plan (tokens per rank and iteration): the prompt tokens an iteration may carry beside its b decoding
    sequences (I15); under a decode-inclusive budget M what the decodes leave, min(chunk, M - b (1 + m)) (I29)."""
    cap = np.where(plan.chunk_tokens > 0, plan.chunk_tokens, opts.chunk_cap).astype(float)  # a plan's own chunk (I39) or the options'
    if opts.max_num_tokens is None:
        return cap
    return np.minimum(cap, opts.max_num_tokens - _per_rank(plan) * (1 + opts.draft_tokens))


def tokens_per_iteration(plan: PlanGrid, opts: Options, wl: Workload) -> tuple[np.ndarray, np.ndarray]:
    """Per plan, per rank and micro-batch, the tokens a co-located iteration carries on average: b (1 + m) decode
    and draft tokens, and c = b a I / O prompt tokens (I9)."""
    b = _per_rank(plan)
    return b * (1 + opts.draft_tokens), b * opts.acceptance_length * wl.input_tokens / wl.output_tokens


def token_budget_batch(plan: PlanGrid, opts: Options, wl: Workload | None = None) -> np.ndarray | None:
    """The largest batch per instance a decode-inclusive budget M sustains (I29), None without one: per rank
    b* = floor(M / (1 + m + a I / O)) in co-located serving (every iteration then carries M tokens: b (1 + m)
    decode and b a I / O prompt tokens on average), floor(M / (1 + m)) for a decode instance (``wl`` None);
    times d p."""
    if opts.max_num_tokens is None:
        return None
    unit = plan.dp * plan.pp
    return np.floor(opts.max_num_tokens / budget_tokens_per_sequence(opts, wl) + 1e-9).astype(np.int64) * unit


def budget_tokens_per_sequence(opts: Options, wl: Workload | None = None) -> float:
    """The tokens one sequence adds to an iteration's budget on average (I29): 1 + m decode and draft tokens, and in
    co-located serving (``wl`` given) a I / O prompt tokens."""
    per_token = 1.0 + opts.draft_tokens
    if wl is not None:
        per_token += opts.acceptance_length * wl.input_tokens / wl.output_tokens
    return per_token


def _within_budget(plan: PlanGrid, opts: Options, wl: Workload | None = None) -> np.ndarray:
    cap = token_budget_batch(plan, opts, wl)
    return np.ones(len(plan), bool) if cap is None else plan.batch <= cap


def _with_offload(arch, cluster, plan, opts: Options, br: StageBreakdown) -> StageBreakdown:
    """The stage time the weight-offload copies add (I26), when the options offload."""
    phi = offload.fraction(opts.weight_offload)
    if phi <= 0:
        return br
    bpw = module_weight_bytes(module_formats(opts.precision, opts.module_precision))
    extra = offload.exposed_s(arch, cluster.chip.host_bytes_per_s, cluster.chip.id, plan, bpw, phi, br.stage_s)
    return replace(br, stage_s=br.stage_s + extra, offload_s=extra)


def _slo_ok(slo: SLO, ttft, tpot) -> np.ndarray:
    ok = np.ones_like(np.asarray(ttft, float), dtype=bool)
    if slo.ttft_s is not None:
        ok &= ttft <= slo.ttft_s
    if slo.tpot_s is not None:
        ok &= tpot <= slo.tpot_s
    return ok


def kv_handover_s(arch: ServingArch, cluster: ClusterSpec, plan: PlanGrid, wl: Workload, kvb: float) -> np.ndarray:
    """KV cache of one prompt (the TTFT prompt, I27) sent from the prefill to the decode instance (I12), split
    over the prefill instance's tp x pp chips, over the tier that spans the whole cluster."""
    size = wl.ttft_input_tokens * arch.kv_bytes_per_token(kvb) / (plan.tp * plan.pp)
    return coll.p2p_s(cluster, size, np.full(len(plan), cluster.chips))


def _with_drafts(arch, cluster, plan, opts: Options, br: StageBreakdown, decode_seqs, context_tokens):
    """The m sequential draft passes of the decoding sequences on the last stage after each verify
    pass (I14): (``br`` with ``draft_s`` set, draft seconds per micro-batch); (``br``, 0) without MTP."""
    m = opts.draft_tokens
    if not m:
        return br, 0.0
    draft = m * draft_pass_time(arch, cluster, plan, precision=opts.precision,
                                kv_precision_bytes=kv_bytes(opts.kv_precision),
                                attention_precision=opts.attention_precision, decode_seqs=decode_seqs,
                                context_tokens=context_tokens, expert_balance=opts.expert_balance,
                                module_precision=opts.module_precision, glue_fusion=opts.glue_fusion,
                                moe_backend=opts.moe_backend, shared_experts_stream=opts.shared_experts_stream,
                                serving_stack=opts.serving_stack, moe_comm=opts.moe_comm).stage_s
    return replace(br, draft_s=draft * np.ones_like(br.stage_s)), draft


def _iteration_s(plan: PlanGrid, stage_s, draft_s, host_overhead_s: float = 0.0) -> np.ndarray:
    """One serving iteration (s): T_iter = p (T_stage + m T_draft) + t_host (I9, I14, I19). The last stage runs
    the drafts of each of the p micro-batches; the host work (scheduling, sampling bookkeeping) happens once
    per iteration and adds only when the serving stack does not overlap it with the GPU."""
    return plan.pp * (stage_s + draft_s) + host_overhead_s


def evaluate_colocated(arch, cluster, plan, wl: Workload, slo: SLO, opts: Options, usable_fraction: float,
                       host_overhead_s: float = 0.0) -> Evaluation:
    """``host_overhead_s``: host time per iteration not overlapped with the GPU (I19, ``fixed_costs``)."""
    a, m = opts.acceptance_length, opts.draft_tokens
    b = _per_rank(plan)
    c = tokens_per_iteration(plan, opts, wl)[1]
    ctx = wl.decode_context_tokens  # I + O/2, or its time-weighted mean over a distribution (I27)
    # the prompt budget beside the decodes (I15; what a decode-inclusive budget leaves, I29), at least one token so
    # that a plan over the budget is still priced (it is marked not sustainable below)
    budget = np.maximum(prompt_budget_tokens(plan, opts), 1.0)
    chunk = np.minimum(budget, wl.ttft_input_tokens)  # the TTFT prompt's chunk
    # prompts arrive in whole chunks: a mixture of iterations with and without one more chunk; with MoE
    # (per-layer all-to-all over the d ranks) an iteration waits for its slowest rank (I15)
    mix = scheduling.chunk_mix(c, prompt_tokens=wl.input_tokens, chunk_budget_tokens=budget,
                               ranks=plan.dp, synchronized=arch.is_moe, admission=opts.admission)
    base = stage_time(arch, cluster, plan, precision=opts.precision, kv_precision_bytes=kv_bytes(opts.kv_precision),
                      attention_precision=opts.attention_precision, expert_balance=opts.expert_balance,
                      module_precision=opts.module_precision, glue_fusion=opts.glue_fusion,
                      moe_backend=opts.moe_backend, shared_experts_stream=opts.shared_experts_stream,
                      serving_stack=opts.serving_stack, moe_comm=opts.moe_comm,
                      decode_seqs=b, context_tokens=ctx, query_tokens=1 + m, prefill_tokens=mix.base_tokens,
                      prefill_len=wl.prefill_attention_tokens)
    with_chunk = stage_time(arch, cluster, plan, precision=opts.precision,
                            kv_precision_bytes=kv_bytes(opts.kv_precision), attention_precision=opts.attention_precision,
                            expert_balance=opts.expert_balance,
                            module_precision=opts.module_precision, glue_fusion=opts.glue_fusion,
                            moe_backend=opts.moe_backend, shared_experts_stream=opts.shared_experts_stream,
                            serving_stack=opts.serving_stack, moe_comm=opts.moe_comm,
                            decode_seqs=b, context_tokens=ctx, query_tokens=1 + m, prefill_tokens=mix.burst_tokens,
                            prefill_len=wl.prefill_attention_tokens,
                            routed_tokens_per_rank=(None if opts.moe_dp_padding else
                                                    scheduling.routed_tokens_per_rank(b * (1 + m), mix, plan.dp)))
    br = _with_offload(arch, cluster, plan, opts, scheduling.expected_breakdown(mix, base, with_chunk))
    br, draft = _with_drafts(arch, cluster, plan, opts, br, b, ctx)
    t_iter = _iteration_s(plan, br.stage_s, draft, host_overhead_s)
    tpot = t_iter / a
    burst = stage_time(arch, cluster, plan, precision=opts.precision, kv_precision_bytes=kv_bytes(opts.kv_precision),
                       attention_precision=opts.attention_precision, expert_balance=opts.expert_balance,
                       module_precision=opts.module_precision, glue_fusion=opts.glue_fusion,
                       moe_backend=opts.moe_backend, shared_experts_stream=opts.shared_experts_stream,
                       serving_stack=opts.serving_stack, moe_comm=opts.moe_comm,
                       decode_seqs=b, context_tokens=ctx, query_tokens=1 + m, prefill_tokens=chunk,
                       prefill_len=wl.ttft_input_tokens)
    burst = _with_offload(arch, cluster, plan, opts, burst)
    ttft = np.ceil(wl.ttft_input_tokens / chunk) * _iteration_s(plan, burst.stage_s, draft, host_overhead_s)
    chips = plan.chips_per_instance
    out = plan.batch * a / t_iter / chips
    pre = out * wl.input_tokens / wl.output_tokens
    # continuous batching: sequences are spread evenly over their output, so the mean KV length is I + O/2
    # (over a distribution, weighted by each request's decoding time: I27)
    mem = _memory(arch, cluster, plan, opts, ctx, b * (1 + m) + mix.burst_tokens, usable_fraction)  # largest forward
    ok = mem.fits & _slo_ok(slo, ttft, tpot) & _within_budget(plan, opts, wl)
    return Evaluation(plan, br, mem, ttft, tpot, pre, out, ok)


def evaluate_decode(arch, cluster, plan, wl: Workload, slo: SLO, opts: Options, usable_fraction: float,
                    context_tokens: float | None = None, host_overhead_s: float = 0.0) -> Evaluation:
    """``host_overhead_s``: host time per iteration not overlapped with the GPU (I19, ``fixed_costs``)."""
    a, m = opts.acceptance_length, opts.draft_tokens
    b = _per_rank(plan)
    ctx = wl.decode_context_tokens if context_tokens is None else context_tokens
    br = stage_time(arch, cluster, plan, precision=opts.precision, kv_precision_bytes=kv_bytes(opts.kv_precision),
                    attention_precision=opts.attention_precision, expert_balance=opts.expert_balance,
                    module_precision=opts.module_precision, glue_fusion=opts.glue_fusion, moe_backend=opts.moe_backend,
                    shared_experts_stream=opts.shared_experts_stream,
                    serving_stack=opts.serving_stack, moe_comm=opts.moe_comm,
                    decode_seqs=b, context_tokens=ctx, query_tokens=1 + m)
    br, draft = _with_drafts(arch, cluster, plan, opts, _with_offload(arch, cluster, plan, opts, br), b, ctx)
    t_step = _iteration_s(plan, br.stage_s, draft, host_overhead_s)
    tpot = t_step / a
    out = plan.batch * a / t_step / plan.chips_per_instance
    mem = _memory(arch, cluster, plan, opts, ctx, b * (1 + m), usable_fraction)
    ttft = np.zeros_like(tpot)
    ok = mem.fits & _slo_ok(SLO(None, slo.tpot_s), ttft, tpot) & _within_budget(plan, opts)
    return Evaluation(plan, br, mem, ttft, tpot, np.zeros_like(out), out, ok)


def evaluate_prefill(arch, cluster, plan, wl: Workload, slo: SLO, opts: Options, usable_fraction: float) -> Evaluation:
    """``plan.batch`` = prompts in flight (per rank and micro-batch: batch / (dp pp))."""
    n = _per_rank(plan)
    tokens = n * wl.input_tokens
    br = stage_time(arch, cluster, plan, precision=opts.precision, kv_precision_bytes=kv_bytes(opts.kv_precision),
                    attention_precision=opts.attention_precision, expert_balance=opts.expert_balance,
                    module_precision=opts.module_precision, glue_fusion=opts.glue_fusion, moe_backend=opts.moe_backend,
                    shared_experts_stream=opts.shared_experts_stream,
                    serving_stack=opts.serving_stack, moe_comm=opts.moe_comm,
                    decode_seqs=0.0, context_tokens=0.0, prefill_tokens=tokens,
                    prefill_len=wl.prefill_attention_tokens,
                    dispatch=opts.prefill_dispatch)
    br = _with_offload(arch, cluster, plan, opts, br)
    kvb = kv_bytes(opts.kv_precision)
    ttft = plan.pp * br.stage_s + kv_handover_s(arch, cluster, plan, wl, kvb)
    pre = tokens * plan.dp / br.stage_s / plan.chips_per_instance
    mem = _memory(arch, cluster, plan, opts, wl.input_tokens, tokens, usable_fraction)
    tpot = np.zeros_like(ttft)
    ok = mem.fits & _slo_ok(SLO(slo.ttft_s, None), ttft, tpot)
    return Evaluation(plan, br, mem, ttft, tpot, pre, np.zeros_like(pre), ok)


def grid(arch: ServingArch, cluster: ClusterSpec, opts: Options, batches=None, max_instance_chips=None) -> PlanGrid:
    f = opts.fixed
    return candidate_plans(arch, cluster.chips, cluster.scale_up.domain_chips, tp=f.get("tp"), pp=f.get("pp"),
                           dp=f.get("dp"), ep=f.get("ep"), batch=f.get("batch"), batches=batches,
                           max_instance_chips=max_instance_chips, overlap=f.get("overlap"),
                           max_batch=f.get("max_batch"),
                           unit=("chips" if cluster.devices_per_chip <= 1 else
                                 f"devices ({cluster.devices_per_chip} per chip; plans count devices)"))


def _per_plan(fn, values, sizes):
    """``fn`` over per-plan values of one or more evaluations (arrays, scalars broadcast over their plans,
    dataclasses of them, None): each array leaf gets the list of the evaluations' arrays, broadcast to their plan
    counts ``sizes``; constants shared by all (None, the chip's usable and capacity bytes) pass through."""
    v = values[0]
    if is_dataclass(v) and not isinstance(v, type):
        return type(v)(**{f.name: _per_plan(fn, [getattr(x, f.name) for x in values], sizes) for f in fields(v)
                          if f.init})
    if all(x is None for x in values) or (all(np.isscalar(x) for x in values) and all(x == v for x in values)):
        return v
    if any(x is None for x in values):
        raise ValueError("cannot join evaluations whose optional terms differ")
    return fn([np.broadcast_to(np.asarray(x), (n,)) for x, n in zip(values, sizes)])


def join(a: Evaluation, b: Evaluation) -> Evaluation:
    """The evaluations of two plan grids as one (the plans of ``a``, then those of ``b``)."""
    return _per_plan(np.concatenate, [a, b], [len(a.plan), len(b.plan)])


def with_memory_filled(evaluate, plan: PlanGrid, first: Evaluation, cap=None) -> Evaluation:
    """``first`` (= ``evaluate(plan)``) joined with every plan evaluated at the largest batch that fits (I8),
    at most ``cap`` (a batch, or a function of a plan grid giving one per plan, None per plan for no cap): the
    power-of-two batches of the grid miss the memory-limited batch at which a throughput run operates (a serving
    engine admits sequences until its KV cache or its maximum batch is full). The
    memory verdict's largest batch is taken at each plan's own forward size; where the filled batch's larger
    forward no longer fits, it is re-taken once at that size."""
    def capped(pl: PlanGrid):
        return cap(pl) if callable(cap) else cap

    filled = memory_filled(plan, first.memory.max_batch, capped(plan))
    if not len(filled):
        return first
    ev = evaluate(filled)
    short = ~ev.memory.fits
    if short.any():
        left = filled.take(np.flatnonzero(short))
        again = memory_filled(left, ev.memory.max_batch[short], capped(left))
        ev = _take(ev, np.flatnonzero(~short))
        if len(again):
            ev = join(ev, evaluate(again))
    return join(first, ev) if len(ev.plan) else first


def _take(ev: Evaluation, idx) -> Evaluation:
    return _per_plan(lambda arrays: arrays[0][idx], [ev], [len(ev.plan)])
