"""Circuits: attribution patching against autograd and exact patching, edge scores against the
gradient formula by hand, exact faithfulness at its ends and one edge at a time, the task generators,
answers and prompt sets, and the bundled model's induction circuit."""

import re

import pytest
import torch

from gpt2 import GPT2, get_tokenizer, hooks, run_with_cache
from gpt2.circuits import (
    CircuitError,
    Edge,
    Graph,
    attribution_patching,
    faithfulness,
    find_circuit,
)
from gpt2.circuits.circuit import on_paths
from gpt2.circuits.common import pair_runs
from gpt2.circuits.graph import edge_scores, output_names
from gpt2.circuits.tasks import induction, make_task, names
from gpt2.hooks import act_name
from gpt2.lab import LabError, patch

ANSWERS = (5, 17)


def small(layers: int, seed: int = 0) -> GPT2:
    torch.manual_seed(seed)
    return GPT2(100, 32, 4, layers, 32).eval()


@pytest.fixture(scope="module")
def two_layer():
    return small(2)


@pytest.fixture(scope="module")
def sharp():
    """Two layers with weights six times GPT-2's init: attention that depends on what it reads."""
    model = small(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" not in name:
                p.mul_(6)
    return model


@pytest.fixture(scope="module")
def bundled():
    return GPT2.from_pretrained("shakespeare")


def a_pair(T=12, changed=(6,), seed=1):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, 100, (T,), generator=g).tolist()
    corrupted = list(clean)
    for p in changed:
        corrupted[p] = (clean[p] + 1 + p) % 100
    return clean, corrupted


def ld_of(model, ids, fns=None):
    with torch.no_grad(), hooks(model, fns or {}):
        logits = model(torch.tensor([ids]))[0, -1]
    return float(logits[ANSWERS[0]] - logits[ANSWERS[1]])


def grads_by_autograd(model, ids, names, x=None):
    """∂LD/∂(each named activation), each from its own run of `ids` (or of the stream `x` entering
    block 0) where its hook makes that activation a leaf."""
    grads = {}
    for name in names:
        leaf = []

        def make_leaf(t, hook, leaf=leaf):
            leaf.append(t.detach().clone().requires_grad_())
            return leaf[0]

        with hooks(model, {name: make_leaf}):
            logits = model.unembed(model.run_blocks(x if x is not None else model.embed(torch.tensor([ids]))))[0, -1]
        (grads[name],) = torch.autograd.grad(logits[ANSWERS[0]] - logits[ANSWERS[1]], leaf)
    return grads


# attribution patching


