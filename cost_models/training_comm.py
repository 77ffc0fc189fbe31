"""Exposed communication of a training step, on the real topology (see ``comm.py``).

- Tensor parallel: 2 all-reduces forward and 2 backward per layer of ``b*s*h`` bf16 elements
  (with sequence parallelism all-gather + reduce-scatter pairs of the same time), 2 more with
  full recompute. On the critical path; frameworks that overlap them with the GEMMs
  (Megatron-Core TP comm overlap, async TP) leave a calibrated share exposed.
- Context parallel: ring attention passes the K/V chunk ``c-1`` times forward and K/V plus
  their gradients ``c-1`` times backward, overlapped with the blockwise attention of the same
  pass; only what outlasts the attention compute is exposed.
- Expert parallel: dispatch + combine all-to-alls, 2 forward and 2 backward per MoE layer (2
  more with full recompute), across the scale-out network when EP spans NVLink domains.
- Pipeline: the stage-boundary sends (2 per micro-batch and virtual stage).
- Data parallel (per step): gradient all-reduce, or reduce-scatter plus parameter all-gather
  (zero1/zero2). Bucketed and overlapped with compute: the reduce hides behind the backward of
  the last micro-batch and the gather behind the forward of the first, except the last (first)
  bucket, which has nothing left to hide behind. ZeRO-3/FSDP gathers the parameters twice and
  reduce-scatters the gradients every micro-batch, prefetching layer by layer behind compute;
  the first layer's gather is exposed.
- Optimizer: Adam is memory-bound; the local optimizer shard is read and written once.
"""

from __future__ import annotations

from cost_models.comm import GroupLink
from cost_models.compute import ACT_BYTES
from cost_models.compute import MicrobatchCompute
from cost_models.memory import WEIGHT_BYTES
from cost_models.memory import grad_bytes
from cost_models.plan import TrainingPlan

# Megatron-Core's default gradient bucket: max(40M, 1M * dp) parameters.
DP_BUCKET_PARAMS = 40e6
# Adam step per parameter: read fp32 grad, master, m, v (16 B); write master, m, v, bf16 weight.
OPTIMIZER_STEP_BYTES_PER_PARAM = 16.0 + 14.0


def tensor_parallel_s(plan: TrainingPlan) -> float:
    """Exposed TP collectives of one micro-batch on one stage."""
    cfg = plan.config
    if cfg.tp == 1:
        return 0.0
    size = plan.mb_tokens * plan.model.hidden_size * ACT_BYTES
    count = 6 if cfg.recompute == "full" else 4
    total = count * plan.link(cfg.tp, 1).all_reduce_s(size) * plan.layers_per_stage
    exposed = plan.cal.tp_comm_exposed_fraction if plan.framework.overlap_tp_comm else 1.0
    return total * exposed


def _kv_elements_per_token(plan: TrainingPlan) -> float:
    """K plus V elements per token one TP rank passes around the CP ring."""
    model = plan.model
    if model.attention == "mla":  # per-head K (nope + rope) and V after the up-projection
        assert model.v_head_dim is not None
        width = model.q_dim + model.num_attention_heads * model.v_head_dim
        return width / plan.config.tp
    return 2.0 * plan.kv_heads_per_rank * model.head_dim


def context_parallel_s(plan: TrainingPlan, mb: MicrobatchCompute) -> float:
    """Ring-attention K/V exchange of one micro-batch beyond what the attention hides."""
    cfg = plan.config
    if cfg.cp == 1:
        return 0.0
    chunk = plan.mb_tokens * _kv_elements_per_token(plan) * ACT_BYTES
    send = plan.link(cfg.cp, cfg.tp).p2p_s(chunk) * (cfg.cp - 1) * plan.layers_per_stage
    fwd = max(0.0, send - mb.attention.fwd_s)
    bwd = max(0.0, 2.0 * send - mb.attention.bwd_s)
    return fwd + bwd


def expert_parallel_s(plan: TrainingPlan) -> float:
    """Exposed dispatch + combine all-to-alls of one micro-batch on one stage."""
    cfg, model = plan.config, plan.model
    if plan.ep == 1:
        return 0.0
    tokens = plan.mb_tokens / plan.tp_sp
    size = tokens * model.experts_per_token * model.hidden_size * ACT_BYTES
    count = 6 if cfg.recompute == "full" else 4
    per_layer = count * plan.link(plan.ep, cfg.tp).all_to_all_s(size)
    moe_layers = model.num_moe_layers / cfg.pp
    return per_layer * moe_layers * plan.cal.ep_comm_exposed_fraction


