import math

import pytest
import torch

from gpt2 import GPT2, PRESETS, GPT2Config, hooks, run_with_cache


def test_gpt2_small_parameter_count():
    with torch.device("meta"):
        model = GPT2(50257, 768, 12, 12, 1024)
    assert model.num_parameters() == 124_439_808


def test_architecture_is_gpt2():
    model = GPT2(100, 32, 4, 2, 16)
    block = model.blocks[0]
    assert block.ln_1.eps == 1e-5 and block.ln_1.bias is not None and model.ln_f.eps == 1e-5
    assert block.attn.c_attn.bias is not None and block.attn.c_proj.bias is not None
    assert block.mlp.c_fc.out_features == 4 * 32 and block.mlp.gelu.approximate == "tanh"
    assert model.lm_head.weight is model.wte.weight


def test_gpt2_initialization():
    torch.manual_seed(0)
    model = GPT2(5000, 256, 4, 8, 64)
    assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.blocks[0].attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.05)
    residual_std = 0.02 / math.sqrt(2 * 8)
    assert model.blocks[0].mlp.c_proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    assert model.blocks[0].attn.c_proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    assert torch.count_nonzero(model.blocks[0].attn.c_attn.bias) == 0


def test_from_config_round_trip_and_presets():
    config = GPT2Config(vocab_size=100, embed_dim=32, num_heads=4, num_layers=2, block_size=16, dropout_p=0.1)
    model = GPT2.from_config(config)
    assert model.config == config
    assert GPT2Config.from_hf_dict(config.to_hf_dict()) == config
    assert PRESETS["gpt2"].embed_dim == 768 and PRESETS["distilgpt2"].num_layers == 6
    assert PRESETS["shakespeare"] == GPT2.from_pretrained("shakespeare").config
    with pytest.raises(ValueError, match="divisible"):
        GPT2Config(embed_dim=30, num_heads=4)


def test_fused_and_explicit_attention_paths_agree(small_vocab_model):
    idx = torch.randint(0, 100, (2, 32))
    fast = small_vocab_model(idx)
    patterns = {f"blocks.{layer}.attn.hook_pattern": (lambda x, hook: None) for layer in range(3)}
    with hooks(small_vocab_model, patterns):  # a hooked pattern takes the explicit path
        explicit = small_vocab_model(idx)
        with torch.no_grad():
            blockwise = small_vocab_model(idx)  # no gradient: the pattern is made block by block of queries
    assert (fast - explicit).abs().max().item() < 1e-5
    assert (fast - blockwise).abs().max().item() < 1e-5


def test_kv_cache_matches_full_forward(small_vocab_model):
    idx = torch.randint(0, 100, (2, 20))
    full = small_vocab_model(idx)
    cache = small_vocab_model.new_kv_cache(batch_size=2)
    prefix = small_vocab_model(idx[:, :12], cache)
    chunk = small_vocab_model(idx[:, 12:17], cache)  # several new tokens against a cache: bottom-right mask
    steps = [small_vocab_model(idx[:, t : t + 1], cache) for t in range(17, 20)]
    cached = torch.cat([prefix, chunk, *steps], dim=1)
    assert cache.length == 20
    assert (full - cached).abs().max().item() < 1e-5


def test_a_refilled_kv_cache_continues_like_a_fresh_run(small_vocab_model):
    model = small_vocab_model
    idx = torch.randint(0, 100, (1, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full, run = run_with_cache(model, idx, lambda name: name.endswith(("hook_k", "hook_v", "hook_resid_pre")))
    # (L, 1, H, 20, D): the run's keys and values in the cache's layout, its one row for every batch row
    keys = torch.stack([run[f"blocks.{layer}.attn.hook_k"].transpose(1, 2) for layer in range(3)])
    values = torch.stack([run[f"blocks.{layer}.attn.hook_v"].transpose(1, 2) for layer in range(3)])

    def stale_cache():  # keys, values and a length that the refill must replace
        cache = model.new_kv_cache(batch_size=2)
        model(torch.randint(0, 100, (2, 16)), cache)
        return cache

    with torch.no_grad():
        cache = stale_cache()
        cache.refill(keys, values, 12)  # the first 12 positions
        assert cache.length == 12
        steps = torch.cat([model(idx[:, t : t + 1].expand(2, 1), cache) for t in range(12, 20)], dim=1)
        assert (steps - full[:, 12:]).abs().max() < 1e-5
        # a rerun from layer 2 reads only the layers from 2 on: the stale layers 0 and 1 do not matter
        cache = stale_cache()
        cache.refill(keys, values, 12, first_layer=2)
        rerun = model.unembed(model.run_blocks(run["blocks.2.hook_resid_pre"][:, 12:].expand(2, -1, -1), 2, cache))
        assert (rerun - full[:, 12:]).abs().max() < 1e-5
    with pytest.raises(ValueError, match="holds 32 tokens; 40 requested"):
        cache.refill(torch.zeros(3, 1, 4, 40, 8), torch.zeros(3, 1, 4, 40, 8), 40)


def test_forward_rejects_sequences_longer_than_block(small_vocab_model):
    with pytest.raises(ValueError, match="block_size"):
        small_vocab_model(torch.zeros(1, 33, dtype=torch.long))


def test_blocks_rerun_from_a_layer_equal_the_full_forward(small_vocab_model):
    model = small_vocab_model
    idx = torch.randint(0, 100, (2, 12))
    with torch.no_grad():
        x = model.embed(idx)
        for block in model.blocks[:2]:
            x = block(x)
        assert torch.equal(model.unembed(model.run_blocks(x, start_layer=2)), model(idx))


def test_training_mode_dropout_only_when_training():
    torch.manual_seed(0)
    model = GPT2(100, 32, 4, 2, 16, dropout_p=0.5)
    idx = torch.randint(0, 100, (1, 16))
    model.eval()
    assert torch.equal(model(idx), model(idx))
    model.train()
    assert not torch.equal(model(idx), model(idx))


def test_a_single_row_takes_the_matrix_vector_product_with_the_same_result():
    from gpt2.model import MatVecLinear

    torch.manual_seed(0)
    layer, head = MatVecLinear(48, 96), MatVecLinear(48, 96, bias=False)
    rows = torch.randn(1, 5, 48, requires_grad=True)
    for module in (layer, head):
        row = rows[:, -1:]  # (1, 1, 48): what a decoding step multiplies
        assert torch.allclose(module(row), torch.nn.functional.linear(row, module.weight, module.bias), atol=1e-6)
        assert module(row).shape == (1, 1, 96) and module(rows[0, 0]).shape == (96,)
        module(row).sum().backward()  # the matrix-vector path keeps gradients
        assert module.weight.grad is not None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(rows[:, -1:]).dtype == torch.bfloat16  # autocast takes the general path
