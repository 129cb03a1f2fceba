"""The Transformer (Vaswani et al. 2017) in torch.nn's form: MultiHeadAttention, the encoder and
decoder layers (post-norm as in the paper, pre-norm with ``norm_first=True``), their stacks and
``Transformer``.  Constructors, forward signatures and parameter names are torch.nn's, so code and
state_dicts port by changing the import.

Inside, every layer works batch-first, x (B, L, E); ``batch_first=False`` (torch's default)
swaps the first two axes at the module's boundary.  Heads are a reshape: (B, L, E) ->
(B, H, L, D) with D = E / H, attention is ``F.scaled_dot_product_attention`` on all heads at
once.  Masks follow torch.nn: a boolean ``attn_mask`` / ``*_key_padding_mask`` is True where
attention is NOT allowed, a float one is added to the scores.  Masks are constants (no
gradient flows into them).

Layers take an extra keyword ``cache`` (a KVCache for an encoder layer used causally, as in a
decoder-only LM; a dict {"self": KVCache} for a decoder layer, which adds the encoder memory's
keys and values on first use; see ``nn/decoding.py``): with it the self-attention appends the
new positions' keys and values and attends to all of them, causally and without other masks,
so decoding one token costs O(L) instead of recomputing the whole prefix.
"""
from __future__ import annotations

import copy

import numpy as np

from .. import ops
from ..autodiff.graph import Tensor, wrap
from . import _checks, init
from . import functional as F
from .layers import Dropout, Linear
from .module import Module, ModuleList, Parameter
from .normalization import LayerNorm

__all__ = ["MultiHeadAttention", "MultiheadAttention", "TransformerEncoderLayer",
           "TransformerDecoderLayer", "TransformerEncoder", "TransformerDecoder", "Transformer",
           "KVCache"]


def _bf(x, batch_first: bool):
    """x as (B, L, E) (a view for batch_first=False inputs (L, B, E))."""
    return x if batch_first else ops.swapaxes(x, 0, 1)


def _array(op: str, name: str, m):
    if m is None:
        return None
    a = m.data if isinstance(m, Tensor) else np.asarray(m)
    if a.dtype.kind not in "bf":
        raise TypeError(f"{op}: {name} must be boolean (True = not allowed) or a float additive "
                        f"mask, got dtype {a.dtype}")
    return a


def _is_causal_pattern(m: np.ndarray) -> bool:
    """Whether an (L, L) torch-style mask is exactly the causal one (bool: True above the
    diagonal; float: -inf above it and 0 elsewhere), torch's _detect_is_causal_mask."""
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        return False
    above = np.triu(np.ones(m.shape, dtype=bool), 1)
    if m.dtype.kind == "b":
        return bool(np.array_equal(m, above))
    return bool(np.all(m[above] == -np.inf) and np.all(m[~above] == 0))


class KVCache:
    """Keys and values (B, H, T, D) of the positions seen so far, grown in place (capacity
    doubles, so appending one position is O(1) amortized, not a copy of the whole prefix)."""

    def __init__(self):
        self.k = self.v = None
        self.length = 0

    def append(self, k: np.ndarray, v: np.ndarray):
        n = k.shape[2]
        if self.k is None:
            cap = max(16, 2 * n)
            self.k = np.empty(k.shape[:2] + (cap, k.shape[3]), k.dtype)
            self.v = np.empty(v.shape[:2] + (cap, v.shape[3]), v.dtype)
        elif self.length + n > self.k.shape[2]:
            cap = 2 * (self.length + n)
            for name in ("k", "v"):
                old = getattr(self, name)
                new = np.empty(old.shape[:2] + (cap, old.shape[3]), old.dtype)
                new[:, :, :self.length] = old[:, :, :self.length]
                setattr(self, name, new)
        self.k[:, :, self.length:self.length + n] = k
        self.v[:, :, self.length:self.length + n] = v
        self.length += n
        return self.k[:, :, :self.length], self.v[:, :, :self.length]


