"""Transformer layers against torch.nn with copied weights (MultiheadAttention, the encoder and
decoder layers, Transformer; post- and pre-norm; causal, padding and float masks), gradcheck
and gradgradcheck through MultiHeadAttention, the embedding gradient against np.add.at,
positional-encoding values, and decoding with and without the KV cache."""
from __future__ import annotations

import numpy as np
import pytest

import deepcalc as dc
from deepcalc.nn import functional as F
from deepcalc.nn.decoding import generate, greedy_decode
from deepcalc.nn.embedding import sinusoidal_table
from deepcalc.testing import gradcheck, gradgradcheck


def _copy_from_torch(dm, tm):
    state = {k: dc.tensor(v.detach().numpy().astype(np.float64)) for k, v in tm.state_dict().items()}
    assert sorted(state) == sorted(dm.state_dict())
    dm.load_state_dict(state)


def _close(a, b, tol=1e-10):
    np.testing.assert_allclose(np.asarray(a), b.detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention_matches_torch(batch_first):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.MultiheadAttention(8, 2, batch_first=batch_first).double()
    dm = dc.nn.MultiHeadAttention(8, 2, batch_first=batch_first, dtype=np.float64)
    _copy_from_torch(dm, tm)
    rng = np.random.default_rng(0)
    shape_q, shape_k = ((2, 3, 8), (2, 5, 8)) if batch_first else ((3, 2, 8), (5, 2, 8))
    q, k, v = rng.standard_normal(shape_q), rng.standard_normal(shape_k), rng.standard_normal(shape_k)
    kpm = np.zeros((2, 5), bool)
    kpm[1, 3:] = True
    am = rng.standard_normal((3, 5))           # float additive mask
    for kw_t, kw_d in [({}, {}),
                       ({"key_padding_mask": torch.tensor(kpm)}, {"key_padding_mask": kpm}),
                       ({"attn_mask": torch.tensor(am)}, {"attn_mask": am}),
                       ({"attn_mask": torch.tensor(am < 0), "average_attn_weights": False},
                        {"attn_mask": am < 0, "average_attn_weights": False})]:
        ot, wt = tm(torch.tensor(q), torch.tensor(k), torch.tensor(v), **kw_t)
        od, wd = dm(q, k, v, **kw_d)
        _close(od.data, ot)
        _close(wd.data, wt)
    od, wd = dm(q, k, v, need_weights=False)
    assert wd is None


def test_multihead_attention_kdim_vdim_and_self_attention_causal():
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    tm = torch.nn.MultiheadAttention(8, 4, kdim=6, vdim=5, batch_first=True).double()
    dm = dc.nn.MultiHeadAttention(8, 4, kdim=6, vdim=5, batch_first=True, dtype=np.float64)
    _copy_from_torch(dm, tm)
    rng = np.random.default_rng(1)
    q, k, v = rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 4, 6)), rng.standard_normal((2, 4, 5))
    ot, _ = tm(torch.tensor(q), torch.tensor(k), torch.tensor(v))
    _close(dm(q, k, v)[0].data, ot)
    tm = torch.nn.MultiheadAttention(8, 2, batch_first=True).double()
    dm = dc.nn.MultiHeadAttention(8, 2, batch_first=True, dtype=np.float64)
    _copy_from_torch(dm, tm)
    x = rng.standard_normal((2, 6, 8))
    mask = torch.nn.Transformer.generate_square_subsequent_mask(6).double()
    ot, wt = tm(*[torch.tensor(x)] * 3, attn_mask=mask)
    xd = dc.tensor(x)
    od, wd = dm(xd, xd, xd, attn_mask=mask.numpy())     # detected as causal
    _close(od.data, ot)
    _close(wd.data, wt)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_and_decoder_layers_match_torch(norm_first):
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    kw = dict(dim_feedforward=32, dropout=0.0, batch_first=True, norm_first=norm_first)
    rng = np.random.default_rng(2)
    src, tgt = rng.standard_normal((2, 5, 16)), rng.standard_normal((2, 4, 16))
    kpm = np.zeros((2, 5), bool)
    kpm[0, 4:] = True
    for act in ("relu", "gelu"):
        te = torch.nn.TransformerEncoderLayer(16, 4, activation=act, **kw).double().eval()
        de = dc.nn.TransformerEncoderLayer(16, 4, activation=act, dtype=np.float64, **kw)
        _copy_from_torch(de, te)
        _close(de(src, src_key_padding_mask=kpm).data,
               te(torch.tensor(src), src_key_padding_mask=torch.tensor(kpm)))
    td = torch.nn.TransformerDecoderLayer(16, 4, **kw).double().eval()
    dd = dc.nn.TransformerDecoderLayer(16, 4, dtype=np.float64, **kw)
    _copy_from_torch(dd, td)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(4).double()
    _close(dd(tgt, src, tgt_mask=mask.numpy(), memory_key_padding_mask=kpm).data,
           td(torch.tensor(tgt), torch.tensor(src), tgt_mask=mask,
              memory_key_padding_mask=torch.tensor(kpm)))


