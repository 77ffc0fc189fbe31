"""Timed prefill and decode of a serving shard on this process's device (imports torch).

A profile builds the shard's weights (in the device's compute dtype) and its KV cache (in the
KV format when the device can store it), then:

- prefill: ``warmup + timed`` prompts of ``input_len`` tokens, one request at a time (the
  serving model's TTFT is one request's prefill), in chunks of ``chunk_tokens``, each into its
  own row of the cache; the remaining rows receive copies, so the whole ``batch x input_len``
  cache holds real keys and values. When the context was capped, a prompt of half the length
  is timed too (the evaluator fits linear + quadratic cost through the two).
- decode: greedy steps of the whole batch (each step's argmax is the next input) at three
  points of the cached context (start, middle, end of the generation), ``timed`` steps each
  after ``warmup`` steps at the first; each step writes one position per request and attends
  to the whole cached context, so later steps read more cache. At a second, halved batch too
  when the batch was capped.

Each figure is the fastest of its timed samples (other processes only ever add time); all
samples are kept. Peak memory covers everything from building the weights on.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from pydantic import BaseModel
from pydantic import ConfigDict

from cost_models.inference_terms import WorkerShape
from cost_models.profiling.device import PeakMemory
from cost_models.profiling.device import compute_dtype
from cost_models.profiling.device import timed
from cost_models.profiling.serving_model import LayerCache
from cost_models.profiling.serving_model import ServingModel
from cost_models.profiling.serving_model import allocate_cache
from cost_models.profiling.serving_shard import ServingShard
from cost_models.profiling.serving_shard import serving_shard_spec
from search_spaces.specs import ModelSpec


class PrefillPoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    input_len: int
    seconds: float
    samples_s: list[float]


class DecodePoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    batch: int
    context: float  # mean cached tokens per request over the timed steps
    step_s: float
    samples_s: list[float]


class ServingMeasurement(BaseModel):
    """What timing one serving shard produced (seconds, bytes)."""

    model_config = ConfigDict(frozen=True)

    layers: int
    prefill: list[PrefillPoint]
    decode: list[DecodePoint]
    peak_bytes: float
    weights_bytes: float
    kv_cache_bytes: float
    memory_method: str


def kv_store_dtype(requested: str, compute: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype the cache is stored in: fp8 (e4m3) on GPUs with fp8 hardware (compute
    capability 8.9+), where attention kernels read it natively; elsewhere the compute dtype
    (PyTorch emulates fp8 casts on a CPU at many times a 16-bit read, which would time the
    emulation, and a 4-bit cache has no PyTorch storage type). The result says what ran."""
    fp8 = getattr(torch, "float8_e4m3fn", None)
    on_fp8_gpu = device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)
    if requested == "fp8" and fp8 is not None and on_fp8_gpu:
        return fp8
    return compute


def _bytes(tensors: list[torch.Tensor]) -> float:
    return float(sum(t.numel() * t.element_size() for t in tensors))