class MultiHeadAttention(Module):
    """torch.nn.MultiheadAttention: softmax(Q K^T / sqrt(D) + mask) V per head, heads
    concatenated and projected by W^O (``out_proj``).  W^Q, W^K, W^V are one packed
    ``in_proj_weight`` (3E, E) (``q_proj_weight`` etc. when kdim / vdim differ from E).

    ``dropout`` drops attention weights in training mode (torch's meaning); that path forms the
    (L, S) table explicitly, the dropout-free path runs ``F.scaled_dot_product_attention``.
    ``record_weights = True`` keeps each call's weights (B, H, L, S) in ``last_weights`` (for
    pictures of attention inside a model whose layers ask for no weights)."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim=None, vdim=None,
                 batch_first: bool = False, dtype=np.float32):
        super().__init__()
        op = "MultiHeadAttention"
        embed_dim = _checks.integer(op, "embed_dim", embed_dim)
        num_heads = _checks.integer(op, "num_heads", num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"{op}: embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        if add_bias_kv or add_zero_attn:
            raise ValueError(f"{op}: add_bias_kv and add_zero_attn are not supported")
        dtype = _checks.float_dtype(op, dtype)
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else _checks.integer(op, "kdim", kdim)
        self.vdim = embed_dim if vdim is None else _checks.integer(op, "vdim", vdim)
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.dropout = _checks.probability(op, "dropout", dropout)
        self.batch_first = bool(batch_first)
        e = embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(init.xavier_uniform((3 * e, e), dtype))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.register_parameter("in_proj_weight", None)
            self.q_proj_weight = Parameter(init.xavier_uniform((e, e), dtype))
            self.k_proj_weight = Parameter(init.xavier_uniform((e, self.kdim), dtype))
            self.v_proj_weight = Parameter(init.xavier_uniform((e, self.vdim), dtype))
        if bias:
            self.in_proj_bias = Parameter(np.zeros(3 * e, dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(e, e, bias=bias, dtype=dtype)
        self.record_weights = False
        self.last_weights = None
        if bias:
            self.out_proj.bias.data[...] = 0

    def _proj(self, x, i: int):
        """x W_i^T + b_i for i = 0 (query), 1 (key), 2 (value), from row slices of the packed
        weight.  One GEMM on the packed (3E, E) weight and slicing its output was slower in the
        training step (each output slice's adjoint writes a zero-filled (B, L, 3E) array)."""
        e, p = self.embed_dim, self._parameters
        if self._qkv_same_embed_dim:
            w = p["in_proj_weight"][i * e:(i + 1) * e]
        else:
            w = p[("q_proj_weight", "k_proj_weight", "v_proj_weight")[i]]
        b = p["in_proj_bias"]
        return F.linear(x, w, None if b is None else b[i * e:(i + 1) * e])

    def _heads(self, x):
        """(B, L, E) -> (B, H, L, D)."""
        b, n, _ = x.shape
        return ops.swapaxes(x.reshape(b, n, self.num_heads, self.head_dim), 1, 2)

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True,
                attn_mask=None, average_attn_weights: bool = True, is_causal: bool = False):
        """Returns (output, weights): output like query; weights (B, L, S) averaged over heads
        (or (B, H, L, S)) when ``need_weights``, else None."""
        query, key, value = (ops.as_tensor(t, None, "MultiHeadAttention")
                             for t in (query, key, value))
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = (ops.expand_dims(t, 1 if not self.batch_first else 0)
                                 for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = _array("MultiHeadAttention", "key_padding_mask",
                                          key_padding_mask)[None]
        self._check_inputs(query, key, value)
        bf = self.batch_first
        q, k, v = _bf(query, bf), _bf(key, bf), _bf(value, bf)
        mask, causal = self.merge_masks(attn_mask, key_padding_mask, q.shape[0], q.shape[1],
                                        k.shape[1], q.dtype, is_causal)
        out, w = self._attend(q, k, v, mask, causal, need_weights, average_attn_weights)
        out = _bf(out, bf)
        if unbatched:
            out = ops.squeeze(out, 1 if not bf else 0)
            w = None if w is None else ops.squeeze(w, 0)
        return out, w

    def _check_inputs(self, q, k, v):
        op = "MultiHeadAttention"
        for name, t, d in (("query", q, self.embed_dim), ("key", k, self.kdim),
                           ("value", v, self.vdim)):
            if t.ndim != 3:
                raise ValueError(f"{op}: {name} must be 3-D ({'(B, L, E)' if self.batch_first else '(L, B, E)'}"
                                 f") or 2-D unbatched, got shape {t.shape}")
            if t.shape[-1] != d:
                raise ValueError(f"{op}: {name} has {t.shape[-1]} features (shape {t.shape}), "
                                 f"expected {d}")
        bax = 0 if self.batch_first else 1
        if not (q.shape[bax] == k.shape[bax] == v.shape[bax]):
            raise ValueError(f"{op}: query {q.shape}, key {k.shape} and value {v.shape} have "
                             "different batch sizes")
        if k.shape[1 - bax] != v.shape[1 - bax]:
            raise ValueError(f"{op}: key {k.shape} and value {v.shape} must have one length")

    def merge_masks(self, attn_mask, key_padding_mask, b: int, lq: int, lk: int, dtype,
                    is_causal: bool = False):
        """torch-style masks -> (mask for F.scaled_dot_product_attention or None, causal).
        The result's mask is boolean True = may attend, or a float additive mask, broadcast
        to (B, H, Lq, Lk).  A mask that is exactly the causal one becomes ``causal=True``."""
        op = "MultiHeadAttention"
        am = _array(op, "attn_mask", attn_mask)
        kpm = _array(op, "key_padding_mask", key_padding_mask)
        causal = False
        if am is not None:
            if am.ndim == 2:
                if am.shape != (lq, lk):
                    raise ValueError(f"{op}: attn_mask has shape {am.shape}, expected "
                                     f"(L, S) = {(lq, lk)}")
                if _is_causal_pattern(am):
                    am, causal = None, True
                else:
                    am = am[None, None]
            elif am.ndim == 3 and am.shape == (b * self.num_heads, lq, lk):
                am = am.reshape(b, self.num_heads, lq, lk)
            else:
                raise ValueError(f"{op}: attn_mask has shape {am.shape}, expected (L, S) = "
                                 f"{(lq, lk)} or (B * num_heads, L, S) = "
                                 f"{(b * self.num_heads, lq, lk)}")
        elif is_causal:
            causal = True
        if kpm is not None:
            if kpm.shape != (b, lk):
                raise ValueError(f"{op}: key_padding_mask has shape {kpm.shape}, expected "
                                 f"(B, S) = {(b, lk)}")
            kpm = kpm[:, None, None, :]
        masks = [m for m in (am, kpm) if m is not None]
        if not masks:
            return None, causal
        if all(m.dtype.kind == "b" for m in masks):
            allowed = ~masks[0]
            for m in masks[1:]:
                allowed = allowed & ~m
            return allowed, causal
        add = None
        for m in masks:
            m = np.where(m, -np.inf, 0).astype(dtype) if m.dtype.kind == "b" else m.astype(dtype)
            add = m if add is None else add + m
        return add, causal

    def _attend(self, q_in, k_in, v_in, mask, causal, need_weights=False, average=True,
                cache=None):
        """Attention on batch-first inputs (B, L, E).  With a ``cache`` (a KVCache), the new
        keys / values are appended and all cached ones attended to (``causal`` then orders the
        new positions after the cached ones); ``cache`` may also be a (k, v) pair of heads
        computed once (the cross-attention's encoder memory)."""
        q = self._heads(self._proj(q_in, 0))
        if isinstance(cache, tuple):
            k, v = cache
        else:
            k, v = self._heads(self._proj(k_in, 1)), self._heads(self._proj(v_in, 2))
            if cache is not None:
                past = cache.length
                kk, vv = cache.append(k.data, v.data)
                k, v = wrap(kk), wrap(vv)
                if causal and q.shape[2] > 1:   # new query i sees keys j <= past + i
                    n = q.shape[2]
                    allowed = np.arange(past + n)[None, :] <= past + np.arange(n)[:, None]
                    mask = allowed if mask is None else mask & allowed
                causal = False
        w = None
        want = need_weights or self.record_weights
        if self.dropout > 0 and self.training:
            o, w = self._attend_dropout(q, k, v, mask, causal)
        elif want:
            o, w = F.scaled_dot_product_attention(q, k, v, mask=mask, causal=causal,
                                                  return_weights=True)
        else:
            o = F.scaled_dot_product_attention(q, k, v, mask=mask, causal=causal)
        b, h, n, d = o.shape
        o = ops.swapaxes(o, 1, 2).reshape(b, n, h * d)
        out = self.out_proj(o)
        if self.record_weights:
            self.last_weights = w.data
        if w is not None and need_weights:
            w = ops.mean(w, axis=1) if average else w
        return out, (w if need_weights else None)

    def _attend_dropout(self, q, k, v, mask, causal):
        """softmax(q k^T / sqrt(D) + mask) with dropout on the weights, then @ v (training with
        dropout > 0: the weights must exist to be dropped)."""
        s = ops.matmul(q, ops.swapaxes(k, -1, -2)) * (1.0 / np.sqrt(self.head_dim))
        neg = wrap(np.asarray(-np.inf, q.dtype))
        if causal:
            s = ops.where(np.tril(np.ones((q.shape[2], k.shape[2]), bool)), s, neg)
        if mask is not None:
            s = ops.where(mask, s, neg) if mask.dtype.kind == "b" else s + wrap(mask)
        p = F.dropout(ops.softmax(s, axis=-1), self.dropout, True)
        return ops.matmul(p, v), p

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"dropout={self.dropout}, batch_first={self.batch_first}")


