"""A bad-input sweep: run each case below in a fresh interpreter and sort the outcomes into
clear errors (an exception whose message names the op), cryptic errors (any other exception),
silently accepted (no exception where one was expected) and crashes (the process died).
Cases that must succeed check their result and count as 'ok' or 'wrong'.

    python tools/bad_input_sweep.py [--verbose]
"""
from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import textwrap

PRELUDE = textwrap.dedent("""
    import numpy as np, deepcalc as dc
    from deepcalc import _core
    from deepcalc.nn import functional as F
    x2 = dc.ones(2, 3); f32 = np.ones((4, 0), np.float32)
""")

# (code, word the error must contain) for cases that must raise; (code, None) for cases that
# must run and whose code asserts its own result.
CASES = [
    # native bindings on their own
    ("_core.batchnorm_forward_train(f32, None, None, 1e-5)", None),
    ("_core.gemm(np.ones((0, 2, 3), np.float32), np.ones((3, 4), np.float32))", None),
    ("assert _core.gemm(np.ones((0, 3, 4)), np.ones((1, 4, 5))).shape == (0, 3, 5)", None),
    ("_core.gemm(np.ones((2, 3), np.float32), np.ones((4, 4), np.float32))", "gemm"),
    ("_core.gemm(np.ones((2, 3), np.float32), np.ones((3, 4)))", "gemm"),
    ("_core.softmax_forward(np.ones((2, 3), np.int64), False)", "softmax"),
    ("_core.layernorm_forward(np.ones((3, 4), np.float32), np.ones(5, np.float32), "
     "np.ones(5, np.float32), 1e-5)", "layernorm"),
    ("_core.adam_step(np.ones(3, np.float32), np.ones(4, np.float32), np.ones(3, np.float32), "
     "np.ones(3, np.float32), 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, False)", "adam"),
    ("_core.linear_forward(np.ones((2, 3), np.float32), np.ones((4, 5), np.float32), None, "
     "'relu', False)", "linear"),
    ("y = dc.nn.BatchNorm1d(3)(dc.ones(4, 3)); assert y.shape == (4, 3)", None),
    ("assert F.batch_norm(dc.tensor(f32), training=True).shape == (4, 0)", None),
    # NaN and Inf
    ("assert np.isnan(dc.softmax(dc.tensor([[np.nan, 1.0]])).data).all()", None),
    ("assert np.isnan(dc.softmax(dc.tensor([[-np.inf, -np.inf]])).data).all()", None),
    ("assert np.isnan(F.cross_entropy(dc.tensor([[np.nan, 1.0]]), dc.tensor([1])).item())", None),
    ("s = dc.softmax(dc.tensor(np.full((1, 5), -np.inf, np.float32))).data.sum(); "
     "assert np.isnan(s)", None),
    *[(f"l = dc.nn.Linear(3, 2, activation='{a}'); l.weight.data[0, 0] = np.nan; "
       f"assert np.isnan(l(dc.ones(4, 3)).data[:, 0]).all()", None)
      for a in ("relu", "tanh", "sigmoid", "gelu")],
    ("assert np.isnan(dc.maximum(dc.tensor([np.nan, 1.0]), dc.tensor([1.0, np.nan])).data).all()",
     None),
    ("assert np.isnan(dc.minimum(dc.tensor([1.0, np.nan]), dc.tensor([np.nan, 1.0])).data).all()",
     None),
    ("x = dc.tensor([1.0, np.nan, 2.0], requires_grad=True); dc.max(x).backward(); "
     "assert list(np.asarray(x.grad)) == [0, 1, 0]", None),
    ("bn = dc.nn.BatchNorm1d(2); bn(dc.tensor([[np.nan, 1.0], [1.0, 2.0]])); "
     "assert np.isnan(bn.running_var.data[0])", None),
    # axes
    ("dc.transpose(x2, (0, 3))", "transpose"),
    ("x2.permute(0, 1, 5)", "permute"),
    ("dc.flatten(x2, 5)", "flatten"),
    ("dc.swapaxes(x2, 0, 2)", "swapaxes"),
    ("dc.sum(x2, axis=1.5)", "sum"),
    ("dc.expand_dims(x2, 4)", "expand_dims"),
    ("dc.squeeze(x2, 3)", "squeeze"),
    ("dc.concatenate([x2, x2], axis=2)", "concatenate"),
    ("dc.softmax(x2, 2)", "softmax"),
    ("assert dc.sum(dc.tensor(2.0), axis=0).item() == 2.0", None),
    ("assert dc.mean(dc.tensor(2.0), axis=0).item() == 2.0", None),
    ("assert dc.max(dc.tensor(2.0), axis=0).item() == 2.0", None),
    ("assert dc.logsumexp(dc.ones(2, 0), axis=1).data.tolist() == [-np.inf, -np.inf]", None),
    # containers and types
    ("dc.nn.Sequential(dc.nn.Linear(2, 2), dc.relu, dc.nn.Linear(2, 2))", "Sequential"),
    ("dc.nn.Sequential(dc.nn.Linear(2, 2), 'relu')", "Sequential"),
    ("dc.nn.ModuleList([dc.nn.Linear(2, 2), dc.relu])", "ModuleList"),
    ("dc.jvp(lambda x: x * 2, dc.ones(1, 3), dc.ones(1, 3))", "jvp"),
    ("dc.hvp(lambda x: (x * x).sum(), dc.ones(1, 3), dc.ones(1, 3))", "hvp"),
    ("dc.grad(lambda x: (x * x).sum(), has_aux=True)(dc.ones(3))", "has_aux"),
    ("dc.tensor(None)", "tensor"),
    ("dc.ones(2) + None", "add"),
    ("dc.tensor('abc')", "tensor"),
    ("dc.tensor([1 + 2j])", "tensor"),
    ("dc.zeros(2.7)", "zeros"),
    ("dc.ones(2).reshape(2.5, 2)", "reshape"),
    ("dc.tensor(np.ones(2, np.float16), requires_grad=True)", "float16"),
    ("dc.Tensor(np.ones(2, np.float16), requires_grad=True)", "float16"),
    ("F.cross_entropy(dc.ones(2, 3), dc.tensor([0, 1]), weight=dc.ones(4))", "cross_entropy"),
    ("F.cross_entropy(dc.ones(2, 3), dc.tensor([0, 2]), weight=dc.ones(2))", "cross_entropy"),
    ("assert (dc.tensor([3, 4]) / dc.tensor([2, 2])).dtype == np.float32", None),
    ("assert (dc.tensor([3, 4]) + 1).dtype == np.int64", None),
    ("F.mse_loss(dc.ones(3), dc.ones(3, dtype=np.float64))", "mse_loss"),
    ("bn = dc.nn.BatchNorm1d(3); bn.eval(); bn(dc.ones(4, 3, dtype=np.float64))", "BatchNorm1d"),
    ("dc.nn.BatchNorm1d(3, momentum=1.5)", "momentum"),
    ("dc.nn.Dropout(1.5)", "Dropout"),
    ("dc.optim.Adam(dc.nn.Linear(2, 2).parameters(), betas=(0.9,))", "Adam"),
    ("dc.optim.SGD([], lr=0.1)", "empty parameter list"),
    ("dc.data.DataLoader(dc.data.TensorDataset(np.ones((4, 2)), np.ones(4)), batch_size=None)",
     "DataLoader"),
    ("m = dc.nn.Linear(2, 2); dc.train.fit(m, F.mse_loss, dc.optim.SGD(m.parameters(), lr=0.1), "
     "dc.data.DataLoader(dc.data.TensorDataset(np.ones((0, 2), np.float32), "
     "np.ones((0, 2), np.float32)), batch_size=2), progress=False)", "fit"),
    ("b = dc.ones(6)[::2]; assert F.linear(dc.ones(2, 4), dc.ones(3, 4), b).shape == (2, 3)", None),
    # checkpoints
    ("import tempfile; dc.load(tempfile.mkdtemp())", "directory"),
    ("dc.load('/nonexistent/ckpt.safetensors')", "ckpt.safetensors"),
    ("import tempfile, os; p = os.path.join(tempfile.mkdtemp(), 'c.safetensors'); "
     "dc.save(p, {'w': dc.ones(1000)}); b = bytearray(open(p, 'rb').read()); b[-10] ^= 1; "
     "open(p, 'wb').write(bytes(b)); dc.load(p)", "w"),
    ("dc.save('/nonexistent/dir/c.safetensors', {'w': dc.ones(2)})", "c.safetensors"),
]


