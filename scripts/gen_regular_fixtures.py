#!/usr/bin/env python3
"""Generate the PyTorch fixtures of recur's regularized layers (recur::core::regular).

    <python with torch, numpy, safetensors> scripts/gen_regular_fixtures.py

Two semantics that public PyTorch code defines:

  ln_lstm_*.safetensors       the layer-normalized LSTM of pytorch/benchmarks'
                              custom_lstms.py (LayerNormLSTMCell): nn.LayerNorm(4H) on x W_ihᵀ
                              and on h W_hhᵀ (no other biases), gates i, f, g, o of their sum,
                              c' = nn.LayerNorm(H)(f c + i g), h' = o tanh(c'), stacked layers;
  weight_drop_lstm.safetensors AWD-LSTM's WeightDrop: nn.LSTM whose weight_hh_l{k} is
                              F.dropout(raw, p), i.e. raw * mask with mask 0 or 1/(1-p), the
                              gradient taken with respect to the raw weight.

Each file holds, in float64: the parameters under recur's names (weight_ih_l0, ...,
ln_ih_weight_l0, ...), the input x (T, B, I), h0, c0, the cotangents gy, gh, gc of the loss
L = Σ output·gy + Σ h_n·gh + Σ c_n·gc, the outputs (output, h_n, c_n) and the gradients
(grad.<parameter>, grad.x, grad.h0, grad.c0); weight drop also mask_l{k}. Fixed seeds, so
re-running gives the same files. Written to tests/fixtures/regular/.
"""

import json
import platform
import zlib
from pathlib import Path

import torch
import torch.nn as nn
import safetensors.torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "regular"


def gen_for(name):
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    return g


def randn(shape, g):
    # float32-representable values, computed in float64
    return torch.randn(*shape, generator=g, dtype=torch.float32).double() * 0.5


class LayerNormLSTMCell(nn.Module):
    """The cell of custom_lstms.py, written from its equations."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size, dtype=torch.float64))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size, dtype=torch.float64))
        self.layernorm_i = nn.LayerNorm(4 * hidden_size, dtype=torch.float64)
        self.layernorm_h = nn.LayerNorm(4 * hidden_size, dtype=torch.float64)
        self.layernorm_c = nn.LayerNorm(hidden_size, dtype=torch.float64)

    def forward(self, x, state):
        hx, cx = state
        igates = self.layernorm_i(x @ self.weight_ih.t())
        hgates = self.layernorm_h(hx @ self.weight_hh.t())
        i, f, gg, o = (igates + hgates).chunk(4, 1)
        i, f, gg, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(gg), torch.sigmoid(o)
        cy = self.layernorm_c(f * cx + i * gg)
        hy = o * torch.tanh(cy)
        return hy, (hy, cy)


def ln_lstm_case(name, t, b, i, h, layers):
    g = gen_for(name)
    cells = [LayerNormLSTMCell(i if k == 0 else h, h) for k in range(layers)]
    params = {}
    for k, cell in enumerate(cells):
        with torch.no_grad():
            for p in cell.parameters():
                p.copy_(randn(p.shape, g))
            # gains around 1
            for ln in (cell.layernorm_i, cell.layernorm_h, cell.layernorm_c):
                ln.weight.add_(1.0)
        params[f"weight_ih_l{k}"] = cell.weight_ih
        params[f"weight_hh_l{k}"] = cell.weight_hh
        params[f"ln_ih_weight_l{k}"] = cell.layernorm_i.weight
        params[f"ln_ih_bias_l{k}"] = cell.layernorm_i.bias
        params[f"ln_hh_weight_l{k}"] = cell.layernorm_h.weight
        params[f"ln_hh_bias_l{k}"] = cell.layernorm_h.bias
        params[f"ln_c_weight_l{k}"] = cell.layernorm_c.weight
        params[f"ln_c_bias_l{k}"] = cell.layernorm_c.bias
    x = randn((t, b, i), g).requires_grad_()
    h0 = randn((layers, b, h), g).requires_grad_()
    c0 = randn((layers, b, h), g).requires_grad_()
    inp = x
    hn, cn = [], []
    for k, cell in enumerate(cells):
        state = (h0[k], c0[k])
        outs = []
        for s in range(t):
            y, state = cell(inp[s], state)
            outs.append(y)
        inp = torch.stack(outs)
        hn.append(state[0])
        cn.append(state[1])
    output, h_n, c_n = inp, torch.stack(hn), torch.stack(cn)
    return finish(params, x, h0, c0, output, h_n, c_n, g, {})


def weight_drop_case(name, t, b, i, h, layers, p):
    g = gen_for(name)
    lstm = nn.LSTM(i, h, num_layers=layers, dtype=torch.float64)
    with torch.no_grad():
        for q in lstm.parameters():
            q.copy_(randn(q.shape, g))
    params = dict(lstm.named_parameters())
    masks = {}
    dropped = {}
    for k in range(layers):
        keep = (torch.rand(4 * h, h, generator=g) >= p).double()
        masks[f"mask_l{k}"] = keep / (1.0 - p)
        # F.dropout(raw, p) with this draw: raw * mask
        dropped[f"weight_hh_l{k}"] = params[f"weight_hh_l{k}"] * masks[f"mask_l{k}"]
    x = randn((t, b, i), g).requires_grad_()
    h0 = randn((layers, b, h), g).requires_grad_()
    c0 = randn((layers, b, h), g).requires_grad_()
    call = {n: (dropped[n] if n in dropped else q) for n, q in params.items()}
    output, (h_n, c_n) = torch.func.functional_call(lstm, call, (x, (h0, c0)))
    return finish(params, x, h0, c0, output, h_n, c_n, g, masks)


def finish(params, x, h0, c0, output, h_n, c_n, g, extra):
    gy = randn(output.shape, g)
    gh = randn(h_n.shape, g)
    gc = randn(c_n.shape, g)
    loss = (output * gy).sum() + (h_n * gh).sum() + (c_n * gc).sum()
    names = list(params)
    grads = torch.autograd.grad(loss, [params[n] for n in names] + [x, h0, c0])
    out = {n: params[n].detach() for n in names}
    out.update({"x": x.detach(), "h0": h0.detach(), "c0": c0.detach()})
    out.update({"gy": gy, "gh": gh, "gc": gc})
    out.update({"output": output.detach(), "h_n": h_n.detach(), "c_n": c_n.detach()})
    for n, gr in zip(names + ["x", "h0", "c0"], grads):
        out[f"grad.{n}"] = gr
    out.update(extra)
    return {k: v.contiguous().double() for k, v in out.items()}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for f in OUT.glob("*.safetensors"):
        f.unlink()
    cases = {
        "ln_lstm_1layer": lambda: ln_lstm_case("ln_lstm_1layer", 4, 2, 3, 5, 1),
        "ln_lstm_2layers": lambda: ln_lstm_case("ln_lstm_2layers", 6, 3, 4, 5, 2),
        "weight_drop_lstm": lambda: weight_drop_case("weight_drop_lstm", 5, 3, 4, 6, 2, 0.5),
    }
    for name, make in cases.items():
        safetensors.torch.save_file(make(), str(OUT / f"{name}.safetensors"))
    manifest = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": "scripts/gen_regular_fixtures.py",
        "cases": sorted(cases),
    }
    (OUT / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
