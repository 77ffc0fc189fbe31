"""Collective formulas (nccl-tests factors) and the NVLink-domain placement of groups."""

from __future__ import annotations

import pytest

from cost_models.comm import all_gather_time_s
from cost_models.comm import all_reduce_time_s
from cost_models.comm import all_to_all_time_s
from cost_models.comm import group_link
from cost_models.comm import p2p_time_s
from cost_models.comm import ranks_per_domain
from cost_models.comm import reduce_scatter_time_s
from cost_models.comm import scaleup_domain_size
from search_spaces.specs import ClusterSpec
from tests.cost_models.cost_model_specs import make_cluster

GB = 1e9


def test_all_reduce_is_two_n_minus_one_over_n():
    # 1 GB on 8 ranks at 100 GB/s: 2 * 7/8 * 1 GB / 100 GB/s = 17.5 ms, plus 14 steps of 5 us
    assert all_reduce_time_s(1 * GB, 8, 100 * GB) == pytest.approx(0.0175)
    assert all_reduce_time_s(1 * GB, 8, 100 * GB, 5e-6) == pytest.approx(0.0175 + 14 * 5e-6)


def test_gather_scatter_and_all_to_all_are_n_minus_one_over_n():
    # 1 GB on 4 ranks at 100 GB/s: 3/4 * 10 ms = 7.5 ms, plus 3 steps of alpha
    for fn in (all_gather_time_s, reduce_scatter_time_s, all_to_all_time_s):
        assert fn(1 * GB, 4, 100 * GB) == pytest.approx(0.0075)
        assert fn(1 * GB, 4, 100 * GB, 1e-5) == pytest.approx(0.0075 + 3e-5)


def test_p2p_and_trivial_groups():
    assert p2p_time_s(1 * GB, 100 * GB, 1e-5) == pytest.approx(0.01 + 1e-5)
    assert all_reduce_time_s(1 * GB, 1, 100 * GB, 1e-5) == 0.0
    assert all_gather_time_s(0.0, 8, 100 * GB, 1e-5) == 0.0
    assert p2p_time_s(0.0, 100 * GB, 1e-5) == 0.0


@pytest.mark.parametrize(
    ("size", "stride", "domain", "expected"),
    [
        (8, 1, 8, 8),  # TP 8 fills the node
        (4, 2, 8, 4),  # CP 4 with stride tp=2 still fits the node
        (16, 1, 8, 8),  # 16 consecutive ranks: 8 per node
        (8, 2, 8, 4),  # stride 2 across 2 nodes: 4 members per node
        (8, 8, 8, 1),  # DP across TP-8 nodes: one member per node
        (64, 1, 72, 64),  # NVL72: 64 ranks in one rack
        (16, 8, 72, 9),  # stride 8 in a 72-GPU domain: 9 members per domain
    ],
)
def test_ranks_per_domain(size, stride, domain, expected):
    assert ranks_per_domain(size, stride, domain) == expected


def test_group_inside_nvlink_uses_nvlink_bandwidth():
    cluster = make_cluster(num_gpus=64)  # NVLink 400 GB/s, NIC 50 GB/s, 8 per node
    link = group_link(cluster, 8, 1, nvlink_efficiency=0.5)
    assert not link.crosses_domain
    assert link.ring_bw_bytes_per_s == pytest.approx(200 * GB)
    # all-reduce of 1 GB over the node: 2 * 7/8 * 1 GB / 200 GB/s
    assert link.all_reduce_s(1 * GB) == pytest.approx(2 * 7 / 8 / 200)


def test_group_across_nodes_is_bound_by_the_nics():
    cluster = make_cluster(num_gpus=64)
    # DP group of 8 with stride 8 (tp = 8): every member on its own node -> one 50 GB/s NIC
    dp = group_link(cluster, 8, 8, nvlink_latency_s=1e-6, scaleout_latency_s=1e-5)
    assert dp.crosses_domain and dp.ranks_per_domain == 1
    assert dp.ring_bw_bytes_per_s == pytest.approx(50 * GB)
    assert dp.latency_s == 1e-5
    assert dp.all_reduce_s(1 * GB) == pytest.approx(2 * 7 / 8 / 50 + 14 * 1e-5)
    # 32 consecutive ranks over 4 nodes: 8 NICs per node carry the ring -> min(400, 8 * 50)
    wide = group_link(cluster, 32, 1)
    assert wide.crosses_domain and wide.ring_bw_bytes_per_s == pytest.approx(400 * GB)
    # stride 4: 2 members per node -> 2 NICs' worth
    assert group_link(cluster, 16, 4).ring_bw_bytes_per_s == pytest.approx(100 * GB)


