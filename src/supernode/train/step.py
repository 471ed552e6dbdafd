"""Training step time of a transformer LLM under a parallel plan (docs/model.md T1-T5, T9).

One function, :func:`estimate`, evaluates any number of configurations at once (every plan
field a numpy array); a single configuration is the length-1 case, and the search calls the
same function. Notation: t TP, c CP, e EP, d DP, p PP, v virtual stages, b micro-batch,
m = B/(d·b) micro-batches, s sequence length, T = b·s/c tokens of one micro-batch on a TP group.

Per micro-batch and pipeline stage (T1): forward time t_f = Σ_layers [GEMMs (K1) + attention
core (K3) + element-wise ops (K4) + exposed TP/EP/CP communication]; backward t_b = 2x GEMMs,
2.5x attention core, 2x element-wise and the same communication again; full recompute adds one
forward, selective the attention core forward. The pipeline (T2, Narayanan et al. 2021 eq. 1-2):

    T_step = (m + (p-1)/v) · (t_f + t_b) + T_pp_p2p + T_dp_exposed + T_optimizer

bubble = (p-1)/v · (t_f + t_b). DP traffic (T4) hides behind one micro-batch's backward /
forward when overlapped; the optimizer (T5) streams ~32 bytes per locally owned parameter.

Evaluation: every term depends on a few plan fields only, so the configurations are grouped by
the distinct values of those fields and each formula is evaluated once per group, then broadcast
(gathered) to the configurations: per-layer compute and TP/CP/EP traffic on (t, c, e, b,
recompute, overlaps), pipeline terms on (t, c, p, d, v, b), DP traffic, optimizer and model-state
memory on (t, c, p, d, e, ZeRO, overlap_dp). Only the final combination (stage time, DP overlap,
step time, rates, memory sum) runs per configuration, in cache-sized chunks. Results are the same
as evaluating every formula on every configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property
from types import SimpleNamespace
from typing import Any

import numpy as np

from supernode.hardware import ClusterSpec
from supernode.perf import collectives as coll
from supernode.perf.compute import (Efficiency, attention_time_s, efficiency, gemm_time_s, memory_time_s,
                                    tier_bw_efficiency)
from supernode.train.memory import (MemoryBreakdown, chunk_layers, comm_buffer_bytes, layer_activation_bytes,
                                    layers_in_flight, model_state_bytes, param_split, params_per_chip)
from supernode.train.plan import PRECISION_BYTES, Plan, TrainWorkload
from supernode.workload.model import ModelSpec
from supernode.workload.shapes import (attention_core_flops, flops_per_token, indexer_core_flops, kv_width, layer_gemms,
                                       lm_head_gemm)

OPTIMIZER_BYTES_PER_PARAM = 32.0  # Adam: read fp32 master, m, v, grad (16 B); write master, m, v (12 B), bf16 weight


@dataclass(frozen=True)
class StepBreakdown:
    """Step-time breakdown (s), memory (bytes per chip) and derived rates; arrays over configurations."""

    compute_s: Any
    exposed_tp_comm_s: Any
    exposed_cp_comm_s: Any
    exposed_ep_comm_s: Any
    exposed_pp_comm_s: Any
    exposed_dp_comm_s: Any
    bubble_s: Any
    optimizer_s: Any
    step_time_s: Any
    tokens_per_s: Any
    mfu: Any
    hfu: Any
    weights_bytes: Any
    gradients_bytes: Any
    optimizer_bytes: Any
    activations_bytes: Any
    comm_buffers_bytes: Any
    memory_bytes_per_chip: Any
    memory_capacity_bytes: float
    fits: Any
    valid: Any

    def row(self, i: int = 0) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            a = np.asarray(v)
            out[f.name] = a.ravel()[i].item() if a.ndim else a.item()
        return out

    def take(self, idx: Any) -> "StepBreakdown":
        vals = []
        for f in fields(self):
            a = np.asarray(getattr(self, f.name))
            vals.append(a[idx] if a.ndim else a)
        return StepBreakdown(*vals)


def _coll_affine(fn, cluster: ClusterSpec, n, stride, bw_eff):
    """Collective time as size·α + β with (α, β) computed once per distinct (n, stride) pair:
    every cost in perf.collectives is affine in the buffer size."""
    n = np.asarray(n, dtype=float)
    stride = np.asarray(stride, dtype=float)
    key = n * (cluster.chips + 1.0) + stride
    uniq, inv = np.unique(key, return_inverse=True)
    un = np.floor(uniq / (cluster.chips + 1.0))
    us = uniq - un * (cluster.chips + 1.0)
    beta = np.asarray(fn(cluster, 0.0, un, us, bw_eff), dtype=float)
    alpha = np.asarray(fn(cluster, 1.0, un, us, bw_eff), dtype=float) - beta
    return alpha[inv].reshape(n.shape), beta[inv].reshape(n.shape)


def _p2p_affine(cluster: ClusterSpec, span, bw_eff):
    beta = coll.p2p_s(cluster, 0.0, span, bw_eff)
    alpha = coll.p2p_s(cluster, 1.0, span, bw_eff) - beta
    return alpha, beta


def _unfused_attention_s(m: ModelSpec, chip, eff: Efficiency, T, t, s):
    """Unfused attention core (T1b): batched GEMMs QK^T [T x d_qk]·[d_qk x s] and P·V over all
    H/t heads (full s x s, no causal skipping), plus the softmax/mask/dropout passes over the
    score matrix beyond the two batched GEMMs' own traffic (their memory term already writes the
    scores and reads the probabilities): the fused scale-mask-softmax reads and writes each score
    (4 bytes), dropout adds read, write and a 1-byte mask (5 bytes)."""
    dqk, dv = _dims(m)
    heads = m.heads / t
    p = "fp16" if "fp16" in chip.peak_flop_per_s else "bf16"
    t_bmm = gemm_time_s(chip, eff, T, s, dqk, p, heads) + gemm_time_s(chip, eff, T, dv, s, p, heads)
    scores = T * s * heads
    return t_bmm + memory_time_s(chip, eff, scores * (9.0 if m.dropout else 4.0))


def _layer_times(m: ModelSpec, kind: str, chip, eff: Efficiency, precision: str, T, t, e, s,
                 attention_kernel: str = "flash"):
    """Forward GEMM, attention-core and element-wise time (s) of one layer, one micro-batch."""
    gb = PRECISION_BYTES.get(precision, 2)
    t_gemm = 0.0
    for g in layer_gemms(m, T, kind, t, e):
        t_gemm = t_gemm + gemm_time_s(chip, eff, g.m, g.n, g.k, precision, g.count, gb, grouped=g.kind == "expert")
    if attention_kernel == "unfused":
        t_attn = _unfused_attention_s(m, chip, eff, T, t, s)
    else:
        # I43: a sparse-attention model's core attends to min(position, k) keys; its indexer's logits (replicated
        # over TP) run beside it
        t_attn = attention_time_s(chip, eff, attention_core_flops(m, T, s, True, t) + indexer_core_flops(m, T, s, True),
                                  precision, training=True)
    # element-wise bytes per token (K4/T1): 2 norms (2D each), 2 residual adds (3D each), RoPE on Q,K,
    # activation function, dropout; x2 bytes (bf16); sequence-parallel: split t ways
    D = m.hidden
    elems = 4 * D + 6 * D + (5 * D * 2 if m.dropout else 0)
    elems += 2 * (m.heads + m.kv_heads) * (m.mla.qk_rope_head_dim if m.mla else m.d_head) if m.position == "rope" else 0
    up = 2 if m.mlp == "swiglu" else 1
    if kind == "moe" and m.moe is not None:
        k = m.moe.active_experts
        elems += k * (up + 1) * m.moe.expert_ffn + 4 * k * D + (up + 1) * m.moe.shared_experts * m.moe.expert_ffn
    else:
        elems += (up + 1) * m.ffn
    t_elem = memory_time_s(chip, eff, 2.0 * elems * T / t)
    return t_gemm, t_attn, t_elem


def _at(table: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Per-group values broadcast to configurations: ``table[idx]``."""
    return table.take(idx)


