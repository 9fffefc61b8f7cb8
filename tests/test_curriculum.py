"""The curriculum: the window sources' structures, their mix, the draw order, the pool loss, the
helix, and the --batch / --mix parsers."""

import argparse
import hashlib
import math

import pytest
import torch

from gpt2 import GPT2
from gpt2.curriculum import (
    Curriculum,
    WindowGroup,
    copy_batch,
    helix_positions,
    lagged_copy_windows,
    lm_loss,
    mix_windows,
    parse_counts,
    parse_shares,
    repeated_random_window,
)
from gpt2.loss import pool_cross_entropy

TEXT = torch.arange(5000)  # "text" in which no token repeats within a window, and each is its predecessor + 1


def period(window: torch.Tensor) -> int:
    return next(r for r in range(1, len(window) + 1) if torch.equal(window[r:], window[:-r]))


def test_synthetic_windows_repeat_a_run_of_distinct_pool_tokens():
    pool = torch.arange(6000, 6400)
    gen = torch.Generator().manual_seed(0)
    runs = set()
    for _ in range(50):
        window = repeated_random_window(pool, 65, gen)
        run = period(window)
        assert 8 <= run <= 32 and window[:run].unique().numel() == run
        assert torch.isin(window, pool).all()
        runs.add(run)
    assert len(runs) > 10  # the run length varies, so no fixed offset predicts the copy

    small = torch.arange(6000, 6005)  # fewer tokens than the shortest run: the run shrinks to fit
    window = repeated_random_window(small, 65, gen)
    assert window.shape == (65,) and period(window) == 5


def test_copy_batch_targets_are_the_inputs_shifted_and_runs_repeat():
    pool = torch.arange(100, 140)
    x, y = copy_batch(pool, 6, 48, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (6, 48) and torch.equal(x[:, 1:], y[:, :-1])
    for row in torch.cat([x, y[:, -1:]], 1):
        run = int((row[1:] == row[0]).nonzero()[0]) + 1  # where the first token comes back
        assert 8 <= run <= 24 and len(set(row[:run].tolist())) == run
        assert torch.equal(row[run:], row[: len(row) - run]) and set(row.tolist()) <= set(pool.tolist())


def test_lagged_copy_windows_copy_the_token_two_back_about_half_the_time():
    pool = torch.arange(7000, 7500)
    windows = lagged_copy_windows(pool, 64, 257, torch.Generator().manual_seed(0))
    assert windows.shape == (64, 257) and torch.isin(windows, pool).all()
    copies = windows[:, 2:] == windows[:, :-2]
    assert 0.45 < copies.float().mean() < 0.56  # half copied, plus the rare chance repeat (1 in 500)
    assert (windows[:, 1:] == windows[:, :-1]).float().mean() < 0.01  # neighbours are independent


def test_mix_gives_each_source_its_share_of_the_windows_and_leaves_text_untouched():
    pools = {"synthetic": torch.arange(6000, 6100), "lagged": torch.arange(7000, 7500)}
    shares = parse_shares("synthetic=0.25,lagged=0.5")
    windows = mix_windows(TEXT, 400, 33, shares, pools, torch.Generator().manual_seed(0))
    synthetic, lagged = torch.isin(windows[:, 0], pools["synthetic"]), torch.isin(windows[:, 0], pools["lagged"])
    assert 60 < synthetic.sum() < 140 and 160 < lagged.sum() < 240
    assert torch.isin(windows[synthetic], pools["synthetic"]).all()
    assert torch.isin(windows[lagged], pools["lagged"]).all()
    assert all(8 <= period(w) <= 16 for w in windows[synthetic])
    text = ~(synthetic | lagged)
    assert (windows[text, 1:] - windows[text, :-1]).eq(1).all()
    only_text = mix_windows(TEXT, 50, 33, parse_shares("text=1"), {}, torch.Generator().manual_seed(0))
    assert (only_text[:, 1:] - only_text[:, :-1]).eq(1).all()


def test_draws_are_those_of_the_original_trainer():
    # sha256 prefixes of the windows that commit 48361a5's sample_batch(text, 40, 32, gen,
    # synthetic_fraction=0.25, lagged_fraction=0.5, ...) then copy_batch(pool, 6, 16, gen) drew from
    # Generator().manual_seed(0), and of a text-only sample_batch(text, 8, 32, gen): the same draws in
    # the same order are what keeps a seeded run's weights unchanged by refactors
    pools = {"synthetic": torch.arange(6000, 6100), "lagged": torch.arange(7000, 7500), "copy": torch.arange(100, 140)}
    mixed = Curriculum(TEXT, {"mix": 20, "copy": 3}, parse_shares("synthetic=0.25,lagged=0.5"), 32, 16, pools, world=2)
    plain = Curriculum(TEXT, {"mix": 8}, parse_shares("text=1"), 32, 16, {})
    for curriculum, expected in ((mixed, "be258ea186c3cff7"), (plain, "c4ab31a4db9beaf5")):
        digest = hashlib.sha256()
        for group in curriculum.draw(torch.Generator().manual_seed(0)):
            assert torch.equal(group.inputs[:, 1:], group.targets[:, :-1])
            digest.update(group.inputs.numpy().tobytes())
            digest.update(group.targets.numpy().tobytes())
        assert digest.hexdigest()[:16] == expected
    assert mixed.tokens_per_draw == 2 * (20 * 32 + 3 * 16)
    assert mixed.describe() == "20 mix windows of 32 (text 0.25, synthetic 0.25, lagged 0.5) + 3 copy windows of 16"


def test_each_process_scores_its_own_rows():
    torch.manual_seed(0)
    model = GPT2(vocab_size=300, embed_dim=16, num_heads=2, num_layers=1, block_size=16)
    windows = torch.randint(0, 300, (6, 9))
    group = WindowGroup(windows[:, :-1], windows[:, 1:], None, per_process=2)  # 3 processes' rows
    for rank in range(3):
        rows = windows[2 * rank : 2 * rank + 2]
        logits = model(rows[:, :-1])
        expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 300), rows[:, 1:].reshape(-1))
        assert torch.allclose(group.loss(model, rank, "cpu"), expected, atol=1e-5)


