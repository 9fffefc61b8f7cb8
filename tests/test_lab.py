"""The causal tools: exact where they must be (the logit lens's last row, attribution's sum, ablation
against an edited model, patching at its ends), and the bundled model's induction circuit."""

import pytest
import torch

from gpt2 import GPT2, get_tokenizer, hooks, run_with_cache
from gpt2.analysis import analyze
from gpt2.lab import (
    Ablation,
    LabError,
    ablated_analysis,
    ablation_hooks,
    ablation_sweep,
    direct_attribution,
    lens_ranks,
    logit_lens,
    patch,
    token_losses,
)

REPEATED = "sword crown honey winter tongue lamb night castle bread river. " * 2


@pytest.fixture(scope="module")
def bundled():
    return GPT2.from_pretrained("shakespeare")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT2(300, 48, 4, 3, 64).eval()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 300, (30,), generator=torch.Generator().manual_seed(2)).tolist()


def logits_of(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids]))[0]


def test_token_losses_are_the_cross_entropy_of_each_next_token(model, ids):
    loss, entropy = token_losses(model, analyze(model, ids))
    logits = logits_of(model, ids)
    expected = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="none")
    assert loss.shape == (29,) and torch.allclose(loss, expected, atol=1e-5)
    probs = logits.softmax(-1)
    assert torch.allclose(entropy, -(probs * probs.log()).sum(-1), atol=1e-4)


def test_the_logit_lens_last_row_is_the_models_own_prediction(model, ids):
    analysis = analyze(model, ids)
    lens = logit_lens(model, analysis, k=5)
    logits = logits_of(model, ids)
    assert lens.top_ids.shape == (4, 30, 5) and lens.top_probs.shape == (4, 30, 5)
    top_probs, top_ids = logits.softmax(-1).topk(5)
    assert torch.equal(lens.top_ids[-1], top_ids) and torch.allclose(lens.top_probs[-1], top_probs, atol=1e-6)
    embed_row = model.ln_f(model.wte.weight[ids] + model.wpe.weight[:30]) @ model.wte.weight.T  # row 0: x_0 itself
    assert torch.equal(lens.top_ids[0, :, 0], embed_row.argmax(-1))
    ranks = lens_ranks(model, analysis, 7, int(top_ids[7, 2]))
    assert ranks.shape == (4,) and ranks[-1] == 2


def test_direct_attribution_sums_to_the_logit(model, ids):
    for position, target in ((29, 5), (11, ids[12])):
        att = direct_attribution(model, ids, position, target)
        assert att.heads.shape == (3, 4) and att.mlps.shape == (3,) and att.attn_biases.shape == (3,)
        assert att.logit == pytest.approx(float(logits_of(model, ids)[position, target]), abs=1e-4)
        assert att.total == pytest.approx(att.logit, abs=1e-4)


def test_zero_ablation_equals_a_model_with_the_heads_c_proj_columns_zeroed(model, ids):
    ablation = Ablation(((1, 2), (2, 0)), "zero")
    with hooks(model, ablation_hooks(model, ids, ablation)):
        ablated = logits_of(model, ids)
    edited = GPT2.from_config(model.config).eval()
    edited.load_state_dict(model.state_dict())
    with torch.no_grad():
        edited.blocks[1].attn.c_proj.weight[:, 24:36] = 0
        edited.blocks[2].attn.c_proj.weight[:, 0:12] = 0
    assert torch.allclose(ablated, logits_of(edited, ids), atol=1e-5)
    after = ablated_analysis(model, ids, ablation)  # the analysis of the ablated run
    assert torch.allclose(token_losses(model, after)[0], token_losses(edited, analyze(edited, ids))[0], atol=1e-4)


def test_mean_ablation_replaces_a_head_with_its_mean_over_the_text(model, ids):
    ablation = Ablation(((0, 1),), "mean")
    seen = []
    fns = ablation_hooks(model, ids, ablation)
    with hooks(model, fns | {"blocks.0.attn.hook_z": [fns["blocks.0.attn.hook_z"], lambda z, hook: seen.append(z)]}):
        logits_of(model, ids)
    z = seen[0][0, :, 1]  # (T, D): one value at every position
    assert torch.allclose(z, z[0].expand_as(z)) and not torch.allclose(seen[0][0, :, 0], seen[0][0, :1, 0])


def test_the_sweep_equals_ablating_each_head_on_its_own(model, ids):
    analysis = analyze(model, ids)
    position, target = 20, ids[21]
    effects = ablation_sweep(model, analysis, position, target)
    clean = logits_of(model, ids)[position].log_softmax(-1)[target]
    for layer, head in ((0, 0), (1, 3), (2, 2)):
        with hooks(model, ablation_hooks(model, ids[: position + 1], Ablation(((layer, head),), "mean"))):
            ablated = logits_of(model, ids[: position + 1])[position].log_softmax(-1)[target]
        assert effects[layer, head] == pytest.approx(float(ablated - clean), abs=1e-4)


