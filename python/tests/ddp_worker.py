"""One process of the DistributedDataParallel test (test_ddp.py): gloo over loopback.

usage: ddp_worker.py RANK WORLD_SIZE PORT OUT  (WORLD_SIZE 1: one process, the whole batch)
"""

import sys

import torch
import torch.distributed as dist

import recur
import recur.torch as rt

STEPS, BATCH, T, I, H = 4, 8, 6, 3, 5


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = rt.LSTM(I, H, num_layers=2, batch_first=True)
        self.cell = rt.GRUCell(H, H)
        self.out = torch.nn.Linear(H, 1)

    def forward(self, x):
        y, (h, _) = self.rnn(x)
        return self.out(self.cell(y[:, -1], h[-1]))


def main(rank, world, port, out):
    recur.set_num_threads(1)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Net()
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    per = BATCH // world
    for _ in range(STEPS):
        x = torch.randn(BATCH, T, I, generator=g)
        y = torch.randn(BATCH, 1, generator=g)
        xs, ys = x[rank * per : (rank + 1) * per], y[rank * per : (rank + 1) * per]
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(xs), ys).backward()
        opt.step()
    if rank == 0:
        m = model.module if world > 1 else model
        torch.save(m.state_dict(), out)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
