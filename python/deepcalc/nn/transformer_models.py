"""Two complete models on top of nn.Transformer's layers, batch-first, integer tokens in,
logits out (the softmax is in the loss or the decoder):

* ``Seq2SeqTransformer``: embeddings * sqrt(d_model) + sinusoidal positions, the encoder-decoder
  ``Transformer``, a linear output projection to the target vocabulary (Vaswani et al. 2017);
* ``TransformerLM``: a decoder-only language model, causal self-attention layers
  (``TransformerEncoderLayer`` with a causal mask), pre-norm by default with a final LayerNorm.

Both accept ``caches`` / ``offset`` for incremental decoding (``nn/decoding.py``)."""
from __future__ import annotations

import math

import numpy as np

from ..autodiff.graph import Tensor
from . import _checks
from .embedding import Embedding, PositionalEncoding
from .layers import Linear
from .module import Module
from .normalization import LayerNorm
from .transformer import KVCache, Transformer, TransformerEncoder, TransformerEncoderLayer

__all__ = ["Seq2SeqTransformer", "TransformerLM"]


def _tokens(op: str, x, vocab: int) -> np.ndarray:
    a = np.asarray(x.data if isinstance(x, Tensor) else x)
    if a.dtype.kind not in "iu" or a.ndim != 2:
        raise TypeError(f"{op}: expected integer tokens of shape (B, L), got {a.dtype} "
                        f"{a.shape}")
    if a.size and (a.min() < 0 or a.max() >= vocab):
        raise IndexError(f"{op}: token {int(a.max() if a.max() >= vocab else a.min())} is out "
                         f"of range for a vocabulary of {vocab}")
    return a


def _scaled_embedding(vocab, d, pad, dtype):
    """Embedding with N(0, 1/d) rows: times sqrt(d) in the forward (the paper's scaling) they
    have unit scale, the scale of the positional encoding."""
    e = Embedding(vocab, d, padding_idx=pad, dtype=dtype)
    e.weight.data *= dtype(1 / math.sqrt(d))
    return e


class Seq2SeqTransformer(Module):
    """src tokens (B, S), shifted target tokens (B, T) -> logits (B, T, tgt_vocab).
    Source positions holding ``pad_idx`` are masked out of every attention over the source."""

    def __init__(self, src_vocab: int, tgt_vocab: int, d_model: int = 128, nhead: int = 4,
                 num_encoder_layers: int = 2, num_decoder_layers: int = 2,
                 dim_feedforward: int = 512, dropout: float = 0.1, max_len: int = 512,
                 pad_idx: int = 0, norm_first: bool = False, activation="relu",
                 dtype=np.float32):
        super().__init__()
        dtype = _checks.float_dtype("Seq2SeqTransformer", dtype).type
        self.src_vocab = _checks.integer("Seq2SeqTransformer", "src_vocab", src_vocab)
        self.tgt_vocab = _checks.integer("Seq2SeqTransformer", "tgt_vocab", tgt_vocab)
        self.d_model, self.pad_idx = d_model, pad_idx
        self.transformer = Transformer(d_model, nhead, num_encoder_layers, num_decoder_layers,
                                       dim_feedforward, dropout, activation, batch_first=True,
                                       norm_first=norm_first, dtype=dtype)
        self.src_embed = _scaled_embedding(src_vocab, d_model, pad_idx, dtype)
        self.tgt_embed = _scaled_embedding(tgt_vocab, d_model, pad_idx, dtype)
        self.pos = PositionalEncoding(d_model, dropout, max_len, batch_first=True, dtype=dtype)
        self.generator = Linear(d_model, tgt_vocab, dtype=dtype)
        self._scale = math.sqrt(d_model)

    def encode(self, src):
        """(memory (B, S, E), source padding mask (B, S), True at pad positions)."""
        src = _tokens("Seq2SeqTransformer", src, self.src_vocab)
        pad = src == self.pad_idx
        x = self.pos(self.src_embed(src) * self._scale)
        return self.transformer.encoder(x, src_key_padding_mask=pad if pad.any() else None), pad

    def decode(self, tgt_in, memory, src_pad, caches=None, offset: int = 0):
        """Logits (B, T, tgt_vocab) for the decoder input tokens at positions offset.. ."""
        tgt_in = _tokens("Seq2SeqTransformer", tgt_in, self.tgt_vocab)
        y = self.pos(self.tgt_embed(tgt_in) * self._scale, offset)
        y = self.transformer.decoder(y, memory, tgt_is_causal=True,
                                     memory_key_padding_mask=src_pad if src_pad.any() else None,
                                     caches=caches)
        return self.generator(y)

    def forward(self, src, tgt_in):
        memory, pad = self.encode(src)
        return self.decode(tgt_in, memory, pad)

    def new_caches(self):
        return [{"self": KVCache()} for _ in self.transformer.decoder.layers]


class TransformerLM(Module):
    """Tokens (B, T) -> next-token logits (B, T, vocab); position t sees positions <= t."""

    def __init__(self, vocab_size: int, d_model: int = 128, nhead: int = 4, num_layers: int = 2,
                 dim_feedforward: int = 512, dropout: float = 0.1, max_len: int = 1024,
                 norm_first: bool = True, activation="gelu", dtype=np.float32):
        super().__init__()
        dtype = _checks.float_dtype("TransformerLM", dtype).type
        self.vocab_size = _checks.integer("TransformerLM", "vocab_size", vocab_size)
        self.max_len = max_len
        self.embed = _scaled_embedding(vocab_size, d_model, None, dtype)
        self.pos = PositionalEncoding(d_model, dropout, max_len, batch_first=True, dtype=dtype)
        layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation,
                                        batch_first=True, norm_first=norm_first, dtype=dtype)
        self.layers = TransformerEncoder(layer, num_layers,
                                         LayerNorm(d_model, dtype=dtype) if norm_first else None)
        self.head = Linear(d_model, vocab_size, dtype=dtype)
        self._scale = math.sqrt(d_model)

    def forward(self, idx, caches=None, offset: int = 0):
        idx = _tokens("TransformerLM", idx, self.vocab_size)
        x = self.pos(self.embed(idx) * self._scale, offset)
        return self.head(self.layers(x, is_causal=True, caches=caches))

    def new_caches(self):
        return [KVCache() for _ in self.layers.layers]