def _per_group(x: Any, size: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(x, dtype=float), (size,))


# ---- grouping: each term depends on a few plan fields only, so it is evaluated once per distinct
# ---- tuple of those fields and broadcast back (like np.unique + inverse; degrees, stages and flags
# ---- are small integers, so a lookup table over their range replaces the sort). Full-length passes
# ---- run in chunks: temporaries stay in cache and are recycled instead of faulting in fresh pages.

_CHUNK = 32768  # configurations per pass
_TABLE_LIMIT = 1 << 22  # largest integer key range numbered with a lookup table (else np.unique)


def _chunks(n: int):
    for lo in range(0, n, _CHUNK):
        yield lo, min(n, lo + _CHUNK)


def _table_index(xs: np.ndarray, lo: int) -> np.ndarray:
    """Integral float values in (-2^31, 2^31) as table indices ``x - lo`` (the float -> int32
    conversion is the fast one)."""
    xi = xs.astype(np.int32).astype(np.intp)
    if lo:
        xi -= lo
    return xi


def _index_dtype(size: int):
    return np.uint32 if size < 1 << 32 else np.int64


class _Group:
    """Configurations grouped by the distinct values of some plan fields: ``inv[i]`` is the group of
    configuration i and ``group.<field>`` the value of that field per group (small arrays)."""

    def __init__(self, vals: dict[str, np.ndarray], inv: np.ndarray, size: int):
        self.vals, self.inv, self.size = vals, inv, size

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["vals"][name]
        except KeyError:
            raise AttributeError(name) from None


def _field_codes(x: dict[str, np.ndarray], n: int):
    """Codes 0..k-1 of the distinct values of each 1-D plan field: a single value (k = 1), small
    integers (a lookup table over their range: codes = lut[x - lo]) or else np.unique's inverse."""
    kind: dict[str, str] = {}
    lo: dict[str, int] = {}
    present: dict[str, np.ndarray] = {}
    for f, a in x.items():
        if n <= 1 or a.strides[0] == 0:
            kind[f] = "const"
            continue
        amin, amax = a.min(), a.max()
        if amin == amax:
            kind[f] = "const"
        elif -2 ** 31 < amin and amax < 2 ** 31 and amax - amin < _TABLE_LIMIT and amin == np.floor(amin):
            kind[f], lo[f] = "table", int(amin)
            present[f] = np.zeros(int(amax) - lo[f] + 1, dtype=bool)
        else:
            kind[f] = "unique"
    table = [f for f in x if kind[f] == "table"]
    for a, b in _chunks(n):  # the values present
        for f in table:
            if kind[f] != "table":
                continue
            xs = x[f][a:b]
            if not (np.floor(xs) == xs).all():
                kind[f] = "unique"  # not integral
                continue
            present[f][_table_index(xs, lo[f])] = True
    lut: dict[str, np.ndarray] = {}
    codes: dict[str, np.ndarray] = {}
    k: dict[str, int] = {}
    for f in x:
        if kind[f] == "table":
            lut[f] = np.cumsum(present[f], dtype=np.intp) - 1
            k[f] = int(lut[f][-1]) + 1
        elif kind[f] == "unique":
            u, inv = np.unique(x[f], return_inverse=True)
            codes[f], k[f] = inv.reshape(-1).astype(np.intp, copy=False), len(u)
        else:
            k[f] = 1
    return kind, lo, lut, codes, k


