"""Hook points: TransformerLens's names and shapes, what they hold, interventions, thread isolation."""

import math
import threading

import pytest
import torch

from gpt2 import GPT2, UnknownHookError, hook_dict, hooks, run_with_cache
from gpt2.hooks import act_name

B, T = 2, 9


@pytest.fixture
def model(small_vocab_model) -> GPT2:  # 3 layers, 4 heads of 8, embed 32, vocab 100, block 32
    return small_vocab_model


@pytest.fixture
def idx():
    return torch.randint(0, 100, (B, T), generator=torch.Generator().manual_seed(1))


def expected_shapes(layers=3, heads=4, head_dim=8, d_model=32):
    shapes = {"hook_embed": (B, T, d_model), "hook_pos_embed": (B, T, d_model)}
    for layer in range(layers):
        block = f"blocks.{layer}"
        for name in (
            "hook_resid_pre",
            "hook_attn_out",
            "hook_resid_mid",
            "hook_mlp_in",
            "hook_mlp_out",
            "hook_resid_post",
        ):
            shapes[f"{block}.{name}"] = (B, T, d_model)
        for name in ("hook_q_input", "hook_k_input", "hook_v_input"):
            shapes[f"{block}.{name}"] = (B, T, heads, d_model)
        for name in ("hook_q", "hook_k", "hook_v", "hook_z"):
            shapes[f"{block}.attn.{name}"] = (B, T, heads, head_dim)
        shapes[f"{block}.attn.hook_result"] = (B, T, heads, d_model)
        shapes[f"{block}.attn.hook_attn_scores"] = (B, heads, T, T)
        shapes[f"{block}.attn.hook_pattern"] = (B, heads, T, T)
        shapes[f"{block}.mlp.hook_pre"] = (B, T, 4 * d_model)
        shapes[f"{block}.mlp.hook_post"] = (B, T, 4 * d_model)
    return shapes


def test_every_hook_point_has_transformerlens_name_and_shape(model, idx):
    expected = expected_shapes()
    rows_points = {f"blocks.{layer}.attn.hook_pattern_rows" for layer in range(3)}
    assert set(hook_dict(model)) == set(expected) | rows_points
    assert all(point.name == name for name, point in hook_dict(model).items())
    logits, cache = run_with_cache(model, idx)
    assert {name: tuple(t.shape) for name, t in cache.items()} == expected
    assert torch.allclose(logits, model(idx), atol=1e-5)


def test_what_the_hook_points_hold(model, idx):
    _, cache = run_with_cache(model, idx)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    for layer, block in enumerate(model.blocks):
        name = f"blocks.{layer}"
        pattern = cache[f"{name}.attn.hook_pattern"]
        assert torch.allclose(pattern.sum(-1), torch.ones(B, 4, T), atol=1e-6)
        assert (pattern[..., future] == 0).all()
        scores = cache[f"{name}.attn.hook_attn_scores"]
        assert torch.isinf(scores[..., future]).all() and (scores[..., future] < 0).all()
        assert torch.allclose(torch.softmax(scores, -1), pattern, atol=1e-6)
        q, k = cache[f"{name}.attn.hook_q"], cache[f"{name}.attn.hook_k"]
        by_hand = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(8)
        assert torch.allclose(scores[..., ~future], by_hand[..., ~future], atol=1e-5)
        # hook_z recombined through c_proj is the attention output
        z = cache[f"{name}.attn.hook_z"]
        assert torch.allclose(block.attn.c_proj(z.reshape(B, T, 32)), cache[f"{name}.hook_attn_out"], atol=1e-6)
        assert torch.allclose(z, torch.einsum("bhqk,bkhd->bqhd", pattern, cache[f"{name}.attn.hook_v"]), atol=1e-6)
        # the residual stream adds up
        resid_pre, resid_mid = cache[f"{name}.hook_resid_pre"], cache[f"{name}.hook_resid_mid"]
        assert torch.equal(resid_mid, resid_pre + cache[f"{name}.hook_attn_out"])
        assert torch.equal(cache[f"{name}.hook_resid_post"], resid_mid + cache[f"{name}.hook_mlp_out"])
        assert torch.equal(
            cache[f"{name}.mlp.hook_post"], torch.nn.functional.gelu(cache[f"{name}.mlp.hook_pre"], approximate="tanh")
        )
    assert torch.equal(cache["blocks.0.hook_resid_pre"], cache["hook_embed"] + cache["hook_pos_embed"])


