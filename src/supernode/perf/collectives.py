"""Collective communication costs on a multi-tier cluster, vectorized over configurations.

Notation: S = bytes per chip (the full buffer each chip contributes/receives), n = group size,
s = stride of the group's ranks in the rank order (ranks g, g+s, g+2s, ...), tier l with domain
D_l chips, per-chip per-direction bandwidth B_l and latency a_l.

Hierarchical decomposition (docs/model.md, C1): a group of n ranks at stride s has
n_0 = min(n, max(1, D_0 / s)) members inside one tier-0 domain, n_1 = min(n / n_0, max(1, D_1 / (s n_0)))
inside one tier-1 domain, ... with prod n_l = n. A ring / hierarchical algorithm then costs

    all-reduce:      T = sum_l [ 2 (n_l - 1)/n_l * S_l / B_l + 2 ceil(log2 n_l) a_l ],  S_l = S / prod_{k<l} n_k
    reduce-scatter:  T = sum_l [   (n_l - 1)/n_l * S_l / B_l +   ceil(log2 n_l) a_l ]
    all-gather:      same as reduce-scatter (S = the gathered output size)
    all-to-all:      T = max_l [ S * f_l / B_l ] + sum_l ceil(log2 n_l) a_l,
                     f_l = fraction of the buffer whose destination is reached first at tier l
    MoE dispatch / combine kernel (docs/inference.md, I18):
                     T = alpha + max_l [ S * f_l / B_l ],  alpha = the kernel's measured time at one token
    p2p (send/recv): T = S / B + a on the tier the two ranks span.

The bandwidth term is the standard ring bound 2(n-1)/n * S / B (Thakur et al. 2005; Patarasuk &
Yuan 2009; NCCL's "bus bandwidth" convention); latency uses a logarithmic term (tree / recursive
halving), which is what NCCL and HCCL fall back to at large n. Scale-up and scale-out links of a
chip are separate ports, so an all-to-all's tier phases overlap (max); the reduce phases of a
hierarchical all-reduce are sequential (sum). An algorithm-efficiency factor (achieved / nominal
bus bandwidth) per tier is an input (``bw_efficiency``), with its rationale in the data.
"""

from __future__ import annotations

import numpy as np

from supernode.hardware import ClusterSpec, TierSpec

ArrayLike = np.ndarray | float | int


def tier_factors(cluster: ClusterSpec, n: ArrayLike, stride: ArrayLike = 1) -> list[np.ndarray]:
    """Members of the group inside each tier's domain, per tier: n_0, n_1, ... (prod = n)."""
    n = np.asarray(n, dtype=float)
    s = np.asarray(stride, dtype=float)
    rest = n.copy()
    inner = np.ones_like(n)  # members already grouped below this tier
    out = []
    last = len(cluster.tiers) - 1
    for i, t in enumerate(cluster.tiers):
        if i == last:
            f = rest
        else:
            cap = np.maximum(1.0, np.floor(t.domain_chips / np.maximum(s * inner, 1.0)))
            f = np.minimum(rest, cap)
            # keep factors integral divisors of rest (groups are aligned in rank order)
            bad = rest % f != 0
            if np.any(bad):
                f = np.where(bad, _largest_divisor_leq(rest, f), f)
        out.append(f)
        rest = rest / f
        inner = inner * f
    return out


def _largest_divisor_leq(n: np.ndarray, cap: np.ndarray) -> np.ndarray:
    res = np.ones_like(n)
    for d in range(2, int(np.max(cap)) + 1 if np.size(cap) else 2):
        ok = (n % d == 0) & (d <= cap)
        res = np.where(ok, d, res)
    return res


def mesh_share(tier: TierSpec, members: ArrayLike) -> np.ndarray:
    """The share of a chip's bandwidth on ``tier`` that a group of ``members`` of its chips can use. A full mesh of
    M chips (``tier.mesh_chips``: AMD's 8-GPU Infinity Fabric boards, Ascend 910B's HCCS servers, Gaudi's RoCE mesh)
    gives each chip M - 1 equal links, one to each peer; the catalog's bandwidth is their sum, and a group of m chips
    reaches its peers over m - 1 of them: (m - 1) / (M - 1), one link for a pair. A switched tier gives any group
    the chip's whole bandwidth: 1."""
    m = np.asarray(members, dtype=float)
    big = tier.mesh_chips
    if big <= 2:
        return np.ones_like(m)
    return np.clip((m - 1.0) / (big - 1.0), 1.0 / (big - 1.0), 1.0)