def run_case(code, word):
    body = PRELUDE + "\n" + code + "\nprint('NO-ERROR')\n"
    if word is not None:
        body = PRELUDE + textwrap.dedent(f"""
            try:
                {code}
            except Exception as e:
                print('RAISED', type(e).__name__, str(e).replace(chr(10), ' ')[:300])
            else:
                print('NO-ERROR')
        """)
    p = subprocess.run([sys.executable, "-c", body], capture_output=True, text=True, timeout=120)
    out = p.stdout.strip().splitlines()
    last = out[-1] if out else ""
    if p.returncode < 0 or (p.returncode != 0 and not last):
        return "crash", f"exit {p.returncode}: {p.stderr.strip().splitlines()[-1:] or ''}"
    if word is None:
        if p.returncode == 0 and last == "NO-ERROR":
            return "ok", ""
        return "wrong", (p.stderr.strip().splitlines() or [""])[-1]
    if last == "NO-ERROR":
        return "silently accepted", ""
    if last.startswith("RAISED") and word.lower() in last.lower():
        return "clear error", last
    return "cryptic error", last


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    counts = collections.Counter()
    for code, word in CASES:
        outcome, detail = run_case(code, word)
        counts[outcome] += 1
        if args.verbose or outcome not in ("ok", "clear error"):
            print(f"[{outcome}] {code[:100]}\n    {detail[:200]}")
    print(f"{len(CASES)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0 if set(counts) <= {"ok", "clear error"} else 1


if __name__ == "__main__":
    sys.exit(main())
