"""Speed and memory, ours vs Hugging Face transformers, on the same weights, in one run.

    python bench/bench.py              # full sizes: GPT-2 small (124M, random weights) and the bundled model
    python bench/bench.py --quick      # tiny sizes, seconds; what the test suite runs
    python bench/bench.py --json out.json
    python bench/bench.py --circuits   # only attribution patching, circuits and faithfulness

Each row runs in its own subprocess so its peak RSS is its own; timings are medians of several
repetitions. Rows: decode tokens/s (float32, bfloat16, and our int8-weight path against the
float32 reference) vs `GPT2LMHeadModel.generate`; the machine's floor (one matrix-vector product
per weight matrix, i.e. the bytes a decode step must read) and memory read bandwidth; the analysis
pass (every head's attention) vs transformers' eager attention with output_attentions=True, and
the blocks' float32 matrix products alone (which both passes must run: a bound on the ratio);
app-level first-token latency and figure build time.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {
    "full": dict(
        embed_dim=768,
        num_heads=12,
        num_layers=12,
        block_size=1024,
        prompt=16,
        new_tokens=128,
        lengths=(256, 1024),
        reps=7,
    ),
    "quick": dict(
        embed_dim=64, num_heads=4, num_layers=2, block_size=256, prompt=8, new_tokens=16, lengths=(32,), reps=1
    ),
}


def median_time(fn, reps: int) -> float:
    return median_times([fn], reps)[0]


def median_times(fns, reps: int) -> list[float]:
    """Median seconds of each function, the repetitions interleaved (a, b, a, b, ...) so that the
    machine's slow spells hit every contender alike."""
    for fn in fns:
        fn()  # warm-up
    times = [[] for _ in fns]
    for _ in range(reps):
        for fn, samples in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
    return [statistics.median(samples) for samples in times]


