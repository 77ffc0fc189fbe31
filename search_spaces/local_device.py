"""``local-cpu``: this machine's CPU as a device a job can target (one core = one "GPU").

Profiling and the command evaluator run real workloads on whatever the worker has; on a
machine without GPUs that is the CPU. Describing it as a GPUSpec lets the analytical model,
the search space and the profile evaluator treat it like any accelerator. The figures here are
nominal (what the instruction set allows at the reported clock); `paretune calibrate` measures
the real ones and a job names that profile to use them.

One core per device matches how trials run on a CPU: one Ray CPU slot, one thread.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from search_spaces.specs import DType
from search_spaces.specs import GPUSpec

LOCAL_CPU_ID = "local-cpu"
# FP32 FLOPs per cycle per core: two FMA pipes of the widest vector unit (x 2 for the FMA).
_FP32_FLOPS_PER_CYCLE = {"avx512f": 64.0, "avx2": 32.0, "neon": 16.0}
_DEFAULT_FP32_FLOPS_PER_CYCLE = 8.0
# bf16 matrix/dot-product instructions and their rate relative to fp32 FMAs.
_BF16_SPEEDUP = {"amx_bf16": 16.0, "avx512_bf16": 2.0}
NOMINAL_MEMORY_BW_GB_PER_S_PER_CORE = 10.0  # no datasheet: a typical server share per core
NOMINAL_SHARED_MEMORY_BW_GB_PER_S = 5.0  # process-to-process copies (gloo over shared memory)
NOMINAL_SCALEOUT_BW_GB_PER_S = 1.25  # 10 GbE between hosts
NOMINAL_PRICE_PER_CORE_HOUR_USD = 0.04


def _cpuinfo() -> dict[str, str]:
    """First processor's fields of /proc/cpuinfo (empty off Linux)."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return {}
    fields: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _clock_hz(info: dict[str, str]) -> float:
    """The highest clock the kernel reports (max frequency, else the current one)."""
    max_khz = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if max_khz.exists():
        return float(max_khz.read_text().strip()) * 1e3
    try:
        return float(info.get("cpu MHz", "0")) * 1e6 or 2.0e9
    except ValueError:
        return 2.0e9


def _memory_bytes() -> float:
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return float(line.split()[1]) * 1024
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def cpu_features() -> set[str]:
    info = _cpuinfo()
    return set((info.get("flags") or info.get("Features") or "").split())


def cpu_name() -> str:
    info = _cpuinfo()
    return info.get("model name") or info.get("Hardware") or os.uname().machine


def supports_bf16(features: set[str] | None = None) -> bool:
    """True when the CPU has bf16 dot-product or matrix instructions (else bf16 is emulated)."""
    flags = cpu_features() if features is None else features
    return any(f in flags for f in _BF16_SPEEDUP)


@cache
def local_cpu_spec() -> GPUSpec:
    """Nominal figures of one core of this machine's CPU."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    per_cycle = next(
        (v for k, v in _FP32_FLOPS_PER_CYCLE.items() if k in flags), _DEFAULT_FP32_FLOPS_PER_CYCLE
    )
    fp32_tflops = _clock_hz(info) * per_cycle / 1e12
    speedup = next((v for k, v in _BF16_SPEEDUP.items() if k in flags), 1.0)
    cores = os.cpu_count() or 1
    vendor = (
        (info.get("vendor_id") or "cpu").lower().replace("authentic", "").replace("genuine", "")
    )
    return GPUSpec(
        id=LOCAL_CPU_ID,
        name=f"{cpu_name()} (one core)",
        vendor=vendor or "cpu",
        generation="cpu",
        # Without bf16 instructions, bf16 training runs in fp32: the bf16 entry is that rate.
        peak_tflops_dense={DType.bf16: fp32_tflops * speedup, DType.fp32: fp32_tflops},
        memory_gib=_memory_bytes() / cores / 2**30,
        memory_bandwidth_gb_per_s=NOMINAL_MEMORY_BW_GB_PER_S_PER_CORE,
        nvlink_bandwidth_gb_per_s=NOMINAL_SHARED_MEMORY_BW_GB_PER_S,
        nvlink_domain_size=cores,
        scaleout_bandwidth_gb_per_s=NOMINAL_SCALEOUT_BW_GB_PER_S,
        gpus_per_node=cores,
        price_per_gpu_hour_usd=NOMINAL_PRICE_PER_CORE_HOUR_USD,
        source="nominal: vector FLOPs/cycle x clock from /proc/cpuinfo, memory per core from "
        "/proc/meminfo, bandwidths typical (measure them with `paretune calibrate`)",
    )
