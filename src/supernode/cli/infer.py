"""``supernode infer MODEL --on SYSTEM_OR_CHIP``: SLO-bound serving estimate and search."""

from __future__ import annotations

import re
from typing import Optional

import typer

from supernode import units

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|us|s|m|min)?\s*$")
_SCALE = {"s": 1.0, None: 1.0, "ms": 1e-3, "us": 1e-6, "m": 60.0, "min": 60.0}


def parse_duration(text: str | None, name: str) -> float | None:
    """'2s', '50ms', '0.5' (seconds) -> seconds; UsageError naming ``name`` otherwise."""
    from supernode.errors import UsageError

    if text is None:
        return None
    m = _DURATION.match(text)
    if not m:
        raise UsageError(f"{name}: cannot read duration {text!r} (examples: 2s, 50ms, 0.5)")
    v = float(m.group(1)) * _SCALE[m.group(2)]
    if v <= 0:
        raise UsageError(f"{name}: must be a positive duration, got {text!r}")
    return v


def _fmt_s(v):
    return units.fmt(v, units.TIME) if v is not None else "-"


def _weights_s(res: dict) -> str:
    """'fp8', or the per-module formats (I20) grouped by format: 'fp4 (attention, router: bf16)'."""
    mods = res.get("module_precision")
    if not mods:
        return res["precision"]
    other = {}
    for module, fmt in mods.items():
        if fmt != res["precision"]:
            other.setdefault(fmt, []).append(module)
    return res["precision"] + "".join(f"; {', '.join(m)}: {f}" for f, m in other.items())


def _dist_s(w: dict) -> str:
    """' (means of 100 requests; TTFT for the 8,000-token 90th-percentile prompt; ...)' for a length distribution
    (I27), '' for fixed lengths."""
    if not w.get("samples"):
        return ""
    return (f" (means of {w['samples']:,} requests; TTFT for the {w['ttft_input_tokens']:,.0f}-token 90th-percentile "
            f"prompt; decoding context {w['decode_context_tokens']:,.0f}, prompt-attention length "
            f"{w['prefill_attention_tokens']:,.0f})")