def test_pool_loss_is_cross_entropy_over_the_pool_logits():
    torch.manual_seed(0)
    hidden = torch.randn(3, 20, 16, requires_grad=True)
    weight = torch.randn(300, 16, requires_grad=True)
    pool = torch.tensor([7, 250, 3, 99, 42])
    local = torch.randint(0, 5, (3, 20))
    plain = torch.nn.functional.cross_entropy((hidden @ weight[pool].t()).view(-1, 5), local.view(-1))
    plain.backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    ours = pool_cross_entropy(hidden, weight, pool[local], pool)
    ours.backward()
    assert torch.allclose(ours, plain, atol=1e-5)
    assert torch.allclose(hidden.grad, grads[0], atol=1e-6) and torch.allclose(weight.grad, grads[1], atol=1e-6)
    outside = torch.ones(300, dtype=torch.bool)
    outside[pool] = False
    assert weight.grad[outside].abs().max() == 0 and weight.grad[pool].abs().min() > 0
    with pytest.raises(ValueError, match="pool"):
        pool_cross_entropy(hidden, weight, torch.full((3, 20), 8), pool)

    model = GPT2(vocab_size=300, embed_dim=16, num_heads=2, num_layers=1, block_size=32)  # through the model
    x, y = copy_batch(pool, 2, 24, torch.Generator().manual_seed(0))
    logits = model(x)[..., pool]  # (B, T, 5): the pool's logits only
    local_targets = (y[..., None] == pool).int().argmax(-1)  # each target's row in the pool
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 5), local_targets.view(-1))
    assert torch.allclose(lm_loss(model, x, y, pool), expected, atol=1e-5)
    assert abs(expected.item() - math.log(5)) < 0.1  # a fresh model is close to uniform over the pool


def test_helix_positions_one_rotation_maps_each_position_to_the_next():
    wpe = helix_positions(256, 64, num_frequencies=16, row_norm=0.5, generator=torch.Generator().manual_seed(0))
    assert wpe.shape == (256, 64) and torch.allclose(wpe.norm(dim=1), torch.full((256,), 0.5))
    rotation = torch.linalg.lstsq(wpe[:-1], wpe[1:]).solution  # one linear map for every step
    assert torch.allclose(wpe[:-1] @ rotation, wpe[1:], atol=1e-4)
    gram = wpe @ wpe.T  # similarity depends only on the distance between positions
    assert torch.allclose(gram[:-1, :-1], gram[1:, 1:], atol=1e-5)
    assert gram.diagonal(-1).mean() < 0.5 * gram.diagonal().mean()  # neighbours are told apart
    with pytest.raises(ValueError, match="dims"):
        helix_positions(16, 16, num_frequencies=16)


def test_batch_and_mix_parsers():
    assert parse_counts("mix=16,copy=64") == {"mix": 16, "copy": 64}
    assert parse_counts("copy=256") == {"copy": 256} and parse_counts("8") == {"mix": 8}
    assert list(parse_counts("copy=2,mix=3")) == ["mix", "copy"]  # drawn in this order, whatever the order given
    for bad in ("mix=0", "copy=-1", "text=4", "mix=2,mix=3", "", "mix=1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_counts(bad)
    assert parse_shares("text=0.5,lagged=0.4,synthetic=0.1") == {"text": 0.5, "synthetic": 0.1, "lagged": 0.4}
    assert parse_shares("lagged=0.4,synthetic=0.1") == {"text": 0.5, "synthetic": 0.1, "lagged": 0.4}
    assert parse_shares("synthetic=0.5,lagged=0.5")["text"] == 0
    for bad in ("synthetic=1.5", "lagged=0.6,synthetic=0.5", "text=0.5,lagged=0.4", "repeat=0.1", "lagged=x", "lagged"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_shares(bad)