OUTSIDE_BLOCKS = ("embed", "pos_embed")
IN_EVERY_BLOCK = (
    *("resid_pre", "attn_out", "resid_mid", "mlp_in", "mlp_out", "resid_post"),
    *("q_input", "k_input", "v_input", "q", "k", "v", "z", "result", "attn_scores", "pattern", "pattern_rows"),
    *("pre", "post"),
)


def test_act_name_spells_every_hook_point_from_its_short_name(model):
    spelled = [act_name(name) for name in OUTSIDE_BLOCKS]
    spelled += [act_name(name, layer) for name in IN_EVERY_BLOCK for layer in range(3)]
    assert sorted(spelled) == sorted(hook_dict(model))  # each a real hook point, and every hook point has one
    assert act_name("z", 3) == "blocks.3.attn.hook_z" and act_name("resid_pre", 3) == "blocks.3.hook_resid_pre"
    assert act_name("pattern", 0) == "blocks.0.attn.hook_pattern" and act_name("mlp_out", 1) == "blocks.1.hook_mlp_out"
    assert act_name("post", 2) == "blocks.2.mlp.hook_post" and act_name("embed") == "hook_embed"
    assert act_name("k_input", 1) == "blocks.1.hook_k_input" and act_name("result", 0) == "blocks.0.attn.hook_result"
    assert act_name("mlp_in", 2) == "blocks.2.hook_mlp_in"
    for unknown in ("qinput", "results", "hook_z", "blocks.0.attn.hook_z", ""):
        with pytest.raises(ValueError, match=r"the short names are embed, pos_embed, .*mlp_out"):
            act_name(unknown, 0)
    with pytest.raises(ValueError, match="give its layer"):
        act_name("z")
    with pytest.raises(ValueError, match="takes no layer"):
        act_name("embed", 0)


def test_names_filter_keeps_only_what_is_asked(model, idx):
    _, by_predicate = run_with_cache(model, idx, names_filter=lambda name: name.endswith("hook_pattern"))
    assert list(by_predicate) == [f"blocks.{layer}.attn.hook_pattern" for layer in range(3)]
    _, by_list = run_with_cache(model, idx, names_filter=["blocks.1.hook_resid_pre", "hook_embed"])
    assert set(by_list) == {"blocks.1.hook_resid_pre", "hook_embed"}
    with pytest.raises(UnknownHookError, match="blocks.9.hook_z"):
        run_with_cache(model, idx, names_filter="blocks.9.hook_z")


def test_an_identity_intervention_leaves_logits_bit_identical(model, idx):
    clean = model(idx)
    explicit = ("pattern", "scores", "_input", "result")  # these change how attention is computed
    fns = {name: (lambda x, hook: x) for name in hook_dict(model) if not any(part in name for part in explicit)}
    with hooks(model, fns):
        assert torch.equal(model(idx), clean)  # the fused attention path, every other point hooked
    per_head = [act_name(part, layer) for part in ("q_input", "k_input", "v_input", "result") for layer in range(3)]
    with hooks(model, dict.fromkeys(per_head, lambda x, hook: x)):
        assert torch.allclose(model(idx), clean, atol=1e-5)  # each head's inputs and outputs on their own
    with hooks(model, {"blocks.1.attn.hook_pattern": lambda x, hook: x}):
        assert torch.allclose(model(idx), clean, atol=1e-5)  # the explicit path


def test_zeroing_a_head_through_hook_z_equals_zeroing_its_c_proj_columns(model, idx):
    def zero_head_2(z, hook):
        z = z.clone()
        z[:, :, 2] = 0
        return z

    with hooks(model, {"blocks.1.attn.hook_z": zero_head_2}):
        ablated = model(idx)
    edited = GPT2.from_config(model.config).eval()
    edited.load_state_dict(model.state_dict())
    with torch.no_grad():
        edited.blocks[1].attn.c_proj.weight[:, 2 * 8 : 3 * 8] = 0
    assert torch.allclose(ablated, edited(idx), atol=1e-5)
    assert not torch.allclose(ablated, model(idx), atol=1e-3)


def test_a_hook_that_returns_a_tensor_replaces_the_activation_downstream(model, idx):
    _, clean = run_with_cache(model, idx, names_filter="blocks.2.hook_resid_pre")
    with hooks(model, {"blocks.0.hook_resid_post": lambda x, hook: torch.zeros_like(x)}):
        _, cache = run_with_cache(model, idx, names_filter=["blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre"])
    assert cache["blocks.1.hook_resid_pre"].abs().max() == 0
    assert not torch.allclose(cache["blocks.2.hook_resid_pre"], clean["blocks.2.hook_resid_pre"])


