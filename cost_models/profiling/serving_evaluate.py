"""The ``profile`` evaluator of serving configurations: measure the shard, model the rest.

One device runs the candidate's per-GPU shard (``serving_shard``): one request's prefill and
decode steps of the running batch against a real KV cache. Those measured seconds replace the
device terms of the analytical serving model, and the same composition (``compose``: continuous
batching, prefill interference, queueing, disaggregation) turns them into what clients see:

    t_prefill = pp * t_stage_prefill(input_len)          (measured; a prompt passes every stage)
    t_decode  = pp * t_stage_decode(b / pp, context)     (measured; pp micro-batches in flight)

at the mean context of a generation (``input_len + output_len / 2``), where ``b`` is the
running batch per attention rank the analytical model finds for the workload. What one device
cannot run stays modeled and is reported apart (``details["modeled"]``): the collectives and
pipeline hand-offs, the KV transfer between disaggregated pools, the server's fixed latencies,
and the framework's memory reserve. Disaggregated configurations profile the prefill pool's
shape for the prefill and the decode pool's shape for the decode.

Memory is the measured peak with the weights and the KV cache converted to the requested
formats (a device that cannot run fp8 or 4-bit GEMMs runs them in its compute dtype, and the
result says so), the cache sized to the tokens each running request holds, plus the reserve.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import BaseModel
from pydantic import ConfigDict

from cost_models.inference import InferenceEstimate
from cost_models.inference import estimate_inference
from cost_models.inference import plan_deployment
from cost_models.inference import serving_case
from cost_models.inference_params import backend_profile
from cost_models.inference_params import kv_format
from cost_models.inference_params import weight_format
from cost_models.inference_serving import CaseArrays
from cost_models.inference_serving import ServingCase
from cost_models.inference_serving import compose
from cost_models.inference_terms import ACT_BYTES
from cost_models.inference_terms import GIB
from cost_models.inference_terms import TERMS
from cost_models.profiling.serving_runner import PoolProfile
from cost_models.profiling.serving_runner import PoolRequest
from cost_models.profiling.serving_runner import ServingProfileRequest
from cost_models.profiling.serving_runner import ServingProfileResponse
from cost_models.profiling.serving_runner import profile_serving_in_child
from cost_models.profiling.serving_runner import profile_serving_in_process
from cost_models.profiling.serving_shard import stage_attended
from search_spaces.evaluators import ProfileEvaluatorSpec
from search_spaces.inference_config import InferenceConfig
from search_spaces.specs import ClusterSpec
from search_spaces.specs import InferenceWorkload
from search_spaces.specs import ModelSpec

SERVING_PROFILE_VERSION = "serving-profile-0.1"
MODELED_TERMS = ("collectives", "link")  # what one device cannot measure
DTYPE_BYTES = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "float8_e4m3fn": 1.0}


class ProfiledServing(BaseModel):
    """Measured metrics of one serving configuration, the analytical prediction, the
    analytical estimate with the measured figures in place (for SLO checks), and details."""

    model_config = ConfigDict(frozen=True)

    metrics: dict[str, float]
    predicted: dict[str, float]
    measured_estimate: InferenceEstimate
    details: dict[str, Any]


def _line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of y over x; a flat line through one distinct x."""
    xs = [p[0] for p in points]
    mean_x = sum(xs) / len(xs)
    mean_y = sum(p[1] for p in points) / len(points)
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return mean_y, 0.0
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var
    return mean_y - slope * mean_x, slope


def _decode_at(run: dict[str, Any], batch: int, context: float) -> float:
    """A run's decode step at ``batch`` and ``context``, from the line through its measured
    contexts (attention reads grow linearly with the context); flat, at the mean, when noise
    makes the slope negative."""
    points = [(p["context"], p["step_s"]) for p in run["decode"] if p["batch"] == batch]
    intercept, slope = _line(points)
    if slope <= 0:
        return sum(y for _, y in points) / len(points)
    return intercept + slope * context


def _prefill_at(run: dict[str, Any], length: int) -> float:
    return float(next(p["seconds"] for p in run["prefill"] if p["input_len"] == length))