def _group_plan(pl: Plan, groupings: tuple[tuple[str, ...], ...]) -> list[_Group]:
    """Group the configurations of a 1-D plan by each tuple of field names in ``groupings``."""
    n = int(np.shape(pl.tp)[0])
    names = list(dict.fromkeys(f for g in groupings for f in g))
    x = {f: getattr(pl, f) for f in names}
    kind, lo, lut, codes, k = _field_codes(x, n)

    # 2. a mixed-radix key per group tuple, its distinct values, and the group of each configuration
    radix = [[f for f in g if k[f] > 1] for g in groupings]
    sizes = [int(np.prod([k[f] for f in r], dtype=float)) for r in radix]
    wide = [size >= 1 << 62 for size in sizes]  # mixed radix would overflow: group rows with np.unique
    keys = list(np.empty((len(groupings), n), dtype=_index_dtype(max(sizes))))  # one block (huge pages)
    seen = [np.zeros(size, dtype=bool) if size <= _TABLE_LIMIT else None for size in sizes]
    for a, b in _chunks(n):
        code = {}
        for f in names:
            if kind[f] == "table":
                code[f] = lut[f].take(_table_index(x[f][a:b], lo[f]))
            elif kind[f] == "unique":
                code[f] = codes[f][a:b]
        for r, key, mark, big in zip(radix, keys, seen, wide):
            if not r or big:
                continue
            kk = code[r[0]]
            for f in r[1:]:
                kk = kk * k[f] + code[f]
            key[a:b] = kk
            if mark is not None:
                mark[kk] = True
    out = []
    for r, g, key, mark, big in zip(radix, groupings, keys, seen, wide):
        if not r:  # every configuration in one group
            key[:], size = 0, min(n, 1)
        elif mark is None:  # key range too large for a lookup table
            rows = np.stack([np.unique(x[f], return_inverse=True)[1].reshape(-1) for f in r], axis=1) if big else key
            u, inv = np.unique(rows, return_inverse=True, axis=0 if big else None)
            key[:], size = inv.reshape(-1), len(u)
        else:
            renum = np.cumsum(mark, dtype=np.intp) - 1
            size = int(renum[-1]) + 1
            for a, b in _chunks(n):
                key[a:b] = renum.take(key[a:b].astype(np.intp))
        first = np.zeros(size, dtype=np.intp)  # one configuration of each group
        for a, b in _chunks(n):
            first[key[a:b]] = np.arange(a, b)
        out.append(_Group({f: np.asarray(x[f]).take(first) for f in g}, key, size))
    return out


