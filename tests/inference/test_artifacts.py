"""inference.artifacts: digests, normalised configs and parameter counts, all without torch."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from inference.artifacts import artifact_digest, count_parameters, read_model_config
from inference.checkpoint import write_manifest
from tests.inference.helpers import TINY


def test_a_file_digest_is_the_sha256_of_its_bytes(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"\x00\x01abc")
    assert artifact_digest(f) == hashlib.sha256(b"\x00\x01abc").hexdigest()


def test_a_directory_digest_matches_a_hand_computation(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_bytes(b"bee")
    (tmp_path / "sub" / "a.txt").write_bytes(b"ay")
    (tmp_path / ".hidden").write_bytes(b"ignored")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x").write_bytes(b"ignored too")
    lines = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {rel}\n"
        for rel, data in sorted([("b.txt", b"bee"), ("sub/a.txt", b"ay")])
    )
    assert artifact_digest(tmp_path) == hashlib.sha256(lines.encode()).hexdigest()


def test_the_digest_is_stable_and_changes_with_one_byte(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"hello")
    first = artifact_digest(tmp_path)
    assert artifact_digest(tmp_path) == first
    (tmp_path / "x").write_bytes(b"hellp")
    assert artifact_digest(tmp_path) != first


def test_known_hashes_give_the_same_digest(tiny_checkpoint: Path) -> None:
    manifest = json.loads((tiny_checkpoint / "manifest.json").read_text())["files"]
    assert artifact_digest(tiny_checkpoint, known=manifest) == artifact_digest(tiny_checkpoint)


def test_read_model_config_normalises_a_native_checkpoint(tiny_checkpoint: Path) -> None:
    cfg = read_model_config(tiny_checkpoint)
    assert cfg == {
        "format": "moe",
        "n_layers": TINY.n_layers,
        "d_model": TINY.d_model,
        "n_heads": TINY.n_heads,
        "n_kv_heads": TINY.n_kv_heads,
        "head_dim": TINY.d_model // TINY.n_heads,
        "n_experts": TINY.n_experts,
        "top_k": TINY.top_k,
        "vocab_size": TINY.vocab_size,
        "max_seq_len": TINY.max_seq_len,
        "quality": {},
    }


def test_read_model_config_returns_recorded_quality(tmp_path: Path, tiny_checkpoint: Path) -> None:
    data = json.loads((tiny_checkpoint / "config.json").read_text())
    data["quality"] = {"heldout_perplexity": 5.1, "heldout_tokens": 40000}
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert read_model_config(tmp_path)["quality"] == {"heldout_perplexity": 5.1, "heldout_tokens": 40000}


def _hf_dir(tmp_path: Path, config: dict) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_read_model_config_normalises_a_dense_hugging_face_config(tmp_path: Path) -> None:
    from transformers import LlamaConfig

    LlamaConfig(
        vocab_size=300, hidden_size=64, num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=2,
        max_position_embeddings=512,
    ).save_pretrained(tmp_path)  # fmt: skip
    cfg = read_model_config(tmp_path)
    assert cfg["format"] == "hf"
    assert (cfg["n_layers"], cfg["d_model"], cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"]) == (3, 64, 8, 2, 8)
    assert (cfg["n_experts"], cfg["top_k"], cfg["vocab_size"], cfg["max_seq_len"]) == (None, None, 300, 512)
    assert cfg["quality"] == {}


def test_read_model_config_reads_experts_of_a_mixtral_config(tmp_path: Path) -> None:
    from transformers import MixtralConfig

    MixtralConfig(hidden_size=32, num_attention_heads=4, num_local_experts=6, num_experts_per_tok=2).save_pretrained(
        tmp_path
    )
    cfg = read_model_config(tmp_path)
    assert (cfg["format"], cfg["n_experts"], cfg["top_k"]) == ("hf", 6, 2)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no config.json"),
        ("{not json", "not valid JSON"),
        ('{"hidden_size": 3}', "model_type"),
        ("[1]", "object"),
    ],
)
def test_read_model_config_rejects_missing_corrupt_or_unknown_configs(
    tmp_path: Path, content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "config.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        read_model_config(tmp_path)


def test_count_parameters_sums_the_safetensors_headers(tiny_checkpoint: Path) -> None:
    from inference.checkpoint import load_checkpoint

    model = load_checkpoint(tiny_checkpoint).model
    assert count_parameters(tiny_checkpoint) == sum(p.numel() for p in model.parameters())


def test_count_parameters_rejects_a_truncated_header(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes((1000).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError, match="truncated"):
        count_parameters(tmp_path)


def test_manifest_lists_every_file_but_itself(tiny_checkpoint: Path) -> None:
    files = json.loads((tiny_checkpoint / "manifest.json").read_text())["files"]
    assert set(files) == {"config.json", "model.safetensors"}
    assert write_manifest(tiny_checkpoint) == files


def test_artifacts_and_the_package_import_without_torch() -> None:
    code = "import sys, inference, inference.artifacts; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
