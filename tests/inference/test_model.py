"""The native MoE model: cached decoding equals the full forward, routing and router weights behave."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from inference.config import MoEConfig
from inference.models.kv import SlotKV
from inference.models.layers import CacheContext, MoE
from inference.models.moe import MoEModel
from inference.protocol import ConfigError
from tests.inference.helpers import TINY


def _model(cfg: MoEConfig = TINY, seed: int = 0) -> MoEModel:
    model = MoEModel(cfg)
    model.init_weights(torch.Generator().manual_seed(seed))
    return model.eval()


def _ctx(kv: SlotKV, positions: torch.Tensor) -> CacheContext:
    b, t = positions.shape
    key_len = int(positions.max()) + 1
    mask = (torch.arange(key_len)[None, None, :] <= positions[:, :, None]).unsqueeze(1)
    return CacheContext(kv, 0, torch.arange(b)[:, None].expand(b, t), positions, mask)


def test_cached_prefill_and_decode_match_the_full_forward() -> None:
    model = _model()
    tokens = torch.tensor([[256, 72, 101, 108, 108, 111, 32, 119]])
    kv = SlotKV(TINY.n_layers, TINY.n_kv_heads, TINY.head_dim, torch.float32, torch.device("cpu"))
    kv.reserve(1, 16)
    with torch.inference_mode():
        full = model(tokens)
        prefill = model(tokens[:, :5], _ctx(kv, torch.arange(5)[None]))
        steps = [model(tokens[:, i : i + 1], _ctx(kv, torch.tensor([[i]]))) for i in range(5, 8)]
    torch.testing.assert_close(prefill, full[:, :5], rtol=1e-4, atol=1e-5)
    for i, step in zip(range(5, 8), steps, strict=True):
        torch.testing.assert_close(step[:, 0], full[:, i], rtol=1e-4, atol=1e-5)


def _reference_moe(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """Token-by-token: softmax over the top-k biased logits, weighted sum of the chosen experts."""
    out = torch.zeros_like(x)
    logits = moe.router(x) + moe.log_bias
    for i in range(x.shape[0]):
        val, idx = logits[i].topk(moe.top_k)
        for g, e in zip(torch.softmax(val, -1), idx.tolist(), strict=True):
            out[i] += g * moe.experts[e](x[i : i + 1])[0]
    return out


def test_the_moe_dispatch_equals_a_token_by_token_reference() -> None:
    torch.manual_seed(0)
    moe = MoE(16, 24, n_experts=5, top_k=2).eval()
    x = torch.randn(37, 16)
    with torch.inference_mode():
        torch.testing.assert_close(moe(x), _reference_moe(moe, x), rtol=1e-5, atol=1e-6)


def _shares(model: MoEModel, tokens: torch.Tensor) -> torch.Tensor:
    model.reset_expert_counts()
    with torch.inference_mode():
        model(tokens, count=True)
    counts = model.expert_counts().double()
    return counts / counts.sum(dim=1, keepdim=True)


def test_raising_a_router_weight_raises_that_experts_share() -> None:
    model = _model()
    tokens = torch.randint(0, 256, (8, 64), generator=torch.Generator().manual_seed(1))
    before = _shares(model, tokens)
    model.set_router_weights([3.0, 1.0, 1.0, 1.0])
    after = _shares(model, tokens)
    assert (after[:, 0] > before[:, 0]).all(), (before[:, 0], after[:, 0])
    model.set_router_weights([0.3, 1.0, 1.0, 1.0])
    lowered = _shares(model, tokens)
    assert (lowered[:, 0] < before[:, 0]).all()


def test_a_zero_weight_starves_an_expert_completely() -> None:
    model = _model()
    model.set_router_weights([1.0, 0.0, 1.0, 1.0])
    tokens = torch.randint(0, 256, (4, 100), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        model.reset_expert_counts()
        model(tokens[:, :50], count=True)
    counts = model.expert_counts()
    assert counts[:, 1].sum() == 0
    assert counts.sum() == TINY.n_layers * 4 * 50 * TINY.top_k


def test_scaling_every_weight_by_the_same_factor_changes_nothing() -> None:
    model = _model()
    tokens = torch.randint(0, 256, (2, 30), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        base = model(tokens)
        model.set_router_weights([2.5] * TINY.n_experts)
        torch.testing.assert_close(model(tokens), base)


def test_counts_are_taken_only_on_counted_passes() -> None:
    model = _model()
    with torch.inference_mode():
        model(torch.tensor([[1, 2, 3]]))
        assert model.expert_counts().sum() == 0
        model(torch.tensor([[1, 2, 3]]), count=True)
    assert (model.expert_counts().sum(dim=1) == 3 * TINY.top_k).all()


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0, 1.0, 1.0], "needs one weight per expert: 4 values; got 3"),
        ([1.0, -1.0, 1.0, 1.0], "weight 1 must be from 0 to 1000; got -1.0"),
        ([1.0, math.nan, 1.0, 1.0], "weight 1 must be a finite number; got nan"),
        ([1.0, math.inf, 1.0, 1.0], "weight 1 must be a finite number; got inf"),
        ([1.0, 0.0, 0.0, 0.0], "needs at least top_k=2 experts with a weight above 0; 1 have one"),
        ([1.0, "x", 1.0, 1.0], "weight 1 must be a finite number; got 'x'"),
        ([], "non-empty list"),
    ],
)
def test_bad_router_weights_are_refused_with_the_reason(weights: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        _model().set_router_weights(weights)
    assert info.value.param == "router_weights"


def test_training_forward_reports_a_balance_loss_near_one_for_uniform_routing() -> None:
    model = _model().train()
    tokens = torch.randint(0, 256, (4, 64), generator=torch.Generator().manual_seed(4))
    logits = model(tokens)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))
    aux = model.aux_loss()
    assert 0.8 < float(aux.detach()) < 1.5
    (loss + 0.01 * aux).backward()
    assert model.layers[0].moe.router.weight.grad is not None


def test_model_config_cross_checks_quote_the_values() -> None:
    with pytest.raises(ConfigError, match="d_model=30 is not divisible by n_heads=4"):
        MoEConfig(d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match="n_heads=4 is not divisible by n_kv_heads=3"):
        MoEConfig(n_heads=4, n_kv_heads=3)
