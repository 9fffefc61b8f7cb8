import math

import pytest
import torch

from gpt2 import GPT2
from gpt2.analysis import (
    attention_maps,
    entropy_scores,
    first_token_scores,
    head_roles,
    head_scores,
    induction_probe,
    induction_scores,
    induction_targets,
    previous_token_scores,
    random_repeated_tokens,
)


def previous_token_map(T):
    attn = torch.zeros(T, T)
    attn[0, 0] = 1
    for t in range(1, T):
        attn[t, t - 1] = 1
    return attn


def uniform_map(T):
    return torch.ones(T, T).tril() / torch.arange(1, T + 1)[:, None]


def sink_map(T):
    attn = torch.zeros(T, T)
    attn[:, 0] = 1
    return attn


def test_scores_on_hand_built_maps():
    T = 8
    assert previous_token_scores(previous_token_map(T)).item() == 1.0
    assert first_token_scores(sink_map(T)).item() == 1.0
    assert previous_token_scores(sink_map(T)).item() == pytest.approx(1 / 7)  # query 1's previous token is key 0
    assert entropy_scores(sink_map(T)).item() == 0.0
    expected_uniform = sum(math.log(t + 1) for t in range(1, T)) / (T - 1)
    assert entropy_scores(uniform_map(T)).item() == pytest.approx(expected_uniform, rel=1e-5)
    assert first_token_scores(uniform_map(T)).item() == pytest.approx(sum(1 / (t + 1) for t in range(1, T)) / (T - 1))


def test_induction_targets_and_score_on_a_perfect_induction_head():
    n = 6
    ids = torch.tensor([10, 11, 12, 13, 14, 15] * 2)
    targets = induction_targets(ids)
    for t in range(n, 2 * n):
        assert targets[t].nonzero().flatten().tolist() == [t - n + 1]
    assert not targets[:n].any()

    attn = torch.zeros(2 * n, 2 * n)
    attn[:, 0] = 1.0  # first half: everything on the first token
    for t in range(n, 2 * n):
        attn[t] = 0
        attn[t, 0] = 0.7  # the sink takes most of the row ...
        attn[t, t - n + 1] = 0.3  # ... the rest goes to the induction target
    assert induction_scores(attn, ids).item() == pytest.approx(1.0)
    assert induction_scores(previous_token_map(2 * n), ids).item() == 0.0
    assert induction_scores(uniform_map(2 * n), torch.arange(2 * n)).item() == 0.0  # nothing repeats


def test_induction_score_of_a_head_parked_on_the_sink_stays_a_fraction():
    # Rows that put all but ~1e-8 on key 0: the remainder is a float32 rounding away from zero, and
    # taking it as 1 - sink cancelled to nothing and once scored such a head 2.6.
    n = 6
    ids = torch.tensor([10, 11, 12, 13, 14, 15] * 2)
    attn = torch.zeros(2 * n, 2 * n, dtype=torch.float32)
    attn[:, 0] = 1.0
    for t in range(n, 2 * n):
        attn[t, t - n + 1] = 1e-8  # the target gets a sliver,
        attn[t, 1 if t - n + 1 != 1 else 2] = 3e-8  # another key three times as much
    score = induction_scores(attn, ids).item()
    assert score == pytest.approx(0.25, rel=1e-4)


def test_roles_follow_the_scores():
    ids = torch.tensor([5, 6, 7, 8] * 2)
    induction = torch.zeros(8, 8)
    induction[:4, 0] = 1
    for t in range(4, 8):
        induction[t, t - 3] = 1
    attn = torch.stack([previous_token_map(8), sink_map(8), uniform_map(8), induction])[None]  # (1, 4, T, T)
    scores = head_scores(attn, ids)
    assert head_roles(scores) == [["previous-token", "first-token sink", "mixed", "induction"]]


def test_probe_on_a_model():
    torch.manual_seed(0)
    model = GPT2(500, 32, 4, 2, 64).eval()
    ids = random_repeated_tokens(20, torch.arange(100, 500), seed=1)
    assert ids.shape == (40,) and torch.equal(ids[:20], ids[20:]) and ids[:20].unique().numel() == 20
    maps = attention_maps(model, ids)
    assert maps.shape == (2, 4, 40, 40)
    scores = induction_probe(model, torch.arange(100, 500), length=20, seeds=(0,))
    assert scores.shape == (2, 4) and ((scores >= 0) & (scores <= 1)).all()


def test_scores_of_a_one_token_text_do_not_fail():
    scores = head_scores(torch.ones(2, 3, 1, 1), [7])
    assert all(s.shape == (2, 3) for s in scores.values())
    assert scores["induction"].eq(0).all()