def pipeline_p2p_s(plan: TrainingPlan) -> float:
    """Activation/gradient sends at stage boundaries of one micro-batch.

    Each TP rank sends 1/tp of the boundary activation (already split with sequence
    parallelism; otherwise Megatron's scatter-gather optimisation splits it and the receiver
    all-gathers it over NVLink, Narayanan et al. SC'21 sec. 4.1).
    """
    cfg = plan.config
    if cfg.pp == 1:
        return 0.0
    size = plan.mb_tokens * plan.model.hidden_size * ACT_BYTES / cfg.tp
    link = plan.link(cfg.pp, cfg.tp * cfg.cp * plan.dp)
    return 2 * cfg.vpp * link.p2p_s(size) * plan.cal.pp_p2p_exposed_fraction


def _groups(plan: TrainingPlan) -> list[tuple[GroupLink, float, float]]:
    """(link, parameters, parameters of one layer) per replication group: the dense weights
    over dp*cp ranks, the routed experts over dp*cp/ep ranks."""
    cfg = plan.config
    params = plan.params
    dense_dp = plan.dp * cfg.cp
    groups = [(plan.link(dense_dp, cfg.tp), params.dense, params.layer_dense)]
    if plan.model.is_moe and params.expert:
        link = plan.link(dense_dp // plan.ep, cfg.tp * plan.ep)
        groups.append((link, params.expert, params.expert / plan.layers_per_stage))
    return groups


def _fsdp_s(plan: TrainingPlan, mb: MicrobatchCompute) -> float:
    """ZeRO-3/FSDP per step: 2 parameter all-gathers (bf16) and 1 gradient reduce-scatter
    (fp32 for bf16 training) per micro-batch, prefetched layer by layer behind the
    micro-batch's compute. The first layer's gather has nothing to hide behind; of the rest a
    calibrated share stays exposed (gathers issued just in time, rate-limited prefetch, and
    collectives slowing the kernels they overlap), unless the compute cannot hide it at all."""
    comm = first = 0.0
    grad = grad_bytes(plan.config.dtype)
    for link, params, layer in _groups(plan):
        comm += 2 * link.all_gather_s(params * WEIGHT_BYTES) + link.reduce_scatter_s(params * grad)
        first += link.all_gather_s(layer * WEIGHT_BYTES)
    if not plan.framework.overlap_dp_comm:
        return comm * plan.m
    rest = comm - first
    exposed = max(plan.cal.fsdp_comm_exposed_fraction * rest, rest - mb.total_s)
    return (first + exposed) * plan.m


def data_parallel_s(plan: TrainingPlan, mb: MicrobatchCompute) -> float:
    """Exposed data-parallel time of one step (see the module docstring)."""
    sharding = plan.config.sharding
    if sharding == "zero3":
        return _fsdp_s(plan, mb)
    reduce = gather = 0.0
    total_params = 0.0
    grad = grad_bytes(plan.config.dtype)
    for link, params, _ in _groups(plan):
        total_params += params
        if sharding == "none":
            reduce += link.all_reduce_s(params * grad)
        else:
            reduce += link.reduce_scatter_s(params * grad)
            gather += link.all_gather_s(params * WEIGHT_BYTES)
    if not plan.framework.overlap_dp_comm:
        return reduce + gather
    bucket = min(1.0, DP_BUCKET_PARAMS / total_params) if total_params else 1.0
    exposed_reduce = max(bucket * reduce, reduce - mb.bwd_s)
    exposed_gather = max(bucket * gather, gather - mb.fwd_s)
    return exposed_reduce + exposed_gather


def optimizer_s(plan: TrainingPlan) -> float:
    """Adam update of the local optimizer shard, bound by HBM bandwidth."""
    cfg = plan.config
    params = plan.params
    dense_dp = plan.dp * cfg.cp
    shards = (1, 1) if cfg.sharding == "none" else (dense_dp, max(1, dense_dp // plan.ep))
    local = params.dense / shards[0] + params.expert / shards[1]
    return local * OPTIMIZER_STEP_BYTES_PER_PARAM / plan.hbm_bytes_per_s