def build_pair(size):
    """Our GPT2 and transformers' GPT2LMHeadModel holding the same random weights."""
    import tempfile

    import transformers

    from gpt2 import GPT2

    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(
        n_embd=size["embed_dim"], n_head=size["num_heads"], n_layer=size["num_layers"], n_positions=size["block_size"]
    )
    reference = transformers.GPT2LMHeadModel(hf_config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        reference.save_pretrained(tmp)
        ours = GPT2.from_pretrained(tmp)
    return ours, reference


def row_decode(size, dtype_name: str) -> dict:
    """Greedy decode tokens/s; "int8" is our int8-weight path (FBGEMM) against the float32 reference."""
    from gpt2.quantize import quantize_int8

    ours, reference = build_pair(size)
    accuracy = {}
    if dtype_name == "int8":
        ours = quantize_int8(ours)
        accuracy = int8_accuracy(size)
    else:
        dtype = getattr(torch, dtype_name)
        ours, reference = ours.to(dtype), reference.to(dtype)
    idx = torch.randint(0, 50257, (1, size["prompt"]))
    n = size["new_tokens"]
    with torch.inference_mode():
        t_ours, t_ref = median_times(
            [
                lambda: ours.generate(idx, n, temperature=0),
                lambda: reference.generate(
                    idx, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=50256
                ),
            ],
            size["reps"],
        )
    return {"ours_tok_s": n / t_ours, "reference_tok_s": n / t_ref, "ratio": t_ref / t_ours, **accuracy}


def int8_accuracy(size) -> dict:
    """The int8 path this CPU takes and how close it decodes to float32 (stepping one token at a time
    through the KV cache) on the same shape with GPT-2's large activation features (bench/outliers.py)."""
    from outliers import with_outlier_features

    from gpt2 import GPT2
    from gpt2.quantize import decoding_agreement, quantize_int8

    torch.manual_seed(1)
    model = GPT2(50257, size["embed_dim"], size["num_heads"], size["num_layers"], size["block_size"]).eval()
    model = with_outlier_features(model)
    start = time.perf_counter()
    quantized = quantize_int8(model)
    calibration_s = time.perf_counter() - start
    mean_kl, _ = decoding_agreement(model, quantized, torch.randint(0, 50257, (1, size["new_tokens"])))
    return {"path": quantized.decoding.summary, "outlier_kl": mean_kl, "quantize_s": calibration_s}


def row_floor(size) -> dict:
    """One matrix-vector product per weight matrix (what every decode step must read), and bandwidth."""
    from gpt2 import GPT2

    torch.manual_seed(0)
    model = GPT2(50257, size["embed_dim"], size["num_heads"], size["num_layers"], size["block_size"])
    mats = [p.detach() for name, p in model.named_parameters() if p.dim() == 2 and name != "wpe.weight"]
    vectors = {m.shape[1]: torch.randn(m.shape[1]) for m in mats}

    def one_token():
        for m in mats:
            torch.mv(m, vectors[m.shape[1]])

    t = median_time(one_token, size["reps"] * 4)
    big = torch.randn(64 * 2**20 if size is SIZES["full"] else 4 * 2**20)  # 256 MiB / 16 MiB of float32
    t_read = median_time(lambda: big.sum(), size["reps"] * 4)
    weight_bytes = sum(m.numel() * m.element_size() for m in mats)
    return {"floor_tok_s": 1 / t, "weight_bytes": weight_bytes, "read_GB_s": big.numel() * 4 / t_read / 1e9}


def row_analysis(size, length: int) -> dict:
    """The analysis pass (`gpt2.analysis.analyze`: the residual stream, every head's scores and
    thumbnails; no map kept) vs the reference's eager forward with output_attentions; the bytes it
    keeps; and a head switch: one head's map recomputed from the cache and drawn."""
    from gpt2.analysis import analyze
    from gpt2.explorer.cache import Entry

    ours, reference = build_pair(size)
    reference.config._attn_implementation = "eager"
    idx = torch.randint(0, 50257, (1, length))
    ids = idx[0].tolist()
    linears = [m for block in ours.blocks for m in block.modules() if isinstance(m, torch.nn.Linear)]
    inputs = {m.in_features: torch.randn(length, m.in_features) for m in linears}

    def block_gemms():  # the blocks' matrix products alone: what both passes must run, in float32
        for m in linears:
            torch.nn.functional.linear(inputs[m.in_features], m.weight, m.bias)

    with torch.inference_mode():
        t_ours, t_ref, t_gemms = median_times(
            [lambda: analyze(ours, ids), lambda: reference(idx, output_attentions=True), block_gemms], size["reps"]
        )
    entry = Entry(analyze(ours, ids), [str(i) for i in ids])
    return {
        "T": length,
        "ours_s": t_ours,
        "reference_s": t_ref,
        "ratio": t_ours / t_ref,
        "block_gemms_s": t_gemms,
        "switch_s": median_time(_switches(ours, entry), size["reps"]),
        "kept_MiB": entry.analysis.nbytes / 2**20,
    }


def _switches(model, entry):
    """A function that shows, each call, a head not shown before (recomputed, not cached), as the
    app sends it: the figure's JSON."""
    from gpt2.explorer import views
    from gpt2.explorer.figures import draw, figure_json

    config = model.config
    heads = iter([(layer, head) for layer in range(config.num_layers) for head in range(config.num_heads)] * 16)

    def switch():
        views.MAPS.__init__()  # forget the maps shown so far
        layer, head = next(heads)
        return figure_json(draw(views.heatmap_view(model, entry, layer, head)[0]))

    return switch


def _bundled_or_random(size, bundled: bool):
    from gpt2 import GPT2

    if bundled:
        return GPT2.from_pretrained("shakespeare")
    torch.manual_seed(0)
    return GPT2(50257, size["embed_dim"], size["num_heads"], size["num_layers"], size["block_size"]).eval()


def row_app(size, bundled: bool) -> dict:
    """What a visitor waits for at 256 tokens: the first streamed token, the analysis pass, a head
    switch, and the grid with the score map."""
    from gpt2.explorer import views
    from gpt2.explorer.cache import AnalysisCache
    from gpt2.explorer.figures import draw, figure_bytes, figure_json
    from gpt2.explorer.inputs import sampling_settings
    from gpt2.generate import stream_tokens

    model = _bundled_or_random(size, bundled)
    prompt_ids = list(range(1000, 1000 + size["prompt"]))
    settings = sampling_settings(8, 0, 0, 1.0, 0)
    ids = list(range(2000, 2000 + min(256, model.config.block_size)))
    entry = AnalysisCache().get("m", model, ids)
    heatmap = draw(views.heatmap_view(model, entry, 0, 0)[0])
    grid, scores = draw(views.grid_view(entry, (0, 0))), draw(views.score_view(entry, "induction", (0, 0)))
    return {
        "model": "bundled" if bundled else "random GPT-2 shape",
        "T": len(ids),
        "first_token_s": median_time(lambda: next(stream_tokens(model, prompt_ids, settings)), size["reps"]),
        "analysis_s": median_time(lambda: AnalysisCache().get("m", model, ids), size["reps"]),
        "switch_s": median_time(_switches(model, entry), size["reps"]),
        "heatmap_bytes": figure_bytes(heatmap),
        "grid_s": median_time(
            lambda: (
                figure_json(draw(views.grid_view(entry, (0, 0)))),
                figure_json(draw(views.score_view(entry, "induction", (0, 0)))),
            ),
            size["reps"],
        ),
        "grid_bytes": figure_bytes(grid) + figure_bytes(scores),
    }


def row_lab(size, bundled: bool) -> dict:
    """The causal tools on one text (256 tokens on the bundled model, 128 on GPT-2 small's shape):
    per-token loss, the logit lens, one ablation with every map recomputed, direct attribution, the
    one-head-at-a-time sweep, and activation patching of a text with one token changed a quarter in."""
    from gpt2 import lab
    from gpt2.analysis import analyze

    model = _bundled_or_random(size, bundled)
    T = (256 if bundled else 128) if size is SIZES["full"] else 32
    ids = torch.randint(1000, 5000, (T,), generator=torch.Generator().manual_seed(0)).tolist()
    corrupted = ids.copy()
    corrupted[T // 4] += 1
    analysis = analyze(model, ids)
    ablation = lab.Ablation(((1, 0), (1, 1)), "zero")
    reps = max(1, size["reps"] // 2)
    tools = {
        "loss_s": lambda: lab.token_losses(model, analysis),
        "logit_lens_s": lambda: lab.logit_lens(model, analysis),
        "ablation_s": lambda: lab.ablated_analysis(model, ids, ablation),
        "attribution_s": lambda: lab.direct_attribution(model, ids, T - 1, ids[0]),
        "sweep_s": lambda: lab.ablation_sweep(model, analysis, T - 1, ids[0]),
        "patching_s": lambda: lab.patch(model, ids, corrupted, answers=(ids[0], ids[1])),
    }
    out = {"model": "bundled" if bundled else "random GPT-2 shape", "T": T}
    for name, fn in tools.items():
        out[name] = median_time(fn, 1 if name == "patching_s" else reps)
    return out


def run_row(name: str, size_name: str, *args) -> dict:
    """Run one row in a fresh interpreter; returns its result plus its own peak RSS."""
    code = (
        "import json, resource, sys; sys.argv = ['bench']; "
        f"sys.path.insert(0, {str(ROOT / 'bench')!r}); import bench; "
        f"out = bench.ROWS[{name!r}](bench.SIZES[{size_name!r}], *{args!r}); "
        "out['peak_rss_MB'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; print(json.dumps(out))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"row {name} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


ROWS = {"decode": row_decode, "floor": row_floor, "analysis": row_analysis, "app": row_app, "lab": row_lab}


def row_heads_cell(size, bundled: bool) -> dict:
    """QK attribution of one cell of the last layer (query T - 1, key T / 2) at the block size: the
    first cell of a text (its earlier layers' head outputs recomputed from the analysis) and later
    cells (those outputs reused); the analysis pass itself is not timed."""
    from gpt2.analysis import analyze
    from gpt2.heads import HeadOutputs, qk_attribution_from

    model = _bundled_or_random(size, bundled)
    T, layer = model.config.block_size, model.config.num_layers - 1
    ids = torch.randint(1000, 5000, (T,), generator=torch.Generator().manual_seed(0)).tolist()
    analysis = analyze(model, ids)
    outputs = HeadOutputs(model, analysis)
    cells = iter([(head % model.config.num_heads, T - 1 - head % 7, head % T) for head in range(10_000)])

    def first_cell():
        return qk_attribution_from(model, analysis, layer, 0, T - 1, T // 2, HeadOutputs(model, analysis))

    def later_cell():
        head, query, key = next(cells)
        return qk_attribution_from(model, analysis, layer, head, query, key, outputs)

    return {
        "model": "bundled" if bundled else "random GPT-2 shape",
        "T": T,
        "layer": layer,
        "first_cell_s": median_time(first_cell, size["reps"]),
        "cell_s": median_time(later_cell, size["reps"]),
        "head_outputs_MiB": outputs.nbytes / 2**20,
        "analysis_MiB": analysis.nbytes / 2**20,
    }


def row_heads_weights(size, bundled: bool) -> dict:
    """Once per model, before any cache: composition scores in all three modes, and the model's roles."""
    from gpt2.heads import composition_scores, forget, model_roles

    model = _bundled_or_random(size, bundled)

    def composition():
        forget(model)
        return [composition_scores(model, mode) for mode in "qkv"]

    def roles():
        forget(model)
        return model_roles(model)

    reps = max(1, size["reps"] // 2)
    return {
        "model": "bundled" if bundled else "random GPT-2 shape",
        "composition_s": median_time(composition, reps),
        "roles_s": median_time(roles, reps),
        "labels": model_roles(model).labels,
    }


ROWS |= {"heads cell": row_heads_cell, "heads weights": row_heads_weights}


def heads_report(size_name: str) -> dict:
    """The heads-explained rows (`python bench/bench.py --heads`), each in its own process."""
    rows = {}
    for bundled, name in ((True, "bundled"), (False, "GPT-2 shape")):
        rows[f"heads cell ({name})"] = run_row("heads cell", size_name, bundled)
        rows[f"heads weights ({name})"] = run_row("heads weights", size_name, bundled)
    for name, r in rows.items():
        if "first_cell_s" in r:
            print(
                f"{name:28s} T={r['T']} layer {r['layer']}: first cell {r['first_cell_s'] * 1000:.1f} ms,"
                f" later cells {r['cell_s'] * 1000:.1f} ms; head outputs {r['head_outputs_MiB']:.1f} MiB,"
                f" analysis {r['analysis_MiB']:.1f} MiB; peak RSS {r['peak_rss_MB']:.0f} MB"
            )
        else:
            print(
                f"{name:28s} composition (q, k, v) {r['composition_s'] * 1000:.0f} ms; roles {r['roles_s'] * 1000:.0f} ms;"
                f" peak RSS {r['peak_rss_MB']:.0f} MB"
            )
    return rows


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten().double(), b.flatten().double()]))[0, 1])


def row_circuits(size, bundled: bool) -> dict:
    """Attribution patching (plain and 5 integrated-gradient steps) beside exact patching on the same
    pair (256 tokens on the bundled model, 128 on GPT-2 small's shape, one token changed a quarter
    in); the EAP-IG circuit (5 steps, 30 edges) with its faithfulness, then its curve; and how well
    attribution ranks heads like exact head patching (Pearson r over (L, H)), on this pair and, on
    the bundled model, on the induction task's pair."""
    from gpt2 import lab
    from gpt2.circuits import attribution_patching, find_circuit
    from gpt2.circuits.tasks import induction

    model = _bundled_or_random(size, bundled)
    T = (256 if bundled else 128) if size is SIZES["full"] else 32
    ids = torch.randint(1000, 5000, (T,), generator=torch.Generator().manual_seed(0)).tolist()
    corrupted = ids.copy()
    corrupted[T // 4] += 1
    pair = (ids, corrupted, (ids[0], ids[1]))
    reps = max(1, size["reps"] // 2)
    exact = lab.patch(model, *pair)
    out = {"model": "bundled" if bundled else "random GPT-2 shape", "T": T}
    out["exact_patching_s"] = median_time(lambda: lab.patch(model, *pair), 1)
    out["attribution_s"], out["attribution_ig5_s"] = median_times(
        [lambda: attribution_patching(model, *pair, steps=0), lambda: attribution_patching(model, *pair, steps=5)], reps
    )
    out["circuit_s"] = median_time(lambda: find_circuit(model, *pair, edges=30, curve=False), reps)
    out["circuit_and_curve_s"] = median_time(lambda: find_circuit(model, *pair, edges=30), reps)
    out["curve_s"] = out["circuit_and_curve_s"] - out["circuit_s"]
    out["curve"] = find_circuit(model, *pair, edges=30).curve
    for steps in (0, 5):
        out[f"r_steps{steps}"] = _pearson(attribution_patching(model, *pair, steps=steps).heads, exact.heads)
    if bundled:
        task = induction(model, seed=1)
        task_pair = (task.clean[0], task.corrupted[0], task.answers[0])
        exact = lab.patch(model, *task_pair)
        for steps in (0, 5):
            result = attribution_patching(model, *task_pair, steps=steps)
            out[f"induction_r_steps{steps}"] = _pearson(result.heads, exact.heads)
            out[f"induction_L0H0_steps{steps}"] = float(result.heads[0, 0])
        out["induction_L0H0_exact"] = float(exact.heads[0, 0])
        out["induction_curve"] = find_circuit(model, *task_pair, edges=30).curve
    return out


ROWS["circuits"] = row_circuits


def circuits_report(size_name: str) -> dict:
    """The circuit rows (`python bench/bench.py --circuits`), each in its own process."""
    rows = {}
    for bundled, name in ((True, "bundled"), (False, "GPT-2 shape")):
        rows[f"circuits ({name})"] = r = run_row("circuits", size_name, bundled)
        print(
            f"{'circuits (' + name + ')':28s} T={r['T']}: exact patching {r['exact_patching_s']:.2f} s;"
            f" attribution {r['attribution_s'] * 1000:.0f} ms, IG-5 {r['attribution_ig5_s'] * 1000:.0f} ms;"
            f" circuit (EAP-IG 5, 30 edges) {r['circuit_s'] * 1000:.0f} ms, curve {r['curve_s'] * 1000:.0f} ms more;"
            f" peak RSS {r['peak_rss_MB']:.0f} MB"
        )
        print(f"  head agreement with exact patching, r: plain {r['r_steps0']:.2f}, IG-5 {r['r_steps5']:.2f}")
        if "induction_r_steps5" in r:
            print(
                f"  induction pair: r plain {r['induction_r_steps0']:.2f}, IG-5 {r['induction_r_steps5']:.2f};"
                f" L0H0 exact {r['induction_L0H0_exact']:.2f}, plain {r['induction_L0H0_steps0']:.2f},"
                f" IG-5 {r['induction_L0H0_steps5']:.2f}; curve "
                + ", ".join(f"{n}: {f:.2f}" for n, f in r["induction_curve"])
            )
    return rows


def report(results: dict, size: dict) -> None:
    rows = results["rows"]
    floor = rows["floor"]["floor_tok_s"]
    print(f"{results['size']} sizes, {results['threads']} threads, torch {results['torch']}")
    print(f"{'row':28s} {'ours':>14s} {'reference':>14s} {'ratio':>7s} {'peak RSS':>10s}")
    for name in ("decode float32", "decode bfloat16", "decode int8 weights"):
        r = rows[name]
        print(
            f"{name:28s} {r['ours_tok_s']:10.1f} tok/s {r['reference_tok_s']:10.1f} tok/s {r['ratio']:6.2f}x {r['peak_rss_MB']:8.0f} MB"
        )
    int8 = rows["decode int8 weights"]
    print(
        f"  int8 path on this CPU: {int8['path']}; mean KL to float32 with outlier features {int8['outlier_kl']:.4f};"
        f" quantizing and checking took {int8['quantize_s']:.1f} s"
    )
    f32 = rows["decode float32"]["ours_tok_s"]
    print(
        f"{'floor (matvec per weight)':28s} {floor:10.1f} tok/s {'':>14s} {'':>7s} {rows['floor']['peak_rss_MB']:8.0f} MB"
    )
    print(
        f"  our float32 decode is {f32 / floor:.0%} of the floor; bf16 is {rows['decode bfloat16']['ours_tok_s'] / f32:.2f}x"
        f" and int8 weights {rows['decode int8 weights']['ours_tok_s'] / f32:.2f}x our float32;"
        f" memory read bandwidth {rows['floor']['read_GB_s']:.1f} GB/s"
    )
    for length in size["lengths"]:
        r = rows[f"analysis T={length}"]
        print(
            f"{'analysis T=' + str(length):28s} {r['ours_s'] * 1000:11.1f} ms {r['reference_s'] * 1000:11.1f} ms "
            f"{r['ratio']:6.2f}x {r['peak_rss_MB']:8.0f} MB"
        )
        print(
            f"  keeps {r['kept_MiB']:.1f} MiB; a head switch (recomputed from the cache, drawn) {r['switch_s'] * 1000:.1f} ms;"
            f" the blocks' matrix products alone {r['block_gemms_s'] * 1000:.1f} ms"
            f" ({r['block_gemms_s'] / r['reference_s']:.2f}x the reference)"
        )
    for name in ("app (bundled)", "app (GPT-2 shape)"):
        r = rows[name]
        print(
            f"{name:28s} T={r['T']}: first token {r['first_token_s'] * 1000:.0f} ms; analysis {r['analysis_s'] * 1000:.1f} ms; "
            f"switch {r['switch_s'] * 1000:.1f} ms (heatmap {r['heatmap_bytes'] / 1e3:.0f} kB); "
            f"grid+scores {r['grid_s'] * 1000:.0f} ms ({r['grid_bytes'] / 1e3:.0f} kB)"
        )
    for name in ("lab (bundled)", "lab (GPT-2 shape)"):
        r = rows[name]
        parts = ", ".join(f"{key[:-2].replace('_', ' ')} {r[key] * 1000:.0f} ms" for key in r if key.endswith("_s"))
        print(f"{name:28s} T={r['T']}: {parts}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--heads", action="store_true", help="only the heads-explained rows")
    parser.add_argument("--circuits", action="store_true", help="only the circuit rows")
    args = parser.parse_args(argv)
    size_name = "quick" if args.quick else "full"
    if args.heads or args.circuits:
        rows = heads_report(size_name) if args.heads else circuits_report(size_name)
        results = {"size": size_name, "threads": torch.get_num_threads(), "rows": rows}
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        return results
    size = SIZES[size_name]
    results = {"size": size_name, "threads": torch.get_num_threads(), "torch": torch.__version__, "rows": {}}
    rows = results["rows"]
    rows["decode float32"] = run_row("decode", size_name, "float32")
    rows["decode bfloat16"] = run_row("decode", size_name, "bfloat16")
    rows["decode int8 weights"] = run_row("decode", size_name, "int8")
    rows["floor"] = run_row("floor", size_name)
    for length in size["lengths"]:
        rows[f"analysis T={length}"] = run_row("analysis", size_name, length)
    for kind in ("app", "lab"):
        rows[f"{kind} (bundled)"] = run_row(kind, size_name, True)
        rows[f"{kind} (GPT-2 shape)"] = run_row(kind, size_name, False)
    report(results, size)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
