"""The Hugging Face adapter, on tiny models the tests build and save themselves (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

from inference.bridge import generate
from inference.engine import Engine
from inference.protocol import ConfigError
from tests.inference.helpers import submit


def _llama(path: Path, vocab: int = 300) -> Path:
    cfg = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, bos_token_id=256, eos_token_id=257, pad_token_id=258,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg)
    with torch.no_grad():
        model.lm_head.weight.mul_(30)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _llama(tmp_path_factory.mktemp("hf") / "tiny-llama")


@pytest.fixture(scope="module")
def llama_with_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    path = _llama(tmp_path_factory.mktemp("hf-tok") / "tiny-llama-tok")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=290, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(["hello world, this is a tiny corpus for a tiny tokenizer"] * 20, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(path)
    return path


def test_an_hf_model_without_tokenizer_files_uses_bytes_and_matches_hf_generate(make_engine, llama_dir: Path) -> None:
    engine: Engine = make_engine(llama_dir)
    info = engine.active_model()
    assert (info["format"], info["tokenizer"], info["config"]["n_experts"]) == ("hf", "byte", None)
    ours = generate(engine, "Hello", max_tokens=10, temperature=0)
    hf = transformers.AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    ids = torch.tensor([[256, *b"Hello"]])
    with torch.inference_mode():
        theirs = hf.generate(ids, max_new_tokens=10, do_sample=False, eos_token_id=None)[0, ids.shape[1] :].tolist()
    assert ours.output_ids == theirs


def test_hf_requests_batched_together_match_alone(make_engine, llama_dir: Path) -> None:
    engine: Engine = make_engine(llama_dir)
    prompts = ["a", "bb", "hello there"]
    alone = [generate(engine, p, max_tokens=8, temperature=0).output_ids for p in prompts]
    together = [submit(engine, p, max_tokens=8, temperature=0) for p in prompts]
    for (seq, sink), expected in zip(together, alone, strict=True):
        sink.result()
        assert seq.output_ids == expected


def test_an_hf_tokenizer_is_used_when_the_checkpoint_has_one(make_engine, llama_with_tokenizer: Path) -> None:
    engine: Engine = make_engine(llama_with_tokenizer)
    assert engine.active_model()["tokenizer"] == "hf"
    first = generate(engine, "hello world", session_id="hf", max_tokens=6, temperature=0)
    second = generate(engine, " more", session_id="hf", max_tokens=6, temperature=0)
    assert first.usage["prompt_tokens"] < len("hello world")  # merged tokens, not bytes
    assert second.usage["prompt_tokens_details"]["cached_tokens"] > 0


def test_router_weights_are_refused_for_a_dense_hf_model(make_engine, llama_dir: Path) -> None:
    engine: Engine = make_engine(llama_dir)
    with pytest.raises(ConfigError, match="has no router"):
        engine.update_config({"router_weights": [1.0, 1.0]})
    assert engine.config.router_weights is None


def test_an_hf_model_loads_in_int8_and_bf16(make_engine, llama_dir: Path) -> None:
    sizes = {}
    for precision in ("fp32", "bf16", "int8"):
        engine: Engine = make_engine(llama_dir, precision=precision)
        assert generate(engine, "Hi", max_tokens=4).finish_reason == "length"
        sizes[precision] = engine.active_model()["weight_bytes"]
    assert sizes["bf16"] == sizes["fp32"] // 2 and sizes["int8"] < sizes["fp32"] // 2