def _print(res: dict) -> None:
    from rich.table import Table

    from supernode.cli import chips_label, console

    con = console()
    c = res["colocated"]
    con.print(f"[bold]{res['model']}[/bold] on {res['system']} ({chips_label(res)}), "
              f"{_weights_s(res)} weights, input {res['workload']['input_tokens']:g} / output "
              f"{res['workload']['output_tokens']:g} tokens{_dist_s(res['workload'])}, "
              f"SLO TTFT {_fmt_s(res['slo']['ttft_s'])}, TPOT {_fmt_s(res['slo']['tpot_s'])}")
    t = Table(title="best plans", title_justify="left")
    for h in ("mode", "plan", "TTFT", "TPOT", "output tok/s/chip", "output tok/s (system)", "memory/chip", "SLO"):
        t.add_column(h, justify="left" if h in ("mode", "plan") else "right")

    def plan_s(p):
        return (f"tp{p['tp']} pp{p['pp']} adp{p['attention_dp']} ep{p['ep']} batch {p['batch']}"
                f"{' overlap' if p['micro_batch_overlap'] else ''}")

    chunk = (f" chunk {c['prefill_chunk_tokens']:,}{' (searched)' if c['prefill_chunk_searched'] else ''}"
             if "token_budget" not in c else "")
    t.add_row("co-located", plan_s(c["plan"]) + chunk + f" x{c['instances']}", _fmt_s(c["ttft_s"]), _fmt_s(c["tpot_s"]),
              f"{c['decode_tokens_per_s_per_chip']:,.0f}", f"{c['decode_tokens_per_s']:,.0f}",
              units.fmt(c["memory_bytes_per_chip"], units.BYTES), "met" if c["meets_slo"] else "MISSED")
    d = res.get("disaggregated")
    if d and d.get("feasible"):
        t.add_row("disaggregated", f"P: {plan_s(d['prefill']['plan'])} x{d['prefill_instances']}; "
                  f"D: {plan_s(d['decode']['plan'])} x{d['decode_instances']}", _fmt_s(d["ttft_s"]),
                  _fmt_s(d["tpot_s"]), f"{d['output_tokens_per_s_per_chip']:,.0f}",
                  f"{d['output_tokens_per_s']:,.0f}",
                  units.fmt(max(d['prefill']['memory_bytes_per_chip'], d['decode']['memory_bytes_per_chip']),
                            units.BYTES), "met" if d["meets_slo"] else "MISSED")
    con.print(t)
    f = c.get("finite_run")
    if f:
        con.print(f"finite run (co-located, I28): {f['requests']:,} requests over {f['instances']} instance(s) of "
                  f"{f['slots_per_instance']:,} slots take {_fmt_s(f['duration_s'])} (prefill {_fmt_s(f['prefill_s'])}, "
                  f"ramp {_fmt_s(f['ramp_s'])} over {f['ramp_iterations']:,} iterations, "
                  f"full batch {_fmt_s(f['steady_s'])}, drain {_fmt_s(f['drain_s'])} over "
                  f"{f['drain_iterations']:,} iterations): {f['decode_tokens_per_s']:,.0f} output tokens/s, "
                  f"{f['ratio_to_steady']:.0%} of the steady rate")
    tb = c.get("token_budget")
    if tb:
        need = tb["decode_tokens_per_iteration"] + tb["prompt_tokens_per_iteration"]
        con.print(f"token budget (co-located, I29): {need:,.0f} tokens per rank and iteration on average "
                  f"({tb['decode_tokens_per_iteration']:,.0f} decode + {tb['prompt_tokens_per_iteration']:,.0f} prompt) "
                  f"of {tb['max_num_tokens']:,} -> "
                  + ("within" if tb["within"] else
                     f"OVER: the engine sustains at most {tb['sustained_batch']:,} sequences per instance, so this "
                     "estimate is an upper bound"))
    mem = c["memory"]
    con.print(f"memory verdict (co-located, per chip): weights {units.fmt(mem['weights_bytes'], units.BYTES)} + KV "
              f"{units.fmt(mem['kv_cache_bytes'], units.BYTES)} + activations "
              f"{units.fmt(mem['activation_bytes'], units.BYTES)} = {units.fmt(mem['total_bytes'], units.BYTES)} of "
              f"{units.fmt(mem['usable_bytes'], units.BYTES)} usable -> {'fits' if mem['fits'] else 'DOES NOT FIT'}"
              f" (max batch {mem['max_batch']})")
    b = c["breakdown"]
    con.print("stage time per micro-batch: " + ", ".join(f"{k} {_fmt_s(v)}" for k, v in b.items()
                                                         if not k.endswith("_ratio")))
    if "expert_balance_ratio" in b:
        con.print(f"expert load ({res['expert_balance']}): most loaded EP rank carries "
                  f"{b['expert_balance_ratio']:.2f}x the mean routed tokens (I17)")
    if c.get("tokens_per_joule"):
        con.print(f"energy: {c['tokens_per_joule']:.3g} output tokens/J")
    if c.get("usd_per_million_tokens"):
        con.print(f"cost: ${c['usd_per_million_tokens']:.3g} per million output tokens ({c['cost_assumption']})")
    from supernode.infer.track_record import describe

    con.print(f"track record (co-located): {describe(c['track_record'])}")
    if d and d.get("track_record"):
        con.print(f"track record (disaggregated decode): {describe(d['track_record'])}")
    con.print(f"{res['configurations_evaluated']:,} configurations evaluated")
    for a in res["assumptions"]:
        con.print(f"- assumption: {a}")