MultiheadAttention = MultiHeadAttention   # torch's spelling


def _activation(owner: str, activation):
    if callable(activation) and not isinstance(activation, str):
        name = {F.relu: "relu", F.gelu: "gelu"}.get(activation)
        if name is None:
            raise ValueError(f"{owner}: activation must be 'relu', 'gelu', F.relu or F.gelu, "
                             f"got {activation!r}")
        return name
    if activation not in ("relu", "gelu"):
        raise ValueError(f"{owner}: activation must be 'relu' or 'gelu', got {activation!r}")
    return activation


class _Layer(Module):
    """What the encoder and decoder layers share: the FFN, norms, dropouts and layout."""

    def _init_common(self, owner, d_model, nhead, dim_feedforward, dropout, activation,
                     layer_norm_eps, batch_first, norm_first, bias, dtype, norms):
        d_model = _checks.integer(owner, "d_model", d_model)
        dim_feedforward = _checks.integer(owner, "dim_feedforward", dim_feedforward)
        dropout = _checks.probability(owner, "dropout", dropout)
        self.activation = _activation(owner, activation)
        self.batch_first, self.norm_first = bool(batch_first), bool(norm_first)
        self.self_attn = MultiHeadAttention(d_model, nhead, dropout, bias, batch_first=True,
                                            dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        for i in range(1, norms + 1):
            setattr(self, f"norm{i}", LayerNorm(d_model, eps=layer_norm_eps, dtype=dtype))
            setattr(self, f"dropout{i}", Dropout(dropout))

    def _input(self, x, what: str):
        """x as a batch-first Tensor (B, L, d_model), or an error naming the layer."""
        owner = type(self).__name__
        x = ops.as_tensor(x, None, owner)
        d = self.linear1.in_features
        if x.ndim != 3 or x.shape[-1] != d:
            layout = "(B, L, E)" if self.batch_first else "(L, B, E)"
            raise ValueError(f"{owner}: {what} must be 3-D {layout} with E = d_model = {d}, got "
                             f"shape {x.shape}")
        return _bf(x, self.batch_first)

    def _ff(self, x):
        """The position-wise FFN linear2(dropout(act(linear1(x)))), act fused in the GEMM."""
        h = self.linear1.fuse_activation(x, self.activation)
        return self.linear2(self.dropout(h))

    def _sublayer(self, x, norm, block, drop):
        """Add & norm: x + dropout(block(norm(x))) pre-norm, norm(x + dropout(block(x))) post."""
        if self.norm_first:
            return x + drop(block(norm(x)))
        return norm(x + drop(block(x)))


class TransformerEncoderLayer(_Layer):
    """Self-attention then the position-wise FFN, each with a residual connection and
    LayerNorm (torch.nn.TransformerEncoderLayer)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation="relu", layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True,
                 dtype=np.float32):
        super().__init__()
        self._init_common("TransformerEncoderLayer", d_model, nhead, dim_feedforward, dropout,
                          activation, layer_norm_eps, batch_first, norm_first, bias, dtype, 2)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal: bool = False,
                cache=None):
        x = self._input(src, "src")
        x = self._forward(x, src_mask, src_key_padding_mask, is_causal, cache)
        return _bf(x, self.batch_first)

    def _forward(self, x, mask, kpm, is_causal, cache=None):
        sa = self.self_attn
        if cache is None:
            n = x.shape[1]
            m, causal = sa.merge_masks(mask, kpm, x.shape[0], n, n, x.dtype, is_causal)
        else:   # incremental decoding (a KVCache): new positions see the cached ones and themselves
            m, causal = None, True
        x = self._sublayer(x, self.norm1,
                           lambda y: sa._attend(y, y, y, m, causal, cache=cache)[0],
                           self.dropout1)
        return self._sublayer(x, self.norm2, self._ff, self.dropout2)



class TransformerDecoderLayer(_Layer):
    """Masked self-attention, then attention whose keys and values are the encoder output
    (``memory``), then the FFN; each with residual + LayerNorm (torch.nn.TransformerDecoderLayer)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation="relu", layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True,
                 dtype=np.float32):
        super().__init__()
        self._init_common("TransformerDecoderLayer", d_model, nhead, dim_feedforward, dropout,
                          activation, layer_norm_eps, batch_first, norm_first, bias, dtype, 3)
        self.multihead_attn = MultiHeadAttention(d_model, nhead, dropout, bias, batch_first=True,
                                                 dtype=dtype)

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal: bool = False,
                memory_is_causal: bool = False, cache=None):
        x, mem = self._input(tgt, "tgt"), self._input(memory, "memory")
        x = self._forward(x, mem, tgt_mask, memory_mask, tgt_key_padding_mask,
                          memory_key_padding_mask, tgt_is_causal, memory_is_causal, cache)
        return _bf(x, self.batch_first)

    def _forward(self, x, mem, tgt_mask, memory_mask, tgt_kpm, memory_kpm, tgt_is_causal,
                 memory_is_causal, cache=None):
        sa, ca = self.self_attn, self.multihead_attn
        b, n, s = x.shape[0], x.shape[1], mem.shape[1]
        if cache is None:
            m, causal = sa.merge_masks(tgt_mask, tgt_kpm, b, n, n, x.dtype, tgt_is_causal)
        else:   # incremental decoding: new positions see every cached one and themselves
            m, causal = None, True
        mm, mcausal = ca.merge_masks(memory_mask, memory_kpm, b, n, s, x.dtype, memory_is_causal)
        self_cache = cache["self"] if cache is not None else None
        x = self._sublayer(x, self.norm1,
                           lambda y: sa._attend(y, y, y, m, causal, cache=self_cache)[0],
                           self.dropout1)
        if cache is not None and "memory" not in cache:
            cache["memory"] = (ca._heads(ca._proj(mem, 1)), ca._heads(ca._proj(mem, 2)))
        mem_kv = cache["memory"] if cache is not None else None
        x = self._sublayer(x, self.norm2,
                           lambda y: ca._attend(y, mem, mem, mm, mcausal, cache=mem_kv)[0],
                           self.dropout2)
        return self._sublayer(x, self.norm3, self._ff, self.dropout3)



