"""The synthetic seq2seq tasks, the character corpus, and the ``train transformer`` / ``train
lm`` commands on tiny runs (metrics.json, checkpoints, resume, bad inputs)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import deepcalc as dc
from deepcalc import cli
from deepcalc.data import seq2seq


@pytest.mark.parametrize("task", ["copy", "reverse", "sort"])
def test_digit_tasks_are_seeded_and_correct(task):
    train, test = seq2seq.task_splits(task, 200, 50, min_len=3, max_len=6, vocab_size=5, seed=1)
    again, _ = seq2seq.task_splits(task, 200, 50, min_len=3, max_len=6, vocab_size=5, seed=1)
    other, _ = seq2seq.task_splits(task, 200, 50, min_len=3, max_len=6, vocab_size=5, seed=2)
    np.testing.assert_array_equal(train.src, again.src)
    assert not np.array_equal(train.src, other.src)
    v = train.vocab
    assert len(v) == 3 + 5 and v.itos[:3] == ["<pad>", "<start>", "<end>"]
    rule = {"copy": list, "reverse": lambda s: s[::-1], "sort": lambda s: sorted(s, key=int)}[task]
    for data in (train, test):
        for s, t in zip(data.src, data.tgt):
            src = v.decode(s)
            assert 3 <= len(src) <= 6
            assert v.decode(t) == rule(src)
            assert t[len(src)] == seq2seq.END                # the target ends with <end>
            assert (t[len(src) + 1:] == seq2seq.PAD).all()
    train_rows = {tuple(r) for r in train.src}
    assert not any(tuple(r) in train_rows for r in test.src)  # held-out sources
    tin = train.decoder_input()
    assert (tin[:, 0] == seq2seq.START).all()
    np.testing.assert_array_equal(tin[:, 1:], train.tgt[:, :-1])


def test_phrase_task_holds_out_pairs():
    train, test = seq2seq.task_splits("phrase", 300, 10, seed=3)
    assert len(test) == 10 and len(train) == 300
    pairs = lambda d: {(tuple(d.src[i]), tuple(d.tgt[i])) for i in range(len(d))}
    assert not pairs(train) & pairs(test)
    s = " ".join(train.vocab.decode(train.src[0]))
    t = " ".join(train.vocab.decode(train.tgt[0]))
    assert s and t and s != t
    assert seq2seq.make_task("phrase", 5, seed=0).src.shape[0] == 5


def test_task_bad_inputs():
    with pytest.raises(ValueError, match="unknown task 'rotate'"):
        seq2seq.task_splits("rotate", 10, 10)
    with pytest.raises(ValueError, match="min_len 5 > max_len 3"):
        seq2seq.make_task("copy", 10, min_len=5, max_len=3)
    with pytest.raises(ValueError, match="n_test must be in 1..69"):
        seq2seq.task_splits("phrase", 10, 100)
    with pytest.raises(KeyError, match="'x' is not in the vocabulary"):
        seq2seq.Vocab(["a"]).encode(["x"])


def test_char_corpus():
    c = dc.data.load_pydoc_topics(val_fraction=0.1)
    assert c.vocab_size > 50 and len(c.val) == pytest.approx(0.1 * (len(c.train) + len(c.val)), rel=0.01)
    x, y = c.batch("train", 4, 16, np.random.default_rng(0))
    x2, _ = c.batch("train", 4, 16, np.random.default_rng(0))
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])         # y is x shifted by one
    assert c.decode(c.encode("def f():")) == "def f():"
    vx, vy = c.windows("val", 32, limit=3)
    assert vx.shape == (3, 32)
    np.testing.assert_array_equal(vx.reshape(-1)[1:], vy.reshape(-1)[:-1])
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        c.batch("test", 2, 8)


def test_cli_train_transformer_tiny(tmp_path, capsys):
    out = tmp_path / "rev"
    args = ["train", "transformer", "--task", "reverse", "--min-len", "3", "--max-len", "5",
            "--vocab", "4", "--train-size", "200", "--test-size", "20", "--d-model", "16",
            "--nhead", "2", "--layers", "1", "--ffn", "32", "--steps", "6", "--eval-every", "3",
            "--batch-size", "8", "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 6 and 0.0 <= metrics["test_exact_match"] <= 1.0
    assert [h["step"] for h in metrics["history"]] == [3, 6]
    state = dc.load(out / "last.safetensors")
    assert state["step"] == 6 and "transformer.encoder.layers.0.self_attn.in_proj_weight" in state["model"]
    text = capsys.readouterr().out
    assert "held-out exact match" in text and "->" in text
    pytest.importorskip("matplotlib")
    assert (out / "attention.png").stat().st_size > 0
    # resume continues from the checkpoint's step
    args[args.index("--steps") + 1] = "9"
    assert cli.main(args + ["--resume", "--schedule", "cosine"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 9


def test_cli_train_lm_tiny(tmp_path, capsys):
    out = tmp_path / "lm"
    assert cli.main(["train", "lm", "--d-model", "16", "--nhead", "2", "--layers", "1",
                     "--ffn", "32", "--seq-len", "16", "--batch-size", "4", "--steps", "4",
                     "--eval-every", "2", "--val-windows", "4", "--sample-len", "20",
                     "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and 0 < metrics["val_bpc"] < 10 and len(metrics["sample"]) == 24
    assert "bits per character" in capsys.readouterr().out


def test_cli_time_limit_stops_early(tmp_path):
    out = tmp_path / "t"
    assert cli.main(["train", "transformer", "--task", "copy", "--min-len", "2", "--max-len", "3",
                     "--train-size", "50", "--test-size", "5", "--d-model", "8", "--nhead", "2",
                     "--layers", "1", "--ffn", "8", "--steps", "100000", "--time-limit", "0.5",
                     "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 < metrics["steps"] < 100000


def test_cli_bad_inputs(tmp_path):
    with pytest.raises(SystemExit, match="--eval-every must be >= 1, got 0"):
        cli.main(["train", "transformer", "--eval-every", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="0 <= --dropout < 1"):
        cli.main(["train", "lm", "--dropout", "1.5", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match=r"embed_dim \(64\) must be divisible by num_heads \(3\)"):
        cli.main(["train", "transformer", "--nhead", "3", "--train-size", "10", "--test-size", "2",
                  "--out", str(tmp_path), "--no-progress"])