def register(app: typer.Typer) -> None:
    import supernode.infer  # noqa: F401  (appends the inference section to supernode.report.REPORT_SECTIONS)

    @app.command("infer")
    def infer_cmd(
        model: str = typer.Argument(..., help="Model id (supernode catalog models) or a model YAML file."),
        on: str = typer.Option(..., "--on", help="System id or chip id."),
        chips: Optional[int] = typer.Option(None, "--chips", help="Chip count (default: the system's own)."),
        input_tokens: Optional[float] = typer.Option(None, "--input", help="Prompt length (tokens, mean; "
                                                     "default 2048)."),
        output_tokens: Optional[float] = typer.Option(None, "--output", help="Output length (tokens, mean; "
                                                      "default 256)."),
        lengths: Optional[str] = typer.Option(None, "--lengths", help="Request-length distribution instead of "
                                              "--input/--output: CSV with input and output columns (optional "
                                              "weight) or JSON Lines. The model takes the means, the decoding "
                                              "context weighted by decode time, E[I^2]/E[I] for prompt attention, "
                                              "and reports TTFT for the 90th-percentile prompt (I27)."),
        ttft: Optional[str] = typer.Option(None, "--ttft", help="Time-to-first-token SLO, e.g. 2s."),
        tpot: Optional[str] = typer.Option(None, "--tpot", help="Time-per-output-token SLO, e.g. 50ms."),
        precision: Optional[str] = typer.Option(None, "--precision", help="Weights/GEMMs: bf16, fp16, fp8, int8, fp4."),
        kv_precision: str = typer.Option("bf16", "--kv-precision", help="KV cache: bf16, fp16, fp8, int8."),
        module_precision: Optional[str] = typer.Option(None, "--module-precision", help="Per-part weight formats "
                                                       "(I20): module=format pairs, e.g. attention=bf16,router=bf16, "
                                                       "or a recipe (trtllm-r1-fp4); modules attention, dense_ffn, "
                                                       "shared_experts, experts, router, mtp, lm_head; the rest at "
                                                       "--precision."),
        effective_bits: Optional[float] = typer.Option(None, "--effective-bits", help="The checkpoint's ModelOpt "
                                                       "AutoQuantize target, mean bits per searched weight (I32): "
                                                       "the parts at --precision are priced as a mix of it and "
                                                       "FP16 with that mean (e.g. 7.25 with --precision fp4)."),
        mtp: int = typer.Option(0, "--mtp", help="Draft tokens per step (MTP / speculative decoding)."),
        acceptance: float = typer.Option(1.0, "--acceptance", help="Mean tokens emitted per decode step."),
        attention_precision: Optional[str] = typer.Option(None, "--attention-precision", help="Attention "
                                                          "kernels: bf16 (default) or fp8 (needs --kv-precision fp8)."),
        prefill_chunk: Optional[int] = typer.Option(None, "--prefill-chunk", help="Chunked-prefill token budget per "
                                                    "rank and iteration (co-located serving). Default: searched "
                                                    "over 512-8192 for the best plan that meets the SLOs (I39), or "
                                                    "what --max-num-tokens leaves beside the decodes."),
        max_num_tokens: Optional[int] = typer.Option(None, "--max-num-tokens", help="The engine's token budget per "
                                                     "rank and iteration, decode and draft tokens counted "
                                                     "(TensorRT-LLM max_num_tokens, vLLM max_num_batched_tokens): "
                                                     "bounds the batch it sustains and the prompts beside the "
                                                     "decodes (I29)."),
        expert_balance: str = typer.Option("eplb", "--expert-balance", help="MoE expert-load balancer: eplb "
                                           "(default; EPLB with redundant experts), none (experts placed by id), "
                                           "ideal (simulated balanced routing). The most loaded EP rank sets the "
                                           "step (I17)."),
        serving_stack: str = typer.Option("overlapped", "--serving-stack", help="Host time per iteration (I19): "
                                          "overlapped (default; scheduler runs one batch ahead of the GPU), "
                                          "sglang-spec-v1 (SGLang speculative decoding without the overlap scheduler), "
                                          "sglang-ascend (SGLang's Ascend NPU backend, Ascend 910 chips only) or "
                                          "sglang-rocm (SGLang's ROCm backend, CDNA 3 chips only): the last two "
                                          "carry their own fixed time per MoE layer, I34."),
        glue_fusion: str = typer.Option("unfused", "--glue-fusion", help="Glue kernels the serving stack fuses "
                                        "(I22): unfused (default; a quantization kernel before every FP8/FP4 GEMM "
                                        "input), trtllm-1.0 (attention writes o_proj's quantized input; FP8 SwiGLU "
                                        "writes FP8; at TP > 1 the norms run inside the all-reduce, I42), "
                                        "trtllm-ar-fusion or sglang-ar-fusion (only the all-reduce + RMSNorm "
                                        "fusion, I42)."),
        moe_backend: str = typer.Option("grouped", "--moe-backend", help="Kernels of the routed experts (I37): "
                                        "grouped (default; grouped GEMM kernels and glue kernels) or trtllm-fused "
                                        "(TensorRT-LLM's fused MoE op: SGLang / vLLM --moe-runner-backend "
                                        "flashinfer_trtllm, TensorRT-LLM moe_config backend TRTLLM)."),
        shared_experts_stream: str = typer.Option("serial", "--shared-experts-stream", help="Where the MoE shared "
                                                  "experts run (I38): serial (default; in series with the routed "
                                                  "experts) or overlap (on a second stream in passes without prompt "
                                                  "tokens: SGLang's dual-stream MoE under CUDA graphs, its DeepSeek "
                                                  "layers with expert parallelism and no DeepEP)."),
        moe_dp_padding: bool = typer.Option(False, "--moe-dp-padding", help="The attention-DP ranks pad their MoE "
                                            "input to the largest rank's token count (I23; TensorRT-LLM 0.20's NVFP4 "
                                            "MoE): a prefilling rank makes every rank's experts work at its load."),
        admission: str = typer.Option("independent", "--admission", help="How the attention-DP ranks of an MoE "
                                      "instance admit prompts (I15): independent (default) or aligned (the same "
                                      "iterations on every rank, as in a fixed-length offline run started all at "
                                      "once)."),
        prefill_dispatch: str = typer.Option("dedup", "--prefill-dispatch", help="MoE dispatch/combine kernels of "
                                             "prefill forwards (I24): dedup (default; once per remote scale-up "
                                             "domain, then forwarded: DeepEP normal mode) or all-to-all (every "
                                             "routed copy)."),
        moe_comm: str = typer.Option("all-to-all", "--moe-comm", help="How the attention-DP ranks of an MoE "
                                     "instance reach the experts (I41): all-to-all (default; dispatch/combine "
                                     "kernels) or allgather (every rank gathers the group's tokens, a reduce-scatter "
                                     "returns the outputs: TensorRT-LLM's 2025 MoE without MNNVL or with EP <= "
                                     "top-k)."),
        weight_offload: Optional[str] = typer.Option(None, "--weight-offload", help="G/N: the routed experts of N "
                                                     "in every G layers live in host memory and are copied back "
                                                     "over the host link while the resident layers run (I26; "
                                                     "SGLang --offload-group-size G --offload-num-in-group N)."),
        requests: Optional[int] = typer.Option(None, "--requests", help="Also time a finite offline run of this "
                                               "many requests issued at once on the co-located plan, to its last "
                                               "token (I28: the drain as the batch thins out counts)."),
        disaggregated: bool = typer.Option(False, "--disaggregated", help="Also search prefill/decode disaggregation."),
        tp: Optional[int] = typer.Option(None, "--tp", help="Fix the tensor-parallel degree."),
        pp: Optional[int] = typer.Option(None, "--pp", help="Fix the pipeline-parallel degree."),
        ep: Optional[int] = typer.Option(None, "--ep", help="Fix the expert-parallel degree."),
        attention_dp: Optional[int] = typer.Option(None, "--attention-dp", help="Fix the attention data-parallel degree."),
        batch: Optional[int] = typer.Option(None, "--batch", help="Fix the sequences in flight per instance."),
        max_batch: Optional[int] = typer.Option(None, "--max-batch", help="Cap the sequences in flight per instance "
                                                "(a serving engine's maximum batch); the search tries the largest "
                                                "batch that fits in memory under it."),
        micro_batch_overlap: Optional[bool] = typer.Option(None, "--micro-batch-overlap/--no-micro-batch-overlap",
                                                           help="Fix two-micro-batch overlap of communication with "
                                                           "compute on (SGLang TBO, vLLM DBO) or off (stacks "
                                                           "without it); default: the faster of both."),
        as_json: bool = typer.Option(False, "--json", help="JSON output (SI units)."),
        allowed_for: Optional[str] = typer.Option(None, "--allowed-for", help="Buyer country (e.g. CN): refuse "
                                                  "hardware that buyer cannot obtain on --date."),
        date: Optional[str] = typer.Option(None, "--date", help="Date for --allowed-for (YYYY-MM-DD; default today)."),
    ) -> None:
        """Serving throughput, TTFT/TPOT and memory verdict; searches plans meeting the SLOs."""
        from supernode.cli import emit_json, get_catalog
        from supernode.infer.search import search
        from supernode.infer.serving import SLO, Workload

        from supernode.errors import UsageError
        from supernode.planning import require_allowed

        if lengths is not None:
            if input_tokens is not None or output_tokens is not None:
                raise UsageError("--lengths: give either a length distribution or --input/--output, not both")
            from supernode.infer.lengths import read_length_samples

            samples = read_length_samples(lengths)
            wl = samples.workload()
        else:
            wl = Workload(2048.0 if input_tokens is None else input_tokens,
                          256.0 if output_tokens is None else output_tokens)
            samples = None
        cat = get_catalog()
        allowed_notes = require_allowed(cat, on, allowed_for, date)
        res = search(cat, model, on, chips, workload=wl,
                     slo=SLO(parse_duration(ttft, "--ttft"), parse_duration(tpot, "--tpot")), precision=precision,
                     kv_precision=kv_precision, draft_tokens=mtp, acceptance_length=acceptance,
                     prefill_chunk_tokens=prefill_chunk, max_num_tokens=max_num_tokens,
                     attention_precision=attention_precision,
                     expert_balance=expert_balance, serving_stack=serving_stack,
                     module_precision=module_precision, effective_bits=effective_bits, glue_fusion=glue_fusion,
                     moe_backend=moe_backend, shared_experts_stream=shared_experts_stream,
                     moe_dp_padding=moe_dp_padding,
                     admission=admission, prefill_dispatch=prefill_dispatch, weight_offload=weight_offload,
                     moe_comm=moe_comm,
                     fixed={k: v for k, v in dict(tp=tp, pp=pp, dp=attention_dp, ep=ep, batch=batch,
                                                  max_batch=max_batch, overlap=micro_batch_overlap).items()
                            if v is not None}, disaggregated=disaggregated, requests=requests,
                     length_samples=samples)
        if allowed_notes:
            res["assumptions"] = list(res["assumptions"]) + allowed_notes
        if as_json:
            emit_json(res)
        else:
            _print(res)
