"""DistributedDataParallel (gloo, 2 local processes) trains recur modules to the parameters
one process reaches with the whole batch."""

import os
import pathlib
import socket
import subprocess
import sys

import torch

WORKER = pathlib.Path(__file__).with_name("ddp_worker.py")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_equal_one_with_the_whole_batch(tmp_path):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    subprocess.run([sys.executable, str(WORKER), "0", "1", "0", str(one)], check=True, timeout=300)
    port = str(free_port())
    # gloo on the loopback interface only.
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo")
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), str(r), "2", port, str(two)], env=env)
        for r in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0
    a = torch.load(one, weights_only=True)
    b = torch.load(two, weights_only=True)
    assert list(a) == list(b)
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=1e-4)
    # The run trained (parameters moved from their initial values).
    sys.path.insert(0, str(WORKER.parent))
    import ddp_worker

    torch.manual_seed(0)
    init = ddp_worker.Net().state_dict()
    assert any(not torch.allclose(init[k], a[k]) for k in a)
