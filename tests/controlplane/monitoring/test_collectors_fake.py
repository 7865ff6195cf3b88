"""The fake NVML module must stay faithful to the real pynvml: same names, signatures, constants, error classes."""

import inspect

import pynvml
import pytest

from controlplane.monitoring.collectors import NvmlCollector
from tests.fakes.pynvml_fake import FakeGpu, FakeNvml, GiB


def _public_functions(fake: FakeNvml) -> list[str]:
    return [name for name in dir(fake) if name.startswith("nvml") and callable(getattr(fake, name))]


def test_every_fake_function_exists_in_pynvml_with_the_same_parameters():
    fake = FakeNvml()
    for name in _public_functions(fake):
        real = getattr(pynvml, name, None)
        assert real is not None, f"pynvml has no {name}"
        real_params = list(inspect.signature(real).parameters)
        fake_params = list(inspect.signature(getattr(fake, name)).parameters)
        assert fake_params == real_params, f"{name}: fake {fake_params} != pynvml {real_params}"


def test_every_fake_constant_has_the_value_pynvml_gives_it():
    fake = FakeNvml()
    constants = [name for name in dir(fake) if name.startswith("NVML_")]
    assert "NVML_ERROR_GPU_IS_LOST" in constants
    for name in constants:
        assert getattr(fake, name) == getattr(pynvml, name), name


def test_fake_error_classes_have_pynvml_names_and_map_codes_to_subclasses_as_pynvml_does():
    fake = FakeNvml()
    classes = [name for name in dir(fake) if name.startswith("NVMLError_")]
    assert "NVMLError_LibraryNotFound" in classes
    for name in classes:
        assert hasattr(pynvml, name), name
        fake_error = getattr(fake, name)()
        real_error = getattr(pynvml, name)()
        assert fake_error.value == real_error.value, name
        assert type(fake.NVMLError(fake_error.value)) is getattr(fake, name)
        assert isinstance(fake_error, fake.NVMLError)
    assert hasattr(pynvml, "NVMLLibraryMismatchError")
    assert str(fake.NVMLError(fake.NVML_ERROR_GPU_IS_LOST)) == str(pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST))


def test_the_collector_only_calls_functions_that_the_real_pynvml_has():
    gpus = [FakeGpu(compute_processes={10: GiB}, graphics_processes={11: GiB}) for _ in range(2)]
    fake = FakeNvml(gpus)
    collector = NvmlCollector(fake)
    collector.collect()
    collector.discover()
    collector.shutdown()
    assert "nvmlDeviceGetComputeRunningProcesses" in fake.calls
    missing = {name for name in fake.calls if not hasattr(pynvml, name)}
    assert missing == set()


def test_fake_calls_before_init_fail_as_uninitialised_like_the_real_library():
    fake = FakeNvml([FakeGpu()])
    with pytest.raises(fake.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()
