"""The Transformer end to end, deepcalc vs torch eager on the CPU in the same run (float32, same
threads, weights copied from deepcalc into torch, libraries taking turns in every round with a
pause before each turn, bench/python/_timing.py):

1. training step (forward, cross-entropy, backward, Adam) of a 2+2-layer encoder-decoder,
   d = 128, 4 heads, FFN 512, L = 32, batch 64, dropout 0;
2. HVP of a loss through a one-layer encoder (d = 128, 4 heads, FFN 512, L = 1024, batch 4)
   with respect to the layer's parameters: deepcalc's dc.hvp (forward over reverse) vs torch's
   double backward under the math SDPA backend (its flash kernel has no double backward); and
   the peak memory of each, next to a first-order step's (each measured in a fresh process:
   peak RSS minus the RSS after setup);
3. greedy decoding of 256 tokens from a 4-layer character LM (d = 128, batch 8) with the
   KV cache vs recomputing the prefix each step (deepcalc alone);
4. with --lm SECONDS: the character LM (`deepcalc train lm` defaults) trained by deepcalc and
   by torch for SECONDS each, same initial weights, same batches; validation bits per char.

    PYTHONPATH=python python bench/python/compare_transformer.py [--threads 2] [--rounds 7]
        [--skip-hvp] [--lm 300]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from _timing import alternate, ratio

import deepcalc as dc
from deepcalc.nn import functional as F
from deepcalc.nn.embedding import sinusoidal_table

try:
    import torch
except ImportError:
    torch = None

V = 16


def _to_torch(dm, tm):
    """Copy deepcalc's parameters into the torch module with the same names."""
    sd = {k: torch.tensor(np.array(v.data)) for k, v in dm.state_dict().items()}
    missing = set(tm.state_dict()) - set(sd) - {"pe"}
    assert not missing, f"torch names without a deepcalc parameter: {sorted(missing)}"
    tm.load_state_dict(sd, strict=False)


class _TorchSeq2Seq(torch.nn.Module if torch else object):
    """torch's version of dc.nn.Seq2SeqTransformer, with its parameter names."""

    def __init__(self, vocab, d, nhead, layers, ffn, max_len=512):
        super().__init__()
        self.transformer = torch.nn.Transformer(d, nhead, layers, layers, ffn, dropout=0.0,
                                                batch_first=True)
        self.src_embed = torch.nn.Embedding(vocab, d, padding_idx=0)
        self.tgt_embed = torch.nn.Embedding(vocab, d, padding_idx=0)
        self.generator = torch.nn.Linear(d, vocab)
        self.register_buffer("pe", torch.tensor(sinusoidal_table(max_len, d)))
        self.scale = math.sqrt(d)

    def forward(self, src, tgt_in):
        n, t = src.shape[1], tgt_in.shape[1]
        x = self.src_embed(src) * self.scale + self.pe[:n]
        y = self.tgt_embed(tgt_in) * self.scale + self.pe[:t]
        mask = torch.nn.Transformer.generate_square_subsequent_mask(t)
        return self.generator(self.transformer(x, y, tgt_mask=mask, tgt_is_causal=True))


def training_step(rounds):
    b, n, d = 64, 32, 128
    rng = np.random.default_rng(0)
    src, tin, tout = (rng.integers(3, V, (b, n)) for _ in range(3))
    dc.manual_seed(0)
    dm = dc.nn.Seq2SeqTransformer(V, V, d, 4, 2, 2, 512, dropout=0.0)
    dopt = dc.optim.Adam(dm.parameters(), lr=1e-4)
    tm = _TorchSeq2Seq(V, d, 4, 2, 512)
    _to_torch(dm, tm)
    topt = torch.optim.Adam(tm.parameters(), lr=1e-4)
    ts, ti, to = (torch.tensor(a) for a in (src, tin, tout))
    with dc.no_grad(), torch.no_grad():   # same model, same logits
        diff = np.abs(dm(src, tin).data - tm(ts, ti).numpy()).max()

    def dc_step():
        loss = F.cross_entropy(dm(src, tin).reshape(-1, V), tout.reshape(-1))
        dopt.zero_grad()
        loss.backward()
        dopt.step()

    def torch_step():
        loss = torch.nn.functional.cross_entropy(tm(ts, ti).reshape(-1, V), to.reshape(-1))
        topt.zero_grad()
        loss.backward()
        topt.step()
    t = alternate({"deepcalc": dc_step, "torch": torch_step}, rounds, warmup=3, pause=0.3)
    med, best = ratio(t["torch"], t["deepcalc"])
    print(f"\n-- 1. training step, 2+2 layers, d=128, 4 heads, FFN 512, L=32, batch 64 "
          f"(max |logit difference| {diff:.1e}) --")
    print(f"deepcalc {statistics.median(t['deepcalc']) * 1e3:.1f} ms   torch "
          f"{statistics.median(t['torch']) * 1e3:.1f} ms   torch/deepcalc {med:.2f}x "
          f"[{best:.2f}x best rounds] (target >= 1.3x)")


