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
  reduce-scatters the gradients every micro-batch, one collective per layer (each paying its
  ring latency), prefetching layer by layer behind compute; the first layer's gather is
  exposed. ``Framework`` says where a framework does otherwise (one NIC per GPU instead of
  multi-rail rings, a third gather for the recomputed forward, prefetch one module ahead).
- Optimizer: Adam is memory-bound; the local optimizer shard is read and written once.
"""

from __future__ import annotations

from dataclasses import replace

from cost_models.comm import GroupLink
from cost_models.compute import ACT_BYTES
from cost_models.compute import MicrobatchCompute
from cost_models.flops import attention_projection_weights
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


def _fsdp_link(plan: TrainingPlan, link: GroupLink) -> GroupLink:
    """The link ZeRO-3 collectives see: NCCL's multi-rail rings, or one NIC per GPU across
    domains for frameworks that do not reach them (``Framework.fsdp_multi_rail``)."""
    if plan.framework.fsdp_multi_rail or not link.crosses_domain:
        return link
    return replace(link, ranks_per_domain=1)


def fsdp_gathers_per_microbatch(plan: TrainingPlan) -> int:
    """Parameter all-gathers per micro-batch: forward and backward, plus one for the
    recomputed forward where the framework re-gathers for it."""
    regather = plan.framework.fsdp_regather_for_recompute and plan.config.recompute == "full"
    return 3 if regather else 2


def fsdp_comm_s(plan: TrainingPlan) -> tuple[float, float]:
    """(all ZeRO-3 collectives of one micro-batch, the first layer's gather) in seconds.

    The collectives are issued layer by layer (one FSDP unit per layer), so each layer's
    gather and reduce-scatter pays the ring latency of its own: ``layers * (n-1) * alpha``
    per pass, which matters on hundreds of ranks."""
    comm = first = 0.0
    grad = grad_bytes(plan.config.dtype)
    gathers = fsdp_gathers_per_microbatch(plan)
    layers = max(1.0, plan.layers_per_stage)
    for group_link_, params, layer in _groups(plan):
        link = _fsdp_link(plan, group_link_)
        gather = layers * link.all_gather_s(params * WEIGHT_BYTES / layers)
        comm += gathers * gather + layers * link.reduce_scatter_s(params * grad / layers)
        first += link.all_gather_s(layer * WEIGHT_BYTES)
    return comm, first


def _layer_weight_matrices(plan: TrainingPlan) -> list[float]:
    """Parameters of a dense layer's weight matrices in execution order (QKV, output
    projection, MLP up (and gate), MLP down): the modules a per-module prefetch moves."""
    model = plan.model
    h, ffn = model.hidden_size, model.ffn_hidden_size
    out_proj = model.q_dim * h
    return [
        attention_projection_weights(model) - out_proj,
        out_proj,
        (model.mlp_matrices - 1) * ffn * h,
        ffn * h,
    ]


def module_prefetch_s(compute_s: float, comm_s: float, weights: list[float]) -> float:
    """Time of compute and gathers overlapped one module ahead: while module ``i`` computes,
    module ``i+1``'s weights arrive, so each slot lasts ``max(c_i, m_{i+1})`` (compute and
    traffic of a module both in proportion to its weights; layers repeat, hence cyclic).
    Never less than ``max(compute_s, comm_s)``; equal to it when the modules are uniform."""
    total = sum(weights)
    n = len(weights)
    return sum(max(compute_s * weights[i], comm_s * weights[(i + 1) % n]) / total for i in range(n))


def _fsdp_s(plan: TrainingPlan, mb: MicrobatchCompute) -> float:
    """ZeRO-3/FSDP per step: 2 parameter all-gathers (bf16; 3 where the recomputed forward
    gathers again) and 1 gradient reduce-scatter (fp32 for bf16 training) per micro-batch,
    prefetched layer by layer behind the micro-batch's compute. The first layer's gather has
    nothing to hide behind; of the rest a calibrated share stays exposed (gathers issued just
    in time, rate-limited prefetch, and collectives slowing the kernels they overlap), unless
    the compute cannot hide it at all."""
    comm, first = fsdp_comm_s(plan)
    if not plan.framework.overlap_dp_comm:
        return comm * plan.m
    rest = comm - first
    overlapped = max(mb.total_s, rest)
    if plan.framework.fsdp_prefetch_per_module:
        overlapped = module_prefetch_s(mb.total_s, rest, _layer_weight_matrices(plan))
    exposed = max(plan.cal.fsdp_comm_exposed_fraction * rest, overlapped - mb.total_s)
    return (first + exposed) * plan.m


def data_parallel_traffic_s(plan: TrainingPlan) -> dict[str, float]:
    """Seconds per step of every data-parallel collective before any overlap, by kind:
    ``gradient_reduce`` (all-reduce, or reduce-scatter with sharding) and ``parameter_gather``
    (zero1/zero2: once per step; zero3: every gather of every micro-batch). What
    ``data_parallel_s`` leaves exposed is part of their sum; the rest hides behind compute."""
    sharding = plan.config.sharding
    grad = grad_bytes(plan.config.dtype)
    reduce = gather = 0.0
    if sharding == "zero3":
        gathers = fsdp_gathers_per_microbatch(plan)
        layers = max(1.0, plan.layers_per_stage)
        for group_link_, params, _ in _groups(plan):
            link = _fsdp_link(plan, group_link_)
            gather += gathers * layers * link.all_gather_s(params * WEIGHT_BYTES / layers)
            reduce += layers * link.reduce_scatter_s(params * grad / layers)
        return {"gradient_reduce": reduce * plan.m, "parameter_gather": gather * plan.m}
    for link, params, _ in _groups(plan):
        if sharding == "none":
            reduce += link.all_reduce_s(params * grad)
        else:
            reduce += link.reduce_scatter_s(params * grad)
            gather += link.all_gather_s(params * WEIGHT_BYTES)
    return {"gradient_reduce": reduce, "parameter_gather": gather}


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
