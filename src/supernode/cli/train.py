"""`supernode train MODEL --on SYSTEM_OR_CHIP`: best parallel plans and step-time breakdown."""

from __future__ import annotations

from typing import Optional

import typer

from supernode.train.api import train_plans


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        model: str = typer.Argument(..., help="Model id (see data/models) or a model YAML file."),
        on: str = typer.Option(..., "--on", help="System id or chip id."),
        chips: Optional[int] = typer.Option(None, "--chips", help="Chip count (default: the system's own)."),
        precision: str = typer.Option("bf16", "--precision", help="GEMM precision: bf16, fp16, fp8, fp4."),
        seq_len: int = typer.Option(4096, "--seq-len", help="Sequence length s (tokens)."),
        global_batch: Optional[int] = typer.Option(None, "--global-batch",
                                                   help="Sequences per step B (default: ~16M tokens / s)."),
        tokens: Optional[float] = typer.Option(None, "--tokens", help="Token budget for time/chip-hours/energy."),
        top: int = typer.Option(3, "--top", help="How many plans to show."),
        tp: Optional[int] = typer.Option(None, "--tp"),
        pp: Optional[int] = typer.Option(None, "--pp"),
        vpp: Optional[int] = typer.Option(None, "--vpp"),
        dp: Optional[int] = typer.Option(None, "--dp"),
        ep: Optional[int] = typer.Option(None, "--ep"),
        cp: Optional[int] = typer.Option(None, "--cp"),
        micro_batch: Optional[int] = typer.Option(None, "--micro-batch"),
        zero: Optional[int] = typer.Option(None, "--zero", help="ZeRO stage 0-3."),
        recompute: Optional[str] = typer.Option(None, "--recompute", help="none, selective or full."),
        grad_dtype: str = typer.Option("fp32", "--grad-dtype", help="Gradient buffer/reduction dtype: fp32 "
                                       "(Megatron-LM default) or bf16 (NeMo performance recipes, MLPerf)."),
        param_dtype: str = typer.Option("bf16", "--param-dtype", help="Weights kept on chip: bf16, or fp8 "
                                        "(Transformer Engine fp8 parameters)."),
        schedule: str = typer.Option("1f1b", "--schedule", help="Pipeline schedule: 1f1b (interleaved when "
                                     "vpp > 1) or dualpipe (DeepSeek-V3: paired forward/backward chunks hide "
                                     "the expert all-to-all; 2x weights)."),
        pipeline_split: str = typer.Option("uniform", "--pipeline-split", help="Layers per pipeline stage: "
                                           "uniform, or balanced (embedding and head+loss count as one layer "
                                           "each: first and last stage hold one layer fewer; Llama 3)."),
        ep_dispatch: str = typer.Option("all-to-all", "--ep-dispatch", help="MoE dispatch/combine: all-to-all "
                                        "(every expert copy sent to its chip) or dedup (once per remote scale-up "
                                        "domain, forwarded inside it: DeepEP; uses the model's group-limited routing)."),
        cp_comm: str = typer.Option("ring", "--cp-comm", help="Context-parallel attention: ring (K/V passed around "
                                    "the CP ring behind the attention core) or all-gather (K/V all-gathered, dK/dV "
                                    "reduce-scattered, exposed; Llama 3)."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output (SI units)."),
        allowed_for: Optional[str] = typer.Option(None, "--allowed-for", help="Buyer country (e.g. CN): refuse "
                                                  "hardware that buyer cannot obtain on --date."),
        date: Optional[str] = typer.Option(None, "--date", help="Date for --allowed-for (YYYY-MM-DD; default today)."),
    ) -> None:
        """Search parallel plans (TP, CP, EP, DP, PP, interleaving, ZeRO, recompute, micro-batch)."""
        from supernode.cli import console, emit_json, fail, get_catalog

        if recompute is not None and recompute not in ("none", "selective", "full"):
            fail("--recompute: expected none, selective or full")
        if zero is not None and not 0 <= zero <= 3:
            fail("--zero: expected 0, 1, 2 or 3")
        fixed = dict(tp=tp, pp=pp, vpp=vpp, dp=dp, ep=ep, cp=cp, micro_batch=micro_batch, zero=zero,
                     recompute=recompute)
        from supernode.planning import require_allowed

        cat = get_catalog()
        allowed_notes = require_allowed(cat, on, allowed_for, date)
        result = train_plans(cat, model, on, chips=chips, precision=precision, seq_len=seq_len,
                             global_batch=global_batch, tokens=tokens, top=top, fixed=fixed,
                             grad_dtype=grad_dtype, param_dtype=param_dtype, schedule=schedule,
                             pipeline_split=pipeline_split, ep_dispatch=ep_dispatch, cp_comm=cp_comm)
        if allowed_notes:
            result["allowed_for"] = {"country": allowed_for.upper(), "date": date, "notes": allowed_notes}
        if as_json:
            emit_json(result)
            return
        _print(console(), result)


def _print(con, res: dict) -> None:
    from rich.table import Table

    from supernode import units
    from supernode.cli import chips_label

    w = res["workload"]
    con.print(f"[bold]{res['model']}[/bold] on {res['cluster']} ({chips_label(res)}), "
              f"{w['precision']}, B={w['global_batch']} x s={w['seq_len']}; "
              f"{res['search']['evaluated']:,} configurations evaluated, {res['search']['fitting']:,} fit")
    t = Table(title_justify="left")
    for h in ("#", "tp", "cp", "ep", "dp", "pp", "vpp", "mb", "zero", "recompute", "step", "tokens/s", "MFU",
              "HFU", "mem/chip", "fits"):
        t.add_column(h, justify="right")
    for i, p in enumerate(res["plans"]):
        pl = p["plan"]
        t.add_row(str(i + 1), *(str(pl[k]) for k in ("tp", "cp", "ep", "dp", "pp", "vpp", "micro_batch", "zero")),
                  pl["recompute"], f"{p['step_time_s']:.2f} s", f"{p['tokens_per_s']:,.0f}", f"{p['mfu']:.1%}",
                  f"{p['hfu']:.1%}", units.fmt(p["memory_bytes_per_chip"], units.BYTES), "yes" if p["fits"] else "NO")
    con.print(t)
    if res["plans"]:
        b = res["plans"][0]["breakdown"]
        con.print("best plan, step time breakdown: " + ", ".join(
            f"{k.removesuffix('_s')} {v:.3g} s" for k, v in b.items() if k.endswith("_s")))
        con.print("memory per chip: " + ", ".join(
            f"{k.removesuffix('_bytes')} {units.fmt(v, units.BYTES)}" for k, v in b.items() if k.endswith("_bytes")))
        tr = res["plans"][0].get("training")
        if tr:
            con.print(f"to train {tr['tokens']:.3g} tokens: {tr['time_s'] / 86400:.1f} days, "
                      f"{tr['chip_hours']:,.0f} chip-hours"
                      + (f", {tr['energy_j'] / 3.6e9:,.0f} MWh" if tr.get("energy_j") else ""))
    for a in res["assumptions"]:
        con.print(f"[dim]assumption: {a}[/dim]")