def _inputs(s: ServingShard, batch: int, length: int, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(batch * 7919 + length)
    sh = s.shard
    if sh.with_embedding:
        return torch.randint(0, sh.vocab_size, (batch, length), generator=gen).to(device)
    dtype = compute_dtype(device)
    return torch.randn(batch, length, sh.hidden_size, generator=gen).to(device, dtype)


def _prefill(
    model: ServingModel, caches: list[LayerCache], prompt: torch.Tensor, row: int, chunk: int
) -> None:
    rows, length = slice(row, row + 1), prompt.shape[1]
    for start in range(0, length, chunk):
        end = min(length, start + chunk)
        model(prompt[:, start:end], caches, rows, start, logits=end == length)


def _fill_rows(caches: list[LayerCache], done: int, batch: int, length: int) -> None:
    """Copy the prefilled rows into the rows not prefilled (the batch's other prompts)."""
    for cache in caches:
        for t in cache.tensors():
            for row in range(done, batch):
                if t.dim() == 4:
                    t[row, :, :length] = t[row % done, :, :length]
                else:
                    t[row, :length] = t[row % done, :length]


def _decode_starts(s: ServingShard, steps: int) -> list[int]:
    """Start positions of the decode segments: generation start, middle and end."""
    last = max(s.input_len, s.cache_len - steps)
    return sorted({s.input_len, (s.input_len + last) // 2, last})


def _time_decode(
    model: ServingModel,
    caches: list[LayerCache],
    s: ServingShard,
    batch: int,
    device: torch.device,
    warmup: int,
    timed_steps: int,
) -> list[DecodePoint]:
    rows = slice(0, batch)
    first = _inputs(s, batch, 1, device)
    state = {"tokens": first}
    points = []
    for index, start in enumerate(_decode_starts(s, timed_steps)):
        pos = start
        samples, contexts = [], []
        skip = warmup if index == 0 else 0
        for step in range(skip + timed_steps):
            at = min(pos, s.cache_len - 1)

            def run(at: int = at) -> None:
                logits = model(state["tokens"], caches, rows, at)
                if s.shard.with_embedding and logits is not None:
                    state["tokens"] = logits.argmax(dim=-1, keepdim=True)

            seconds = timed(device, run)
            if step >= skip:
                samples.append(seconds)
                contexts.append(at + 1.0)
            pos += 1
        points.append(
            DecodePoint(
                batch=batch,
                context=sum(contexts) / len(contexts),
                step_s=min(samples),
                samples_s=samples,
            )
        )
    return points


def _time_prefill(
    model: ServingModel,
    caches: list[LayerCache],
    s: ServingShard,
    length: int,
    device: torch.device,
    warmup: int,
    timed_steps: int,
) -> PrefillPoint:
    samples = []
    for i in range(warmup + timed_steps):
        prompt = _inputs(s, 1, length, device)
        row = i % s.batch

        def run(prompt: torch.Tensor = prompt, row: int = row) -> None:
            _prefill(model, caches, prompt, row, s.chunk_tokens)

        seconds = timed(device, run)
        if i >= warmup:
            samples.append(seconds)
    return PrefillPoint(input_len=length, seconds=min(samples), samples_s=samples)


_PRIMED: set[str] = set()


def _prime(device: torch.device) -> None:
    """One tiny prefill and decode per process and device before any measurement, so
    one-time set-up (thread pools, kernel selection, the CUDA context) is not timed."""
    if str(device) in _PRIMED:
        return
    _PRIMED.add(str(device))
    tiny = ModelSpec(
        name="prime", num_layers=1, hidden_size=64, num_attention_heads=2, vocab_size=128
    )
    spec = serving_shard_spec(tiny, WorkerShape(), 1, 2, 24, 16)
    s = ServingShard(shard=spec, input_len=16, cache_len=24, chunk_tokens=8, role="both")
    measure_serving(s, device, 1, 1, torch.float32, [2], [16], prime=False)


def measure_serving(
    s: ServingShard,
    device: torch.device,
    warmup: int,
    timed_steps: int,
    kv_dtype: torch.dtype,
    batches: list[int],
    prefill_lengths: list[int],
    *,
    prime: bool = True,
) -> ServingMeasurement:
    """Build ``s`` on ``device`` and time its prefills (at ``prefill_lengths``, the last
    being the one whose cache the decode reads) and decode steps (at ``batches``)."""
    if prime:
        _prime(device)
    torch.manual_seed(0)
    memory = PeakMemory(device)
    memory.start()
    model = ServingModel(s).to(device=device, dtype=compute_dtype(device)).eval()
    caches = allocate_cache(s, device, kv_dtype)
    prefill: list[PrefillPoint] = []
    decode: list[DecodePoint] = []
    with torch.inference_mode():
        if s.role != "decode":
            for length in prefill_lengths:
                prefill.append(_time_prefill(model, caches, s, length, device, warmup, timed_steps))
            done = min(s.batch, warmup + timed_steps)
        else:  # the decode pool receives its prompts' caches: fill them, untimed
            _prefill(model, caches, _inputs(s, 1, s.input_len, device), 0, s.chunk_tokens)
            done = 1
        if s.role != "prefill":
            _fill_rows(caches, done, s.batch, s.input_len)
            for batch in batches:
                decode += _time_decode(model, caches, s, batch, device, warmup, timed_steps)
    peak = memory.peak_bytes()
    return ServingMeasurement(
        layers=s.layers,
        prefill=prefill,
        decode=decode,
        peak_bytes=peak,
        weights_bytes=_bytes(list(model.parameters())),
        kv_cache_bytes=_bytes([t for c in caches for t in c.tensors()]),
        memory_method=memory.method,
    )


def with_threads(threads: int, fn: Callable[[], object]) -> tuple[object, int]:
    """Run ``fn`` with ``threads`` CPU threads (restored after: in-process profiles share the
    process); returns its result and the threads used."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        return fn(), torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)
