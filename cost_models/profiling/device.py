"""The device a profile runs on, how to time it and how to read its peak memory.

Step time comes from CUDA events on a GPU (kernels are asynchronous: the wall clock would time
the launches) and from the wall clock on a CPU. Peak memory is the CUDA caching allocator's
peak on a GPU; on a CPU it is the process's peak resident set (Linux ``VmHWM``) above the
resident set when measuring started, after resetting the peak (``/proc/self/clear_refs``) and
returning freed heap pages to the OS (``malloc_trim``), so earlier work in the same process does
not hide the profile's own peak.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import platform
import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from search_spaces.local_device import cpu_name
from search_spaces.local_device import supports_bf16

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


class DeviceUnavailableError(RuntimeError):
    """The trial asked for a device this worker does not have."""


def pick_device(setting: str) -> torch.device:
    """``auto``: the first visible GPU if any, else the CPU; ``cuda`` fails without one."""
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                "device: cuda was requested but this worker sees no GPU "
                "(torch.cuda.is_available() is False); use device: auto or cpu"
            )
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def compute_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the device runs it natively (Ampere+ GPUs, CPUs with bf16 instructions)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if supports_bf16() else torch.float32


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    return cpu_name()


def library_versions(device: torch.device) -> dict[str, str]:
    """Versions a measurement depends on (the driver's own is separate)."""
    out = {"torch": torch.__version__, "python": platform.python_version()}
    if device.type == "cuda":
        out["cuda"] = str(torch.version.cuda)
        nccl = torch.cuda.nccl.version()
        out["nccl"] = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl)
        out["cudnn"] = str(torch.backends.cudnn.version())
    else:
        out["blas"] = "mkl" if torch.backends.mkl.is_available() else "openblas-or-other"
        out["mkldnn"] = str(torch.backends.mkldnn.is_available())
    return out


def driver_version(device: torch.device) -> str:
    """The GPU driver (from NVML via torch when available) or, on a CPU, the kernel."""
    if device.type == "cuda":
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            return f"nvidia-{out.stdout.strip().splitlines()[0]}"
        except (OSError, subprocess.SubprocessError, IndexError):  # no NVML tool: runtime
            return f"cuda-runtime-{torch.version.cuda}"
    return f"{platform.system().lower()}-{platform.release()}"


def memory_budget_bytes(device: torch.device, fraction: float = 0.6) -> float:
    """Memory a profile may plan to use: a share of what is free now."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return float(free) * fraction
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024 * fraction
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")) * fraction


def _status_kib(field: str) -> float | None:
    if not _STATUS.exists():
        return None
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return None


def _trim_heap() -> None:
    """Give freed heap pages back to the OS (glibc keeps them otherwise)."""
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc_name).malloc_trim(0)


class PeakMemory:
    """Peak memory of a block of work above what was in use when it started."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = ""
        self._base = 0.0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = float(torch.cuda.memory_allocated(self.device))
            self.method = "cuda max_memory_allocated"
            return
        _trim_heap()
        try:
            _CLEAR_REFS.write_text("5")  # reset VmHWM to the current resident set
            rss = _status_kib("VmRSS")
            self._base = (rss or 0.0) * 1024
            self.method = "peak RSS (VmHWM) delta"
        except OSError:
            self._base = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
            self.method = "ru_maxrss delta (peak not resettable: a lower bound)"

    def peak_bytes(self) -> float:
        if self.device.type == "cuda":
            return float(torch.cuda.max_memory_allocated(self.device)) - self._base
        hwm = _status_kib("VmHWM") if self.method.startswith("peak RSS") else None
        if hwm is None:
            hwm = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return max(0.0, hwm * 1024 - self._base)


def timed(device: torch.device, fn: Callable[[], Any]) -> float:
    """Seconds ``fn`` takes on ``device`` (CUDA events on a GPU, the wall clock on a CPU)."""
    if device.type == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end)) / 1e3
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin
