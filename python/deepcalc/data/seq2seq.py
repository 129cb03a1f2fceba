"""Synthetic sequence-to-sequence tasks, generated from a seed (nothing downloaded):

* ``copy``, ``reverse``, ``sort``: random digit sequences (lengths min_len..max_len over
  ``vocab_size`` symbols) mapped to themselves, their reverse or their sorted order;
* ``phrase``: a small phrase translation made from templates, a sarcastic phrase -> its literal
  meaning ("oh great , another meeting" -> "i am unhappy about another meeting").

Every target ends with ``<end>``; rows are right-padded with ``<pad>`` (index 0).  The decoder
input is the target shifted right behind ``<start>`` (teacher forcing)."""
from __future__ import annotations

import numpy as np

from .dataset import TensorDataset

__all__ = ["Vocab", "Seq2SeqData", "TASKS", "make_task", "task_splits", "PAD", "START", "END"]

SPECIALS = ("<pad>", "<start>", "<end>")
PAD, START, END = 0, 1, 2
TASKS = ("copy", "reverse", "sort", "phrase")


class Vocab:
    """Token strings <-> indices; the three specials come first (<pad> 0, <start> 1, <end> 2)."""

    def __init__(self, tokens):
        self.itos = list(SPECIALS) + [t for t in tokens if t not in SPECIALS]
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    def __len__(self):
        return len(self.itos)

    def encode(self, tokens) -> list[int]:
        try:
            return [self.stoi[t] for t in tokens]
        except KeyError as e:
            raise KeyError(f"Vocab.encode: token {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> list[str]:
        """Tokens up to (not including) the first <end>, without <pad> and <start>."""
        out = []
        for i in ids:
            i = int(i)
            if i == END:
                break
            if i not in (PAD, START):
                out.append(self.itos[i])
        return out


class Seq2SeqData:
    """``src`` (N, S) and ``tgt`` (N, T) int64 token arrays (tgt ends in <end>), padded."""

    def __init__(self, name: str, vocab: Vocab, pairs):
        self.name, self.vocab = name, vocab
        if not pairs:
            raise ValueError(f"Seq2SeqData: task {name!r} needs at least one (source, target) "
                             "pair, got none")
        s = max(len(a) for a, _ in pairs)
        t = max(len(b) for _, b in pairs) + 1
        self.src = np.full((len(pairs), s), PAD, np.int64)
        self.tgt = np.full((len(pairs), t), PAD, np.int64)
        for i, (a, b) in enumerate(pairs):
            self.src[i, :len(a)] = vocab.encode(a)
            self.tgt[i, :len(b) + 1] = vocab.encode(list(b) + ["<end>"])

    def __len__(self):
        return len(self.src)

    def decoder_input(self) -> np.ndarray:
        """<start> followed by the target without its last column (teacher forcing)."""
        return np.concatenate([np.full((len(self), 1), START, np.int64), self.tgt[:, :-1]], 1)

    def dataset(self) -> TensorDataset:
        """(src, decoder input, target) rows for a DataLoader."""
        return TensorDataset(self.src, self.decoder_input(), self.tgt)


def _digits(n, min_len, max_len, vocab_size, rng):
    lens = rng.integers(min_len, max_len + 1, n)
    return [tuple(str(d) for d in rng.integers(0, vocab_size, k)) for k in lens]


_RULES = {"copy": lambda s: list(s), "reverse": lambda s: list(s[::-1]),
          "sort": lambda s: sorted(s, key=int)}

# (sarcastic template, literal template); {x} is filled from the slot's list
_PHRASES = [
    ("oh great , another {thing}", "i am unhappy about another {thing}"),
    ("thanks a lot for the {thing}", "the {thing} did not help me"),
    ("nice job breaking the {thing}", "you broke the {thing}"),
    ("i just love {activity}", "i really dislike {activity}"),
    ("sure , {activity} sounds like fun", "{activity} sounds boring"),
    ("i can hardly wait for {event}", "i am not looking forward to {event}"),
    ("wow , {event} again , what a treat", "{event} again is tiring"),
    ("yeah , the {thing} works perfectly", "the {thing} is broken"),
]
_SLOTS = {
    "thing": ["meeting", "deadline", "email", "update", "printer", "bug report", "form",
              "password reset", "reminder", "survey"],
    "activity": ["waiting in line", "doing taxes", "fixing bugs", "cleaning the kitchen",
                 "filling forms", "sitting in traffic", "long meetings", "early alarms"],
    "event": ["monday", "the dentist", "the exam", "the long flight", "the review",
              "tax day", "the audit"],
}


def _phrase_pairs():
    pairs = []
    for sarcastic, literal in _PHRASES:
        slot = sarcastic[sarcastic.index("{") + 1:sarcastic.index("}")]
        for filler in _SLOTS[slot]:
            pairs.append((tuple(sarcastic.replace("{" + slot + "}", filler).split()),
                          tuple(literal.replace("{" + slot + "}", filler).split())))
    return pairs


def _check(name, n, min_len, max_len, vocab_size):
    if name not in TASKS:
        raise ValueError(f"seq2seq task: unknown task {name!r}; expected one of {TASKS}")
    for what, v in (("n", n), ("min_len", min_len), ("max_len", max_len),
                    ("vocab_size", vocab_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"seq2seq task {name}: {what} must be an int >= 1, got {v!r}")
    if min_len > max_len:
        raise ValueError(f"seq2seq task {name}: min_len {min_len} > max_len {max_len}")


def task_splits(name: str, n_train: int, n_test: int, min_len: int = 10, max_len: int = 20,
                vocab_size: int = 10, seed: int = 0):
    """(train, test) Seq2SeqData of one task sharing one vocabulary; no test source appears in
    the training set.  ``phrase`` has a fixed set of pairs (8 templates x their fillers): the
    test set holds out ``n_test`` of them (chosen by the seed) and the training set repeats
    the others to ``n_train`` rows."""
    _check(name, n_train, min_len, max_len, vocab_size)
    rng = np.random.default_rng(seed)
    if name == "phrase":
        pairs = _phrase_pairs()
        words = sorted({w for a, b in pairs for w in a + b})
        vocab = Vocab(words)
        if not 1 <= n_test < len(pairs):
            raise ValueError(f"seq2seq task phrase: n_test must be in 1..{len(pairs) - 1} (there "
                             f"are {len(pairs)} phrase pairs), got {n_test}")
        order = rng.permutation(len(pairs))
        test = [pairs[i] for i in order[:n_test]]
        rest = [pairs[i] for i in order[n_test:]]
        train = [rest[i] for i in rng.integers(0, len(rest), n_train)]
        return Seq2SeqData(name, vocab, train), Seq2SeqData(name, vocab, test)
    vocab = Vocab([str(d) for d in range(vocab_size)])
    rule = _RULES[name]
    train_src = _digits(n_train, min_len, max_len, vocab_size, rng)
    seen = set(train_src)
    test_src = []
    while len(test_src) < n_test:   # draw until n_test sources unseen in training
        for s in _digits(n_test, min_len, max_len, vocab_size, rng):
            if s not in seen and len(test_src) < n_test:
                test_src.append(s)
                seen.add(s)
    train = Seq2SeqData(name, vocab, [(s, rule(s)) for s in train_src])
    return train, Seq2SeqData(name, vocab, [(s, rule(s)) for s in test_src])


def make_task(name: str, n: int, min_len: int = 10, max_len: int = 20, vocab_size: int = 10,
              seed: int = 0) -> Seq2SeqData:
    """n rows of one task (``phrase``: n rows drawn from all its pairs)."""
    _check(name, n, min_len, max_len, vocab_size)
    rng = np.random.default_rng(seed)
    if name == "phrase":
        pairs = _phrase_pairs()
        vocab = Vocab(sorted({w for a, b in pairs for w in a + b}))
        return Seq2SeqData(name, vocab, [pairs[i] for i in rng.integers(0, len(pairs), n)])
    src = _digits(n, min_len, max_len, vocab_size, rng)
    return Seq2SeqData(name, Vocab([str(d) for d in range(vocab_size)]),
                       [(s, _RULES[name](s)) for s in src])