def _encoder_case(lib):
    """(loss(params) for the HVP, the parameter list, a tangent list) of one encoder layer on
    x (4, 1024, 128); loss = mean(layer(x)^2)."""
    b, n, d = 4, 1024, 128
    x = np.random.default_rng(1).standard_normal((b, n, d)).astype(np.float32)
    dc.manual_seed(1)
    dl = dc.nn.TransformerEncoderLayer(d, 4, 512, dropout=0.0, batch_first=True)
    names = [k for k, _ in dl.named_parameters()]
    vs = [np.random.default_rng(2).standard_normal(p.shape).astype(np.float32)
          for p in dl.parameters()]
    if lib == "deepcalc":
        params = [p.detach() for p in dl.parameters()]
        xt = dc.tensor(x)

        def loss(*ps):
            out = dc.func.functional_call(dl, dict(zip(names, ps)), xt)
            return dc.mean(out * out)
        return loss, params, [dc.tensor(v) for v in vs]
    tl = torch.nn.TransformerEncoderLayer(d, 4, 512, dropout=0.0, batch_first=True)
    _to_torch(dl, tl)
    xt = torch.tensor(x)

    def loss(*ps):
        out = torch.func.functional_call(tl, dict(zip(names, ps)), (xt,))
        return (out * out).mean()
    return loss, [p.detach().requires_grad_() for p in tl.parameters()], [torch.tensor(v) for v in vs]


def _hvp_fn(lib, kind):
    loss, params, vs = _encoder_case(lib)
    if lib == "deepcalc":
        if kind == "grad":
            return lambda: dc.grad(loss, argnums=tuple(range(len(params))))(*params)
        return lambda: dc.hvp(loss, tuple(params), tuple(vs))
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def grad():
        with sdpa_kernel(SDPBackend.MATH):
            return torch.autograd.grad(loss(*params), params)

    def hvp():
        with sdpa_kernel(SDPBackend.MATH):
            g = torch.autograd.grad(loss(*params), params, create_graph=True)
            return torch.autograd.grad(g, params, vs)
    return grad if kind == "grad" else hvp


def _status_mib(field):
    """A memory line of /proc/self/status in MiB (VmRSS: now, VmHWM: the peak; unlike
    ru_maxrss, VmHWM starts afresh in a new process image)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _memory_child(lib, kind, threads):
    """Print {"peak_extra_mib": ...} for one call of (lib, kind) in this fresh process."""
    dc.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    fn = _hvp_fn(lib, kind)
    base = _status_mib("VmRSS")
    fn()
    peak = _status_mib("VmHWM")
    print(json.dumps({"peak_extra_mib": peak - base}))


def _memory(lib, kind, threads):
    out = subprocess.run([sys.executable, __file__, "--_memory", lib, kind, "--threads",
                          str(threads)], capture_output=True, text=True, timeout=900,
                         env=dict(os.environ))
    if out.returncode:
        return float("nan")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_extra_mib"]


def hvp(rounds, threads):
    fns = {"deepcalc": _hvp_fn("deepcalc", "hvp"), "torch": _hvp_fn("torch", "hvp")}
    t = alternate(fns, rounds, warmup=1, pause=0.3)
    med, best = ratio(t["torch"], t["deepcalc"])
    print("\n-- 2. HVP through one encoder layer, d=128, 4 heads, FFN 512, L=1024, batch 4 --")
    print(f"deepcalc dc.hvp {statistics.median(t['deepcalc']) * 1e3:.0f} ms   torch double "
          f"backward (math SDPA) {statistics.median(t['torch']) * 1e3:.0f} ms   "
          f"torch/deepcalc {med:.2f}x [{best:.2f}x] (target >= 2x)")
    mem = {(lib, kind): _memory(lib, kind, threads) for lib in ("deepcalc", "torch")
           for kind in ("grad", "hvp")}
    for lib in ("deepcalc", "torch"):
        g, h = mem[(lib, "grad")], mem[(lib, "hvp")]
        print(f"{lib:8s} peak memory beyond setup: gradient {g:.0f} MiB, HVP {h:.0f} MiB "
              f"(HVP / gradient {h / g:.2f}x)")
    print("target: deepcalc HVP / gradient <= 4x")


def decoding(rounds):
    dc.manual_seed(3)
    lm = dc.nn.TransformerLM(100, 128, 4, 4, 512, dropout=0.0, max_len=300)
    prompt = np.random.default_rng(3).integers(0, 100, (8, 1))
    gen = dc.nn.decoding.generate
    same = np.array_equal(gen(lm, prompt, 255, temperature=0),
                          gen(lm, prompt, 255, temperature=0, use_cache=False))
    t = alternate({"cache": lambda: gen(lm, prompt, 255, temperature=0),
                   "recompute": lambda: gen(lm, prompt, 255, temperature=0, use_cache=False)},
                  rounds, warmup=0, pause=0.3)
    med, best = ratio(t["recompute"], t["cache"])
    print("\n-- 3. greedy decoding of 256 tokens, 4-layer LM d=128, batch 8 --")
    print(f"KV cache {statistics.median(t['cache']) * 1e3:.0f} ms   recomputing the prefix "
          f"{statistics.median(t['recompute']) * 1e3:.0f} ms   speedup {med:.1f}x [{best:.1f}x] "
          f"(target >= 5x); identical tokens: {same}")


class _TorchLM(torch.nn.Module if torch else object):
    """torch's version of dc.nn.TransformerLM (pre-norm, GELU, final LayerNorm)."""

    def __init__(self, vocab, d, nhead, layers, ffn, max_len):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, d)
        layer = torch.nn.TransformerEncoderLayer(d, nhead, ffn, dropout=0.0, activation="gelu",
                                                 batch_first=True, norm_first=True)
        self.layers = torch.nn.TransformerEncoder(layer, layers, torch.nn.LayerNorm(d),
                                                  enable_nested_tensor=False)
        self.head = torch.nn.Linear(d, vocab)
        self.register_buffer("pe", torch.tensor(sinusoidal_table(max_len, d)))
        self.scale = math.sqrt(d)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.embed(idx) * self.scale + self.pe[:t]
        mask = torch.nn.Transformer.generate_square_subsequent_mask(t)
        return self.head(self.layers(x, mask=mask, is_causal=True))