def _arrays(cluster: ClusterSpec, bw_efficiency: ArrayLike | None):
    bws = np.array([t.bandwidth_bytes_per_s for t in cluster.tiers], dtype=float)
    lats = np.array([t.latency_s for t in cluster.tiers], dtype=float)
    eff = np.ones_like(bws) if bw_efficiency is None else np.broadcast_to(np.asarray(bw_efficiency, float), bws.shape)
    return bws * eff, lats


def _log2(x: np.ndarray) -> np.ndarray:
    return np.ceil(np.log2(np.maximum(x, 1.0)))


def all_reduce_s(cluster: ClusterSpec, size_bytes: ArrayLike, n: ArrayLike, stride: ArrayLike = 1,
                 bw_efficiency: ArrayLike | None = None) -> np.ndarray:
    """Hierarchical all-reduce time (s) of ``size_bytes`` per chip over a group of ``n``."""
    return 2.0 * reduce_scatter_s(cluster, size_bytes, n, stride, bw_efficiency)


def library_all_reduce_s(size_bytes: ArrayLike, n: ArrayLike, link_bytes_per_s: ArrayLike, latency_step_s: float,
                         fraction: float) -> np.ndarray:
    """C3: one all-reduce of ``size_bytes`` per rank inside one scale-up domain in the collective library's regime
    (NCCL / RCCL, the messages above the serving stacks' custom all-reduce limit):

        T = 2 ceil(log2 n) a + 2 (n - 1) / n S / (f B)

    a (latency per step) and f (bus bandwidth / link bandwidth) fitted per chip family on published all_reduce_perf
    sweeps (perf.calibration.fit_nccl_all_reduce, data/collective-kernels); B the link's bandwidth per direction."""
    n = np.maximum(np.asarray(n, float), 1.0)
    bus_bytes = 2.0 * (n - 1.0) / n * np.asarray(size_bytes, float)
    return 2.0 * _log2(n) * latency_step_s + bus_bytes / (fraction * np.asarray(link_bytes_per_s, float))


def library_all_gather_s(size_bytes: ArrayLike, n: ArrayLike, link_bytes_per_s: ArrayLike, latency_step_s: float,
                         fraction: float) -> np.ndarray:
    """One all-gather (or reduce-scatter) whose full buffer is ``size_bytes`` per rank, in the collective library's
    regime: half of :func:`library_all_reduce_s` of that buffer (the ring all-reduce is a reduce-scatter and an
    all-gather), T = ceil(log2 n) a + (n - 1) / n S / (f B), with C3's fitted a and f (I41)."""
    return 0.5 * library_all_reduce_s(size_bytes, n, link_bytes_per_s, latency_step_s, fraction)


def reduce_scatter_s(cluster: ClusterSpec, size_bytes: ArrayLike, n: ArrayLike, stride: ArrayLike = 1,
                     bw_efficiency: ArrayLike | None = None) -> np.ndarray:
    """Hierarchical reduce-scatter (= all-gather) time (s); ``size_bytes`` = full buffer per chip."""
    bws, lats = _arrays(cluster, bw_efficiency)
    size = np.asarray(size_bytes, dtype=float)
    total = np.zeros(np.broadcast(size, np.asarray(n), np.asarray(stride)).shape)
    chunk = size
    for l, f in enumerate(tier_factors(cluster, n, stride)):
        bw = bws[l] * mesh_share(cluster.tiers[l], f)
        total = total + np.where(f > 1, (f - 1.0) / f * chunk / bw + _log2(f) * lats[l], 0.0)
        chunk = chunk / f
    return total


all_gather_s = reduce_scatter_s


def all_to_all_s(cluster: ClusterSpec, size_bytes: ArrayLike, n: ArrayLike, stride: ArrayLike = 1,
                 bw_efficiency: ArrayLike | None = None) -> np.ndarray:
    """All-to-all time (s): each chip sends ``size_bytes`` spread evenly over the n-1 others.

    Destinations inside the tier-0 domain go over tier 0, the rest over the lowest tier that
    reaches them; tiers run concurrently (separate ports), so the time is the slowest tier plus
    the latency terms."""
    worst, lat = _all_to_all_parts(cluster, size_bytes, n, stride, bw_efficiency)
    return worst + lat


