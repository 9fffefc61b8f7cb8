"""Training histories: the rows a run records (fields, probes, the in-context-learning score), their
continuation by --resume and by a second stage, snapshots, and the explorer's Training view."""

import json

import pytest
import torch

from gpt2 import GPT2
from gpt2.data import read_corpus, split_tokens
from gpt2.heads.roles import sequence_scores
from gpt2.history import FIELDS, Probe, icl_positions, icl_score, probe_sequence, read_history, snapshot_steps
from gpt2.loss import validation_token_losses
from gpt2.tokenizer import get_tokenizer
from gpt2.train import main

TINY = ["--preset", "tiny", "--dropout", "0", "--threads", "1", "--eval-windows", "4", "--dtype", "float32"]
pytestmark = pytest.mark.usefixtures("keep_threads")


def rows_without_timings(directory):
    return [{k: v for k, v in row.items() if k not in ("minutes", "eval_seconds")} for row in read_history(directory)]


def test_a_run_records_one_row_per_evaluation_with_the_documented_fields(tmp_path, corpus):
    out = tmp_path / "run"
    main(
        [*TINY, "--data", str(corpus), "--out", str(out), "--max-steps", "30", "--eval-interval", "15", "--batch", "2"]
    )
    rows = read_history(out)
    assert [row["step"] for row in rows] == [0, 15, 30]  # where it starts, then every --eval-interval
    assert [row["tokens"] for row in rows] == [0, 15 * 2 * 64, 30 * 2 * 64]
    assert rows[0]["train_loss"] is None and all(isinstance(row["train_loss"], float) for row in rows[1:])
    for row in rows:
        assert set(FIELDS) <= row.keys()
        for field in ("previous_token", "duplicate_token", "induction"):
            assert len(row[field]) == 2 and all(len(layer) == 2 for layer in row[field])  # (L, H)
    # the last row measures the saved model: its losses and its scores on the run's probe batch
    model = GPT2.from_pretrained(out)
    split = split_tokens(read_corpus(str(corpus)))
    losses = validation_token_losses(model, split.val, 64, max_windows=4)
    assert rows[-1]["val_loss"] == pytest.approx(losses.double().mean().item(), abs=1e-6)
    assert rows[-1]["icl_score"] == pytest.approx(icl_score(losses), abs=1e-6)
    probe = Probe.for_run(split.train, 64)
    assert probe_sequence(out) == probe.sequences[0].tolist()  # kept beside the history, for the explorer
    scores = sequence_scores(model, probe.sequences)
    assert torch.allclose(torch.tensor(rows[-1]["induction"]), scores["induction"], atol=1e-4)
    assert torch.allclose(torch.tensor(rows[-1]["previous_token"]), scores["previous-token"], atol=1e-4)


def test_the_icl_score_is_late_loss_minus_early_loss():
    assert icl_positions(256) == (slice(16, 32), slice(224, 256))
    losses = torch.full((3, 64), 5.0)
    losses[:, 56:] = 3.0  # the last eighth: 2 nats better
    losses[:, :4] = 9.0  # before the early positions: not counted
    assert icl_score(losses) == pytest.approx(-2.0)


def test_resume_drops_rows_after_its_checkpoint_and_continues_without_duplicates(tmp_path, corpus):
    common = [*TINY, "--data", str(corpus), "--max-steps", "6", "--eval-interval", "2", "--batch", "2"]
    main([*common, "--out", str(tmp_path / "straight")])
    split = tmp_path / "split"
    main([*common, "--out", str(split), "--stop-at-step", "4"])
    with (split / "history.jsonl").open("a") as f:  # a row written just before a crash, its checkpoint never saved
        f.write(json.dumps(read_history(split)[-1] | {"step": 5}) + "\n")
    main([*common, "--out", str(split), "--resume"])
    assert [row["step"] for row in read_history(split)] == [0, 2, 4, 6]
    assert rows_without_timings(split) == rows_without_timings(tmp_path / "straight")


def test_a_second_stage_continues_the_first_stages_history(tmp_path, corpus):
    first, second = tmp_path / "first", tmp_path / "second"
    base = [*TINY, "--data", str(corpus), "--eval-interval", "2", "--batch", "2"]
    main([*base, "--max-steps", "4", "--out", str(first)])
    stage = [*base, "--max-steps", "4", "--init-from", str(first), "--out", str(second), "--batch", "3"]
    main([*stage, "--stop-at-step", "2"])
    main([*stage, "--resume"])  # a resumed second stage keeps counting from the first stage's end
    rows = read_history(second)
    assert rows[:3] == read_history(first)
    assert [row["step"] for row in rows] == [0, 2, 4, 6, 8]
    assert [row["tokens"] for row in rows] == [0, 256, 512, 512 + 2 * 192, 512 + 4 * 192]


