"""From step times to what a client sees: continuous batching, queueing, disaggregation.

A ``ServingCase`` holds everything about one deployment under one load that does not depend on
the fitted factors (the ideal terms of its decode step and prefill, how many requests run per
attention rank, the KV slots); ``compose`` turns cases plus a ``ServingCalibration`` into TTFT,
TPOT and throughput. It works on arrays of cases at once, so the calibration fit evaluates the
whole reference table in one call, and the estimator uses the very same code on one case.

Closed loop (``concurrency`` clients, each sending its next request when the last one ends,
as the benchmarks behind the reference rows do), per attention rank with B running requests:

- aggregated: every running request's prompt is batched into the others' decode iterations, so
  TPOT = t_decode(B) + interference * (B - 1) * w_prefill / output_len, where w_prefill is the
  work a prompt adds (GEMMs, attention, collective bytes; it shares the iterations' launches
  and weight reads); a new prompt waits for the work of the prompts that arrived with it
  (burst * (B - 1) of them) and for decode iterations: ``first_token_steps`` of them (the one
  in flight, the one carrying it, a step-late return of the token) plus one per prefill
  iteration ahead of it, since with chunked prefill every iteration that carries up to
  ``chunk_tokens`` prompt tokens also runs the batch's decode step:
  TTFT0 = t_prefill + burst * (B - 1) * w_prefill
          + (first_token_steps + burst * (B - 1) * ISL / chunk + ceil(ISL / chunk) - 1) * t_decode.
- disaggregated: the decode pool runs undisturbed, TPOT = t_decode(B); a prompt waits for the
  prompts of its cohort on its prefill rank, for its KV transfer to the decode pool, the
  hand-off between the pools and the decode pool's first ``first_token_steps`` steps.
- both: the server's fixed latency to a first token (HTTP, tokenisation, admission) adds on.
- throughput X (requests/s) is the smallest of what the clients send (C / cycle, with
  cycle = TTFT0 + (output_len - 1) * TPOT), what the running slots complete, and (disaggregated)
  what the prefill pool processes. When X is below the clients' rate the surplus queues: by
  Little's law TTFT = C / X - (output_len - 1) * TPOT. A full KV cache or a saturated prefill
  pool therefore shows as a longer TTFT, never as an infeasible configuration.
- with no concurrency (maximum throughput) every slot is busy: X = slots / (t_prefill +
  (output_len - 1) * TPOT), limited by the prefill pool, and TTFT is the in-batch TTFT0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cost_models.inference_params import ServingCalibration
from cost_models.inference_terms import TERMS
from cost_models.inference_terms import WORK_TERMS

_WORK = np.asarray([t in WORK_TERMS for t in TERMS])

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ServingCase:
    """One deployment under one load, independent of the fitted factors."""

    disaggregated: bool
    input_len: int
    output_len: int
    concurrency: float | None  # requests in flight in total; None = maximum throughput
    decode_ranks: int  # attention ranks that decode (aggregated: every rank)
    prefill_ranks: int  # attention ranks that prefill (aggregated: the same ranks)
    batch_per_rank: float  # running requests per decode rank
    decode_terms: dict[str, float]  # ideal terms of a decode step at batch_per_rank
    prefill_terms: dict[str, float]  # ideal terms of one request's prefill
    kv_transfer_s: float = 0.0  # ideal seconds to move one prompt's KV to the decode pool
    chunk_tokens: int = 8192  # prompt tokens one (aggregated) iteration carries at most


@dataclass(frozen=True)
class CaseArrays:
    """Cases stacked column-wise (one row per case) for vectorised evaluation."""

    disaggregated: NDArray[np.bool_]
    input_len: FloatArray
    output_len: FloatArray
    concurrency: FloatArray  # nan = maximum throughput
    decode_ranks: FloatArray
    prefill_ranks: FloatArray
    batch: FloatArray
    decode_terms: FloatArray  # shape (cases, len(TERMS))
    prefill_terms: FloatArray
    kv_transfer_s: FloatArray
    chunk_tokens: FloatArray

    @classmethod
    def of(cls, cases: Sequence[ServingCase]) -> CaseArrays:
        def col(values: list[float]) -> FloatArray:
            return np.asarray(values, dtype=np.float64)

        return cls(
            disaggregated=np.asarray([c.disaggregated for c in cases], dtype=np.bool_),
            input_len=col([c.input_len for c in cases]),
            output_len=col([c.output_len for c in cases]),
            concurrency=col([np.nan if c.concurrency is None else c.concurrency for c in cases]),
            decode_ranks=col([c.decode_ranks for c in cases]),
            prefill_ranks=col([c.prefill_ranks for c in cases]),
            batch=col([c.batch_per_rank for c in cases]),
            decode_terms=np.asarray([[c.decode_terms[t] for t in TERMS] for c in cases]),
            prefill_terms=np.asarray([[c.prefill_terms[t] for t in TERMS] for c in cases]),
            kv_transfer_s=col([c.kv_transfer_s for c in cases]),
            chunk_tokens=col([c.chunk_tokens for c in cases]),
        )


@dataclass(frozen=True)
class ServingTimes:
    """What ``compose`` returns, one entry per case (seconds, requests/s, tokens/s)."""

    decode_step_s: FloatArray
    prefill_s: FloatArray
    interference_s: FloatArray  # prefill time added to each output token (aggregated)
    ttft0_s: FloatArray  # TTFT without queueing
    ttft_s: FloatArray
    tpot_s: FloatArray
    requests_per_s: FloatArray
    output_tokens_per_s: FloatArray

    @property
    def queue_wait_s(self) -> FloatArray:
        return self.ttft_s - self.ttft0_s


def coefficient_vectors(cal: ServingCalibration) -> tuple[FloatArray, FloatArray]:
    """(decode, prefill) coefficients in ``TERMS`` order."""
    dec, pre = cal.decode_coefficients(), cal.prefill_coefficients()
    return np.asarray([dec[t] for t in TERMS]), np.asarray([pre[t] for t in TERMS])


def compose(cases: CaseArrays, cal: ServingCalibration) -> ServingTimes:
    """TTFT, TPOT and throughput of every case under calibration ``cal``."""
    dec_c, pre_c = coefficient_vectors(cal)
    t_dec = cases.decode_terms @ dec_c
    t_pre = cases.prefill_terms @ pre_c
    t_work = cases.prefill_terms[:, _WORK] @ pre_c[_WORK]  # what a batched prompt adds
    osl, b = cases.output_len, cases.batch
    agg = ~cases.disaggregated
    interference = np.where(agg, cal.prefill_interference * (b - 1) * t_work / osl, 0.0)
    tpot = t_dec + interference
    running = cases.decode_ranks * b
    cohort = np.where(agg, b, running / cases.prefill_ranks)
    burst = 1.0 + cal.prefill_burst_fraction * np.maximum(cohort - 1.0, 0.0)
    transfer = cases.kv_transfer_s * cal.link_cost
    first = np.where(agg, 0.0, transfer + cal.disagg_latency_s)  # the decode pool's first step
    # aggregated: every iteration that carries the prompts ahead (and this prompt's own
    # chunks but the last) also runs the batch's decode step
    carried = (burst - 1.0) * cases.input_len / cases.chunk_tokens
    carried += np.ceil(cases.input_len / cases.chunk_tokens) - 1.0
    steps = cal.first_token_steps + np.where(agg, carried, 0.0)
    ttft0 = t_pre + (burst - 1.0) * t_work + steps * t_dec + first + cal.request_latency_s
    decoding = (osl - 1.0) * tpot
    prefill_rate = np.where(agg, np.inf, cases.prefill_ranks / t_pre)
    closed = ~np.isnan(cases.concurrency)
    clients = np.where(closed, cases.concurrency, np.inf)
    slot_time = np.where(agg, np.where(closed, ttft0, t_pre) + decoding, decoding)
    rate = np.minimum.reduce(
        [
            clients / (ttft0 + decoding),
            running / np.maximum(slot_time, 1e-12),
            prefill_rate,
        ]
    )
    ttft = np.where(closed, np.maximum(clients / rate - decoding, ttft0), ttft0)
    return ServingTimes(
        decode_step_s=t_dec,
        prefill_s=t_pre,
        interference_s=interference,
        ttft0_s=ttft0,
        ttft_s=ttft,
        tpot_s=tpot,
        requests_per_s=rate,
        output_tokens_per_s=rate * osl,
    )