def moe_a2a_kernel_s(cluster: ClusterSpec, size_bytes: ArrayLike, n: ArrayLike, floor_s: float,
                     stride: ArrayLike = 1, bw_efficiency: ArrayLike | None = None) -> np.ndarray:
    """One MoE dispatch or combine kernel (s), docs/inference.md I18: T = alpha + max_l S f_l / B_l.

    The bandwidth term is :func:`all_to_all_s`'s (S = ``size_bytes`` per chip, f_l the share whose
    destinations are first reached at tier l, B_l the tier's achieved bandwidth); the fixed part alpha
    (``floor_s``) is the kernel's measured time at one token per rank and replaces the ceil(log2 n_l) a_l
    latency terms: a dispatch/combine kernel issues its puts to all peers at once and ends in one flag
    barrier, so its fixed cost is one kernel's launch + barrier + polling, not a log-depth collective.
    Measured alpha: TensorRT-LLM NVLinkOneSided on GB200 (18.9 us dispatch, 31.0 us combine at ep 8,
    flat to ep 32). How far off: with the same alpha it reproduces that blog's ep 8-64 tables at 1 and 2,048
    tokens per rank within 10% (dispatch at ep 64, batch 1: -31%) and overestimates mid sizes (128 tokens) by
    up to 31% (the fixed part overlaps the first bytes); the DeepEP low-latency RDMA table (H800, 128 tokens)
    within 10% at EP 16-256 (EP 8 dispatch -22%)."""
    worst, _ = _all_to_all_parts(cluster, size_bytes, n, stride, bw_efficiency)
    return floor_s + worst