def test_with_nothing_hooked_a_pass_is_bit_identical_to_the_plain_fused_blocks(model, idx):
    """The blocks written out with SDPA and the modules' own linear layers: what a pass ran before
    the per-head hook points existed."""
    F = torch.nn.functional
    with torch.no_grad():
        x = model.wte(idx) + model.wpe(torch.arange(T))
        for block in model.blocks:
            attn = block.attn
            q, k, v = (t.transpose(1, 2) for t in attn.c_attn(block.ln_1(x)).view(B, T, 3, 4, 8).unbind(2))
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)
            x = x + attn.c_proj(z.reshape(B, T, 32))
            x = x + block.mlp.c_proj(F.gelu(block.mlp.c_fc(block.ln_2(x)), approximate="tanh"))
        assert torch.equal(model(idx), model.lm_head(model.ln_f(x)))


def test_the_per_head_inputs_and_results_add_up(model, idx):
    _, cache = run_with_cache(model, idx)
    for layer, block in enumerate(model.blocks):
        resid_pre = cache[act_name("resid_pre", layer)]
        W = block.attn.c_attn.weight.view(3, 4, 8, 32)  # (q k v, H, D, C)
        b = block.attn.c_attn.bias.view(3, 4, 8)
        for part, name in enumerate(("q", "k", "v")):
            inputs = cache[act_name(f"{name}_input", layer)]  # (B, T, H, C)
            assert torch.equal(inputs, resid_pre[:, :, None].expand(-1, -1, 4, -1))
            projected = torch.einsum("bthc,hdc->bthd", block.ln_1(inputs), W[part]) + b[part]
            assert torch.allclose(projected, cache[act_name(name, layer)], atol=1e-5)
        result = cache[act_name("result", layer)]
        assert torch.allclose(result.sum(2) + block.attn.c_proj.bias, cache[act_name("attn_out", layer)], atol=1e-5)
        assert torch.equal(cache[act_name("mlp_in", layer)], cache[act_name("resid_mid", layer)])


def test_a_hook_on_one_heads_key_input_changes_only_its_keys(model, idx):
    _, clean = run_with_cache(model, idx, names_filter=lambda name: name.startswith("blocks.1.attn.hook_"))

    def shift_head_2(x, hook):  # (B, T, H, C)
        x = x.clone()
        x[:, :, 2] += torch.linspace(-1, 1, x.size(-1))  # not a constant: ln_1 would take it away
        return x

    names = [act_name(part, 1) for part in ("q", "k", "v")]
    with hooks(model, {"blocks.1.hook_k_input": shift_head_2}):
        _, changed = run_with_cache(model, idx, names_filter=names)
    q, k, v = (changed[name] for name in names)
    assert torch.allclose(q, clean[names[0]], atol=1e-6) and torch.allclose(v, clean[names[2]], atol=1e-6)
    others = [0, 1, 3]
    assert torch.allclose(k[:, :, others], clean[names[1]][:, :, others], atol=1e-6)
    assert not torch.allclose(k[:, :, 2], clean[names[1]][:, :, 2], atol=1e-3)


def test_pattern_rows_hand_out_the_pattern_a_block_of_queries_at_a_time():
    torch.manual_seed(0)
    model = GPT2(100, 32, 4, 2, 300).eval()  # 300 positions: three blocks of queries
    idx = torch.randint(0, 100, (1, 300))
    blocks = []
    with hooks(model, {"blocks.1.attn.hook_pattern_rows": lambda probs, hook: blocks.append(probs.clone())}):
        logits = model(idx)
    assert [tuple(b.shape) for b in blocks] == [(1, 4, 128, 128), (1, 4, 128, 256), (1, 4, 44, 300)]
    whole = torch.cat([torch.nn.functional.pad(b, (0, 300 - b.size(-1))) for b in blocks], dim=2)
    _, cache = run_with_cache(model, idx, names_filter="blocks.1.attn.hook_pattern")
    assert torch.equal(whole, cache["blocks.1.attn.hook_pattern"])
    assert torch.allclose(logits, model(idx), atol=1e-5)
    with pytest.raises(ValueError, match="block of rows"):
        run_with_cache(model, idx, names_filter="blocks.1.attn.hook_pattern_rows")

    def first_token_only(probs, hook):
        return torch.zeros_like(probs).index_fill_(-1, torch.tensor([0]), 1.0)

    with hooks(model, {"blocks.0.attn.hook_pattern_rows": first_token_only}):
        by_rows = model(idx)
    with hooks(model, {"blocks.0.attn.hook_pattern": first_token_only}):
        by_pattern = model(idx)
    assert torch.allclose(by_rows, by_pattern, atol=1e-5) and not torch.allclose(by_rows, logits, atol=1e-3)


