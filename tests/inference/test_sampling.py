"""Sampling rules and stop strings."""

from __future__ import annotations

import torch

from inference.sampling import SamplingParams, StopChecker, sample_batch, sample_row


def test_greedy_takes_the_argmax_and_ignores_the_generator() -> None:
    logits = torch.tensor([0.1, 3.0, 2.9, -1.0])
    assert sample_batch(logits[None], [(SamplingParams(temperature=0), None, [])]) == [1]


def test_top_p_samples_only_from_the_nucleus() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    params = SamplingParams(temperature=1.0, top_p=0.7, seed=0)
    gen = params.generator()
    seen = {sample_row(logits, params, gen, []) for _ in range(300)}
    assert seen == {0, 1}


def test_a_frequency_penalty_pushes_repeated_tokens_down() -> None:
    logits = torch.tensor([2.0, 1.9, 0.0])
    params = SamplingParams(temperature=0, frequency_penalty=0.1)
    assert sample_row(logits, params, None, []) == 0
    assert sample_row(logits, params, None, [0, 0]) == 1


def test_the_same_seed_draws_the_same_tokens() -> None:
    def draws(seed: int) -> list[int]:
        params = SamplingParams(seed=seed)
        gen = params.generator()
        return [sample_row(torch.zeros(50), params, gen, []) for _ in range(20)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_stop_strings_are_found_across_pieces_and_nothing_of_them_is_emitted() -> None:
    checker = StopChecker(["\nuser:"])
    out = []
    for piece in ["Hello", " wor", "ld\nus", "er: more"]:
        text, stopped = checker.push(piece)
        out.append(text)
        if stopped:
            break
    assert "".join(out) == "Hello world" and stopped


def test_a_partial_match_that_does_not_complete_is_released() -> None:
    checker = StopChecker(["STOP"])
    assert checker.push("abST") == ("ab", False)
    assert checker.push("x") == ("STx", False)
    assert checker.push("ST") == ("", False)
    assert checker.flush() == "ST"
