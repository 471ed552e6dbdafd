"""Calibration of the training attention fraction on a published end-to-end series
(``data/calibration/*.yaml``; docs/model.md, K3).

A series is a table of training runs of one model on one chip whose attention share varies from
row to row while everything else is held as published (the NeMo long-sequence table: 4K to 1M
tokens per sequence, the same attention work per GPU in every row, GEMM work falling as 1/GPUs).
Each row's modelled step splits exactly into a part proportional to 1/e_attn and the rest:
evaluating the model's best plan at two attention fractions f1, f2 gives
``T(f) = G + W/f`` with ``W = (T1 - T2)/(1/f1 - 1/f2)``. A least-squares fit of
``measured ≈ α·G + β·W/f1`` (relative errors) separates the attention's effective speed (f1/β)
from any bias of the rest (α, reported, not used). The fitted fraction is what the family's
``attention_training_peak_fraction`` records; the test suite re-derives it from the table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from supernode.catalog.loader import Catalog, builtin_dir, parse_item
from supernode.catalog.schema import Strict
from supernode.hardware import resolve_cluster
from supernode.perf.compute import efficiency
from supernode.train.plan import TrainWorkload
from supernode.train.search import search
from supernode.workload import load_model
from supernode.workload.model import ModelSpec


class TrainingSeries(Strict):
    id: str
    description: str
    source: str
    locator: str
    model: str
    chip: str
    precision: str
    cp_comm: Literal["ring", "all-gather"] = "ring"
    micro_batch: int = 1
    metric: str
    columns: list[Literal["seq_len", "chips", "global_batch", "tp", "pp", "dp", "cp", "model_tflop_per_s_per_chip"]]
    rows: list[list[float]]


def training_series() -> list[TrainingSeries]:
    folder = builtin_dir() / "calibration"
    return [parse_item(p, TrainingSeries) for p in sorted(Path(folder).glob("*.yaml"))]


def nemo_llama_flop_per_token(m: ModelSpec, seq_len: int) -> float:
    """NeMo's model FLOP per token for Llama models (nemo/utils/flops_formulas.py): non-causal
    attention, L D² (12 + 12 K/H + 18 F/D + 12 s/D + 6 V/(L D))."""
    L, D = m.layers, m.hidden
    return L * D * D * (12 + 12 * m.kv_heads / m.heads + 18 * m.ffn / D + 12 * seq_len / D + 6 * m.vocab / (L * D))


@dataclass(frozen=True)
class AttentionFit:
    series: TrainingSeries
    measured_s: np.ndarray  # per row
    other_s: np.ndarray  # modelled time not proportional to 1/e_attn
    attention_s: np.ndarray  # modelled time proportional to 1/e_attn, at the family's current fraction
    current_fraction: float
    alpha: float  # fitted factor on the rest (reported: a bias the attention fraction must not absorb)
    beta: float  # fitted factor on the attention part

    @property
    def fraction(self) -> float:
        """Effective training attention fraction of peak the series implies."""
        return self.current_fraction / self.beta

    @property
    def modelled_s(self) -> np.ndarray:
        return self.other_s + self.attention_s

    def error_fraction(self) -> np.ndarray:
        """Row errors of the model as it stands (predicted step / measured - 1)."""
        return self.modelled_s / self.measured_s - 1.0

    def fitted_error_fraction(self) -> np.ndarray:
        return (self.alpha * self.other_s + self.beta * self.attention_s) / self.measured_s - 1.0


def fit_attention(catalog: Catalog, series: TrainingSeries) -> AttentionFit:
    m = load_model(catalog, series.model)
    col = {c: i for i, c in enumerate(series.columns)}
    meas, other, attn = [], [], []
    f1 = None
    for row in series.rows:
        get = {c: row[i] for c, i in col.items()}
        s, n, B = int(get["seq_len"]), int(get["chips"]), int(get["global_batch"])
        cluster = resolve_cluster(catalog, series.chip, n)
        eff = efficiency(cluster.chip.family)
        f1 = eff.attention_training_fraction
        w = TrainWorkload(B, s, series.precision, cp_comm=series.cp_comm)
        fixed = dict(tp=int(get["tp"]), pp=int(get["pp"]), dp=int(get["dp"]), cp=int(get["cp"]), vpp=1,
                     micro_batch=series.micro_batch)
        best = search(m, cluster, w, fixed=fixed, top=1, eff=eff)
        plan = best.plans.row(0)
        t1 = float(best.breakdown.row(0)["step_time_s"])
        f2 = 0.5 * f1
        slow = dataclasses.replace(eff, attention_training_peak_fraction=f2)
        t2 = float(search(m, cluster, w, fixed=plan, top=1, eff=slow).breakdown.row(0)["step_time_s"])
        work = (t1 - t2) / (1.0 / f1 - 1.0 / f2)
        attn.append(work / f1)
        other.append(t1 - work / f1)
        meas.append(B * s * nemo_llama_flop_per_token(m, s) / (get["model_tflop_per_s_per_chip"] * 1e12 * n))
    M, G, A = np.array(meas), np.array(other), np.array(attn)
    (alpha, beta), *_ = np.linalg.lstsq(np.c_[G, A] / M[:, None], np.ones_like(M), rcond=None)
    return AttentionFit(series, M, G, A, float(f1), float(alpha), float(beta))
