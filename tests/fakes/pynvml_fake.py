"""A fake ``pynvml`` for tests: the same function names, signatures, constants and error classes, fake GPUs.

Pass a :class:`FakeNvml` wherever the code takes the NVML module::

    nvml = FakeNvml([FakeGpu(memory_used=10 * GiB), FakeGpu(errors={"nvmlDeviceGetTemperature": LOST})])
    collector = NvmlCollector(nvml)

Figures on the :class:`FakeGpu` objects can be changed between ticks (``nvml.gpus[0].memory_used += GiB``).
``errors`` maps a pynvml function name (or ``"*"``: every call for that GPU) to an NVML error code, which the fake
raises as pynvml would (``NVMLError(code)`` gives the matching ``NVMLError_*`` subclass), or to :data:`MISMATCH`,
which raises ``NVMLLibraryMismatchError`` as pynvml does when the driver lacks the newest process-list call.
``FakeNvml(init_error=NVML_ERROR_LIBRARY_NOT_FOUND)`` (or :meth:`FakeNvml.without_library`) plays a machine with
no driver. ``tests/controlplane/monitoring/test_collectors_fake.py`` checks every name here against the real pynvml.
"""

from __future__ import annotations

import string
import sys
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

GiB = 1024**3
MISMATCH = "library-mismatch"

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_IN_USE = 19
NVML_ERROR_MEMORY = 20
NVML_ERROR_NO_DATA = 21
NVML_ERROR_UNKNOWN = 999

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_ALREADY_INITIALIZED: "Already Initialized",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_INSUFFICIENT_SIZE: "Insufficient Size",
    NVML_ERROR_INSUFFICIENT_POWER: "Insufficient External Power",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_IRQ_ISSUE: "Interrupt Request Issue",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_CORRUPTED_INFOROM: "Corrupted infoROM",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_RESET_REQUIRED: "GPU requires restart",
    NVML_ERROR_OPERATING_SYSTEM: "The operating system has blocked the request.",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: "RM has detected an NVML/RM version mismatch.",
    NVML_ERROR_MEMORY: "Insufficient Memory",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """As in pynvml: ``NVMLError(code)`` returns an instance of the code's subclass, with ``.value == code``."""

    _valClassMapping: dict[int, type[NVMLError]] = {}

    def __new__(cls, value: int):
        if cls is NVMLError:
            cls = NVMLError._valClassMapping.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NVMLError) and self.value == other.value

    __hash__ = Exception.__hash__


def _make_error_classes() -> None:
    """NVML_ERROR_GPU_IS_LOST -> NVMLError_GpuIsLost, exactly pynvml's naming rule."""
    module = sys.modules[__name__]
    for name in [n for n in dir(module) if n.startswith("NVML_ERROR_")]:
        class_name = "NVMLError_" + string.capwords(name.replace("NVML_ERROR_", ""), "_").replace("_", "")
        code = getattr(module, name)

        def new(cls, *args, _code=code):
            return NVMLError.__new__(cls, _code)

        error_class = type(class_name, (NVMLError,), {"__new__": new, "__module__": __name__})
        setattr(module, class_name, error_class)
        NVMLError._valClassMapping[code] = error_class


_make_error_classes()


class NVMLLibraryMismatchError(Exception):
    """pynvml raises this (not an NVMLError) when an unversioned call's newest version is missing in the driver."""


