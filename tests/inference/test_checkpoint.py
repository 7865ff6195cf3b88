"""Checkpoints: round trip, and every kind of damage is a CheckpointError naming the file and the problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from inference.checkpoint import load_checkpoint, save_checkpoint, write_manifest
from inference.errors import CheckpointError
from inference.models.moe import MoEModel
from tests.inference.helpers import TINY


@pytest.fixture
def ckpt(tmp_path: Path, tiny_checkpoint: Path) -> Path:
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "copy"))


def test_a_saved_checkpoint_loads_back_with_identical_weights(tmp_path: Path) -> None:
    model = MoEModel(TINY)
    model.init_weights(torch.Generator().manual_seed(3))
    save_checkpoint(model, tmp_path / "c", extra={"quality": {"heldout_perplexity": 9.0}})
    loaded, raw, hashes = load_checkpoint(tmp_path / "c")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    assert raw["quality"] == {"heldout_perplexity": 9.0}
    assert set(hashes) == {"config.json", "model.safetensors"}
    tokens = torch.tensor([[256, 10, 20, 30]])
    with torch.inference_mode():
        assert torch.equal(model.eval()(tokens), loaded(tokens))


def test_bf16_storage_halves_the_file_and_loads_as_fp32(tmp_path: Path) -> None:
    model = MoEModel(TINY)
    save_checkpoint(model, tmp_path / "f32")
    save_checkpoint(model, tmp_path / "b16", dtype="bfloat16")
    f32, b16 = (tmp_path / "f32/model.safetensors").stat().st_size, (tmp_path / "b16/model.safetensors").stat().st_size
    assert b16 < 0.55 * f32
    loaded = load_checkpoint(tmp_path / "b16").model
    assert loaded.embed.weight.dtype == torch.float32
    assert torch.allclose(loaded.embed.weight, model.embed.weight, rtol=1e-2, atol=1e-3)


def test_a_corrupt_byte_is_caught_by_the_sha256(ckpt: Path) -> None:
    data = bytearray((ckpt / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (ckpt / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: sha256 is [0-9a-f]{64} but manifest"):
        load_checkpoint(ckpt)


def test_a_wrong_sha_in_the_manifest_is_an_error(ckpt: Path) -> None:
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["files"]["config.json"] = "0" * 64
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"config\.json: sha256 is .* but manifest.json says 0{64}"):
        load_checkpoint(ckpt)


def test_a_missing_weights_file_is_an_error(ckpt: Path) -> None:
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"listed in manifest\.json but missing"):
        load_checkpoint(ckpt)


def test_a_missing_manifest_is_an_error(ckpt: Path) -> None:
    (ckpt / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match=r"manifest\.json is missing"):
        load_checkpoint(ckpt)


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        load_checkpoint(tmp_path / "nowhere")


def test_a_shape_mismatch_between_config_and_weights_is_an_error(ckpt: Path) -> None:
    config = json.loads((ckpt / "config.json").read_text())
    config["d_ff"] = TINY.d_ff * 2
    (ckpt / "config.json").write_text(json.dumps(config))
    write_manifest(ckpt)  # the hashes are right; the shapes are not
    with pytest.raises(CheckpointError, match=r"tensor layers\.0\.moe\.experts\.0\.w1\.weight has shape \[32, 32\]"):
        load_checkpoint(ckpt)


def test_an_invalid_config_is_an_error(ckpt: Path) -> None:
    config = json.loads((ckpt / "config.json").read_text())
    config["top_k"] = 5
    (ckpt / "config.json").write_text(json.dumps(config))
    write_manifest(ckpt)
    with pytest.raises(CheckpointError, match="top_k=5 exceeds n_experts=4"):
        load_checkpoint(ckpt)


def test_missing_tensors_are_named(ckpt: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(ckpt / "model.safetensors"))
    del tensors["norm.weight"]
    save_file(tensors, str(ckpt / "model.safetensors"))
    write_manifest(ckpt)
    with pytest.raises(CheckpointError, match=r"missing tensors: norm\.weight"):
        load_checkpoint(ckpt)
