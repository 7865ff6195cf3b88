"""Precisions and devices: what loads where, what int8 saves, and how little it changes the output."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inference.bridge import generate
from inference.engine import Engine
from inference.errors import InvalidRequest
from inference.precision import Int8Linear, check_precision, linear_fallback, resolve_device


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_each_cpu_precision_loads_and_generates(make_engine, precision: str) -> None:
    engine: Engine = make_engine(precision=precision)
    result = generate(engine, "Hello", max_tokens=8, temperature=0)
    assert result.finish_reason == "length" and len(result.output_ids) == 8
    assert engine.active_model()["precision"] == precision


def test_int8_and_bf16_shrink_the_weights(tiny_checkpoint: Path) -> None:
    sizes = {}
    for precision in ("fp32", "bf16", "int8"):
        engine = Engine().start()
        try:
            sizes[precision] = engine.load(str(tiny_checkpoint), precision, "cpu")["weight_bytes"]
        finally:
            engine.stop()
    assert sizes["bf16"] == sizes["fp32"] // 2
    assert sizes["int8"] < 0.45 * sizes["fp32"], sizes


def test_int8_outputs_stay_close_to_fp32(make_engine) -> None:
    fp32, int8 = make_engine(precision="fp32"), make_engine(precision="int8")
    texts = ["hello world, this is a test", "def f(x): return x"]
    a, b = fp32.perplexity(texts)["perplexity"], int8.perplexity(texts)["perplexity"]
    assert abs(a - b) / a < 0.05, (a, b)


def test_the_int8_kernel_matches_the_dequantized_matmul() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    q = Int8Linear(linear.weight, linear.bias)
    x = torch.randn(5, 7, 64)
    torch.testing.assert_close(q(x), linear_fallback(x, q), rtol=1e-4, atol=1e-4)
    assert q.weight.dtype == torch.int8 and q.weight.element_size() == 1
    assert (q(x) - linear(x)).abs().max() < 0.02 * linear(x).abs().max()


def test_fp16_on_cpu_is_refused_clearly() -> None:
    with pytest.raises(InvalidRequest, match="precision fp16 is not supported on cpu") as info:
        check_precision("fp16", torch.device("cpu"))
    assert info.value.param == "precision"


def test_unknown_precisions_and_unavailable_devices_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="precision must be one of"):
        check_precision("fp8", torch.device("cpu"))
    with pytest.raises(InvalidRequest, match="supported on cpu only"):
        check_precision("int8", torch.device("cuda"))
    if not torch.cuda.is_available():
        with pytest.raises(InvalidRequest, match="CUDA is not available"):
            resolve_device("cuda:0")
        assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(InvalidRequest, match="not supported"):
        resolve_device("mps")


def test_the_int8_router_stays_in_full_precision(make_engine) -> None:
    engine: Engine = make_engine(precision="int8")
    model = engine.active_lane().runner.model
    assert isinstance(model.layers[0].moe.experts[0].w1, Int8Linear)
    assert isinstance(model.layers[0].moe.router, torch.nn.Linear)
    assert model.layers[0].moe.router.weight.dtype == torch.float32
