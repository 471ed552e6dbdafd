"""C5 (validation/notes/custom-all-reduce-fit-rule.md): on a full-mesh scale-up tier (MI300X / MI325X / MI355X boards,
Ascend 910B servers, Gaudi boards) a group of m of the M chips reaches its peers over m - 1 of the M - 1 equal links
whose sum the catalog records; a switched tier gives any group the whole bandwidth."""

from __future__ import annotations

import numpy as np
import pytest

from supernode.catalog import load_catalog
from supernode.hardware import resolve_cluster
from supernode.perf import collectives as coll

CAT = load_catalog(use_env=False)


@pytest.mark.parametrize("chip", ["mi300x", "mi325x", "mi355x", "ascend-910b", "gaudi3"])
def test_full_mesh_chips_share_their_links_by_group_size(chip):
    tier = resolve_cluster(CAT, chip, 8).tiers[0]
    assert tier.topology == "full-mesh" and tier.mesh_chips == 8
    share = coll.mesh_share(tier, np.array([2, 4, 8]))
    assert share == pytest.approx([1 / 7, 3 / 7, 1.0])


def test_switched_tiers_give_any_group_the_whole_bandwidth():
    for on in ("h100", "b200", "gb200-nvl72"):
        tier = resolve_cluster(CAT, on).tiers[0]
        assert tier.mesh_chips == 0
        assert coll.mesh_share(tier, np.array([2, 4, 8])) == pytest.approx([1.0, 1.0, 1.0])


def test_a_cluster_smaller_than_the_board_keeps_the_mesh_size():
    """Two MI300X are joined by one of each chip's seven links, whatever the cluster's size."""
    tier = resolve_cluster(CAT, "mi300x", 2).tiers[0]
    assert tier.domain_chips == 2 and tier.mesh_chips == 8
    assert float(coll.mesh_share(tier, 2)) == pytest.approx(1 / 7)


def test_a_pair_all_reduce_runs_on_one_link():
    """The bandwidth terms (1 GiB): a TP2 all-reduce moves 2 (n-1)/n S = S over one link of B/7, a
    TP8 one moves 7/4 S over all seven: the pair is 4x slower, where a switched board makes it 1.75x faster."""
    cl = resolve_cluster(CAT, "mi300x", 8)
    size = np.array([2.0**30, 2.0**30])
    a = cl.tiers[0].latency_s
    t2, t8 = coll.all_reduce_s(cl, size, np.array([2, 8])) - np.array([2 * a, 6 * a])  # the latency terms
    assert t2 / t8 == pytest.approx(4.0)
    assert t2 == pytest.approx(2.0**30 / (cl.tiers[0].bandwidth_bytes_per_s / 7))


def test_point_to_point_on_a_mesh_takes_one_link():
    cl = resolve_cluster(CAT, "mi300x", 8)
    b = cl.tiers[0].bandwidth_bytes_per_s
    t = float(coll.p2p_s(cl, 2.0**30, 2))
    assert t == pytest.approx(2.0**30 / (b / 7) + cl.tiers[0].latency_s)
    h = resolve_cluster(CAT, "h100", 8)
    assert float(coll.p2p_s(h, 2.0**30, 2)) == pytest.approx(2.0**30 / h.tiers[0].bandwidth_bytes_per_s
                                                             + h.tiers[0].latency_s)


def test_an_all_to_all_inside_a_mesh_uses_the_groups_links():
    cl = resolve_cluster(CAT, "mi300x", 8)
    b = cl.tiers[0].bandwidth_bytes_per_s
    t4 = float(coll.all_to_all_s(cl, 2.0**30, 4)) - 2 * cl.tiers[0].latency_s
    assert t4 == pytest.approx(2.0**30 * 3 / 4 / (b * 3 / 7), rel=1e-6)