def _group_product(outer: _Group, inner: _Group) -> _Group:
    """Groups of the configurations outer × inner (outer-major), from the groups of each factor:
    group (i, j) is number i·|inner| + j; every pair occurs."""
    vals = {f: np.repeat(v, inner.size) for f, v in outer.vals.items()}
    vals.update({f: np.tile(v, outer.size) for f, v in inner.vals.items()})
    size = outer.size * inner.size
    n_in = len(inner.inv)
    inv = np.empty(len(outer.inv) * n_in, dtype=_index_dtype(size))
    rows = max(1, _CHUNK // max(n_in, 1))
    for a in range(0, len(outer.inv), rows):  # whole outer rows per pass
        blk = outer.inv[a:a + rows].astype(np.intp)[:, None] * inner.size + inner.inv.astype(np.intp)[None, :]
        inv[a * n_in:(a + len(blk)) * n_in] = blk.ravel()
    return _Group(vals, inv, size)


# ---- the terms of the step model, each on the group of configurations it depends on

def _layer_terms(m: ModelSpec, cluster: ClusterSpec, w: TrainWorkload, eff: Efficiency, L: _Group):
    """Per micro-batch and layer: compute (T1), exposed TP/CP/EP traffic (T3), the LM head, the
    hardware FLOPs (T9) and the activation/buffer bytes (T7-T8); per distinct
    (t, c, e, b, recompute, overlap_tp, overlap_ep)."""
    t, e, c, b, r = L.tp, L.ep, L.cp, L.micro_batch, L.recompute
    chip = cluster.chip
    s, B, prec = w.seq_len, w.global_batch, w.precision
    abytes = 2.0  # activations exchanged in bf16
    bw_eff = tier_bw_efficiency(cluster, eff)
    ov = eff.overlap
    T = b * s / c

    # ---- compute per layer (forward) ----
    g_d, a_d, el_d = _layer_times(m, "dense", chip, eff, prec, T, t, e, s, w.attention_kernel)
    fwd_dense = g_d + a_d + el_d
    bwd_dense = 2 * g_d + 2.5 * a_d + 2 * el_d
    rc_dense = np.where(r >= 2, fwd_dense, np.where(r >= 1, a_d, 0.0))
    if m.moe_layers:
        g_m, a_m, el_m = _layer_times(m, "moe", chip, eff, prec, T, t, e, s, w.attention_kernel)
        if w.ep_dispatch == "dedup":  # SM-driven dispatch/combine kernels take SMs from overlapped compute (C2)
            slow = np.where((L.overlap_ep > 0) & (e > 1), 1.0 / (1.0 - ov.get("ep_dedup_sm_fraction", 0.0)), 1.0)
            g_m, a_m, el_m = g_m * slow, a_m * slow, el_m * slow
        fwd_moe = g_m + a_m + el_m
        bwd_moe = 2 * g_m + 2.5 * a_m + 2 * el_m
        rc_moe = np.where(r >= 2, fwd_moe, np.where(r >= 1, a_m, 0.0))
    else:
        fwd_moe = bwd_moe = rc_moe = 0.0

    # ---- TP (T3): with sequence parallelism 2 all-gathers + 2 reduce-scatters of T·D per layer per pass
    a_rs, b_rs = _coll_affine(coll.reduce_scatter_s, cluster, t, 1.0, bw_eff)
    tp_pass = 4.0 * (a_rs * T * m.hidden * abytes + b_rs) * (t > 1)
    tp_layer = tp_pass * (2.0 + (r >= 2))  # forward, backward (+ recomputed forward)
    tp_exposed_layer = tp_layer * (1.0 - L.overlap_tp * ov.get("tp_comm_hidden_fraction", 0.0))

    # ---- CP (T3): ring attention passes K,V blocks c-1 times; hidden behind the attention core
    kv = kv_width(m)
    if w.cp_comm == "all-gather":
        # Llama 3 sec. 3.3.2: K and V all-gathered before the local attention, on the critical path; the
        # backward gathers them again and reduce-scatters dK, dV (same cost as the gather, C1)
        a_ag, b_ag = _coll_affine(coll.reduce_scatter_s, cluster, c, t, bw_eff)
        cp_ag = a_ag * c * T * kv / t * abytes + b_ag
        cp_exposed_layer = cp_ag * (3.0 + (r >= 2)) * (c > 1)
    else:
        a_cp, b_cp = _p2p_affine(cluster, t * c, bw_eff)
        cp_fwd = (c - 1) * (a_cp * T * kv / t * abytes + b_cp)
        cp_exposed_layer = np.maximum(0.0, cp_fwd - a_d) + np.maximum(0.0, 2 * cp_fwd - 2.5 * a_d)
        cp_exposed_layer = cp_exposed_layer * (1 + (r >= 2)) * (c > 1)

    # ---- EP (T3): dispatch + combine all-to-all per MoE layer per pass, group e at stride t·c
    if m.moe_layers:
        disp_bytes = 1.0 if prec in ("fp8", "fp4") else abytes  # FP8 dispatch (DeepSeek-V3 sec. 3.3)
        if w.ep_dispatch == "dedup":  # once per remote scale-up domain, then forwarded (C2)
            mo = m.moe

            def dispatch(cl, size_, n_, s_, eff_):
                return coll.moe_dispatch_s(cl, size_, mo.active_experts, n_, s_, eff_, mo.expert_groups,
                                           mo.groups_per_token)

            a_a2a, b_a2a = _coll_affine(dispatch, cluster, e, t * c, bw_eff)
            size = T / t * m.hidden  # the function counts the copies
        else:
            a_a2a, b_a2a = _coll_affine(coll.all_to_all_s, cluster, e, t * c, bw_eff)
            size = T / t * m.moe.active_experts * m.hidden
        a2a_pass = (a_a2a * size * (disp_bytes + abytes) + 2 * b_a2a) * (e > 1)
        ep_layer = a2a_pass * (2.0 + (r >= 2))
        ep_exposed_layer = ep_layer * (1.0 - L.overlap_ep * ov.get("ep_comm_hidden_fraction", 0.0))
        if w.schedule == "dualpipe":
            # DualPipe runs one micro-batch's forward chunk against another's backward chunk: a layer's
            # dispatch/combine hides behind that pair's compute; only the excess is exposed (never more
            # than the 1F1B overlap leaves exposed)
            ep_exposed_layer = np.minimum(ep_exposed_layer, np.maximum(0.0, ep_layer - (fwd_moe + bwd_moe)))
    else:
        ep_exposed_layer = 0.0

    # ---- one micro-batch through all layers (the stage share is taken in _combine) ----
    Ld, Lm = m.dense_layers, m.moe_layers
    body_f = Ld * fwd_dense + Lm * fwd_moe
    body_b = Ld * bwd_dense + Lm * bwd_moe
    body_rc = Ld * rc_dense + Lm * rc_moe
    head = lm_head_gemm(m, T, t)
    head_f = gemm_time_s(chip, eff, head.m, head.n, head.k, prec, 1, 2.0)
    head_f = head_f + memory_time_s(chip, eff, 3 * 4.0 * T * m.vocab / t)  # fp32 softmax cross-entropy
    if m.mtp_layers:
        head_f = head_f * (1 + m.mtp_layers) + m.mtp_layers * (fwd_moe if Lm else fwd_dense)
    head_b = 2 * head_f
    comm_body = Ld * (tp_exposed_layer + cp_exposed_layer) + Lm * (tp_exposed_layer + cp_exposed_layer
                                                                   + ep_exposed_layer)
    work = body_f + body_b + body_rc

    # ---- hardware FLOPs (T9): recompute adds a forward (full) or the attention core (selective)
    tokens = B * s
    fpt = flops_per_token(m, s, causal=True)
    rc_flops = np.where(r >= 2, fpt, np.where(r >= 1, m.layers * (attention_core_flops(m, 1.0, s, True)
                                                                 + indexer_core_flops(m, 1.0, s, True)), 0.0))
    hw_flops = 3.0 * fpt * tokens + rc_flops * tokens

    act_layer, act_recompute, act_logits = layer_activation_bytes(m, t, c, b, r, s, prec, w.attention_kernel)
    buffers = comm_buffer_bytes(m, t, c, b, s, eff.memory, w.cp_comm)
    n = L.size
    return SimpleNamespace(
        work=_per_group(work, n), work_head=_per_group(work + head_f + head_b, n),
        comm_body=_per_group(comm_body, n), tp=_per_group((Ld + Lm) * tp_exposed_layer, n),
        cp=_per_group((Ld + Lm) * cp_exposed_layer, n), ep=_per_group(Lm * ep_exposed_layer, n),
        hw_flops=_per_group(hw_flops, n), act_layer=_per_group(act_layer, n),
        act_recompute=_per_group(act_recompute, n), act_logits=_per_group(act_logits, n),
        buffers=_per_group(buffers, n))


def _pipeline_terms(m: ModelSpec, cluster: ClusterSpec, w: TrainWorkload, eff: Efficiency, S: _Group):
    """Micro-batches, stage imbalance, bubble and PP p2p (T2), layers and micro-batches in flight
    (T8); per distinct (t, c, p, d, v, b)."""
    t, c, p, d, v, b = S.tp, S.cp, S.pp, S.dp, S.vpp, S.micro_batch
    s, B = w.seq_len, w.global_batch
    abytes = 2.0
    n_mb = B / (d * b)
    T = b * s / c
    cs = chunk_layers(m, p, v, w.pipeline_split)
    imbalance = np.where(p > 1, cs * p * v / m.layers, 1.0)  # whole layers per virtual stage
    # balanced split: the last stage holds cs·v - 1 layers and the head (its share of all layers' work)
    last_share = np.where(p > 1, (cs * v - 1) / m.layers, 1.0)

    # ---- PP p2p (T2): activations T·D/t (scatter-gather) per boundary, fwd and bwd
    a_pp, b_pp = _p2p_affine(cluster, t * c * d + 1, tier_bw_efficiency(cluster, eff))
    t_p2p = a_pp * T * m.hidden * abytes / t + b_pp
    hidden_pp = eff.overlap.get("pp_p2p_hidden_fraction", 0.0)
    pp_exposed = np.where(p > 1, (2 * (p - 1) + 2 * n_mb * v * (1 - hidden_pp)) * t_p2p, 0.0)

    layer_mb = layers_in_flight(m, p, v, d, b, B, w.schedule, w.pipeline_split)
    # DualPipe bubble (DeepSeek-V3 report, Table 2): (p/2 - 1)(F&B + B - 3W); with B = 2F, W = B/2 and an
    # overlapped F&B chunk of F + B = 3F this is (p/2 - 1)·2F = (p/2 - 1)·(2/3)(F + B)
    bubble = (p / 2.0 - 1.0) * 2.0 / 3.0 if w.schedule == "dualpipe" else (p - 1) / v
    return SimpleNamespace(
        p=p, n_mb=n_mb, imbalance=imbalance, bubble=bubble, pipeline=n_mb + bubble,
        pp_exposed=pp_exposed, layer_mb=layer_mb, last_share=last_share)


def _dp_terms(m: ModelSpec, cluster: ClusterSpec, w: TrainWorkload, eff: Efficiency, D: _Group):
    """DP traffic (T4), optimizer (T5), weights/gradients/optimizer-state bytes (T6) and the peak
    FLOP/s of the N = t·c·d·p chips (T9); per distinct (t, c, p, d, e, zero, overlap_dp)."""
    t, c, p, d, e, z = D.tp, D.cp, D.pp, D.dp, D.ep, D.zero
    bw_eff = tier_bw_efficiency(cluster, eff)
    ov = eff.overlap

    # ---- DP (T4): gradient reduce (+ parameter gather) over d·c ranks at stride t
    split = param_split(m)
    dense_pc, expert_pc = params_per_chip(m, split, t, p, e)
    g_bytes = w.grad_bytes
    pw_bytes = w.param_bytes
    n_dp = d * c
    n_edp = np.maximum(n_dp / e, 1.0)
    a_dp, b_dp = _coll_affine(coll.reduce_scatter_s, cluster, n_dp, t, bw_eff)
    a_edp, b_edp = _coll_affine(coll.reduce_scatter_s, cluster, n_edp, t * e, bw_eff)
    rs = (a_dp * dense_pc * g_bytes + b_dp) * (n_dp > 1) + (a_edp * expert_pc * g_bytes + b_edp) * (n_edp > 1)
    ag = (a_dp * dense_pc * pw_bytes + b_dp) * (n_dp > 1) + (a_edp * expert_pc * pw_bytes + b_edp) * (n_edp > 1)
    # zero 0: all-reduce = RS + AG of gradients; zero 1-2: RS grads + AG bf16 params; zero 3: + AG per micro-batch x2
    ag_step = np.where(z >= 1, ag, rs)
    ag_mb = np.where(z >= 3, 2.0 * ag, 0.0)
    # ZeRO-3 gathers use each micro-batch's compute first; only the spare time hides the step-end traffic
    ag_mb_pre = np.where(z >= 3, 2.0 * ag, 0.0)

    # ---- optimizer (T5)
    owned = dense_pc / np.where(z >= 1, n_dp, 1.0) + expert_pc / np.where(z >= 1, n_edp, 1.0)
    optimizer = memory_time_s(cluster.chip, eff, owned * OPTIMIZER_BYTES_PER_PARAM)

    weights, grads, optim = model_state_bytes(m, t, p, e, d, c, z, w.grad_bytes, w.param_bytes, split, w.schedule)
    n = D.size
    return SimpleNamespace(
        rs=_per_group(rs, n), ag_step=_per_group(ag_step, n), ag_mb=_per_group(ag_mb, n),
        ag_mb_hidden=_per_group(ag_mb_pre * D.overlap_dp, n),
        window=_per_group(ov.get("dp_overlap_window_fraction", 1.0) * D.overlap_dp, n),
        optimizer=_per_group(optimizer, n), peak=cluster.chip.peak(w.precision) * (t * c * d * p),
        weights=_per_group(weights, n), gradients=_per_group(grads, n), optimizer_bytes=_per_group(optim, n))


def _check_terms(m: ModelSpec, cluster: ClusterSpec, w: TrainWorkload, L: _Group, S: _Group, D: _Group):
    """The rules of :func:`validity`, each as (name, failing mask per group, grouping), in its order."""
    kv = m.heads if m.mla else m.kv_heads
    n_mb = w.global_batch / (S.dp * S.micro_batch)
    return [
        ("chips", D.tp * D.cp * D.dp * D.pp != cluster.chips, "D"),
        ("tp", (m.heads % D.tp != 0) | (kv % D.tp != 0), "D"),
        ("pp", S.pp * S.vpp > m.layers + (2 if w.pipeline_split == "balanced" else 0), "S"),
        ("vpp", (S.vpp > 1) & ((S.pp <= 1) | (np.mod(n_mb, S.pp) != 0) | (w.schedule == "dualpipe")), "S"),
        ("pp", (w.schedule == "dualpipe") & ((np.mod(S.pp, 2) != 0) | (S.pp < 2)), "S"),
        ("micro-batch", (np.mod(w.global_batch, S.dp * S.micro_batch) != 0) | (S.micro_batch < 1), "S"),
        ("cp", (np.mod(w.seq_len, 2 * L.cp) != 0) & (L.cp > 1), "L"),
        ("ep", (np.mod(D.dp, D.ep) != 0) | ((m.moe.routed_experts if m.moe else 1) % D.ep != 0), "D"),
        ("zero", (D.zero < 0) | (D.zero > 3), "D"),
        ("recompute", (L.recompute < 0) | (L.recompute > 2), "L"),
    ]


class _Evaluation:
    """The step model of every configuration of a 1-D plan. Each term is evaluated once per group
    of configurations sharing the plan fields it depends on (computed on first use); the methods
    broadcast and combine the groups' values for all configurations or a subset ``idx``, in
    chunks, into one output block (T2 pipeline, T4 DP overlap, T6-T9)."""

    LAYER = ("tp", "cp", "ep", "micro_batch", "recompute", "overlap_tp", "overlap_ep")
    PIPELINE = ("tp", "cp", "pp", "dp", "vpp", "micro_batch")
    DP = ("tp", "cp", "pp", "dp", "ep", "zero", "overlap_dp")
    TIMES = ("compute_s", "exposed_tp_comm_s", "exposed_cp_comm_s", "exposed_ep_comm_s", "exposed_pp_comm_s",
             "exposed_dp_comm_s", "bubble_s", "optimizer_s", "step_time_s", "tokens_per_s", "mfu", "hfu")
    MEMORY = ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "comm_buffers_bytes",
              "memory_bytes_per_chip")

    def __init__(self, m: ModelSpec, cluster: ClusterSpec, w: TrainWorkload, eff: Efficiency,
                 L: _Group, S: _Group, D: _Group, n: int):
        self.m, self.cluster, self.w, self.eff = m, cluster, w, eff
        self.L, self.S, self.D, self.n = L, S, D, n
        self.model_flops = 3.0 * flops_per_token(m, w.seq_len, causal=True) * (w.global_batch * w.seq_len)
        self.tokens = w.global_batch * w.seq_len
        self.capacity = float((cluster.chip.memory_bytes or np.inf) * eff.memory.get("usable_memory_fraction", 1.0))

    @cached_property
    def lay(self):
        return _layer_terms(self.m, self.cluster, self.w, self.eff, self.L)

    @cached_property
    def pipe(self):
        return _pipeline_terms(self.m, self.cluster, self.w, self.eff, self.S)

    @cached_property
    def dp(self):
        return _dp_terms(self.m, self.cluster, self.w, self.eff, self.D)

    @cached_property
    def rules(self):
        return _check_terms(self.m, self.cluster, self.w, self.L, self.S, self.D)

    # ---- per-configuration combination, on the group numbers (il, ip, id_) of a chunk

    @cached_property
    def _bad(self) -> dict[str, np.ndarray]:
        """Groups failing any rule, per grouping."""
        bad: dict[str, np.ndarray] = {}
        for _, mask, g in self.rules:
            bad[g] = bad[g] | mask if g in bad else mask
        return bad

    def _valid(self, il, ip, id_) -> np.ndarray:
        groups = {"L": il, "S": ip, "D": id_}
        ok = np.ones(len(il), dtype=bool)
        for g, mask in self._bad.items():
            ok &= ~mask.take(groups[g])
        return ok

    def _memory(self, il, ip, id_) -> MemoryBreakdown:
        """Bytes per chip (T6-T8), composed as in :func:`memory_per_chip`."""
        lay, pipe, dp = self.lay, self.pipe, self.dp
        acts = _at(lay.act_layer, il) * _at(pipe.layer_mb, ip)
        acts = acts + _at(lay.act_recompute, il)
        acts = acts + _at(lay.act_logits, il)
        return MemoryBreakdown(_at(dp.weights, id_), _at(dp.gradients, id_), _at(dp.optimizer_bytes, id_), acts,
                               _at(lay.buffers, il))

    def _times(self, il, ip, id_, step_only: bool = False) -> dict[str, np.ndarray]:
        """Step time and its parts (s) (T2, T4, T5)."""
        lay, pipe, dp = self.lay, self.pipe, self.dp
        # ---- one micro-batch through the most loaded stage (whole layers per virtual stage)
        p = _at(pipe.p, ip)
        imbalance = _at(pipe.imbalance, ip)
        work_head = _at(lay.work_head, il)
        work = _at(lay.work, il)
        if self.w.pipeline_split == "balanced":  # the head replaces one layer of the last stage
            stage_compute = np.maximum(work * imbalance / p, work * _at(pipe.last_share, ip) + work_head - work)
        else:
            stage_compute = np.maximum(work * imbalance / p, work_head / p)
        stage_compute = np.where(p > 1, stage_compute, work_head)
        stage_comm = _at(lay.comm_body, il) * imbalance / p
        per_mb = stage_compute + stage_comm
        n_mb = _at(pipe.n_mb, ip)

        # ---- DP (T4) overlap windows: one micro-batch's forward (~1/3) and backward (~2/3) of the stage;
        # fixed shares keep the step time monotone in FLOP/s (a window never exceeds the compute it hides
        # behind); ZeRO-3 gathers use each micro-batch's compute first, only the spare time hides the rest
        spare = np.maximum(0.0, stage_compute - _at(dp.ag_mb_hidden, id_))
        stage_f = spare / 3.0
        stage_b = spare * 2.0 / 3.0
        win = _at(dp.window, id_)
        dp_exposed = np.maximum(0.0, _at(dp.rs, id_) - win * stage_b) + np.maximum(0.0, _at(dp.ag_step, id_)
                                                                                    - win * stage_f)
        dp_exposed = dp_exposed + n_mb * np.maximum(0.0, _at(dp.ag_mb, id_) - win * stage_compute)
        optimizer = _at(dp.optimizer, id_)
        pp_exposed = _at(pipe.pp_exposed, ip)
        step = _at(pipe.pipeline, ip) * per_mb + pp_exposed + dp_exposed + optimizer
        if step_only:
            return {"step_time_s": step}
        peak = _at(dp.peak, id_)
        return {
            "compute_s": n_mb * stage_compute,
            "exposed_tp_comm_s": n_mb * (_at(lay.tp, il) * imbalance / p),
            "exposed_cp_comm_s": n_mb * (_at(lay.cp, il) * imbalance / p),
            "exposed_ep_comm_s": n_mb * (_at(lay.ep, il) * imbalance / p),
            "exposed_pp_comm_s": pp_exposed,
            "exposed_dp_comm_s": dp_exposed,
            "bubble_s": _at(pipe.bubble, ip) * per_mb,
            "optimizer_s": optimizer,
            "step_time_s": step,
            "tokens_per_s": self.tokens / step,
            "mfu": self.model_flops / (step * peak),
            "hfu": _at(lay.hw_flops, il) / (step * peak),
        }

    def _map(self, idx: Any, fn, names: tuple[str, ...] = (), flags: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        """``fn(il, ip, id_)`` chunk by chunk over all configurations (or ``idx``); its float outputs
        ``names`` and boolean outputs ``flags`` are collected into one block each (one allocation:
        large blocks get huge pages)."""
        n = self.n if idx is None else len(idx)
        values = np.empty((len(names), n))
        masks = np.empty((len(flags), n), dtype=bool)
        for a, b in _chunks(n):
            sel = slice(a, b) if idx is None else idx[a:b]
            res = fn(*(g.inv[sel].astype(np.intp) for g in (self.L, self.S, self.D)))
            for row, name in zip(values, names):
                row[a:b] = res[name]
            for row, name in zip(masks, flags):
                row[a:b] = res[name]
        return {**dict(zip(names, values)), **dict(zip(flags, masks))}

    # ---- public views

    def checks(self, idx: Any = None) -> list[tuple[str, np.ndarray]]:
        """(parameter, failing mask) pairs of :func:`validity`, in its order."""
        names = tuple(name for name, _, _ in self.rules)

        def fn(il, ip, id_):
            groups = {"L": il, "S": ip, "D": id_}
            return {name: mask.take(groups[g]) for name, mask, g in self.rules}
        return list(self._map(idx, fn, flags=names).items())

    def valid(self, idx: Any = None) -> np.ndarray:
        return self._map(idx, lambda *g: {"valid": self._valid(*g)}, flags=("valid",))["valid"]

    def _terms(self):
        """All per-group terms (evaluated now, so that e.g. a precision the chip lacks fails even
        for an empty plan, as evaluating the formulas directly would)."""
        return self.lay, self.pipe, self.dp

    def memory_bytes(self, idx: Any = None) -> np.ndarray:
        """Memory per chip (bytes) of each configuration."""
        self._terms()
        return self._map(idx, lambda *g: {"m": self._memory(*g).total_bytes}, ("m",))["m"]

    def step_time(self, idx: Any = None) -> np.ndarray:
        self._terms()
        return self._map(idx, lambda *g: self._times(*g, step_only=True), ("step_time_s",))["step_time_s"]

    def breakdown(self, idx: Any = None) -> StepBreakdown:
        self._terms()

        def fn(il, ip, id_):
            mem = self._memory(il, ip, id_)
            total = mem.total_bytes
            return {**self._times(il, ip, id_), "weights_bytes": mem.weights_bytes,
                    "gradients_bytes": mem.gradients_bytes, "optimizer_bytes": mem.optimizer_bytes,
                    "activations_bytes": mem.activations_bytes, "comm_buffers_bytes": mem.comm_buffers_bytes,
                    "memory_bytes_per_chip": total, "fits": total <= self.capacity,
                    "valid": self._valid(il, ip, id_)}
        out = self._map(idx, fn, self.TIMES + self.MEMORY, ("fits", "valid"))
        return StepBreakdown(**out, memory_capacity_bytes=self.capacity)


def _flat(plan: Plan) -> tuple[Plan, tuple[int, ...]]:
    """The plan as float64 arrays of one common 1-D length, and the original shape."""
    pl = plan.arrays()
    shape = np.shape(pl.tp)
    if len(shape) != 1:
        pl = Plan(*(np.ravel(getattr(pl, f.name)) for f in fields(pl)))
    return pl, shape


def evaluation(m: ModelSpec, cluster: ClusterSpec, w: TrainWorkload, plan: Plan, eff: Efficiency | None = None,
               inner: Plan | None = None) -> _Evaluation:
    """The grouped evaluation behind :func:`estimate` and :func:`validity`: of the configurations of
    ``plan`` (flattened), or with ``inner`` of the product ``plan`` × ``inner`` (plan-major: configuration
    i·len(inner) + j combines the parallel degrees of plan[i] with the other fields of inner[j]),
    grouped from the factors without forming the product (the search's candidate grid)."""
    eff = eff or efficiency(cluster.chip.family)
    groupings = (_Evaluation.LAYER, _Evaluation.PIPELINE, _Evaluation.DP)
    outer_pl = _flat(plan)[0]
    if inner is None:
        return _Evaluation(m, cluster, w, eff, *_group_plan(outer_pl, groupings), int(np.shape(outer_pl.tp)[0]))
    inner_pl = _flat(inner)[0]
    degrees = ("tp", "cp", "pp", "dp", "ep")
    outer = _group_plan(outer_pl, tuple(tuple(f for f in g if f in degrees) for g in groupings))
    rest = _group_plan(inner_pl, tuple(tuple(f for f in g if f not in degrees) for g in groupings))
    n = int(np.shape(outer_pl.tp)[0]) * int(np.shape(inner_pl.tp)[0])
    return _Evaluation(m, cluster, w, eff, *(_group_product(o, r) for o, r in zip(outer, rest)), n)


def estimate(m: ModelSpec, cluster: ClusterSpec, w: TrainWorkload, plan: Plan,
             eff: Efficiency | None = None) -> StepBreakdown:
    """Step time, throughput, MFU/HFU and memory per chip of every configuration in ``plan``.

    Per micro-batch and stage (T1-T3): t_f + t_b (+ recompute) over the stage's layers plus exposed
    TP/CP/EP traffic; T_step = (m + (p-1)/v)·per-micro-batch + T_pp_p2p + T_dp_exposed + T_optimizer
    (T2, T4, T5); memory per chip T6-T8; rates T9. Each term is computed once per distinct tuple of
    the plan fields it depends on (see :class:`_Evaluation`) and broadcast to the configurations."""
    shape = np.shape(plan.arrays().tp)
    br = evaluation(m, cluster, w, plan, eff).breakdown()
    if len(shape) != 1:
        br = StepBreakdown(*(np.reshape(v, shape) if np.ndim(v) else v
                             for v in (getattr(br, f.name) for f in fields(br))))
    return br


def _dims(m: ModelSpec) -> tuple[int, int]:
    from supernode.workload.shapes import attention_dims

    return attention_dims(m)


def validity(m: ModelSpec, cluster: ClusterSpec, w: TrainWorkload, plan: Plan) -> tuple[Any, list[tuple[str, Any]]]:
    """Boolean mask of structurally valid configurations and (parameter, failing-mask) pairs.

    Rules: t·c·d·p = chips; heads and kv heads divisible by t (MLA: heads); p·v <= L (L + 2 with the balanced split);
    v > 1 needs p > 1 and m divisible by p (Megatron interleaved schedule); B divisible by d·b; s divisible by
    2c (load-balanced ring attention); e divides d and the routed experts (e = 1 for dense)."""
    shape = np.shape(plan.arrays().tp)
    checks = [(name, np.reshape(mask, shape)) for name, mask in evaluation(m, cluster, w, plan).checks()]
    bad = np.zeros(shape, dtype=bool)
    for _, mask in checks:
        bad = bad | mask
    return ~bad, checks