def test_ablation_modes_are_checked():
    with pytest.raises(LabError, match="zero or mean"):
        Ablation(((0, 0),), "half")


def test_patching_is_exact_at_its_ends(model):
    gen = torch.Generator().manual_seed(5)
    clean = torch.randint(0, 300, (16,), generator=gen).tolist()
    corrupted = clean.copy()
    corrupted[4] = (clean[4] + 7) % 300
    result = patch(model, clean, corrupted, answers=(5, 17))
    assert result.resid.shape == (3, 16) and result.heads.shape == (3, 4)
    assert (result.resid[:, :4] == 0).all()  # before the change both runs are the same: nothing to patch
    assert result.resid[0, 4] == pytest.approx(1.0, abs=1e-4)  # the changed embedding: the clean run
    assert result.resid[0, 5:].abs().max() < 1e-6  # layer 0 differs only at the changed token
    # each position on its own equals a plain patched run (a hook on the corrupted run)
    clean_resid = {}
    with hooks(model, {"blocks.1.hook_resid_pre": lambda x, hook: clean_resid.setdefault("x", x.clone())}):
        logits_of(model, clean)

    def patched(x, hook, p=9):
        x = x.clone()
        x[:, p] = clean_resid["x"][:, p]
        return x

    with hooks(model, {"blocks.1.hook_resid_pre": patched}):
        logits = logits_of(model, corrupted)[-1]
    ld = float(logits[result.answer_clean] - logits[result.answer_corrupted])
    expected = (ld - result.ld_corrupted) / (result.ld_clean - result.ld_corrupted)
    assert float(result.resid[1, 9]) == pytest.approx(expected, abs=1e-4)
    with pytest.raises(LabError, match="clean has 16, corrupted 15"):
        patch(model, clean, corrupted[:-1])


def test_patching_a_head_equals_a_plain_run_with_that_heads_clean_output(model):
    gen = torch.Generator().manual_seed(7)
    clean = torch.randint(0, 300, (20,), generator=gen).tolist()
    corrupted = clean.copy()
    corrupted[6] = (clean[6] + 11) % 300
    result = patch(model, clean, corrupted, answers=(5, 17))
    _, clean_cache = run_with_cache(model, torch.tensor([clean]), lambda name: name.endswith("hook_z"))
    for layer, head in ((0, 1), (1, 3), (2, 0), (2, 2)):
        name = f"blocks.{layer}.attn.hook_z"

        def clean_head(z, hook, name=name, head=head):  # (B, T, H, D): this head's output at every position
            z = z.clone()
            z[:, :, head] = clean_cache[name][:, :, head]
            return z

        with hooks(model, {name: clean_head}):
            logits = logits_of(model, corrupted)[-1]
        ld = float(logits[result.answer_clean] - logits[result.answer_corrupted])
        expected = (ld - result.ld_corrupted) / (result.ld_clean - result.ld_corrupted)
        assert float(result.heads[layer, head]) == pytest.approx(expected, abs=1e-4), (layer, head)
    assert result.heads.abs().max() > 0.01  # the heads do restore something: the comparison is not 0 == 0


def test_the_bundled_models_induction_circuit(bundled):
    """Ablating layer 1 (the induction heads) or L0 H0 (the previous-token head they read) makes the
    repeat as hard as the first copy; L4 H2 is not part of the circuit."""
    ids = get_tokenizer().encode(REPEATED.strip())
    half = len(ids) // 2
    clean_loss = token_losses(bundled, analyze(bundled, ids))[0][half:].mean()
    assert clean_loss < 3.0
    layer1 = tuple((1, head) for head in range(4))
    for heads, at_least, at_most in ((layer1, 5.0, None), (((0, 0),), 5.0, None), (((4, 2),), None, 0.3)):
        ablated = ablated_analysis(bundled, ids, Ablation(heads, "zero"))
        rise = float(token_losses(bundled, ablated)[0][half:].mean() - clean_loss)
        if at_least is not None:
            assert rise > at_least, (heads, rise)
        if at_most is not None:
            assert abs(rise) < at_most, (heads, rise)
    # with L0 H0 ablated, layer 1's induction stripes vanish from its maps
    without_prev = ablated_analysis(bundled, ids, Ablation(((0, 0),), "zero"))
    assert analyze(bundled, ids).scores["induction"][1].min() > 0.7
    assert without_prev.scores["induction"][1].max() < 0.4