def char_lm(seconds, seq_len=128, batch=32, d=64, layers=2, ffn=256, lr=1e-3):
    """Train the character LM (the defaults of `deepcalc train lm`) for ``seconds`` in each
    library from the same initial weights on the same batches; validation bits per char."""
    corpus = dc.data.load_pydoc_topics()
    vx, vy = corpus.windows("val", seq_len, 256)
    dc.manual_seed(0)
    dm = dc.nn.TransformerLM(corpus.vocab_size, d, 4, layers, ffn, dropout=0.0, max_len=seq_len)
    tm = _TorchLM(corpus.vocab_size, d, 4, layers, ffn, seq_len)
    _to_torch(dm, tm)
    with dc.no_grad(), torch.no_grad():   # same model, same logits
        diff = np.abs(dm(vx[:2]).data - tm(torch.tensor(vx[:2])).numpy()).max()
    results = {}
    for lib in ("deepcalc", "torch"):
        gen = np.random.default_rng(0)
        opt = (dc.optim.Adam(dm.parameters(), lr=lr) if lib == "deepcalc"
               else torch.optim.Adam(tm.parameters(), lr=lr))
        steps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for g in opt.param_groups:   # the CLI's warmup and cosine decay over the time budget
                g["lr"] = lr * min(1, (steps + 1) / 100) * 0.5 * (
                    1 + math.cos(math.pi * min(1, (time.perf_counter() - t0) / seconds)))
            x, y = corpus.batch("train", batch, seq_len, gen)
            if lib == "deepcalc":
                loss = F.cross_entropy(dm(x).reshape(-1, corpus.vocab_size), y.reshape(-1))
                opt.zero_grad()
                loss.backward()
                dc.optim.clip_grad_norm_(dm.parameters(), 1.0)
            else:
                loss = torch.nn.functional.cross_entropy(
                    tm(torch.tensor(x)).reshape(-1, corpus.vocab_size), torch.tensor(y).reshape(-1))
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.0)
            opt.step()
            steps += 1
        total = 0.0
        for i in range(0, len(vx), 32):
            if lib == "deepcalc":
                with dc.no_grad():
                    total += F.cross_entropy(dm(vx[i:i + 32]).reshape(-1, corpus.vocab_size),
                                             vy[i:i + 32].reshape(-1), reduction="sum").item()
            else:
                with torch.no_grad():
                    total += torch.nn.functional.cross_entropy(
                        tm(torch.tensor(vx[i:i + 32])).reshape(-1, corpus.vocab_size),
                        torch.tensor(vy[i:i + 32]).reshape(-1), reduction="sum").item()
        results[lib] = (steps, total / vy.size / math.log(2))
        time.sleep(0.3)
    print(f"\n-- 4. character LM on pydoc_data.topics, {seconds:.0f} s each "
          f"(d={d}, {layers} layers, FFN {ffn}, context {seq_len}, batch {batch}; initial max "
          f"|logit difference| {diff:.1e}) --")
    for lib, (steps, bpc) in results.items():
        print(f"{lib:8s} {steps} steps, validation {bpc:.3f} bits per character")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--skip-hvp", action="store_true")
    ap.add_argument("--lm", type=float, default=0.0, metavar="SECONDS",
                    help="also train the character LM in each library for SECONDS")
    ap.add_argument("--_memory", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._memory:
        return _memory_child(*args._memory, args.threads)
    if torch is None:
        raise SystemExit("compare_transformer.py needs torch (pip install deepcalc[bench])")
    dc.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    print(f"deepcalc vs torch {torch.__version__}, {args.threads} threads, float32, "
          f"{dc.cpu_capability()} kernels")
    training_step(args.rounds)
    if not args.skip_hvp:
        hvp(max(3, args.rounds // 2), args.threads)
    decoding(3)
    if args.lm:
        char_lm(args.lm)


if __name__ == "__main__":
    main()
