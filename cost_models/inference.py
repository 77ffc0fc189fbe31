"""Analytical estimate of one serving configuration: TTFT, TPOT, throughput, memory and cost.

``inference_terms`` gives the ideal terms of a worker's decode step and prefill and its KV
slots, ``inference_serving`` composes them into what clients see under the workload's load
(closed loop at ``concurrency``, open loop at ``request_rate``, or maximum throughput when
neither is given), and the backend's fitted factors (``inference_data.yaml``) turn ideal seconds
into real ones. Batch sizes are per attention rank inside the model and per worker in the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel
from pydantic import ConfigDict

from cost_models.comm import scaleup_domain_size
from cost_models.inference_params import BackendProfile
from cost_models.inference_params import backend_profile
from cost_models.inference_params import kv_format
from cost_models.inference_params import quality_loss_pct
from cost_models.inference_params import weight_format
from cost_models.inference_serving import CaseArrays
from cost_models.inference_serving import ServingCase
from cost_models.inference_serving import ServingTimes
from cost_models.inference_serving import compose
from cost_models.inference_terms import GIB
from cost_models.inference_terms import TERMS
from cost_models.inference_terms import Worker
from cost_models.inference_terms import WorkerShape
from search_spaces.inference_config import InferenceConfig
from search_spaces.inference_config import PoolConfig
from search_spaces.specs import ClusterSpec
from search_spaces.specs import InferenceWorkload
from search_spaces.specs import ModelSpec

RATE_HORIZON_S = 600.0  # an overloaded open loop is reported after this long a run


class InferenceEstimate(BaseModel):
    """The analytical estimate of one serving configuration (ms, tokens/s, GiB, USD)."""

    model_config = ConfigDict(frozen=True)

    output_tokens_per_s: float
    output_tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float
    ttft_ms: float
    tpot_ms: float
    batch_size: float  # running requests per (decode) worker
    max_batch_size: int  # requests a (decode) worker can hold: KV slots or the configured limit
    memory_per_gpu_gib: float  # what the running batch needs (frameworks preallocate the rest)
    memory_capacity_gib: float
    fits: bool
    cost_per_million_tokens_usd: float
    quality_loss_pct: float
    gpus_used: int
    saturated: bool  # the offered load exceeds what the deployment completes: requests queue
    breakdown: dict[str, float]  # ms: decode step and prefill by term, serving terms
    memory_breakdown_gib: dict[str, float]

    def metrics(self) -> dict[str, float]:
        """The numeric objectives a tuning job can optimise or limit."""
        return {
            "output_tokens_per_s_per_gpu": self.output_tokens_per_s_per_gpu,
            "output_tokens_per_s": self.output_tokens_per_s,
            "tokens_per_s_per_user": self.tokens_per_s_per_user,
            "ttft_ms": self.ttft_ms,
            "tpot_ms": self.tpot_ms,
            "memory_per_gpu_gib": self.memory_per_gpu_gib,
            "cost_per_million_tokens_usd": self.cost_per_million_tokens_usd,
            "quality_loss_pct": self.quality_loss_pct,
        }


@dataclass(frozen=True)
class Deployment:
    """The workers of a configuration and how many of each run."""

    decode: Worker  # the aggregated worker, or the decode pool's
    prefill: Worker
    decode_workers: int
    prefill_workers: int
    disaggregated: bool
    limit_per_rank: int  # configured (or default) batch limit per decode attention rank

    @property
    def decode_ranks(self) -> int:
        return self.decode_workers * self.decode.shape.attention_dp

    @property
    def prefill_ranks(self) -> int:
        return self.prefill_workers * self.prefill.shape.attention_dp

    @property
    def gpus(self) -> int:
        gpus = self.decode_workers * self.decode.shape.gpus
        return gpus + (self.prefill_workers * self.prefill.shape.gpus if self.disaggregated else 0)


def _shape(pool: PoolConfig | InferenceConfig) -> WorkerShape:
    return WorkerShape(tp=pool.tp, pp=pool.pp, ep=pool.ep, attention_dp=pool.attention_dp)


def _limit(max_batch: int | None, adp: int, profile: BackendProfile) -> int:
    """Per-rank batch limit: a worker's configured limit shared by its ranks, else the
    framework's default, which each attention-DP rank applies on its own (max_num_seqs,
    max_running_requests and max_batch_size are per rank)."""
    if max_batch is None:
        return profile.default_max_batch_size
    return max(1, max_batch // adp)


def plan_deployment(
    model: ModelSpec,
    cluster: ClusterSpec,
    config: InferenceConfig,
    profile: BackendProfile | None = None,
) -> Deployment:
    """The workers of ``config`` on ``cluster`` (ValueError when they cannot be formed)."""
    profile = profile or backend_profile(config.backend)
    weights, kv = weight_format(config.weight_dtype), kv_format(config.kv_dtype)

    def worker(shape: WorkerShape) -> Worker:
        return Worker(model, cluster, shape, weights, kv, profile)

    if config.prefill is not None and config.decode is not None:
        dec = worker(_shape(config.decode))
        limit = _limit(config.decode.max_batch_size, config.decode.attention_dp, profile)
        return Deployment(
            dec,
            worker(_shape(config.prefill)),
            config.decode.workers,
            config.prefill.workers,
            True,
            limit,
        )
    count = config.workers(cluster.num_gpus)
    if count < 1:
        raise ValueError(
            f"a worker needs tp*pp*attention_dp = {config.gpus_per_worker} GPUs but the cluster "
            f"has {cluster.num_gpus}; lower tp, pp or attention_dp"
        )
    agg = worker(_shape(config))
    limit = _limit(config.max_batch_size, config.attention_dp, profile)
    return Deployment(agg, agg, count, count, False, limit)


def kv_transfer_s(dep: Deployment, input_len: int) -> float:
    """Ideal seconds to move one prompt's KV cache from a prefill worker to a decode worker:
    every prefill GPU of the request's rank sends its share in parallel, over NVLink when both
    pools sit in one scale-up domain, else over their NICs."""
    if not dep.disaggregated:
        return 0.0
    cluster = dep.prefill.cluster
    same_domain = cluster.num_gpus <= scaleup_domain_size(cluster)
    bw = cluster.nvlink_bw_bytes_per_s if same_domain else cluster.scaleout_bw_bytes_per_s
    senders = dep.prefill.shape.tp * dep.prefill.shape.pp
    per_gpu = dep.prefill.request_kv_bytes(input_len) * dep.prefill.shape.pp
    per_gpu *= dep.prefill.shape.tp / senders
    return per_gpu / bw


def serving_case(
    dep: Deployment,
    workload: InferenceWorkload,
    concurrency: float | None,
) -> ServingCase:
    """The calibration-independent description of ``dep`` under ``concurrency`` clients."""
    isl, osl = workload.input_len, workload.output_len
    slots = min(dep.decode.request_slots(isl, osl), dep.limit_per_rank)
    per_rank = slots if concurrency is None else min(concurrency / dep.decode_ranks, slots)
    batch = max(per_rank, 1.0)
    decode = dep.decode.decode_terms(batch, isl + osl / 2)
    return ServingCase(
        disaggregated=dep.disaggregated,
        input_len=isl,
        output_len=osl,
        concurrency=concurrency,
        decode_ranks=dep.decode_ranks,
        prefill_ranks=dep.prefill_ranks,
        batch_per_rank=batch,
        decode_terms=decode,
        prefill_terms=dep.prefill.prefill_terms(isl),
        kv_transfer_s=kv_transfer_s(dep, isl),
        chunk_tokens=dep.prefill.profile.chunk_tokens,
    )


def _open_loop(
    dep: Deployment, workload: InferenceWorkload, rate: float
) -> tuple[ServingCase, ServingTimes, bool]:
    """An open loop at ``rate`` requests/s: the running requests are rate * (time in the
    system) by Little's law (a fixed point); above the deployment's capacity the queue grows
    for the whole run, reported as the mean wait over ``RATE_HORIZON_S``."""
    cal = dep.decode.profile.calibration
    full_case = serving_case(dep, workload, None)
    full = compose(CaseArrays.of([full_case]), cal)
    capacity = float(full.requests_per_s[0])
    if rate >= capacity:
        wait = (rate - capacity) * RATE_HORIZON_S / (2 * capacity)
        times = _with_ttft(full, float(full.ttft0_s[0]) + wait, capacity)
        return full_case, times, True
    clients = 1.0
    for _ in range(40):
        case = serving_case(dep, workload, clients)
        times = compose(CaseArrays.of([case]), cal)
        cycle = float(times.ttft0_s[0] + (workload.output_len - 1) * times.tpot_s[0])
        clients = max(1.0, rate * cycle)
    case = serving_case(dep, workload, clients)
    times = compose(CaseArrays.of([case]), cal)
    busy = min(0.99, rate / dep.prefill_ranks * float(times.prefill_s[0]))
    wait = busy / (2 * (1 - busy)) * float(times.prefill_s[0])  # M/D/1 wait for a prefill slot
    return case, _with_ttft(times, float(times.ttft_s[0]) + wait, rate), False


def _with_ttft(times: ServingTimes, ttft_s: float, rate: float) -> ServingTimes:
    return ServingTimes(
        decode_step_s=times.decode_step_s,
        prefill_s=times.prefill_s,
        interference_s=times.interference_s,
        ttft0_s=times.ttft0_s,
        ttft_s=np.asarray([ttft_s]),
        tpot_s=times.tpot_s,
        requests_per_s=np.asarray([rate]),
        output_tokens_per_s=np.asarray([rate]) * times.output_tokens_per_s / times.requests_per_s,
    )


def _memory_gib(worker: Worker, batch_per_rank: float, tokens_held: float) -> dict[str, float]:
    """Memory one GPU of ``worker`` uses with ``batch_per_rank`` requests holding
    ``tokens_held`` KV tokens each (the frameworks preallocate the rest of the pool)."""
    kv = batch_per_rank * worker.request_kv_bytes(tokens_held)
    return {
        "weights": worker.weight_bytes_per_gpu() / GIB,
        "activations": worker.activation_bytes() / GIB,
        "reserve": worker.profile.reserve_gib,
        "kv_cache": kv / GIB,
    }


def _breakdown(case: ServingCase, times: ServingTimes, dep: Deployment) -> dict[str, float]:
    """Milliseconds per term of a decode step and of one prefill, and the serving terms."""
    cal = dep.decode.profile.calibration
    dec, pre = cal.decode_coefficients(), cal.prefill_coefficients()
    out = {f"decode_step.{t}": 1e3 * dec[t] * case.decode_terms[t] for t in TERMS}
    out.update({f"prefill.{t}": 1e3 * pre[t] * case.prefill_terms[t] for t in TERMS})
    out["serving.prefill_interference"] = 1e3 * float(times.interference_s[0])
    out["serving.queue_wait"] = 1e3 * float(times.queue_wait_s[0])
    out["serving.kv_transfer"] = 1e3 * case.kv_transfer_s * cal.link_cost
    return {k: round(v, 6) for k, v in out.items()}


def estimate_inference(
    model: ModelSpec,
    cluster: ClusterSpec,
    workload: InferenceWorkload,
    config: InferenceConfig,
    profile: BackendProfile | None = None,
) -> InferenceEstimate:
    """TTFT, TPOT, throughput, memory and cost of ``config`` (ValueError if it cannot run)."""
    dep = plan_deployment(model, cluster, config, profile)
    if workload.request_rate is not None:
        case, times, saturated = _open_loop(dep, workload, workload.request_rate)
    else:
        case = serving_case(dep, workload, workload.concurrency)
        times = compose(CaseArrays.of([case]), dep.decode.profile.calibration)
        saturated = workload.concurrency is not None and bool(
            times.ttft_s[0] > times.ttft0_s[0] * 1.001
        )
    return _estimate(dep, workload, config, case, times, saturated)


def _estimate(
    dep: Deployment,
    workload: InferenceWorkload,
    config: InferenceConfig,
    case: ServingCase,
    times: ServingTimes,
    saturated: bool,
) -> InferenceEstimate:
    isl, osl = workload.input_len, workload.output_len
    held = isl + (osl if dep.decode.profile.kv_reservation == "full" else osl / 2)
    slots = dep.decode.request_slots(isl, osl)
    memory = _memory_gib(dep.decode, case.batch_per_rank, held)
    if dep.disaggregated:  # the prefill pool holds one chunk's prompt at a time
        pre = _memory_gib(dep.prefill, 1.0, isl)
        memory = max(memory, pre, key=lambda m: sum(m.values()))
        slots = min(slots, dep.prefill.request_slots(isl, 0) or 0)
    total = sum(memory.values())
    capacity = dep.decode.cluster.gpu.memory_gib
    tokens_per_s = float(times.output_tokens_per_s[0])
    gpus = dep.gpus
    price = dep.decode.cluster.gpu_hour_price_usd
    tpot_s = float(times.tpot_s[0])
    adp = dep.decode.shape.attention_dp
    return InferenceEstimate(
        output_tokens_per_s=tokens_per_s,
        output_tokens_per_s_per_gpu=tokens_per_s / gpus,
        tokens_per_s_per_user=1.0 / tpot_s,
        ttft_ms=1e3 * float(times.ttft_s[0]),
        tpot_ms=1e3 * tpot_s,
        batch_size=case.batch_per_rank * adp,
        max_batch_size=min(slots, dep.limit_per_rank) * adp,
        memory_per_gpu_gib=total,
        memory_capacity_gib=capacity,
        fits=slots >= 1 and total <= capacity,
        cost_per_million_tokens_usd=gpus * price / 3600.0 / tokens_per_s * 1e6,
        quality_loss_pct=quality_loss_pct(config.weight_dtype, config.kv_dtype),
        gpus_used=gpus,
        saturated=saturated,
        breakdown=_breakdown(case, times, dep),
        memory_breakdown_gib={k: round(v, 4) for k, v in memory.items()},
    )