def _all_to_all_parts(cluster: ClusterSpec, size_bytes: ArrayLike, n: ArrayLike, stride: ArrayLike = 1,
                      bw_efficiency: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(slowest tier's bandwidth time, sum of latency terms) of an all-to-all (s)."""
    bws, lats = _arrays(cluster, bw_efficiency)
    size = np.asarray(size_bytes, dtype=float)
    nn = np.asarray(n, dtype=float)
    factors = tier_factors(cluster, n, stride)
    reach_prev = np.ones_like(nn)
    worst = np.zeros(np.broadcast(size, nn, np.asarray(stride)).shape)
    lat = np.zeros_like(worst)
    for l, f in enumerate(factors):
        reach = reach_prev * f
        frac = (reach - reach_prev) / np.maximum(nn, 1.0)
        worst = np.maximum(worst, size * frac / (bws[l] * mesh_share(cluster.tiers[l], f)))
        lat = lat + np.where(f > 1, _log2(f) * lats[l], 0.0)
        reach_prev = reach
    return worst, lat


def moe_dispatch_s(cluster: ClusterSpec, token_bytes: ArrayLike, k: float, n: ArrayLike, stride: ArrayLike = 1,
                   bw_efficiency: ArrayLike | None = None, expert_groups: int | None = None,
                   groups_per_token: int | None = None) -> np.ndarray:
    """MoE dispatch (or combine) deduplicated per scale-up domain (C2): each of a chip's tokens
    (``token_bytes`` of them per chip) goes to k experts spread evenly over the n ranks of the EP
    group; it crosses the scale-out fabric once per remote domain holding one of its experts and is
    forwarded to the experts' chips inside that domain over the scale-up links (DeepEP normal
    kernels; DeepSeek-V3 report sec. 3.2.2). With G = n / n_0 domains and uniform routing a token
    hits G (1 - (1 - 1/G)^k) distinct domains; group-limited routing (E experts in ``expert_groups``
    groups, a token picks ``groups_per_token`` of them) caps that at groups_per_token·max(1, G/groups).
    Scale-up carries the k copies: k (n_0 - 1)/n_0 token sizes; the remote domains' share
    (G - 1)/G of the hits crosses the outer tiers in the proportions of :func:`all_to_all_s`.
    Tiers run concurrently (time = slowest tier + latency terms); with G = 1 this is all_to_all_s."""
    worst, lat = _moe_dispatch_parts(cluster, token_bytes, k, n, stride, bw_efficiency, expert_groups,
                                     groups_per_token)
    return worst + lat


def moe_dedup_kernel_s(cluster: ClusterSpec, token_bytes: ArrayLike, k: float, n: ArrayLike, floor_s: float,
                       stride: ArrayLike = 1, bw_efficiency: ArrayLike | None = None, expert_groups: int | None = None,
                       groups_per_token: int | None = None, per_rank: bool = False) -> np.ndarray:
    """One deduplicated MoE dispatch or combine kernel (s), docs/inference.md I24: T = alpha + the bandwidth
    term of :func:`moe_dispatch_s` (``token_bytes`` per token, counted once; the function counts the copies),
    with the kernel's fixed part alpha (``floor_s``) in place of the log-depth latency terms, as in
    :func:`moe_a2a_kernel_s`. ``per_rank`` (an EP group inside one scale-up domain, DeepEP's intranode normal
    kernels): a chip receives one copy of a token per rank that holds any of its experts, h = n (1 - (1 - 1/n)^k)
    copies per token over the group, its own included, which is what DeepEP's algorithm bandwidth counts
    (``bw_efficiency``'s scale-up entry is then that kernel's measured fraction where the family has one)."""
    worst, _ = _moe_dispatch_parts(cluster, token_bytes, k, n, stride, bw_efficiency, expert_groups,
                                   groups_per_token, per_rank=per_rank)
    return floor_s + worst


def _moe_dispatch_parts(cluster: ClusterSpec, token_bytes: ArrayLike, k: float, n: ArrayLike, stride: ArrayLike = 1,
                        bw_efficiency: ArrayLike | None = None, expert_groups: int | None = None,
                        groups_per_token: int | None = None, per_rank: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(slowest tier's bandwidth time, sum of latency terms) of :func:`moe_dispatch_s` (s); ``per_rank``: the
    scale-up links carry one copy per destination rank, own copies included (:func:`moe_dedup_kernel_s`), not
    the k (n_0 - 1)/n_0 copies per expert of :func:`moe_dispatch_s`."""
    bws, lats = _arrays(cluster, bw_efficiency)
    size = np.asarray(token_bytes, dtype=float)
    nn = np.asarray(n, dtype=float)
    factors = tier_factors(cluster, n, stride)
    f0 = factors[0]
    domains = nn / f0
    hit = domains * (1.0 - (1.0 - 1.0 / np.maximum(domains, 1.0)) ** k)
    if expert_groups and groups_per_token:
        hit = np.minimum(hit, groups_per_token * np.maximum(1.0, domains / expert_groups))
    remote = hit * (domains - 1.0) / np.maximum(domains, 1.0)
    bw0 = bws[0] * mesh_share(cluster.tiers[0], f0)
    if per_rank:
        ranks_hit = nn * (1.0 - (1.0 - 1.0 / np.maximum(nn, 1.0)) ** k)
        worst = np.where(nn > 1, size * ranks_hit, 0.0) / bw0
    else:
        worst = size * k * (f0 - 1.0) / np.maximum(f0, 1.0) / bw0
    lat = np.where(f0 > 1, _log2(f0) * lats[0], 0.0)
    reach_prev = f0.copy()
    outer = np.maximum(nn - f0, 1.0)
    for l, f in enumerate(factors[1:], start=1):
        reach = reach_prev * f
        share = (reach - reach_prev) / outer  # this tier's part of the remote destinations
        worst = np.maximum(worst, size * remote * share / (bws[l] * mesh_share(cluster.tiers[l], f)))
        lat = lat + np.where(f > 1, _log2(f) * lats[l], 0.0)
        reach_prev = reach
    return worst, lat


def p2p_s(cluster: ClusterSpec, size_bytes: ArrayLike, span_chips: ArrayLike,
          bw_efficiency: ArrayLike | None = None) -> np.ndarray:
    """Point-to-point transfer of ``size_bytes`` between two ranks; ``span_chips`` = rank distance + 1
    (the two ranks lie in one tier-l domain when span <= D_l)."""
    bws, lats = _arrays(cluster, bw_efficiency)
    span = np.asarray(span_chips, dtype=float)
    doms = np.array([t.domain_chips for t in cluster.tiers], dtype=float)
    idx = np.minimum(np.searchsorted(doms, span, side="left"), len(doms) - 1)
    pair = np.array([float(mesh_share(t, 2)) for t in cluster.tiers])  # one direct link on a full mesh
    return np.asarray(size_bytes, dtype=float) / (bws[idx] * pair[idx]) + lats[idx]