@pytest.mark.parametrize("norm_first,batch_first", [(False, False), (True, True)])
def test_transformer_matches_torch(norm_first, batch_first):
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    tm = torch.nn.Transformer(16, 4, 2, 2, 32, dropout=0.0, batch_first=batch_first,
                              norm_first=norm_first).double().eval()
    dm = dc.nn.Transformer(16, 4, 2, 2, 32, dropout=0.0, batch_first=batch_first,
                           norm_first=norm_first, dtype=np.float64)
    _copy_from_torch(dm, tm)
    rng = np.random.default_rng(3)
    b, s, t = 3, 5, 4
    src = rng.standard_normal((b, s, 16) if batch_first else (s, b, 16))
    tgt = rng.standard_normal((b, t, 16) if batch_first else (t, b, 16))
    kpm = np.zeros((b, s), bool)
    kpm[2, 3:] = True
    mask = dc.nn.Transformer.generate_square_subsequent_mask(t, np.float64)
    out = dm(src, tgt, tgt_mask=mask, src_key_padding_mask=kpm, memory_key_padding_mask=kpm)
    ref = tm(torch.tensor(src), torch.tensor(tgt), tgt_mask=torch.tensor(mask.data),
             src_key_padding_mask=torch.tensor(kpm), memory_key_padding_mask=torch.tensor(kpm))
    _close(out.data, ref)
    # gradients of every parameter agree too
    (out * out).sum().backward()
    (ref * ref).sum().backward()
    tgrads = {k: p.grad.numpy() for k, p in tm.named_parameters()}
    for k, p in dm.named_parameters():
        np.testing.assert_allclose(p.grad, tgrads[k], rtol=1e-8, atol=1e-10, err_msg=k)


def test_square_subsequent_mask():
    m = dc.nn.Transformer.generate_square_subsequent_mask(3).data
    assert m.dtype == np.float32
    np.testing.assert_array_equal(m, [[0, -np.inf, -np.inf], [0, 0, -np.inf], [0, 0, 0]])


def test_mha_gradcheck_and_gradgradcheck():
    dc.manual_seed(4)
    mha = dc.nn.MultiHeadAttention(4, 2, batch_first=True, dtype=np.float64)
    rng = np.random.default_rng(4)
    q = dc.tensor(rng.standard_normal((1, 3, 4)), requires_grad=True)
    kv = dc.tensor(rng.standard_normal((1, 2, 4)), requires_grad=True)
    kpm = np.array([[False, True]])
    w = mha.in_proj_weight

    def f(q, kv, w):
        out, _ = dc.func.functional_call(mha, {"in_proj_weight": w}, q, kv, kv,
                                         need_weights=False)
        return out
    assert gradcheck(f, (q, kv, w))
    assert gradgradcheck(f, (q, kv, w))
    # self-attention with a causal mask and a padding mask on the keys
    x = dc.tensor(rng.standard_normal((1, 3, 4)), requires_grad=True)
    g = lambda x: mha(x, x, x, need_weights=False, is_causal=True)[0]
    h = lambda x: mha(x, kv.detach(), kv.detach(), key_padding_mask=kpm, need_weights=False)[0]
    assert gradcheck(g, (x,)) and gradgradcheck(g, (x,))
    assert gradcheck(h, (x,)) and gradgradcheck(h, (x,))


def test_embedding_gradient_is_scatter_add():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    idx = np.array([[3, 1, 3, 3], [0, 1, 7, 3]])
    for pad in (None, 1):
        emb = dc.nn.Embedding(8, 5, padding_idx=pad, dtype=np.float64)
        g = rng.standard_normal((2, 4, 5))
        out = emb(idx)
        np.testing.assert_array_equal(out.data, emb.weight.data[idx])
        (out * dc.tensor(g)).sum().backward()
        ref = np.zeros((8, 5))
        np.add.at(ref, idx, g)
        if pad is not None:
            ref[pad] = 0
            assert not emb.weight.data[pad].any()
        np.testing.assert_allclose(emb.weight.grad, ref, rtol=1e-12, atol=1e-12)
        te = torch.nn.Embedding(8, 5, padding_idx=pad).double()
        te.weight.data = torch.tensor(emb.weight.data.copy())
        (te(torch.tensor(idx)) * torch.tensor(g)).sum().backward()
        np.testing.assert_allclose(emb.weight.grad, te.weight.grad.numpy(), atol=1e-12)
    w = dc.tensor(rng.standard_normal((8, 5)), requires_grad=True)
    assert gradgradcheck(lambda w: dc.ops.embedding(idx, w) ** 2, (w,))


def test_embedding_bad_inputs():
    emb = dc.nn.Embedding(4, 3)
    with pytest.raises(IndexError, match="index 4 is out of range for a table of 4 rows"):
        emb(np.array([0, 4]))
    with pytest.raises(TypeError, match="indices must be integers, got float64"):
        emb(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="padding_idx must be an int within"):
        dc.nn.Embedding(4, 3, padding_idx=4)
    with pytest.raises(ValueError, match="max_norm"):
        dc.nn.Embedding(4, 3, max_norm=1.0)


def test_positional_encoding_values():
    pe = sinusoidal_table(50, 6, np.float64)
    pos, i = 7, 1
    assert pe[pos, 2 * i] == pytest.approx(np.sin(pos / 10000 ** (2 * i / 6)), abs=1e-15)
    assert pe[pos, 2 * i + 1] == pytest.approx(np.cos(pos / 10000 ** (2 * i / 6)), abs=1e-15)
    layer = dc.nn.PositionalEncoding(6, dropout=0.0, max_len=50, dtype=np.float64)
    x = np.ones((2, 4, 6))
    np.testing.assert_array_equal(layer(x).data, np.broadcast_to(1 + pe[:4], x.shape))
    np.testing.assert_array_equal(layer(x, offset=3).data, np.broadcast_to(1 + pe[3:7], x.shape))
    layer_t = dc.nn.PositionalEncoding(6, dropout=0.0, batch_first=False, dtype=np.float64)
    np.testing.assert_array_equal(layer_t(np.ones((4, 2, 6))).data,
                                  np.broadcast_to(1 + pe[:4, None], (4, 2, 6)))
    with pytest.raises(ValueError, match="exceed max_len 50"):
        layer(np.ones((1, 51, 6)))


def test_greedy_decoding_with_and_without_cache_identical():
    dc.manual_seed(6)
    m = dc.nn.Seq2SeqTransformer(13, 13, 32, 4, 2, 2, 64, dropout=0.1)
    src = np.random.default_rng(6).integers(3, 13, (4, 7))
    src[0, -2:] = 0                                        # padded source row
    a = greedy_decode(m, src, 12, 1, 2, use_cache=True)
    b = greedy_decode(m, src, 12, 1, 2, use_cache=False)
    np.testing.assert_array_equal(a, b)
    assert m.training                                      # the mode is restored


