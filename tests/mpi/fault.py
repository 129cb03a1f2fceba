"""Run under ``mpirun -n 2`` with a mode; rank 1 fails, and the job must end within seconds with
rank 1 named (tests/test_distributed.py times it and reads the output).

    raise   rank 1 raises inside fit (a callback, at step 3) while rank 0 trains on
    nan     rank 1's gradient turns NaN at step 2 of a plain loop (the loss stays finite)
    loop    rank 1 raises in the user's own loop while rank 0 waits in a backward's allreduce
"""
from __future__ import annotations

import sys

import numpy as np

import deepcalc as dc
from deepcalc import distributed as D
from deepcalc.nn import functional as F


class RaiseAt(dc.train.Callback):
    def on_step_end(self, epoch, step, loss, model):
        if D.rank() == 1 and step == 3:
            raise ValueError("injected failure at step 3")


def main(mode):
    D.init()
    dc.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((256, 8)), rng.integers(0, 3, 256)
    model = dc.nn.MLP([8, 16, 3], activation="relu", dtype=np.float64)
    opt = dc.optim.SGD(model.parameters(), lr=0.1)
    if mode == "raise":
        train = dc.data.DataLoader(D.DistributedSampler(dc.data.TensorDataset(x, y)), batch_size=4)
        dc.train.fit(model, F.cross_entropy, opt, train, epochs=1000, progress=False,
                     callbacks=[RaiseAt()], distributed=True)
        return
    ddp = D.DistributedDataParallel(model)
    for step in range(10**6):
        if mode == "loop" and D.rank() == 1 and step == 2:
            raise RuntimeError("injected failure in the user's loop")
        out = ddp(dc.tensor(x[:8]))
        loss = F.cross_entropy(out, dc.tensor(y[:8]))
        if mode == "nan" and D.rank() == 1 and step == 2:
            # d sqrt(u)/du at u = 0 is inf, times 0: a NaN gradient with a finite loss
            loss = loss + 0.0 * dc.sqrt(model.layer0.weight * 0.0).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()


if __name__ == "__main__":
    main(sys.argv[1])