def test_attribution_patching_equals_the_first_order_formula_by_autograd(two_layer):
    model = two_layer
    clean, corrupted = a_pair()
    result = attribution_patching(model, clean, corrupted, ANSWERS, steps=0)
    names = [act_name(p, layer) for p in ("resid_pre", "z", "mlp_out") for layer in range(2)]
    _, clean_cache = run_with_cache(model, torch.tensor([clean]), names)
    _, corrupted_cache = run_with_cache(model, torch.tensor([corrupted]), names)
    grads = grads_by_autograd(model, corrupted, names)
    scale = ld_of(model, clean) - ld_of(model, corrupted)
    assert result.resid.shape == (2, 12) and result.heads.shape == (2, 4) and result.mlp.shape == (2,)
    assert result.ld_clean == pytest.approx(ld_of(model, clean), abs=1e-5)
    for layer in range(2):

        def by_hand(part, dims, layer=layer):
            name = act_name(part, layer)
            return ((clean_cache[name] - corrupted_cache[name]) * grads[name]).sum(dims) / scale

        torch.testing.assert_close(result.resid[layer], by_hand("resid_pre", (0, 2)), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(result.heads[layer], by_hand("z", (0, 1, 3)), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(result.mlp[layer], by_hand("mlp_out", (0, 1, 2)), rtol=1e-4, atol=1e-6)


def test_identical_positions_and_pairs_attribute_nothing(two_layer):
    clean, corrupted = a_pair(changed=(6,))
    result = attribution_patching(two_layer, clean, corrupted, ANSWERS, steps=3)
    assert (result.resid[:, :6] == 0).all()  # before the change both runs are the same
    assert result.resid[0, 6] != 0
    # a pair whose prompts are the same adds nothing: the set's raw sums are the other pair's
    same = a_pair(seed=5, changed=())
    prompt_set = attribution_patching(two_layer, [clean, same[0]], [corrupted, same[1]], ANSWERS, steps=3)
    ratio = (result.ld_clean - result.ld_corrupted) / (prompt_set.ld_clean - prompt_set.ld_corrupted) / 2
    torch.testing.assert_close(prompt_set.heads, result.heads * ratio, rtol=1e-4, atol=1e-6)


def test_integrated_gradients_approach_exact_patching_on_a_one_layer_model():
    model = small(1, seed=3)
    clean, corrupted = a_pair(changed=(7,))
    exact = patch(model, clean, corrupted, ANSWERS)
    plain = attribution_patching(model, clean, corrupted, ANSWERS, steps=0)
    many = attribution_patching(model, clean, corrupted, ANSWERS, steps=64)
    # one position differs: the stream there, patched alone, restores everything, and the integral
    # of the gradient along the line between the two embeddings says so too
    assert exact.resid[0, 7] == pytest.approx(1.0, abs=1e-4)
    assert many.resid[0, 7] == pytest.approx(1.0, abs=1e-3)
    assert abs(plain.resid[0, 7] - 1.0) > 10 * abs(many.resid[0, 7] - 1.0)
    assert (many.heads - exact.heads).abs().max() < 0.05


# edge attribution


def test_an_edge_score_is_the_gradient_formula_by_hand(two_layer):
    model = two_layer
    clean, corrupted = a_pair()
    graph = Graph(2, 4)
    run = pair_runs(model, clean, corrupted, ANSWERS, output_names(2))[0]
    scores = edge_scores(model, graph, run, steps=0)
    names = [act_name("result", 0), act_name("k_input", 1), act_name("mlp_in", 1), act_name("resid_post", 1)]
    _, clean_cache = run_with_cache(model, torch.tensor([clean]), names)
    _, corrupted_cache = run_with_cache(model, torch.tensor([corrupted]), names)
    grads = grads_by_autograd(model, clean, names[1:])
    delta = corrupted_cache[names[0]] - clean_cache[names[0]]  # (1, T, H, C): layer 0's heads
    # L0H2 → the key of L1H3
    by_hand = (delta[0, :, 2] * grads[names[1]][0, :, 3]).sum()
    assert scores[graph.edge_index[("L0H2", "L1H3", "k")]] == pytest.approx(float(by_hand), rel=1e-4, abs=1e-6)
    by_hand = (delta[0, :, 1] * grads[names[2]][0]).sum()  # L0H1 → MLP1
    assert scores[graph.edge_index[("L0H1", "MLP1", "mlp")]] == pytest.approx(float(by_hand), rel=1e-4, abs=1e-6)
    by_hand = (delta[0, :, 0] * grads[names[3]][0]).sum()  # L0H0 → logits
    assert scores[graph.edge_index[("L0H0", "logits", "logits")]] == pytest.approx(float(by_hand), rel=1e-4, abs=1e-6)


def test_the_edges_into_an_input_add_up_to_that_inputs_attribution(two_layer):
    model = two_layer
    clean, corrupted = a_pair(changed=(3, 8))
    graph = Graph(2, 4)
    run = pair_runs(model, clean, corrupted, ANSWERS, output_names(2))[0]
    scores = edge_scores(model, graph, run, steps=2)
    x_clean, x_corrupted = run.embed_clean.detach(), run.embed_corrupted.detach()
    names = [act_name(p, layer) for layer in range(2) for p in ("q_input", "k_input", "v_input", "mlp_in")]
    names.append(act_name("resid_post", 1))
    _, clean_cache = run_with_cache(model, torch.tensor([clean]), names)
    _, corrupted_cache = run_with_cache(model, torch.tensor([corrupted]), names)
    grads = {name: 0 for name in names}
    for alpha in (0.25, 0.75):  # EAP-IG with 2 steps, by hand
        step = grads_by_autograd(model, None, names, x=x_corrupted + alpha * (x_clean - x_corrupted))
        grads = {n: grads[n] + step[n] / 2 for n in names}

    def attribution(name, head=None):
        delta, grad = corrupted_cache[name] - clean_cache[name], grads[name]
        return float((delta[0, :, head] * grad[0, :, head]).sum() if head is not None else (delta * grad).sum())

    for i, dst in enumerate(graph.nodes[1:], start=1):
        into = graph.dst == i
        for kind in ("q", "k", "v", "mlp", "logits"):
            rows = into & torch.tensor([k == kind for k in graph.kinds])
            if not rows.any():
                continue
            if dst.startswith("L"):
                layer, head = (int(s) for s in dst[1:].split("H"))
                expected = attribution(act_name(f"{kind}_input", layer), head)
            elif dst.startswith("MLP"):
                expected = attribution(act_name("mlp_in", int(dst[3:])))
            else:
                expected = attribution(act_name("resid_post", 1))
            assert float(scores[rows].sum()) == pytest.approx(expected, rel=1e-4, abs=1e-5), (dst, kind)


def test_pruning_keeps_only_edges_on_a_path_from_embed_to_logits():
    graph = Graph(2, 2)
    chosen = [
        ("embed", "L0H0", "k"),  # on a path: L0H0 → MLP0 → logits
        ("L0H0", "MLP0", "mlp"),
        ("MLP0", "logits", "logits"),
        ("embed", "L0H1", "v"),  # dead end: L0H1 feeds nothing kept
        ("L1H0", "logits", "logits"),  # L1H0 reads nothing kept
    ]
    kept = torch.zeros(graph.num_edges, dtype=torch.bool)
    kept[[graph.edge_index[e] for e in chosen]] = True
    pruned = on_paths(graph, kept)
    assert {tuple(graph.edge(int(i), 0.0).__dict__.values())[:3] for i in pruned.nonzero().flatten()} == set(chosen[:3])


# faithfulness


def test_faithfulness_is_exactly_one_for_every_edge_and_zero_for_none(two_layer):
    clean, corrupted = a_pair()
    graph = Graph(2, 4)
    every = [graph.edge(i, 0.0) for i in range(graph.num_edges)]
    assert faithfulness(two_layer, clean, corrupted, every, ANSWERS) == 1.0
    assert faithfulness(two_layer, clean, corrupted, [], ANSWERS) == 0.0
    # a prompt set too
    other = a_pair(seed=4, T=9, changed=(2,))
    assert faithfulness(two_layer, [clean, other[0]], [corrupted, other[1]], every, ANSWERS) == 1.0


CUTS = [("L0H1", "L1H2", "k"), ("embed", "L0H3", "v"), ("L0H0", "MLP0", "mlp"), ("MLP0", "logits", "logits")]


@pytest.mark.parametrize("cut", CUTS)
def test_cutting_one_edge_equals_a_plain_run_that_corrupts_exactly_that_edge(sharp, cut):
    model = sharp
    clean, corrupted = a_pair(changed=(2, 6))
    graph = Graph(2, 4)
    kept = [graph.edge(i, 0.0) for i in range(graph.num_edges) if i != graph.edge_index[cut]]
    faith = faithfulness(model, clean, corrupted, kept, ANSWERS)
    # the plain run: the clean prompt, with the source's (corrupted − clean) output added to one input
    src, dst, kind = cut
    names = ["hook_embed", "hook_pos_embed", act_name("result", 0), act_name("mlp_out", 0)]
    _, c = run_with_cache(model, torch.tensor([clean]), names)
    _, r = run_with_cache(model, torch.tensor([corrupted]), names)
    if src == "embed":
        delta = (r["hook_embed"] - c["hook_embed"])[0]
    elif src.startswith("MLP"):
        delta = (r[names[3]] - c[names[3]])[0]
    else:
        delta = (r[names[2]] - c[names[2]])[0, :, int(src[3:])]
    if dst.startswith("MLP"):
        point, fn = act_name("mlp_in", 0), lambda x, hook: x + delta
    elif dst == "logits":
        point, fn = act_name("resid_post", 1), lambda x, hook: x + delta
    else:
        layer, head = (int(s) for s in dst[1:].split("H"))
        point = act_name(f"{kind}_input", layer)

        def fn(x, hook):
            x = x.clone()
            x[0, :, head] += delta
            return x

    plain = ld_of(model, clean, {point: fn})
    expected = (plain - ld_of(model, corrupted)) / (ld_of(model, clean) - ld_of(model, corrupted))
    assert faith == pytest.approx(expected, abs=2e-5)
    assert abs(faith - 1.0) > 2e-3  # the edge matters


# answers, prompt sets, errors


def test_answers_default_to_each_prompts_top_token_and_must_differ(two_layer):
    clean, corrupted = a_pair()
    with torch.no_grad():
        tops = [int(two_layer(torch.tensor([ids]))[0, -1].argmax()) for ids in (clean, corrupted)]
    if tops[0] != tops[1]:
        assert attribution_patching(two_layer, clean, corrupted, steps=0).answers == (tuple(tops),)
    with pytest.raises(LabError, match=r"^both prompts predict .* next: type the two answers"):
        patch(two_layer, clean, clean[:-1] + [clean[-1]])
    with pytest.raises(LabError, match="the two answers are the same token"):
        attribution_patching(two_layer, clean, corrupted, (5, 5))


def test_bad_requests_are_one_clear_line(two_layer):
    clean, corrupted = a_pair()
    cases = [
        (lambda: find_circuit(two_layer, clean, corrupted, (" Juliet and", 5)), "is 2 tokens"),
        (lambda: find_circuit(two_layer, clean, corrupted[:-1], ANSWERS), "clean has 12, corrupted 11"),
        (lambda: find_circuit(two_layer, [clean, clean], [corrupted, corrupted[:-2]], ANSWERS), "pair 2: the prompts"),
        (lambda: find_circuit(two_layer, clean, corrupted, ANSWERS, edges=0), "from 1 to"),
        (lambda: find_circuit(two_layer, clean, corrupted, ANSWERS, edges=10**6), "from 1 to"),
        (lambda: find_circuit(two_layer, clean, corrupted, ANSWERS, method="acdc"), "unknown method"),
        (lambda: attribution_patching(two_layer, clean, corrupted, ANSWERS, steps=-1), "steps must be"),
        (lambda: patch(two_layer, [clean] * 17, [corrupted] * 17, ANSWERS), "1 to 16 pairs"),
        (lambda: make_task(two_layer, "greater-than"), "unknown task"),
        (lambda: faithfulness(two_layer, clean, corrupted, [("L1H0", "L0H0", "k")], ANSWERS), "no edge"),
    ]
    for call, message in cases:
        with pytest.raises(LabError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
    assert issubclass(CircuitError, LabError)


def test_patch_takes_typed_answers_and_prompt_sets(two_layer):
    clean, corrupted = a_pair()
    other = a_pair(seed=3, T=8, changed=(5,))
    one = patch(two_layer, clean, corrupted, ANSWERS)
    tok = get_tokenizer()
    typed = patch(two_layer, clean, corrupted, (tok.decode([5]), tok.decode([17])))
    assert torch.equal(one.heads, typed.heads)
    both = patch(two_layer, [clean, other[0]], [corrupted, other[1]], ANSWERS)
    second = patch(two_layer, other[0], other[1], ANSWERS)
    assert both.resid.shape == (2, 12) and len(both.answers) == 2
    assert both.ld_clean == pytest.approx((one.ld_clean + second.ld_clean) / 2)
    # the mean logit difference over the pairs, normalised once
    lds = (one.heads * (one.ld_clean - one.ld_corrupted) + one.ld_corrupted) + (
        second.heads * (second.ld_clean - second.ld_corrupted) + second.ld_corrupted
    )
    expected = (lds / 2 - both.ld_corrupted) / (both.ld_clean - both.ld_corrupted)
    torch.testing.assert_close(both.heads, expected, rtol=1e-4, atol=1e-5)


# tasks


def test_the_task_generators_make_seeded_pairs_of_equal_length(bundled):
    task = induction(bundled, pairs=3, seed=1)
    assert task == induction(bundled, pairs=3, seed=1)
    tok = get_tokenizer()
    for clean, corrupted, (good, bad) in zip(task.clean, task.corrupted, task.answers, strict=True):
        assert len(clean) == len(corrupted) and good != bad
        changed = [i for i, (a, b) in enumerate(zip(clean, corrupted, strict=True)) if a != b]
        assert len(changed) == 1 and clean[changed[0]] == clean[-1]  # the first A, replaced
        assert clean[changed[0] + 1] == good  # B follows it
    ioi = names(pairs=4, seed=2)
    for (clean, corrupted), (io, s) in zip(ioi.texts(), ioi.answers, strict=True):
        assert len(tok.encode(clean)) == len(tok.encode(corrupted))
        assert re.search(r"(\w+) (gave|handed)", clean)[1] == tok.decode([s]).strip()  # the subject gives
        assert re.search(r"(\w+) (gave|handed)", corrupted)[1] == tok.decode([io]).strip()


# the bundled model's induction circuit


def test_the_bundled_models_induction_circuit(bundled):
    task = induction(bundled, pairs=1, seed=1)  # seed 0 draws a weaker pair: 0.40 at 50 edges, 0.92 at 100
    circuit = find_circuit(bundled, task.clean, task.corrupted, task.answers, edges=20, method="eap-ig", steps=5)
    assert any(e.src == "L0H0" and e.dst.startswith("L1H") and e.input == "k" for e in circuit.edges)
    assert any(e.src.startswith("L1H") and e.dst == "logits" for e in circuit.edges)
    assert dict(circuit.curve)[50] >= 0.8
    assert [n for n, _ in circuit.curve] == [5, 10, 20, 50, 100, 200]
    assert circuit.nodes[0] == "embed" and circuit.nodes[-1] == "logits"
    # every kept edge lies on a path from embed to logits
    for edge in circuit.edges:
        assert edge.src == "embed" or any(e.dst == edge.src for e in circuit.edges)
        assert edge.dst == "logits" or any(e.src == edge.dst for e in circuit.edges)
    assert all(isinstance(e, Edge) for e in circuit.edges)