def _clones(layer, n: int, owner: str) -> ModuleList:
    if not isinstance(layer, Module):
        raise TypeError(f"{owner}: expected a layer Module, got {type(layer).__name__}")
    n = _checks.integer(owner, "num_layers", n, minimum=0)
    return ModuleList([copy.deepcopy(layer) for _ in range(n)])


class TransformerEncoder(Module):
    """N copies of an encoder layer (deep copies, as torch), then an optional final norm."""

    def __init__(self, encoder_layer, num_layers: int, norm=None, enable_nested_tensor=True,
                 mask_check=True):
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers, "TransformerEncoder")
        self.num_layers = num_layers
        self.norm = norm
        self.batch_first = getattr(encoder_layer, "batch_first", False)

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None, caches=None):
        x = self.layers[0]._input(src, "src") if len(self.layers) else \
            _bf(ops.as_tensor(src, None, "TransformerEncoder"), self.batch_first)
        for i, layer in enumerate(self.layers):
            x = layer._forward(x, mask, src_key_padding_mask, bool(is_causal),
                               None if caches is None else caches[i])
        if self.norm is not None:
            x = self.norm(x)
        return _bf(x, self.batch_first)


class TransformerDecoder(Module):
    """N copies of a decoder layer, then an optional final norm."""

    def __init__(self, decoder_layer, num_layers: int, norm=None):
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers, "TransformerDecoder")
        self.num_layers = num_layers
        self.norm = norm
        self.batch_first = getattr(decoder_layer, "batch_first", False)

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False,
                caches=None):
        if len(self.layers):
            x, mem = self.layers[0]._input(tgt, "tgt"), self.layers[0]._input(memory, "memory")
        else:
            x = _bf(ops.as_tensor(tgt, None, "TransformerDecoder"), self.batch_first)
            mem = _bf(ops.as_tensor(memory, None, "TransformerDecoder"), self.batch_first)
        for i, layer in enumerate(self.layers):
            x = layer._forward(x, mem, tgt_mask, memory_mask, tgt_key_padding_mask,
                               memory_key_padding_mask, bool(tgt_is_causal), memory_is_causal,
                               None if caches is None else caches[i])
        if self.norm is not None:
            x = self.norm(x)
        return _bf(x, self.batch_first)