def _to_stage(main: float, base: float | None, layers: int, stage_layers: int) -> float:
    """Scale a ``layers``-layer figure to ``stage_layers``, the 0-layer ``base`` separating
    embedding and head from the per-layer part."""
    if base is None or layers >= stage_layers or layers == 0:
        return main
    return base + max(0.0, main - base) / layers * stage_layers


def pool_decode_s(pool: PoolProfile, context: float) -> float:
    """Seconds of one decode step of the worker (all pp micro-batches) at ``context``."""
    plan, main, base = pool.plan, pool.main, pool.base
    s = plan.shard

    def stage(batch: int) -> float:
        b = _decode_at(base, batch, context) if base else None
        return _to_stage(_decode_at(main, batch, context), b, s.layers, plan.stage_layers)

    t = stage(s.batch)
    if plan.scaled_batch and s.batch > 1:  # affine in the batch: weights once, work per request
        half = max(1, s.batch // 2)
        per_request = max(0.0, (t - stage(half)) / (s.batch - half))
        t += per_request * (plan.target_batch - s.batch)
    return plan.pp * t


def pool_prefill_s(pool: PoolProfile) -> float:
    """Seconds of one request's prefill through every stage of the worker."""
    plan, main, base = pool.plan, pool.main, pool.base
    s = plan.shard

    def stage(length: int) -> float:
        b = _prefill_at(base, length) if base else None
        return _to_stage(_prefill_at(main, length), b, s.layers, plan.stage_layers)

    lengths = sorted(p["input_len"] for p in main["prefill"])
    if len(lengths) == 1:
        return plan.pp * stage(lengths[0]) * plan.input_len / lengths[0]
    (l1, l2), (t1, t2) = lengths, (stage(lengths[0]), stage(lengths[1]))
    quadratic = max(0.0, (t2 / l2 - t1 / l1) / (l2 - l1))  # t = a*s + c*s^2 through both
    linear = t2 / l2 - quadratic * l2
    if linear < 0:
        linear, quadratic = 0.0, t2 / (l2 * l2)
    return plan.pp * (linear * plan.input_len + quadratic * plan.input_len**2)


def _measured_case(case: ServingCase, t_prefill: float, t_decode: float) -> ServingCase:
    """The analytical case with the device terms replaced by the measured seconds (in the
    ``gemm`` term, whose coefficient the measured calibration sets to 1) and the modeled
    collective terms kept."""
    dec = {t: 0.0 for t in TERMS} | {t: case.decode_terms[t] for t in MODELED_TERMS}
    pre = {t: 0.0 for t in TERMS} | {t: case.prefill_terms[t] for t in MODELED_TERMS}
    dec["gemm"], pre["gemm"] = t_decode, t_prefill
    return replace(case, decode_terms=dec, prefill_terms=pre)


def _measured_calibration(config: InferenceConfig) -> Any:
    """The backend's serving factors with every device term's factor neutral: measured
    seconds count once, launches and per-request host work are inside them; collective
    latency, link cost, fixed server latencies, burst and interference stay fitted."""
    cal = backend_profile(config.backend).calibration
    zero = (
        *("decode_step_s", "decode_layer_s", "decode_moe_layer_s", "per_request_s"),
        *("prefill_chunk_s", "prefill_layer_s", "prefill_moe_layer_s"),
    )
    one = ("hbm_cost", "kv_cost", "decode_gemm_cost", "prefill_gemm_cost", "moe_gemm_cost")
    return cal.model_copy(
        update={k: 0.0 for k in zero} | {k: 1.0 for k in one + ("attention_cost",)}
    )


def _weights_gib(pool: PoolProfile, ran_bytes: float, requested_bytes: float) -> float:
    """Stage weights in the requested format (embedding and head stay 16-bit)."""
    plan, s = pool.plan, pool.plan.shard.shard
    base_w = pool.base["weights_bytes"] if pool.base else None
    total = _to_stage(pool.main["weights_bytes"], base_w, s.num_layers, plan.stage_layers)
    embed = s.vocab_size * s.hidden_size * (2 if s.with_embedding else 1) + s.hidden_size
    embed_bytes = embed * ran_bytes
    layers = max(0.0, total - embed_bytes)
    return (layers * requested_bytes / ran_bytes + embed * ACT_BYTES) / GIB


def pool_memory_gib(
    model: ModelSpec,
    pool: PoolProfile,
    requests_per_rank: float,
    held_tokens: float,
    response: ServingProfileResponse,
    config: InferenceConfig,
) -> dict[str, float]:
    """Measured memory of one GPU of the pool, by part (GiB): the KV cache at the tokens each
    running request holds (sliding-window layers keep only the window, as the frameworks'
    hybrid allocators do; the profile allocates them whole)."""
    plan, s = pool.plan, pool.plan.shard
    main = pool.main
    ran_w = DTYPE_BYTES.get(response.dtype, 2.0)
    ran_kv = DTYPE_BYTES.get(response.kv_dtype, ran_w)
    kv_per_token_layer = main["kv_cache_bytes"] / max(1, s.layers * s.batch * s.cache_len)
    kv_requested = kv_format(config.kv_dtype).bytes_per_element / ran_kv
    attended = stage_attended(model, plan.stage_layers, held_tokens)
    kv = kv_per_token_layer * kv_requested * attended * requests_per_rank
    workspace = max(0.0, main["peak_bytes"] - main["weights_bytes"] - main["kv_cache_bytes"])
    if plan.scaled_context:  # the prefill chunk's workspace grows with the chunk
        workspace *= min(s.chunk_tokens, plan.input_len) / min(s.chunk_tokens, s.input_len)
    return {
        "weights": _weights_gib(pool, ran_w, weight_format(config.weight_dtype).bytes_per_weight),
        "kv_cache": kv / GIB,
        "workspace": workspace / GIB,
        "reserve": backend_profile(config.backend).reserve_gib,  # modeled
    }


def _pool_requests(config: InferenceConfig, case: ServingCase) -> list[PoolRequest]:
    if config.prefill is not None and config.decode is not None:
        p, d = config.prefill, config.decode
        return [
            PoolRequest(role="prefill", tp=p.tp, pp=p.pp, ep=p.ep, attention_dp=p.attention_dp),
            PoolRequest(
                role="decode",
                tp=d.tp,
                pp=d.pp,
                ep=d.ep,
                attention_dp=d.attention_dp,
                batch_per_rank=case.batch_per_rank,
            ),
        ]
    return [
        PoolRequest(
            role="both",
            tp=config.tp,
            pp=config.pp,
            ep=config.ep,
            attention_dp=config.attention_dp,
            batch_per_rank=case.batch_per_rank,
        )
    ]


def _clients(workload: InferenceWorkload, est: InferenceEstimate) -> tuple[float | None, str]:
    """Requests in flight to profile at, and how the load was read."""
    if workload.concurrency is not None:
        return float(workload.concurrency), f"closed loop at {workload.concurrency} clients"
    if workload.request_rate is not None:
        cycle_s = (est.ttft_ms + (workload.output_len - 1) * est.tpot_ms) / 1e3
        clients = max(1.0, workload.request_rate * cycle_s)
        return clients, (
            f"request_rate {workload.request_rate:g}/s: profiled at the {clients:.1f} requests "
            "in flight the analytical model finds (Little's law); the measured deployment "
            "completes the offered rate while rate x measured cycle fits its KV slots"
        )
    return None, "maximum throughput (every KV slot busy)"


def _open_loop(
    workload: InferenceWorkload, times: Any, slots: float, prefill_ranks: int
) -> tuple[float, bool, float]:
    """Completed requests/s, whether the load saturates the deployment, and the seconds a
    prompt waits for a prefill slot. Closed loop and maximum throughput: what the composition
    gives. Open loop: the offered rate as long as the requests it keeps in flight at the
    measured speed (rate x cycle, Little's law) fit the deployment's KV slots, with the
    M/D/1 wait for a prefill slot the analytical model adds; beyond that the slots'
    completion rate, and requests queue."""
    composed = float(times.requests_per_s[0])
    rate = workload.request_rate
    if rate is None:
        return composed, False, 0.0
    prefill_s = float(times.prefill_s[0])
    cycle_s = float(times.ttft0_s[0]) + (workload.output_len - 1) * float(times.tpot_s[0])
    if rate * cycle_s > slots:
        return slots / cycle_s, True, 0.0
    busy = min(0.99, rate / prefill_ranks * prefill_s)
    return rate, False, busy / (2 * (1 - busy)) * prefill_s


def request_for(
    model: ModelSpec,
    workload: InferenceWorkload,
    config: InferenceConfig,
    case: ServingCase,
    settings: ProfileEvaluatorSpec,
) -> ServingProfileRequest:
    chunk = settings.prefill_chunk_tokens or backend_profile(config.backend).chunk_tokens
    return ServingProfileRequest(
        model=model,
        pools=_pool_requests(config, case),
        input_len=workload.input_len,
        output_len=workload.output_len,
        kv_dtype=config.kv_dtype.value,
        chunk_tokens=chunk,
        warmup_steps=settings.warmup_steps,
        timed_steps=settings.timed_steps,
        max_layers=settings.max_layers,
        max_context_len=settings.max_context_len,
        device=settings.device,
        threads=settings.num_cpus,
    )


def profile_serving(
    model: ModelSpec,
    cluster: ClusterSpec,
    workload: InferenceWorkload,
    config: InferenceConfig,
    settings: ProfileEvaluatorSpec,
) -> ProfiledServing:
    """Measure ``config`` (ValueError when the model rejects it, ProfilingError when the run
    fails) and compose the measured prefill and decode into the serving metrics."""
    est = estimate_inference(model, cluster, workload, config)
    dep = plan_deployment(model, cluster, config)
    clients, load = _clients(workload, est)
    case = serving_case(dep, workload, clients)
    request = request_for(model, workload, config, case, settings)
    if settings.isolate:
        response = profile_serving_in_child(request, settings.timeout_s)
    else:
        response = profile_serving_in_process(request)
    pools = {p.role: p for p in response.pools}
    prefill_pool = pools.get("prefill") or pools["both"]
    decode_pool = pools.get("decode") or pools["both"]
    isl, osl = workload.input_len, workload.output_len
    t_prefill = pool_prefill_s(prefill_pool)
    t_decode = pool_decode_s(decode_pool, isl + osl / 2)
    measured_case = _measured_case(case, t_prefill, t_decode)
    times = compose(CaseArrays.of([measured_case]), _measured_calibration(config))
    profile = backend_profile(config.backend)
    held = isl + (osl if profile.kv_reservation == "full" else osl / 2)
    memory = pool_memory_gib(model, decode_pool, case.batch_per_rank, held, response, config)
    if dep.disaggregated:  # the prefill pool holds one prompt at a time
        pre = pool_memory_gib(model, prefill_pool, 1.0, isl, response, config)
        memory = max(memory, pre, key=lambda m: sum(m.values()))
    memory_gib = sum(memory.values())
    tpot_s = float(times.tpot_s[0])
    gpus = dep.gpus
    slots = est.max_batch_size * dep.decode_workers
    rate, saturated, wait_s = _open_loop(workload, times, slots, dep.prefill_ranks)
    tokens_per_s = rate * osl
    ttft_s = float(times.ttft_s[0]) + wait_s
    metrics = {
        "output_tokens_per_s_per_gpu": tokens_per_s / gpus,
        "output_tokens_per_s": tokens_per_s,
        "tokens_per_s_per_user": 1.0 / tpot_s,
        "ttft_ms": 1e3 * ttft_s,
        "tpot_ms": 1e3 * tpot_s,
        "memory_per_gpu_gib": memory_gib,
        "cost_per_million_tokens_usd": gpus
        * cluster.gpu_hour_price_usd
        / 3600.0
        / tokens_per_s
        * 1e6,
        "quality_loss_pct": est.quality_loss_pct,  # of the requested formats (not measured)
    }
    measured_estimate = est.model_copy(
        update={
            "ttft_ms": metrics["ttft_ms"],
            "tpot_ms": metrics["tpot_ms"],
            "memory_per_gpu_gib": memory_gib,
            "fits": memory_gib <= est.memory_capacity_gib and est.max_batch_size >= 1,
            "saturated": saturated,
            "output_tokens_per_s": tokens_per_s,
            "output_tokens_per_s_per_gpu": tokens_per_s / gpus,
            "tokens_per_s_per_user": 1.0 / tpot_s,
            "memory_breakdown_gib": {k: round(v, 6) for k, v in memory.items()},
        }
    )
    details = _details(response, config, case, measured_case, times, memory, load, settings)
    details["profile"].update(prefill_s=t_prefill, decode_step_s=t_decode)
    details["modeled"]["queue_wait_ms"] += 1e3 * wait_s
    return ProfiledServing(
        metrics=metrics,
        predicted=est.metrics(),
        measured_estimate=measured_estimate,
        details=details,
    )


def _precision(response: ServingProfileResponse, config: InferenceConfig) -> dict[str, Any]:
    """What ran against what was asked for (times are of what ran)."""
    weights = config.weight_dtype.value
    ran = response.dtype
    kv_ran = response.kv_dtype
    notes = []
    if not (weights == "bf16" and ran == "bfloat16"):
        notes.append(
            f"weights requested {weights}, GEMMs ran in {ran} on {response.device_kind} "
            "(times are of what ran; weight memory converted to the requested format)"
        )
    kv = config.kv_dtype.value
    if not (
        (kv == "bf16" and kv_ran == "bfloat16") or (kv == "fp8" and kv_ran.startswith("float8"))
    ):
        notes.append(
            f"KV cache requested {kv}, stored in {kv_ran} (cache memory converted to the "
            "requested format)"
        )
    return {
        "weights_requested": weights,
        "weights_ran": ran,
        "kv_requested": kv,
        "kv_ran": kv_ran,
        "notes": notes,
    }


def _pool_details(pool: PoolProfile, context: float) -> dict[str, Any]:
    plan, main = pool.plan, pool.main
    out: dict[str, Any] = {
        "shard": plan.shard.shard.model_dump(mode="json"),
        "built": {
            "layers": plan.shard.layers,
            "batch": plan.shard.batch,
            "input_len": plan.shard.input_len,
            "cache_len": plan.shard.cache_len,
            "chunk_tokens": plan.shard.chunk_tokens,
        },
        "stage_layers": plan.stage_layers,
        "target_batch": plan.target_batch,
        "pp": plan.pp,
        "peak_memory_gib": main["peak_bytes"] / GIB,
        "kv_cache_gib": main["kv_cache_bytes"] / GIB,
        "memory_method": main["memory_method"],
        "prefill_samples": main["prefill"],
        "decode_samples": main["decode"],
        "notes": plan.notes,
    }
    if pool.role != "decode":
        out["prefill_s"] = pool_prefill_s(pool)
    if pool.role != "prefill":
        out["decode_step_s"] = pool_decode_s(pool, context)
    return out


def _details(
    response: ServingProfileResponse,
    config: InferenceConfig,
    case: ServingCase,
    measured: ServingCase,
    times: Any,
    memory: dict[str, float],
    load: str,
    settings: ProfileEvaluatorSpec,
) -> dict[str, Any]:
    cal = backend_profile(config.backend).calibration
    dec, pre = cal.decode_coefficients(), cal.prefill_coefficients()
    context = case.input_len + case.output_len / 2
    pools = {p.role: _pool_details(p, context) for p in response.pools}
    precision = _precision(response, config)
    scaling = [n for p in response.pools for n in p.plan.notes]
    return {
        "profile": {
            "decode_context": context,
            "batch_per_rank": case.batch_per_rank,
            "peak_memory_gib": max(p["peak_memory_gib"] for p in pools.values()),
            "memory_gib": memory,
            "pools": pools,
        },
        "modeled": {
            "decode_collectives_ms": 1e3
            * sum(dec[t] * measured.decode_terms[t] for t in MODELED_TERMS),
            "prefill_collectives_ms": 1e3
            * sum(pre[t] * measured.prefill_terms[t] for t in MODELED_TERMS),
            "kv_transfer_ms": 1e3 * case.kv_transfer_s * cal.link_cost,
            "request_latency_ms": 1e3 * cal.request_latency_s,
            "prefill_interference_ms": 1e3 * float(times.interference_s[0]),
            "queue_wait_ms": 1e3 * float(times.queue_wait_s[0]),
            "reserve_gib": memory["reserve"],
        },
        "load": load,
        "mode": config.mode,
        "precision": precision,
        "device": response.device,
        "device_kind": response.device_kind,
        "dtype": response.dtype,
        "threads": response.threads,
        "niceness": response.niceness,
        "torch_version": response.torch_version,
        "scaled": bool(scaling),
        "notes": scaling + precision["notes"],
        "isolated": settings.isolate,
        "evaluator_version": SERVING_PROFILE_VERSION,
    }