def test_hooks_are_removed_even_after_an_exception(model):
    points = hook_dict(model)
    with pytest.raises(RuntimeError, match="boom"), hooks(model, {name: (lambda x, hook: x) for name in points}):
        raise RuntimeError("boom")
    assert not any(point.is_hooked() for point in points.values())
    with pytest.raises(UnknownHookError):
        with hooks(model, {"blocks.0.attn.hook_nothing": lambda x, hook: x}):
            pass


def test_pytorch_forward_hooks_still_work_on_a_hook_point(model, idx):
    seen = []
    handle = model.blocks[0].attn.hook_pattern.register_forward_hook(lambda m, i, out: seen.append(out.clone()))
    try:
        model(idx)
    finally:
        handle.remove()
    assert len(seen) == 1 and seen[0].shape == (B, 4, T, T)


def test_rows_match_what_cached_generation_saw(model):
    prompt = torch.randint(0, 100, (1, 5))
    seen = {layer: [] for layer in range(3)}
    fns = {
        f"blocks.{layer}.attn.hook_pattern": (lambda x, hook, layer=layer: seen[layer].append(x.clone()))
        for layer in range(3)
    }
    with hooks(model, fns):
        out = model.generate(prompt, 8, temperature=0)
    _, cache = run_with_cache(model, out[:, :-1], names_filter=lambda name: name.endswith("hook_pattern"))
    for layer in range(3):
        full = cache[f"blocks.{layer}.attn.hook_pattern"]
        prefill, *steps = seen[layer]
        assert torch.allclose(full[:, :, :5, :5], prefill, atol=1e-6)
        for step, step_map in enumerate(steps):
            t = 5 + step  # the query's position in this step
            assert step_map.shape == (1, 4, 1, t + 1)
            assert torch.allclose(full[:, :, t, : t + 1], step_map[:, :, 0], atol=1e-6)


def test_another_threads_captures_leave_this_threads_generation_alone():
    """While one thread runs capture passes in a loop (explicit attention on the shared model), a
    seeded generation on another thread is bit-identical to a quiet run: its thread has no hooks, so
    it stays on the fused path with the same numbers."""
    torch.manual_seed(0)
    model = GPT2(500, 64, 4, 2, 128).eval()
    prompt = torch.randint(0, 500, (1, 12))
    quiet = model.generate(prompt, 60, temperature=1.0, top_k=40, seed=11)
    stop, errors = threading.Event(), []

    def capture_loop():
        try:
            while not stop.is_set():
                run_with_cache(model, torch.randint(0, 500, (1, 40)), names_filter=lambda n: n.endswith("hook_pattern"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    thread = threading.Thread(target=capture_loop)
    thread.start()
    try:
        busy = [model.generate(prompt, 60, temperature=1.0, top_k=40, seed=11) for _ in range(3)]
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert all(torch.equal(run, quiet) for run in busy)


def test_threads_capturing_at_once_see_only_their_own_activations(model):
    prompts = {name: torch.randint(0, 100, (1, length)) for name, length in (("a", 12), ("b", 20))}
    references = {
        name: run_with_cache(model, p, names_filter=lambda n: n.endswith("hook_pattern"))[1]
        for name, p in prompts.items()
    }
    barrier = threading.Barrier(2)
    failures = []

    def worker(name):
        try:
            for _ in range(20):
                barrier.wait(timeout=10)
                _, cache = run_with_cache(model, prompts[name], names_filter=lambda n: n.endswith("hook_pattern"))
                for key, want in references[name].items():
                    if cache[key].shape != want.shape or not torch.allclose(cache[key], want, atol=1e-6):
                        failures.append(name)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(name,)) for name in prompts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_capture_works_on_a_bfloat16_model(tiny_model):
    model = tiny_model.to(torch.bfloat16)
    with torch.inference_mode():
        _, cache = run_with_cache(model, torch.tensor([[1, 2, 3, 4]]), names_filter="blocks.0.attn.hook_pattern")
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert pattern.shape == (1, 4, 4, 4) and torch.allclose(pattern.float().sum(-1), torch.ones(()), atol=1e-3)
