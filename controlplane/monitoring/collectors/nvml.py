"""Per-GPU readings through NVML (the ``pynvml`` module of the ``nvidia-ml-py`` package).

The NVML module is a constructor argument: production passes nothing and gets the real ``pynvml``; tests pass
``tests.fakes.pynvml_fake.FakeNvml``, which has the same function names, constants and error classes. The code path
is the same either way.

Behaviour without a GPU or driver: the first ``collect()`` tries ``nvmlInit()``, logs once why it failed, and from
then on ``collect()`` returns ``[]`` at once; it tries again at most every ``retry_interval_s`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .samples import GpuInfo, GpuSample, NvmlInventory

__all__ = ["DEFAULT_RETRY_INTERVAL_S", "NvmlCollector", "format_cuda_version"]

log = logging.getLogger(__name__)

DEFAULT_RETRY_INTERVAL_S = 300.0

# Error codes (as in pynvml) that mean the library as a whole is unusable, or one device is gone.
_LIBRARY_ERRORS = ("UNINITIALIZED", "DRIVER_NOT_LOADED", "LIBRARY_NOT_FOUND", "LIB_RM_VERSION_MISMATCH")
_DEVICE_GONE_ERRORS = ("GPU_IS_LOST", "RESET_REQUIRED")
_FIELD_ABSENT_ERRORS = ("NOT_SUPPORTED", "FUNCTION_NOT_FOUND")


class _LibraryLost(Exception):
    """NVML stopped working as a whole in the middle of a tick (driver unloaded, version mismatch)."""


class _DeviceGone(Exception):
    """The GPU answered "lost" or "reset required": no point asking it anything else this tick."""


@dataclass
class _Device:
    index: int
    handle: Any = None
    uuid: str | None = None
    name: str | None = None
    memory_total: int | None = None
    last_error: str | None = None


def format_cuda_version(value: int | None) -> str:
    """12040 -> "12.4" (NVML encodes the CUDA driver version as major * 1000 + minor * 10)."""
    if not value:
        return ""
    return f"{value // 1000}.{(value % 1000) // 10}"


def _text(value: Any) -> str:
    """Old pynvml releases return bytes for names and versions; newer ones return str."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class NvmlCollector:
    """Reads every GPU NVML sees; one ``collect()`` per tick. Thread-safe; cheap when NVML is unavailable.

    ``nvml``: the NVML module (default: ``import pynvml`` on first use). ``retry_interval_s``: how long to wait
    before trying ``nvmlInit()`` again after it failed. ``monotonic`` / ``wall_clock``: time sources (tests).
    """

    def __init__(
        self,
        nvml: ModuleType | Any | None = None,
        *,
        retry_interval_s: float = DEFAULT_RETRY_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if retry_interval_s <= 0:
            raise ValueError(f"retry_interval_s must be positive, got {retry_interval_s!r}")
        self._nvml: Any = nvml  # pynvml (untyped) or a fake with its names
        self._retry_interval_s = retry_interval_s
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._initialised = False
        self._reason: str | None = None
        self._logged_reason: str | None = None
        self._next_attempt: float | None = None
        self._devices: list[_Device] = []
        self._driver_version = ""
        self._cuda_version = ""
        self._absent_codes: frozenset[int] = frozenset()
        self._library_codes: frozenset[int] = frozenset()
        self._gone_codes: frozenset[int] = frozenset()

    # -- public API ---------------------------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """Whether NVML works; the first call (or one after the retry interval) tries to initialise it."""
        with self._lock:
            return self._ensure_initialised()

    @property
    def reason(self) -> str | None:
        """Why NVML is unavailable (e.g. "NVMLError_LibraryNotFound: NVML Shared Library Not Found"), else None."""
        return self._reason

    def collect(self) -> list[GpuSample]:
        """One sample per GPU; ``[]`` when NVML is unavailable. Never raises for NVML errors."""
        with self._lock:
            if not self._ensure_initialised():
                return []
            ts = self._wall_clock()
            try:
                return [self._sample(device, ts) for device in self._devices]
            except _LibraryLost as exc:
                self._lose(str(exc))
                return []

    def discover(self) -> NvmlInventory:
        """Driver and CUDA versions and each GPU's static facts, for the inventory."""
        with self._lock:
            if not self._ensure_initialised():
                return NvmlInventory(available=False, reason=self._reason)
            for device in self._devices:
                if device.uuid is not None:
                    continue
                try:
                    self._refresh_static(device, errors=[])
                except _LibraryLost as exc:
                    self._lose(str(exc))
                    return NvmlInventory(available=False, reason=self._reason)
                except _DeviceGone:
                    device.handle = None
            gpus = tuple(
                GpuInfo(index=d.index, uuid=d.uuid, name=d.name or "", memory_total_bytes=d.memory_total or 0)
                for d in self._devices
                if d.uuid is not None
            )
            return NvmlInventory(
                available=True, driver_version=self._driver_version, cuda_version=self._cuda_version, gpus=gpus
            )

    def shutdown(self) -> None:
        """Calls ``nvmlShutdown()`` if NVML was initialised. A later ``collect()`` initialises it again."""
        with self._lock:
            self._shutdown_quietly()
            self._next_attempt = None

    close = shutdown

    def __enter__(self) -> NvmlCollector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # -- initialisation -----------------------------------------------------------------------------------------

    def _module(self) -> Any:
        if self._nvml is None:
            import pynvml

            self._nvml = pynvml
        return self._nvml

    def _codes(self, names: tuple[str, ...]) -> frozenset[int]:
        codes = (getattr(self._nvml, f"NVML_ERROR_{name}", None) for name in names)
        return frozenset(code for code in codes if code is not None)

    def _ensure_initialised(self) -> bool:
        if self._initialised:
            return True
        now = self._monotonic()
        if self._next_attempt is not None and now < self._next_attempt:
            return False
        self._next_attempt = now + self._retry_interval_s
        try:
            nvml = self._module()
        except ImportError as exc:
            self._fail(f"the pynvml module (package nvidia-ml-py) cannot be imported: {exc}")
            return False
        self._absent_codes = self._codes(_FIELD_ABSENT_ERRORS)
        self._library_codes = self._codes(_LIBRARY_ERRORS)
        self._gone_codes = self._codes(_DEVICE_GONE_ERRORS)
        try:
            nvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, ... or anything odd
            self._fail(_describe(exc))
            return False
        reason: str | None
        try:
            self._read_system(nvml)
        except _LibraryLost as exc:
            reason = str(exc)
        except Exception as exc:
            reason = _describe(exc)
        else:
            reason = None
        if reason is not None:
            self._fail(reason)
            self._call_shutdown()
            return False
        self._initialised = True
        self._reason = None
        self._logged_reason = None
        log.info(
            "NVML is available: %d GPU(s), driver %s, CUDA %s",
            len(self._devices),
            self._driver_version or "?",
            self._cuda_version or "?",
        )
        return True

    def _read_system(self, nvml: Any) -> None:
        self._driver_version = self._optional(lambda: _text(nvml.nvmlSystemGetDriverVersion()), "")
        self._cuda_version = self._optional(lambda: format_cuda_version(nvml.nvmlSystemGetCudaDriverVersion()), "")
        count = int(nvml.nvmlDeviceGetCount())
        self._devices = [_Device(index=i) for i in range(count)]
        for device in self._devices:
            try:
                self._refresh_static(device, errors=[])
            except _DeviceGone:
                device.handle = None  # reported in that GPU's samples

    def _optional(self, read: Callable[[], str], default: str) -> str:
        try:
            return read()
        except self._nvml.NVMLError as exc:  # a version string is not worth giving up on the GPUs
            if getattr(exc, "value", None) not in self._absent_codes:
                log.warning("NVML could not report a version: %s", _describe(exc))
            return default

    def _refresh_static(self, device: _Device, errors: list[str]) -> None:
        """Handle, uuid, name, total memory. Raises _DeviceGone / _LibraryLost; other errors leave them None."""
        nvml = self._nvml
        device.handle = self._call("handle", nvml.nvmlDeviceGetHandleByIndex, device.index, errors=errors)
        if device.handle is None:
            device.uuid = None
            return
        uuid = self._read(device, "uuid", nvml.nvmlDeviceGetUUID, errors=errors)
        name = self._read(device, "name", nvml.nvmlDeviceGetName, errors=errors)
        memory = self._read(device, "memory", nvml.nvmlDeviceGetMemoryInfo, errors=errors)
        device.uuid = _text(uuid) if uuid is not None else None
        device.name = _text(name) if name is not None else None
        device.memory_total = int(memory.total) if memory is not None else None

    def _fail(self, reason: str) -> None:
        self._reason = reason
        if reason != self._logged_reason:
            log.warning(
                "NVML is unavailable, so there are no GPU metrics: %s (next try in %.0f s)",
                reason,
                self._retry_interval_s,
            )
            self._logged_reason = reason
        else:
            log.debug("NVML is still unavailable: %s", reason)

    def _lose(self, reason: str) -> None:
        self._shutdown_quietly()
        self._next_attempt = self._monotonic() + self._retry_interval_s
        self._fail(reason)

    def _call_shutdown(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception as exc:
            log.debug("nvmlShutdown failed: %s", _describe(exc))

    def _shutdown_quietly(self) -> None:
        if self._initialised:
            self._call_shutdown()
        self._initialised = False
        self._devices = []

    # -- one tick -----------------------------------------------------------------------------------------------

    def _call(self, field: str, fn: Callable[..., Any], *args: Any, errors: list[str]) -> Any:
        """``fn(*args)``; None when NVML says the field is not supported; other errors go to ``errors``."""
        try:
            return fn(*args)
        except self._nvml.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code in self._absent_codes:
                return None
            if code in self._library_codes:
                raise _LibraryLost(_describe(exc)) from exc
            errors.append(f"{field}: {_describe(exc)}")
            if code in self._gone_codes:
                raise _DeviceGone from exc
            return None

    def _read(self, device: _Device, field: str, fn: Callable[..., Any], *args: Any, errors: list[str]) -> Any:
        return self._call(field, fn, device.handle, *args, errors=errors)

    def _sample(self, device: _Device, ts: float) -> GpuSample:
        errors: list[str] = []
        values: dict[str, Any] = {}
        try:
            if device.handle is None or device.uuid is None:
                self._refresh_static(device, errors)
            if device.handle is not None:
                self._read_fields(device, values, errors)
        except _DeviceGone:
            device.handle = None  # ask for a fresh handle next tick
        error = "; ".join(errors) or None
        if device.handle is None and error is None:
            error = "no handle for this GPU"
        self._log_transition(device, error)
        return GpuSample(
            index=device.index,
            uuid=device.uuid or "",
            name=device.name or "",
            ts=ts,
            error=error,
            **values,
        )

    def _read_fields(self, device: _Device, values: dict[str, Any], errors: list[str]) -> None:
        """Fills ``values`` field by field, so what was read before a "GPU is lost" is kept."""
        nvml = self._nvml
        memory = self._read(device, "memory", nvml.nvmlDeviceGetMemoryInfo, errors=errors)
        if memory is not None:
            values.update(mem_total_bytes=int(memory.total), mem_used_bytes=int(memory.used))
            values["mem_free_bytes"] = int(memory.free)
        util = self._read(device, "utilization", nvml.nvmlDeviceGetUtilizationRates, errors=errors)
        if util is not None:
            values.update(util_gpu_pct=float(util.gpu), util_mem_pct=float(util.memory))
        temp = self._read(
            device, "temperature", nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU, errors=errors
        )
        values["temperature_c"] = None if temp is None else float(temp)
        power = self._read(device, "power", nvml.nvmlDeviceGetPowerUsage, errors=errors)
        values["power_w"] = None if power is None else power / 1000.0
        limit = self._read(device, "power_limit", nvml.nvmlDeviceGetEnforcedPowerLimit, errors=errors)
        values["power_limit_w"] = None if limit is None else limit / 1000.0
        sm_clock = self._read(device, "sm_clock", nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_SM, errors=errors)
        values["sm_clock_mhz"] = None if sm_clock is None else float(sm_clock)
        mem_clock = self._read(device, "mem_clock", nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_MEM, errors=errors)
        values["mem_clock_mhz"] = None if mem_clock is None else float(mem_clock)
        values["processes"] = self._read_processes(device, errors)

    def _read_processes(self, device: _Device, errors: list[str]) -> dict[int, int]:
        """Compute and graphics processes, pid -> bytes; a pid in both lists counts once (the larger figure)."""
        processes: dict[int, int] = {}
        for kind in ("Compute", "Graphics"):
            infos = self._read_process_list(device, kind, errors)
            for info in infos or ():
                used = getattr(info, "usedGpuMemory", None)
                if used is None:  # NVML could not tell (e.g. Windows WDDM); not a number we may invent
                    continue
                pid = int(info.pid)
                processes[pid] = max(processes.get(pid, 0), int(used))
        return processes

    def _read_process_list(self, device: _Device, kind: str, errors: list[str]) -> Any:
        nvml = self._nvml
        name = f"nvmlDeviceGet{kind}RunningProcesses"
        fn = getattr(nvml, name, None)
        if fn is None:
            return None
        mismatch = getattr(nvml, "NVMLLibraryMismatchError", None)
        try:
            return self._read(device, f"{kind.lower()}_processes", fn, errors=errors)
        except Exception as exc:
            # pynvml raises NVMLLibraryMismatchError (not an NVMLError) when the driver lacks the _v3 call.
            if mismatch is None or not isinstance(exc, mismatch):
                raise
        older = getattr(nvml, f"{name}_v2", None)
        if older is None:
            return None
        return self._read(device, f"{kind.lower()}_processes", older, errors=errors)

    def _log_transition(self, device: _Device, error: str | None) -> None:
        if error == device.last_error:
            return
        if error is not None:
            log.warning("GPU %d (%s): %s", device.index, device.uuid or "uuid unknown", error)
        else:
            log.info("GPU %d (%s) reads normally again", device.index, device.uuid or "uuid unknown")
        device.last_error = error
