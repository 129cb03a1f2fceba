"""Decoding: greedy decoding of a Seq2SeqTransformer and sampling from a TransformerLM, each
feeding the produced token back in.

With ``use_cache=True`` every layer keeps the keys and values of the positions seen so far
(``KVCache``), so a step runs the model on the one new position; without it each step reruns
the model on the whole prefix.  Both give the same tokens (the cache holds exactly what the
prefix computation would recompute).  The model runs in eval mode under no_grad; its mode is
restored afterwards."""
from __future__ import annotations

import contextlib

import numpy as np

from ..autodiff.graph import no_grad
from ..creation import default_generator

__all__ = ["greedy_decode", "generate"]


@contextlib.contextmanager
def _inference(model):
    was = model.training
    model.eval()
    try:
        with no_grad():
            yield
    finally:
        model.train(was)


def _check_int(op, name, v, minimum):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{op}: {name} must be an int >= {minimum}, got {v!r}")
    return int(v)


def greedy_decode(model, src, max_len: int, start_idx: int, end_idx: int,
                  use_cache: bool = True) -> np.ndarray:
    """Tokens (B, <= max_len) of a Seq2SeqTransformer for source tokens (B, S): each step
    takes the most likely token, until every row has produced ``end_idx`` or max_len tokens.
    The end token is kept; positions after it hold ``model.pad_idx``."""
    max_len = _check_int("greedy_decode", "max_len", max_len, 1)
    src = np.asarray(getattr(src, "data", src))
    with _inference(model):
        memory, pad = model.encode(src)
        b = src.shape[0]
        out = np.full((b, max_len), model.pad_idx, np.int64)
        done = np.zeros(b, bool)
        caches = model.new_caches() if use_cache else None
        prefix = np.full((b, 1), start_idx, np.int64)
        for t in range(max_len):
            if use_cache:
                logits = model.decode(prefix[:, -1:], memory, pad, caches, offset=t)
            else:
                logits = model.decode(prefix, memory, pad)
            tok = np.argmax(logits.data[:, -1], axis=-1)
            tok = np.where(done, model.pad_idx, tok)
            out[:, t] = tok
            done |= tok == end_idx
            if done.all():
                return out[:, :t + 1]
            prefix = np.concatenate([prefix, tok[:, None]], axis=1)
    return out


def _pick(logits: np.ndarray, temperature, top_k, gen) -> np.ndarray:
    """One token per row from logits (B, V): argmax at temperature 0, else a sample from
    softmax(logits / temperature) restricted to the top_k largest."""
    if temperature == 0:
        return np.argmax(logits, axis=-1)
    z = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < z.shape[-1]:
        kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    u = gen.random((z.shape[0], 1))
    return np.minimum((np.cumsum(p, axis=-1) < u).sum(axis=-1), z.shape[-1] - 1)


def generate(model, prompt, max_new_tokens: int, temperature: float = 1.0, top_k=None,
             generator=None, use_cache: bool = True) -> np.ndarray:
    """prompt (B, T0) followed by ``max_new_tokens`` tokens of a TransformerLM: sampled from
    softmax(logits / temperature) (over the ``top_k`` most likely when given; temperature 0 is
    greedy), from ``generator`` (a seeded np.random.Generator; default: deepcalc's global one)."""
    op = "generate"
    n = _check_int(op, "max_new_tokens", max_new_tokens, 0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not temperature >= 0:
        raise ValueError(f"{op}: temperature must be a number >= 0, got {temperature!r}")
    if top_k is not None:
        top_k = _check_int(op, "top_k", top_k, 1)
    prompt = np.asarray(getattr(prompt, "data", prompt))
    if prompt.ndim != 2 or prompt.shape[1] == 0 or prompt.dtype.kind not in "iu":
        raise ValueError(f"{op}: prompt must be integer tokens (B, T0) with T0 >= 1, got "
                         f"{prompt.dtype} {prompt.shape}")
    if prompt.shape[1] + n > model.max_len:
        raise ValueError(f"{op}: {prompt.shape[1]} prompt + {n} new tokens exceed the model's "
                         f"max_len {model.max_len}")
    gen = generator if generator is not None else default_generator()
    seq = prompt.astype(np.int64)
    with _inference(model):
        caches = model.new_caches() if use_cache else None
        logits = model(seq, caches)
        for t in range(n):
            tok = _pick(logits.data[:, -1], temperature, top_k, gen)
            seq = np.concatenate([seq, tok[:, None]], axis=1)
            if t + 1 == n:
                break
            logits = (model(seq[:, -1:], caches, offset=seq.shape[1] - 1) if use_cache
                      else model(seq))
    return seq