class Transformer(Module):
    """torch.nn.Transformer: an encoder stack and a decoder stack, each ending in LayerNorm;
    parameters with more than one axis are Xavier-uniform initialized, as torch does."""

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation="relu", custom_encoder=None, custom_decoder=None,
                 layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, dtype=np.float32):
        super().__init__()
        kw = dict(dim_feedforward=dim_feedforward, dropout=dropout, activation=activation,
                  layer_norm_eps=layer_norm_eps, batch_first=batch_first, norm_first=norm_first,
                  bias=bias, dtype=dtype)
        self.encoder = custom_encoder or TransformerEncoder(
            TransformerEncoderLayer(d_model, nhead, **kw), num_encoder_layers,
            LayerNorm(d_model, eps=layer_norm_eps, dtype=dtype))
        self.decoder = custom_decoder or TransformerDecoder(
            TransformerDecoderLayer(d_model, nhead, **kw), num_decoder_layers,
            LayerNorm(d_model, eps=layer_norm_eps, dtype=dtype))
        self.d_model, self.nhead, self.batch_first = d_model, nhead, bool(batch_first)
        for p in self.parameters():
            if p.ndim > 1:
                p.data[...] = init.xavier_uniform(p.shape, p.dtype)

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None,
                src_key_padding_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, src_is_causal=None, tgt_is_causal=None,
                memory_is_causal: bool = False):
        src = ops.as_tensor(src, None, "Transformer")
        tgt = ops.as_tensor(tgt, None, "Transformer")
        bax = 0 if self.batch_first else 1
        if src.ndim != 3 or tgt.ndim != 3 or src.shape[bax] != tgt.shape[bax]:
            raise ValueError(f"Transformer: src {src.shape} and tgt {tgt.shape} must be 3-D with "
                             f"one batch size (batch_first={self.batch_first})")
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise ValueError(f"Transformer: the feature number of src {src.shape} and tgt "
                             f"{tgt.shape} must be d_model = {self.d_model}")
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                              is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask,
                            tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)

    @staticmethod
    def generate_square_subsequent_mask(sz: int, dtype=np.float32):
        """(sz, sz) float mask: -inf above the diagonal (future positions), 0 elsewhere."""
        sz = _checks.integer("generate_square_subsequent_mask", "sz", sz)
        return Tensor(np.triu(np.full((sz, sz), -np.inf, dtype), 1))