def test_lm_generation_cache_identical_and_seeded():
    dc.manual_seed(7)
    lm = dc.nn.TransformerLM(20, 32, 4, 2, 64, max_len=64)
    prompt = np.random.default_rng(7).integers(0, 20, (2, 5))
    a = generate(lm, prompt, 20, temperature=0, use_cache=True)
    b = generate(lm, prompt, 20, temperature=0, use_cache=False)
    np.testing.assert_array_equal(a, b)
    s1 = generate(lm, prompt, 20, top_k=5, generator=np.random.default_rng(1))
    s2 = generate(lm, prompt, 20, top_k=5, generator=np.random.default_rng(1), use_cache=False)
    s3 = generate(lm, prompt, 20, top_k=5, generator=np.random.default_rng(2))
    np.testing.assert_array_equal(s1, s2)
    assert s1.shape == (2, 25) and not np.array_equal(s1, s3)
    np.testing.assert_array_equal(s1[:, :5], prompt)
    # top_k=1 is greedy whatever the temperature
    np.testing.assert_array_equal(generate(lm, prompt, 20, temperature=2.0, top_k=1), a)
    with pytest.raises(ValueError, match="exceed the model's max_len 64"):
        generate(lm, prompt, 60)
    with pytest.raises(ValueError, match="temperature must be a number >= 0"):
        generate(lm, prompt, 2, temperature=-1.0)


def test_lm_incremental_logits_match_full_forward():
    dc.manual_seed(8)
    lm = dc.nn.TransformerLM(11, 16, 2, 2, 32, dropout=0.0, max_len=32)
    lm.eval()
    x = np.random.default_rng(8).integers(0, 11, (2, 9))
    with dc.no_grad():
        full = lm(x).data
        caches = lm.new_caches()
        parts = [lm(x[:, :4], caches).data] + [lm(x[:, t:t + 1], caches, offset=t).data
                                               for t in range(4, 9)]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), full, rtol=1e-5, atol=1e-5)


def test_training_reduces_loss_and_dropout_path_differentiates():
    dc.manual_seed(9)
    m = dc.nn.Seq2SeqTransformer(8, 8, 16, 2, 1, 1, 32, dropout=0.1)
    opt = dc.optim.Adam(m.parameters(), lr=3e-3)
    rng = np.random.default_rng(9)
    src = rng.integers(3, 8, (16, 6))
    tgt = src[:, ::-1].copy()
    tin = np.concatenate([np.ones((16, 1), np.int64), tgt[:, :-1]], 1)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(m(src, tin).reshape(-1, 8), tgt.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert all(p.grad is not None for p in m.parameters())


def test_layer_bad_inputs():
    with pytest.raises(ValueError, match=r"embed_dim \(10\) must be divisible by num_heads \(4\)"):
        dc.nn.MultiHeadAttention(10, 4)
    mha = dc.nn.MultiHeadAttention(8, 2, batch_first=True)
    x = np.zeros((2, 3, 8), np.float32)
    with pytest.raises(ValueError, match="key has 7 features"):
        mha(x, np.zeros((2, 3, 7), np.float32), x)
    with pytest.raises(ValueError, match=r"key_padding_mask has shape \(2, 4\), expected"):
        mha(x, x, x, key_padding_mask=np.zeros((2, 4), bool))
    with pytest.raises(ValueError, match=r"attn_mask has shape \(3, 4\), expected \(L, S\)"):
        mha(x, x, x, attn_mask=np.zeros((3, 4), bool))
    with pytest.raises(TypeError, match="attn_mask must be boolean"):
        mha(x, x, x, attn_mask=np.zeros((3, 3), np.int64))
    with pytest.raises(ValueError, match="activation must be 'relu' or 'gelu'"):
        dc.nn.TransformerEncoderLayer(8, 2, activation="tanh")
    t = dc.nn.Transformer(8, 2, 1, 1, 16, batch_first=True)
    with pytest.raises(ValueError, match="must be d_model = 8"):
        t(np.zeros((2, 3, 6), np.float32), np.zeros((2, 3, 6), np.float32))
    lm = dc.nn.TransformerLM(5, 8, 2, 1, 16)
    with pytest.raises(IndexError, match="token 5 is out of range for a vocabulary of 5"):
        lm(np.array([[0, 5]]))