def test_p2p_across_domains_uses_one_nic():
    cluster = make_cluster(num_gpus=16)
    pp = group_link(cluster, 2, 8)  # two pipeline stages on two nodes
    assert pp.p2p_s(1 * GB) == pytest.approx(1 / 50)
    inside = group_link(cluster, 2, 1)
    assert inside.p2p_s(1 * GB) == pytest.approx(1 / 400)


def test_all_to_all_splits_intra_and_inter_domain_traffic():
    cluster = make_cluster(num_gpus=16)
    ep = group_link(cluster, 16, 1)  # 8 per node: 7/16 over NVLink, 8/16 over the NIC
    intra = 7 / 16 / 400
    inter = 8 / 16 / 50
    assert ep.all_to_all_s(1 * GB) == pytest.approx(max(intra, inter))
    inside = group_link(cluster, 8, 1)
    assert inside.all_to_all_s(1 * GB) == pytest.approx(7 / 8 / 400)


def test_nvl72_domain_spans_trays():
    gpu_over = {"nvlink_domain_size": 72, "gpus_per_node": 4, "nvlink_bandwidth_gb_per_s": 900.0}
    cluster = make_cluster(num_gpus=144, **gpu_over)
    assert scaleup_domain_size(cluster) == 72
    assert not group_link(cluster, 64, 1).crosses_domain
    assert group_link(cluster, 2, 72).crosses_domain


def test_node_size_bounds_an_eight_gpu_domain():
    cluster = ClusterSpec(gpu=make_cluster().gpu, num_gpus=16, gpus_per_node=4)
    assert scaleup_domain_size(cluster) == 4
    assert group_link(cluster, 8, 1).crosses_domain


def test_gpu_without_nvlink_talks_over_the_network():
    cluster = make_cluster(num_gpus=8, nvlink_bandwidth_gb_per_s=0.0, nvlink_domain_size=1)
    assert scaleup_domain_size(cluster) == 1
    link = group_link(cluster, 2, 1)
    assert link.crosses_domain
    assert link.ring_bw_bytes_per_s == pytest.approx(50 * GB)


def test_all_reduce_takes_the_faster_of_ring_and_tree():
    """Large payloads: the ring (2(n-1)/n S/B) wins; tiny ones on many ranks: the tree's
    2*log2(n) latency steps beat the ring's 2(n-1)."""
    from cost_models.comm import GroupLink
    from cost_models.comm import tree_all_reduce_time_s

    node = GroupLink(8, 8, 100 * GB, 100 * GB, 5e-6, 5e-6)
    big, small = 1 * GB, 1e3
    assert node.all_reduce_s(big) == pytest.approx(all_reduce_time_s(big, 8, 100 * GB, 5e-6))
    link = GroupLink(512, 8, 100 * GB, 100 * GB, 5e-6, 5e-6)
    tree = tree_all_reduce_time_s(small, 512, 100 * GB, 5e-6)
    assert tree == pytest.approx(2 * small / (100 * GB) + 2 * 9 * 5e-6)
    assert link.all_reduce_s(small) == pytest.approx(tree)


def test_gpus_without_nvlink_use_the_network_for_every_group():
    """L40S / RTX PRO 6000 (no NVLink, domain 1): tp=2 goes over PCIe/NIC, no division by 0."""
    for gpu in ("l40s-48gb", "rtx-pro-6000"):
        cluster = ClusterSpec(gpu=gpu, num_gpus=8)
        assert scaleup_domain_size(cluster) == 1
        link = group_link(cluster, 2, 1)
        assert link.crosses_domain
        assert link.ring_bw_bytes_per_s == cluster.scaleout_bw_bytes_per_s
        assert 0 < link.all_reduce_s(1 * GB) < float("inf")
        assert 0 < link.all_to_all_s(1 * GB) < float("inf")
