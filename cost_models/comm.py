"""Collective communication times and where a parallel group sits in the cluster.

Times follow the alpha-beta model with the bus-bandwidth factors of NVIDIA nccl-tests
(``doc/PERFORMANCE.md``, README formula 7): for a payload of S bytes on n ranks with per-rank
bus bandwidth B, all-reduce takes ``2(n-1)/n * S/B``, all-gather and reduce-scatter
``(n-1)/n * S/B``, all-to-all ``(n-1)/n * S/B`` (busbw = algbw*(n-1)/n) and a point-to-point send
``S/B``. Each ring step adds one latency alpha (all-reduce has 2(n-1) steps, the others n-1).
For all-reduce NCCL also has a (double binary) tree, ``2 * S/B + 2 * ceil(log2 n) * alpha``:
it loses to the ring on bandwidth but wins on latency for small messages on large groups, and
NCCL picks the faster, as ``all_reduce_s`` does.

Rank layout (Megatron-Core's default order ``tp-cp-ep-dp-pp``, innermost first): a global rank
is ``tp_rank + tp*(cp_rank + cp*(dp_rank + dp*pp_rank))``. So a TP group is ``tp`` consecutive
ranks (stride 1), a CP group has stride ``tp``, the data-parallel gradient group of the dense
weights is the ``dp*cp`` ranks with stride ``tp``, and a PP group has stride ``tp*cp*dp``. The
MoE layers re-split the same ranks as ``etp-ep-edp-pp`` with ``etp = tp``: an EP group has stride
``tp`` and the expert-data-parallel group stride ``tp*ep``.

Two-level topology: a group whose ranks all fall inside one scale-up (NVLink) domain runs at the
NVLink bandwidth. A group that crosses domains is limited by the scale-out network: each GPU has
its own NIC of ``scaleout_bandwidth`` per direction, so a ring across domains in which ``k``
members share each domain gets ``k`` NICs' worth of bus bandwidth per domain crossing (NCCL runs
one ring channel per NIC), i.e. ``min(nvlink_bw, k * scaleout_bw)``; with stride >= the domain
size every member sits in its own domain and the bottleneck is one NIC, ``scaleout_bw``. For a
hierarchical ring the inter-domain part dominates, so the intra-domain hops are not added.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from search_spaces.specs import ClusterSpec


def all_reduce_time_s(
    size_bytes: float, n: int, bw_bytes_per_s: float, latency_s: float = 0.0
) -> float:
    """Ring all-reduce of ``size_bytes`` per rank: reduce-scatter plus all-gather."""
    if n <= 1 or size_bytes <= 0:
        return 0.0
    return 2.0 * (n - 1) / n * size_bytes / bw_bytes_per_s + 2 * (n - 1) * latency_s


def tree_all_reduce_time_s(
    size_bytes: float, n: int, bw_bytes_per_s: float, latency_s: float = 0.0
) -> float:
    """Tree all-reduce: reduce up and broadcast down a tree, pipelined in chunks."""
    if n <= 1 or size_bytes <= 0:
        return 0.0
    return 2.0 * size_bytes / bw_bytes_per_s + 2 * math.ceil(math.log2(n)) * latency_s


def all_gather_time_s(
    size_bytes: float, n: int, bw_bytes_per_s: float, latency_s: float = 0.0
) -> float:
    """All-gather whose gathered result is ``size_bytes`` per rank (each rank owns 1/n)."""
    if n <= 1 or size_bytes <= 0:
        return 0.0
    return (n - 1) / n * size_bytes / bw_bytes_per_s + (n - 1) * latency_s


def reduce_scatter_time_s(
    size_bytes: float, n: int, bw_bytes_per_s: float, latency_s: float = 0.0
) -> float:
    """Reduce-scatter of ``size_bytes`` input per rank (each rank keeps 1/n of the sum)."""
    return all_gather_time_s(size_bytes, n, bw_bytes_per_s, latency_s)


def all_to_all_time_s(
    size_bytes: float, n: int, bw_bytes_per_s: float, latency_s: float = 0.0
) -> float:
    """All-to-all where each rank holds ``size_bytes`` before the exchange; (n-1)/n leaves it."""
    return all_gather_time_s(size_bytes, n, bw_bytes_per_s, latency_s)


def p2p_time_s(size_bytes: float, bw_bytes_per_s: float, latency_s: float = 0.0) -> float:
    """One point-to-point send of ``size_bytes`` (pipeline stage boundary, ring-attention hop)."""
    if size_bytes <= 0:
        return 0.0
    return size_bytes / bw_bytes_per_s + latency_s


@dataclass(frozen=True)
class GroupLink:
    """The links a group of ranks communicates over, with achieved (not nominal) bandwidths."""

    size: int
    ranks_per_domain: int  # members of the group that share one NVLink domain
    nvlink_bw_bytes_per_s: float  # achieved NVLink bandwidth per GPU
    scaleout_bw_bytes_per_s: float  # achieved NIC bandwidth per GPU
    nvlink_latency_s: float
    scaleout_latency_s: float

    @property
    def crosses_domain(self) -> bool:
        return self.ranks_per_domain < self.size

    @property
    def ring_bw_bytes_per_s(self) -> float:
        """Bus bandwidth of a ring collective over the group (see the module docstring)."""
        if not self.crosses_domain:
            return self.nvlink_bw_bytes_per_s
        nics = self.ranks_per_domain * self.scaleout_bw_bytes_per_s
        return min(self.nvlink_bw_bytes_per_s, nics)

    @property
    def latency_s(self) -> float:
        return self.scaleout_latency_s if self.crosses_domain else self.nvlink_latency_s

    @property
    def p2p_bw_bytes_per_s(self) -> float:
        """A single send between neighbouring members (one NIC when the group crosses domains)."""
        if self.crosses_domain:
            return self.scaleout_bw_bytes_per_s
        return self.nvlink_bw_bytes_per_s

    def all_reduce_s(self, size_bytes: float) -> float:
        """The faster of ring and tree (NCCL's choice)."""
        args = (size_bytes, self.size, self.ring_bw_bytes_per_s, self.latency_s)
        return min(all_reduce_time_s(*args), tree_all_reduce_time_s(*args))

    def all_gather_s(self, size_bytes: float) -> float:
        return all_gather_time_s(size_bytes, self.size, self.ring_bw_bytes_per_s, self.latency_s)

    def reduce_scatter_s(self, size_bytes: float) -> float:
        return reduce_scatter_time_s(
            size_bytes, self.size, self.ring_bw_bytes_per_s, self.latency_s
        )

    def p2p_s(self, size_bytes: float) -> float:
        return p2p_time_s(size_bytes, self.p2p_bw_bytes_per_s, self.latency_s)

    def all_to_all_s(self, size_bytes: float) -> float:
        """All-to-all: the share staying in the domain uses NVLink, the rest the rank's NIC.

        Both parts proceed concurrently, so the slower one sets the time.
        """
        n = self.size
        if n <= 1 or size_bytes <= 0:
            return 0.0
        k = self.ranks_per_domain
        intra = (k - 1) / n * size_bytes / self.nvlink_bw_bytes_per_s
        inter = (n - k) / n * size_bytes / self.scaleout_bw_bytes_per_s
        return max(intra, inter) + (n - 1) * self.latency_s


def scaleup_domain_size(cluster: ClusterSpec) -> int:
    """GPUs that reach each other over NVLink.

    Rack-scale NVLink (GB200/GB300 NVL72: the domain is larger than a tray) keeps the GPU's
    domain; otherwise the domain is the node, at most the GPU's NVLink domain. A GPU without
    NVLink (PCIe cards) is its own domain: its peers are reached through PCIe/the network at
    about the scale-out bandwidth.
    """
    gpu = cluster.gpu
    if gpu.nvlink_bandwidth_gb_per_s <= 0:
        return 1
    if gpu.nvlink_domain_size > gpu.gpus_per_node:
        return cluster.nvlink_domain_size
    return max(1, min(cluster.nvlink_domain_size, cluster.gpus_per_node))


def ranks_per_domain(size: int, stride: int, domain: int) -> int:
    """How many members of a group (``size`` ranks, ``stride`` apart) share one domain.

    Groups are assumed aligned to domain boundaries (jobs are placed on whole nodes/racks).
    """
    if size * stride <= domain:
        return size
    if stride >= domain:
        return 1
    return max(1, min(size, domain // stride))


def group_link(
    cluster: ClusterSpec,
    size: int,
    stride: int,
    *,
    nvlink_efficiency: float = 1.0,
    scaleout_efficiency: float = 1.0,
    nvlink_latency_s: float = 0.0,
    scaleout_latency_s: float = 0.0,
) -> GroupLink:
    """The links of a group of ``size`` ranks laid out ``stride`` ranks apart."""
    domain = scaleup_domain_size(cluster)
    nvlink_bw = cluster.nvlink_bw_bytes_per_s * nvlink_efficiency
    scaleout_bw = cluster.scaleout_bw_bytes_per_s * scaleout_efficiency
    if nvlink_bw <= 0:  # no NVLink: the "domain" is one GPU, peers are over the network
        nvlink_bw = scaleout_bw
    return GroupLink(
        size=max(1, size),
        ranks_per_domain=ranks_per_domain(max(1, size), max(1, stride), domain),
        nvlink_bw_bytes_per_s=nvlink_bw,
        scaleout_bw_bytes_per_s=scaleout_bw,
        nvlink_latency_s=nvlink_latency_s,
        scaleout_latency_s=scaleout_latency_s,
    )
