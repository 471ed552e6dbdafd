"""Report section: DeepSeek-V3 pretraining (14.8T tokens) on four systems of similar size.

Registered in :data:`supernode.report.REPORT_SECTIONS` when :mod:`supernode.train` is imported.
"""

from __future__ import annotations

from supernode.catalog.loader import Catalog
from supernode.errors import SupernodeError

DSV3_TOKENS = 14.8e12  # DeepSeek-V3 report, sec. 4.2 / Table 1 (pre-training tokens)
DSV3_SEQ = 4096  # sec. 4.2: sequence length 4K in pre-training
DSV3_BATCH = 15360  # sec. 4.2: batch size ramped 3072 -> 15360 sequences; the final value is used
CHIPS = 2048  # DeepSeek-V3 was trained on 2,048 H800 (sec. 3.1)
SYSTEMS = (  # (label, --on, chips, precision, workload options)
    ("CloudMatrix 384 units (Ascend 910C)", "cloudmatrix-384", None, "bf16", {}),
    ("GB200 NVL72 units", "gb200-nvl72", None, "fp8", {}),
    ("2,048 x H800 (DeepSeek's own cluster size)", "h800", CHIPS, "fp8", {}),
    ("2,048 x H800 with DeepSeek's DualPipe and node-limited dispatch", "h800", CHIPS, "fp8",
     {"schedule": "dualpipe", "ep_dispatch": "dedup"}),
    ("H20 cluster of equal chip count", "h20", CHIPS, "fp8", {}),
)


def _units_for(catalog: Catalog, on: str) -> int:
    from supernode.hardware import resolve_cluster

    unit = resolve_cluster(catalog, on).chips
    n = max(1, round(CHIPS / unit))
    return n * unit


def training_answers(catalog: Catalog) -> str:
    """Markdown: time, chip-hours, energy and best plan to pretrain DeepSeek-V3 on 14.8T tokens."""
    from supernode.train.api import train_plans
    from supernode.train.plan import TrainWorkload

    lines = ["## Training DeepSeek-V3 (671B MoE, 14.8T tokens)\n",
             f"Global batch {DSV3_BATCH} x {DSV3_SEQ} tokens (DeepSeek-V3 report sec. 4.2); about {CHIPS:,} chips "
             "each (whole units of a supernode). DeepSeek reports 2.788M H800 GPU-hours in total (2.664M for "
             "pre-training), i.e. about 54 days on 2,048 H800 with FP8 and DualPipe.\n",
             "| system | chips | precision | best plan (tp/cp/ep/dp/pp/vpp, mb, zero, recompute) | step | MFU | days | chip-hours | energy | fits |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for label, on, chips, prec, opts in SYSTEMS:
        try:
            n = chips or _units_for(catalog, on)
            w = TrainWorkload(DSV3_BATCH, DSV3_SEQ, prec, tokens=DSV3_TOKENS, **opts)
            r = train_plans(catalog, "deepseek-v3", on, chips=n, precision=prec, top=1, workload=w)
        except SupernodeError as exc:
            lines.append(f"| {label} | | {prec} | could not be modelled: {exc} | | | | | | |")
            continue
        p = r["plans"][0]
        pl = p["plan"]
        tr = p["training"]
        energy = f"{tr['energy_j'] / 3.6e9:,.0f} MWh" if tr.get("energy_j") else "unknown"
        plan = (f"{pl['tp']}/{pl['cp']}/{pl['ep']}/{pl['dp']}/{pl['pp']}/{pl['vpp']}, mb {pl['micro_batch']}, "
                f"zero {pl['zero']}, {pl['recompute']}")
        lines.append(f"| {label} | {r['chips']:,} | {prec} | {plan} | {p['step_time_s']:.1f} s | {p['mfu']:.1%} | "
                     f"{tr['time_s'] / 86400:.0f} | {tr['chip_hours'] / 1e6:.2f} M | {energy} | "
                     f"{'yes' if p['fits'] else 'NO'} |")
        notes += [a for a in r["assumptions"] if a not in notes]
    lines.append("")
    lines.append("Energy is system power x time (accelerator TDP x count where the system has no all-in figure). "
                 "MFU is against the dense peak of the stated precision (FP8 where the chip has it; the 910C runs BF16).")
    lines += [f"- assumption: {a}" for a in notes]
    return "\n".join(lines) + "\n"