@dataclass
class FakeGpu:
    """One fake GPU. Memory in bytes, power in milliwatts (as NVML reports it), clocks in MHz."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = ""
    """Empty: FakeNvml fills in a stable one from the index."""
    memory_total: int = 80 * GiB
    memory_used: int = 1 * GiB
    util_gpu: int = 0
    util_mem: int = 0
    temperature: int = 35
    power_mw: int = 70_000
    power_limit_mw: int = 700_000
    sm_clock: int = 1980
    mem_clock: int = 2619
    compute_processes: dict[int, int | None] = field(default_factory=dict)
    graphics_processes: dict[int, int | None] = field(default_factory=dict)
    errors: dict[str, int | str] = field(default_factory=dict)


@dataclass(frozen=True)
class FakeHandle:
    index: int


class FakeNvml:
    """Quacks like the ``pynvml`` module. ``calls`` lists every function called, in order."""

    def __init__(
        self,
        gpus: list[FakeGpu] | tuple[FakeGpu, ...] = (),
        *,
        driver_version: str = "550.54.15",
        cuda_driver_version: int = 12040,
        init_error: int | None = None,
        system_errors: dict[str, int] | None = None,
        bytes_strings: bool = False,
    ) -> None:
        self.gpus = list(gpus)
        for index, gpu in enumerate(self.gpus):
            if not gpu.uuid:
                gpu.uuid = f"GPU-00000000-0000-0000-0000-{index:012d}"
        self.driver_version = driver_version
        self.cuda_driver_version = cuda_driver_version
        self.init_error = init_error
        self.system_errors = dict(system_errors or {})
        self.bytes_strings = bytes_strings
        self.init_count = 0
        self.calls: list[str] = []

    @classmethod
    def without_library(cls) -> FakeNvml:
        """A machine with no NVIDIA driver: ``nvmlInit`` raises ``NVMLError_LibraryNotFound``."""
        return cls(init_error=NVML_ERROR_LIBRARY_NOT_FOUND)

    # -- plumbing -----------------------------------------------------------------------------------------------

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if name in self.system_errors:
            raise NVMLError(self.system_errors[name])
        if self.init_count <= 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def _gpu(self, name: str, handle: FakeHandle) -> FakeGpu:
        self._enter(name)
        if not isinstance(handle, FakeHandle) or not 0 <= handle.index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[handle.index]
        code = gpu.errors.get(name, gpu.errors.get("*"))
        if code == MISMATCH:
            raise NVMLLibraryMismatchError(f"Unversioned function called: use {name}_v2")
        if code is not None:
            raise NVMLError(code)
        return gpu

    def _str(self, value: str) -> str | bytes:
        return value.encode() if self.bytes_strings else value

    @staticmethod
    def _processes(table: dict[int, int | None]) -> list[SimpleNamespace]:
        return [
            SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)
            for pid, used in table.items()
        ]

    # -- the pynvml functions -----------------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.init_count += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.init_count -= 1

    def nvmlSystemGetDriverVersion(self):
        self._enter("nvmlSystemGetDriverVersion")
        return self._str(self.driver_version)

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return self.cuda_driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        code = self.gpus[index].errors.get("nvmlDeviceGetHandleByIndex")
        if code is not None:
            raise NVMLError(code)
        return FakeHandle(index)

    def nvmlDeviceGetIndex(self, handle: FakeHandle) -> int:
        self._gpu("nvmlDeviceGetIndex", handle)
        return handle.index

    def nvmlDeviceGetName(self, handle: FakeHandle):
        return self._str(self._gpu("nvmlDeviceGetName", handle).name)

    def nvmlDeviceGetUUID(self, handle: FakeHandle):
        return self._str(self._gpu("nvmlDeviceGetUUID", handle).uuid)

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle, version: Any = None) -> SimpleNamespace:
        gpu = self._gpu("nvmlDeviceGetMemoryInfo", handle)
        return SimpleNamespace(total=gpu.memory_total, used=gpu.memory_used, free=gpu.memory_total - gpu.memory_used)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeHandle) -> SimpleNamespace:
        gpu = self._gpu("nvmlDeviceGetUtilizationRates", handle)
        return SimpleNamespace(gpu=gpu.util_gpu, memory=gpu.util_mem)

    def nvmlDeviceGetTemperature(self, handle: FakeHandle, sensor: int) -> int:
        gpu = self._gpu("nvmlDeviceGetTemperature", handle)
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return gpu.temperature

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:
        return self._gpu("nvmlDeviceGetPowerUsage", handle).power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeHandle) -> int:
        return self._gpu("nvmlDeviceGetEnforcedPowerLimit", handle).power_limit_mw

    def nvmlDeviceGetClockInfo(self, handle: FakeHandle, type: int) -> int:
        gpu = self._gpu("nvmlDeviceGetClockInfo", handle)
        clocks = {NVML_CLOCK_GRAPHICS: gpu.sm_clock, NVML_CLOCK_SM: gpu.sm_clock, NVML_CLOCK_MEM: gpu.mem_clock}
        if type not in clocks:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return clocks[type]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeHandle) -> list[SimpleNamespace]:
        return self._processes(self._gpu("nvmlDeviceGetComputeRunningProcesses", handle).compute_processes)

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: FakeHandle) -> list[SimpleNamespace]:
        return self._processes(self._gpu("nvmlDeviceGetComputeRunningProcesses_v2", handle).compute_processes)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeHandle) -> list[SimpleNamespace]:
        return self._processes(self._gpu("nvmlDeviceGetGraphicsRunningProcesses", handle).graphics_processes)

    def nvmlDeviceGetGraphicsRunningProcesses_v2(self, handle: FakeHandle) -> list[SimpleNamespace]:
        return self._processes(self._gpu("nvmlDeviceGetGraphicsRunningProcesses_v2", handle).graphics_processes)


# Constants and error classes are attributes of the "module", as in pynvml.
for _name, _value in list(vars(sys.modules[__name__]).items()):
    if _name.startswith(("NVML_", "NVMLError")) or _name == "NVMLLibraryMismatchError":
        setattr(FakeNvml, _name, _value)
del _name, _value