def test_snapshots_load_as_checkpoints_and_the_app_serves_them(tmp_path, corpus):
    pytest.importorskip("gradio")
    from gpt2.explorer.models import ModelStore

    out = tmp_path / "run"
    args = [*TINY, "--data", str(corpus), "--max-steps", "4", "--eval-interval", "4", "--snapshot-every", "2"]
    main([*args, "--out", str(out)])
    assert list(snapshot_steps(out)) == [0, 2, 4]
    store = ModelStore()
    name = store.add_local(out)
    assert store.snapshot_steps(name) == [0, 2, 4]
    final = GPT2.from_pretrained(out).state_dict()
    for step, directory in snapshot_steps(out).items():
        kept = GPT2.from_pretrained(directory).state_dict()
        served = store.snapshot(name, step).state_dict()
        assert all(torch.equal(kept[key], served[key]) for key in kept)  # the slider's model is the snapshot
        if step == 4:  # float16 copies of the weights of that step
            assert all(torch.equal(kept[key], final[key].half().float()) for key in kept)
    assert not torch.equal(store.snapshot(name, 0).wte.weight, store.snapshot(name, 4).wte.weight)


def synthetic_rows() -> list[dict]:
    """A two-stage history of a 2 × 2 model in which L1 H0 becomes an induction head at step 30 and
    L0 H1 a previous-token head at step 40."""
    rows = []
    for n, step in enumerate(range(0, 60, 10)):
        induction = [[0.02, 0.02], [0.9 if step >= 30 else 0.05, 0.1]]
        previous = [[0.1, 0.8 if step >= 40 else 0.2], [0.1, 0.1]]
        rows.append(
            dict(step=step, tokens=step * 100, train_loss=None if step == 0 else 5.0 - n * 0.1, val_loss=6.0 - n * 0.1)
            | dict(icl_score=-0.5 if step >= 30 else 0.0, previous_token=previous, induction=induction)
            | dict(duplicate_token=[[0.0, 0.0], [0.0, 0.0]], stage="copy" if step <= 20 else "main")
        )
    return rows


def test_the_training_view_finds_when_each_head_forms():
    pytest.importorskip("gradio")
    from gpt2.explorer import figures, training_views

    rows = synthetic_rows()
    assert training_views.crossings(rows, "induction") == [training_views.Crossing(1, 0, 30, pytest.approx(0.9))]
    assert [c.name for c in training_views.crossings(rows, "previous_token")] == ["L0 H1"]
    assert training_views.stage_starts(rows) == [(0, "copy"), (20, "main")]
    summary = training_views.summary(rows, "run")
    assert (
        "**induction** forms at step 30 (L1 H0)" in summary and "**previous-token** forms at step 40 (L0 H1)" in summary
    )
    assert "+0.00 at step 0" in summary and "-0.50 at the end" in summary
    view = training_views.head_lines_view(rows, "induction", marked_step=20)
    figure = figures.draw(view.chart)
    lines = [trace for trace in figure.data if trace.mode == "lines"]
    assert len(lines) == 4 and [trace.showlegend for trace in lines] == [True, False, True, False]  # by layer
    assert "L1 H0" in lines[2].hovertemplate and lines[2].line.color == lines[3].line.color != lines[0].line.color
    (marks,) = [trace for trace in figure.data if trace.mode == "markers"]
    assert list(marks.x) == [30] and list(marks.text) == ["L1 H0"]
    assert list(figures.draw(training_views.loss_view(rows).chart).data[0].y)[0] is None  # no train loss at step 0


def test_a_model_without_history_says_so_in_one_line(tmp_path, corpus):
    pytest.importorskip("gradio")
    from gpt2.explorer.inputs import UserInputError
    from gpt2.explorer.models import ModelStore

    out = tmp_path / "plain"
    main([*TINY, "--data", str(corpus), "--max-steps", "1", "--batch", "1", "--out", str(out)])
    (out / "history.jsonl").unlink()  # a checkpoint from before histories
    store = ModelStore()
    name = store.add_local(out)
    with pytest.raises(UserInputError, match=r"^plain has no training history \(history\.jsonl\)$"):
        store.history(name)
    with pytest.raises(UserInputError, match=r"^gpt2 has no training history: it comes from the Hugging Face Hub$"):
        store.history("gpt2")
    assert store.snapshot_steps("gpt2") == [] and store.snapshot_steps(name) == []


@pytest.mark.slow
def test_an_induction_head_forms_and_the_history_shows_it(tmp_path):
    """The induction recipe on a corpus of 700 random words: some head's recorded induction score
    rises from chance to above 0.5 (about 2.5 minutes on one core)."""
    tokenizer = get_tokenizer()
    words = [tokenizer.decode([i]) for i in range(1000, 1700)]
    draws = torch.randint(len(words), (60000,), generator=torch.Generator().manual_seed(0)).tolist()
    corpus = tmp_path / "words.txt"
    corpus.write_text("".join(words[i] for i in draws), encoding="utf-8")
    out = tmp_path / "induction"
    flags = ["--data", str(corpus), "--out", str(out), "--max-steps", "175", "--snapshot-every", "0"]
    main(["--recipe", "induction", "--stage", "copy", *flags, "--dtype", "float32"])
    rows = read_history(out)
    induction = torch.tensor([row["induction"] for row in rows])  # (evaluations, L, H)
    layer, head = divmod(int(induction[-1].argmax()), induction.size(-1))
    curve = induction[:, layer, head]
    assert [row["step"] for row in rows] == list(range(0, 176, 25))
    assert curve[0] < 0.2 and curve[-1] > 0.5, curve  # it formed within the run
    assert rows[-1]["train_loss"] < rows[1]["train_loss"] - 2  # copying: the loss falls with it
