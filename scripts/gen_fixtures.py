#!/usr/bin/env python3
"""Generate the PyTorch parity fixtures for recur.

    python3 scripts/gen_fixtures.py

Writes (after deleting whatever was there before):
  tests/fixtures/parity/<case>.safetensors          layer, dropout and cell cases
  tests/fixtures/state_dict/<name>.safetensors      state_dicts saved the way users save them
  tests/fixtures/state_dict/<name>.io.safetensors   their inputs and f32 outputs
  tests/fixtures/MANIFEST.json                      torch version, command, list of cases

The file format is described in tests/fixtures/FORMAT.md. Everything is deterministic: every case
seeds torch from a CRC of its name, so re-running gives byte-identical files.

If torch is not importable with the interpreter that runs this script, the script re-executes itself
with the venv python printed by scripts/venv.sh (which creates .venv/ on first use).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


sys.path.insert(0, str(ROOT / "scripts"))
import venvpy  # noqa: E402

venvpy.ensure()

import copy  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import warnings  # noqa: E402
import zlib  # noqa: E402

import numpy  # noqa: E402
import safetensors  # noqa: E402
import safetensors.torch  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
PARITY = FIXTURES / "parity"
STATE_DICT = FIXTURES / "state_dict"
COMMAND = "python3 scripts/gen_fixtures.py"

MODES = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
# (T, B, I, H): includes size 1 and odd sizes.
SIZES = [(1, 1, 1, 1), (5, 3, 4, 3), (7, 4, 3, 5), (4, 5, 7, 2), (6, 2, 1, 4), (3, 3, 5, 7)]
CELL_SIZES = [(1, 1, 1), (3, 4, 5), (2, 7, 3)]  # (B, I, H)
DROPOUT_P = 0.3


def b(v):
    return "true" if v else "false"


def seed_of(name):
    return zlib.crc32(name.encode("utf-8"))


# --------------------------------------------------------------------------------------------------
# module construction (and the matching snippet text)


def make_layer(mode, I, H, L, bias, bf, bi, proj, dropout=0.0):
    kw = dict(num_layers=L, bias=bias, batch_first=bf, dropout=dropout, bidirectional=bi)
    if mode == "lstm":
        return nn.LSTM(I, H, proj_size=proj, **kw)
    if mode == "gru":
        return nn.GRU(I, H, **kw)
    assert proj == 0
    return nn.RNN(I, H, nonlinearity=mode[len("rnn_"):], **kw)


def layer_ctor_text(mode, I, H, L, bias, bf, bi, proj, dropout=0.0):
    cls = {"lstm": "LSTM", "gru": "GRU"}.get(mode, "RNN")
    args = [str(I), str(H), f"num_layers={L}"]
    if mode.startswith("rnn_"):
        args.append(f"nonlinearity='{mode[len('rnn_'):]}'")
    args += [f"bias={bias}", f"batch_first={bf}", f"dropout={dropout}", f"bidirectional={bi}"]
    if mode == "lstm":
        args.append(f"proj_size={proj}")
    return f"torch.nn.{cls}({', '.join(args)})"


def make_cell(mode, I, H, bias):
    if mode == "lstm":
        return nn.LSTMCell(I, H, bias=bias)
    if mode == "gru":
        return nn.GRUCell(I, H, bias=bias)
    return nn.RNNCell(I, H, bias=bias, nonlinearity=mode[len("rnn_"):])


def cell_ctor_text(mode, I, H, bias):
    if mode == "lstm":
        return f"torch.nn.LSTMCell({I}, {H}, bias={bias})"
    if mode == "gru":
        return f"torch.nn.GRUCell({I}, {H}, bias={bias})"
    return f"torch.nn.RNNCell({I}, {H}, bias={bias}, nonlinearity='{mode[len('rnn_'):]}')"


# --------------------------------------------------------------------------------------------------
# forward passes (float64)


def run_stacked(m, is_lstm, x, h0, c0, lengths, bf, T):
    """The module as users call it. Returns (output, h_n, c_n or None)."""
    hx = (h0, c0) if is_lstm else h0
    inp = x if lengths is None else pack_padded_sequence(x, lengths, batch_first=bf, enforce_sorted=False)
    out, hn = m(inp, hx)
    if lengths is not None:
        out, _ = pad_packed_sequence(out, batch_first=bf, total_length=T)
    if is_lstm:
        return out, hn[0], hn[1]
    return out, hn, None


PARAM_BASES = ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"]


def run_decomposed(m, mode, x, h0, c0, lengths, T, masks):
    """The stacked module `m` computed layer by layer with single-layer modules that share m's
    parameters of layer k, multiplying layer k's (time-major) output by masks[k] for k < L-1.
    `x` follows m.batch_first; every single layer runs time-major."""
    is_lstm = mode == "lstm"
    L, D = m.num_layers, (2 if m.bidirectional else 1)
    H, P = m.hidden_size, (m.proj_size if is_lstm else 0)
    H_out = P if P > 0 else H
    params = dict(m.named_parameters())
    sfxs = ["", "_reverse"] if m.bidirectional else [""]
    cur = x.transpose(0, 1) if m.batch_first else x
    hs, cs = [], []
    for k in range(L):
        in_k = m.input_size if k == 0 else D * H_out
        sub = make_layer(mode, in_k, H, 1, m.bias, False, m.bidirectional, P).to(dtype=x.dtype)
        expected_names = set(n for n, _ in sub.named_parameters())
        shared = set()
        for sfx in sfxs:
            for base in PARAM_BASES:
                src = f"{base}_l{k}{sfx}"
                if src in params:
                    dst = f"{base}_l0{sfx}"
                    assert dst in expected_names, (src, dst)
                    setattr(sub, dst, params[src])
                    shared.add(dst)
        assert shared == expected_names, (shared, expected_names)
        for n, p in sub.named_parameters():
            assert p is params[n.replace("_l0", f"_l{k}")]
        hk = h0[k * D:(k + 1) * D]
        ck = c0[k * D:(k + 1) * D] if is_lstm else None
        out, hn, cn = run_stacked(sub, is_lstm, cur, hk, ck, lengths, False, T)
        hs.append(hn)
        if is_lstm:
            cs.append(cn)
        if k < L - 1:
            out = out * masks[k]
        cur = out
    out = cur.transpose(0, 1) if m.batch_first else cur
    return out, torch.cat(hs, 0), (torch.cat(cs, 0) if is_lstm else None)


# --------------------------------------------------------------------------------------------------
# case construction


def ragged_lengths(rng, T, B, short_max):
    """Lengths in [1, T], at least one < T, not sorted in decreasing order (for B >= 3 not monotone
    at all; for B == 2 strictly increasing), and max < T when short_max."""
    assert T >= 3 and B >= 2
    hi = T - 1 if short_max else T
    for _ in range(10000):
        ls = [rng.randint(1, hi) for _ in range(B)]
        if min(ls) >= T:
            continue
        if short_max != (max(ls) < T):
            continue
        nonincr = all(ls[i] >= ls[i + 1] for i in range(B - 1))
        nondecr = all(ls[i] <= ls[i + 1] for i in range(B - 1))
        if B >= 3 and (nonincr or nondecr):
            continue
        if B == 2 and not ls[0] < ls[1]:
            continue
        return ls
    raise RuntimeError("no lengths found")


def valid_sizes(ragged, proj):
    out = []
    for (T, B, I, H) in SIZES:
        if ragged and (T < 3 or B < 2):
            continue
        if proj and H < 2:
            continue
        out.append((T, B, I, H))
    return out


def balanced_picker(lst, seed):
    """Yields elements of lst: concatenated, seeded shuffles of lst, so every element is used equally
    often and the choice is not tied to the flags that the case loops vary."""
    rng = random.Random(seed)
    while True:
        perm = list(lst)
        rng.shuffle(perm)
        yield from perm


def layer_case_name(spec):
    parts = [
        spec["mode"],
        f"l{spec['L']}",
        "bi" if spec["bi"] else "uni",
        "bias" if spec["bias"] else "nobias",
        "bf" if spec["bf"] else "tm",
        "ragged" if spec["ragged"] else "dense",
    ]
    if spec["proj"] > 0:
        parts.append(f"p{spec['proj']}")
    if spec.get("dropout", 0.0) > 0:
        parts.insert(0, "dropout")
    parts.append("h0" if spec["has_h0"] else "noh0")
    if spec.get("zero_t0"):
        parts.append("zerorows")
    T, B, I, H = spec["size"]
    parts.append(f"T{T}B{B}I{I}H{H}")
    return "_".join(parts)


def layer_specs():
    specs = []
    for mode in MODES:
        projs = [False, True] if mode == "lstm" else [False]
        pickers = {}
        for use_proj in projs:
            for L in (1, 2, 3):
                for bi in (False, True):
                    for bias in (False, True):
                        for bf in (False, True):
                            for ragged in (False, True):
                                key = (ragged, use_proj)
                                if key not in pickers:
                                    pickers[key] = (balanced_picker(valid_sizes(ragged, use_proj),
                                                                    seed_of(f"sizes/{mode}/{key}")),
                                                    random.Random(seed_of(f"proj/{mode}/{key}")))
                                sizes, prng = pickers[key]
                                size = next(sizes)
                                H = size[3]
                                proj = prng.randint(1, H - 1) if use_proj else 0
                                # parity of all flags: alternates from one case to the next, and no
                                # proper subset of the flags determines it
                                has_h0 = (L + bi + bias + bf + ragged + use_proj) % 2 == 1
                                short_max = (bi + bias + bf) % 2 == 1
                                specs.append(
                                    dict(mode=mode, L=L, bi=bi, bias=bias, bf=bf, ragged=ragged, proj=proj,
                                         has_h0=has_h0, size=size, dropout=0.0, short_max=short_max)
                                )
    return specs


def dropout_specs():
    rows = [
        # mode, L, bi, bias, bf, ragged, proj, has_h0, size
        ("lstm", 2, False, True, False, False, 0, True, (5, 3, 4, 3)),
        ("lstm", 3, True, True, True, False, 2, False, (4, 5, 7, 3)),
        ("lstm", 2, True, True, False, True, 0, True, (6, 4, 3, 5)),
        ("gru", 2, True, True, False, False, 0, False, (5, 3, 4, 3)),
        ("gru", 3, False, True, True, True, 0, True, (7, 4, 3, 5)),
        ("rnn_tanh", 2, True, True, False, False, 0, True, (4, 5, 7, 2)),
        ("rnn_tanh", 3, False, True, True, False, 0, False, (6, 2, 1, 4)),
        ("rnn_tanh", 2, True, False, False, True, 0, False, (5, 3, 5, 3)),
    ]
    specs = []
    for i, (mode, L, bi, bias, bf, ragged, proj, has_h0, size) in enumerate(rows):
        specs.append(dict(mode=mode, L=L, bi=bi, bias=bias, bf=bf, ragged=ragged, proj=proj, has_h0=has_h0,
                          size=size, dropout=DROPOUT_P, short_max=(i % 2 == 1)))
    return specs


def to_f64_grad(t):
    return t.detach().double().requires_grad_(True)


def grad_or_zeros(p):
    return p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)


def build_layer_case(spec):
    mode, L, bi, bias, bf, ragged, proj, has_h0 = (
        spec[k] for k in ("mode", "L", "bi", "bias", "bf", "ragged", "proj", "has_h0"))
    p_drop = spec["dropout"]
    T, B, I, H = spec["size"]
    is_lstm = mode == "lstm"
    D = 2 if bi else 1
    H_out = proj if proj > 0 else H
    name = layer_case_name(spec)
    seed = seed_of(name)
    torch.manual_seed(seed)
    rng = random.Random(seed)

    m = make_layer(mode, I, H, L, bias, bf, bi, proj, dropout=p_drop)
    x = torch.randn(B, T, I) if bf else torch.randn(T, B, I)
    for bz in spec.get("zero_t0", []):
        if bf:
            x[bz, 0] = 0.0
        else:
            x[0, bz] = 0.0
    h0 = torch.randn(L * D, B, H_out) if has_h0 else None
    c0 = torch.randn(L * D, B, H) if (has_h0 and is_lstm) else None
    lengths = torch.tensor(ragged_lengths(rng, T, B, spec["short_max"]), dtype=torch.int64) if ragged else None
    out_shape = (B, T, D * H_out) if bf else (T, B, D * H_out)
    grad_output = torch.randn(*out_shape)
    grad_h_n = torch.randn(L * D, B, H_out)
    grad_c_n = torch.randn(L * D, B, H) if is_lstm else None
    masks = []
    if p_drop > 0:
        gen = torch.Generator().manual_seed(seed ^ 0x5EED)
        for k in range(L - 1):
            keep = torch.bernoulli(torch.full((T, B, D * H_out), 1.0 - p_drop), generator=gen)
            masks.append((keep / (1.0 - p_drop)).float())

    # ---- expected values in float64
    m64 = copy.deepcopy(m).double()
    m64.train()
    x64 = to_f64_grad(x)
    h064 = to_f64_grad(h0 if has_h0 else torch.zeros(L * D, B, H_out))
    c064 = to_f64_grad(c0 if has_h0 else torch.zeros(L * D, B, H)) if is_lstm else None

    if p_drop > 0:
        # proof that the decomposition is the stacked module: all-ones masks vs. the stacked module
        # with dropout disabled (eval mode; RNNs have no other train/eval difference)
        check_decomposition(m, mode, x, h0, c0, lengths, bf, T, L, D, B, H, H_out, grad_output, grad_h_n,
                            grad_c_n)
        out, h_n, c_n = run_decomposed(m64, mode, x64, h064, c064, lengths, T, [mk.double() for mk in masks])
    else:
        out, h_n, c_n = run_stacked(m64, is_lstm, x64, h064, c064, lengths, bf, T)
    loss = (out * grad_output.double()).sum() + (h_n * grad_h_n.double()).sum()
    if is_lstm:
        loss = loss + (c_n * grad_c_n.double()).sum()
    loss.backward()

    t = {}
    for n, p in m.state_dict().items():
        t["params." + n] = p.detach().float()
    t["input"] = x
    if has_h0:
        t["h0"] = h0
        if is_lstm:
            t["c0"] = c0
    if ragged:
        t["lengths"] = lengths
    for k, mk in enumerate(masks):
        t[f"dropout_mask.l{k}"] = mk
    t["grad_output"] = grad_output
    t["grad_h_n"] = grad_h_n
    if is_lstm:
        t["grad_c_n"] = grad_c_n
    t["expected.output"] = out.detach()
    t["expected.h_n"] = h_n.detach()
    if is_lstm:
        t["expected.c_n"] = c_n.detach()
    t["expected.grad.input"] = x64.grad.detach()
    t["expected.grad.h0"] = h064.grad.detach()
    if is_lstm:
        t["expected.grad.c0"] = c064.grad.detach()
    for n, p in m64.named_parameters():
        t["expected.grad." + n] = grad_or_zeros(p)

    if ragged:
        # padded positions of the output must be exactly 0
        o = t["expected.output"] if not bf else t["expected.output"].transpose(0, 1)
        for bi_, ln in enumerate(lengths.tolist()):
            assert torch.all(o[ln:, bi_] == 0)

    meta = {
        "module": "layer",
        "mode": mode,
        "input_size": str(I),
        "hidden_size": str(H),
        "num_layers": str(L),
        "proj_size": str(proj),
        "bias": b(bias),
        "batch_first": b(bf),
        "bidirectional": b(bi),
        "seq_len": str(T),
        "batch": str(B),
        "has_h0": b(has_h0),
        "ragged": b(ragged),
        "dropout": str(p_drop) if p_drop > 0 else "0",
        "snippet": layer_snippet(spec),
    }
    return name, t, meta


def layer_snippet(spec):
    mode, L, bi, bias, bf, ragged, proj, has_h0 = (
        spec[k] for k in ("mode", "L", "bi", "bias", "bf", "ragged", "proj", "has_h0"))
    p_drop = spec["dropout"]
    T = spec["size"][0]
    is_lstm = mode == "lstm"
    lines = [f"rnn = {layer_ctor_text(mode, *spec['size'][2:], L, bias, bf, bi, proj, p_drop)}"]
    lines.append("rnn.load_state_dict(params); rnn = rnn.double().train()")
    lines.append("input = input.double().requires_grad_()")
    if has_h0:
        lines.append("h0 = h0.double().requires_grad_()" + ("; c0 = c0.double().requires_grad_()" if is_lstm else ""))
    else:
        z = "h0 = torch.zeros(L*D, B, H_out, dtype=torch.float64, requires_grad=True)"
        if is_lstm:
            z += "; c0 = torch.zeros(L*D, B, H, dtype=torch.float64, requires_grad=True)"
        lines.append(z + "  # same as passing no state")
    hx = "(h0, c0)" if is_lstm else "h0"
    lhs = "out, (h_n, c_n)" if is_lstm else "out, h_n"
    if ragged:
        lines.append(
            f"packed = torch.nn.utils.rnn.pack_padded_sequence(input, lengths, batch_first={bf}, enforce_sorted=False)")
        lines.append(f"{lhs} = rnn(packed, {hx})")
        lines.append(f"output, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first={bf}, total_length={T})")
    else:
        lines.append(f"{lhs.replace('out,', 'output,')} = rnn(input, {hx})")
    loss = "loss = (output*grad_output).sum() + (h_n*grad_h_n).sum()"
    if is_lstm:
        loss += " + (c_n*grad_c_n).sum()"
    lines.append(loss + "; loss.backward()")
    if p_drop > 0:
        lines.append(
            "# dropout: PyTorch's dropout RNG is not reproducible, so the expected values come from the same "
            "network run layer by layer (single-layer modules sharing rnn's layer-k parameters, each layer "
            "time-major, packed/unpacked around every layer when ragged), with layer k's output multiplied by "
            "dropout_mask.l{k} for k < L-1; checked against the stacked module with all-ones masks "
            "(scripts/gen_fixtures.py: run_decomposed)")
    return "\n".join(lines)


def check_decomposition(m, mode, x, h0, c0, lengths, bf, T, L, D, B, H, H_out, grad_output, grad_h_n, grad_c_n):
    is_lstm = mode == "lstm"
    results = []
    for which in ("stacked", "decomposed"):
        mm = copy.deepcopy(m).double().eval()
        xx = to_f64_grad(x)
        hh = to_f64_grad(h0 if h0 is not None else torch.zeros(L * D, B, H_out))
        cc = to_f64_grad(c0 if c0 is not None else torch.zeros(L * D, B, H)) if is_lstm else None
        if which == "stacked":
            out, h_n, c_n = run_stacked(mm, is_lstm, xx, hh, cc, lengths, bf, T)
        else:
            ones = [torch.ones(T, B, D * H_out, dtype=torch.float64) for _ in range(L - 1)]
            out, h_n, c_n = run_decomposed(mm, mode, xx, hh, cc, lengths, T, ones)
        loss = (out * grad_output.double()).sum() + (h_n * grad_h_n.double()).sum()
        if is_lstm:
            loss = loss + (c_n * grad_c_n.double()).sum()
        loss.backward()
        r = {"output": out.detach(), "h_n": h_n.detach(), "grad.input": xx.grad, "grad.h0": hh.grad}
        if is_lstm:
            r["c_n"] = c_n.detach()
            r["grad.c0"] = cc.grad
        for n, p in mm.named_parameters():
            r["grad." + n] = grad_or_zeros(p)
        results.append(r)
    a, c = results
    assert a.keys() == c.keys()
    for k in a:
        assert a[k].shape == c[k].shape, k
        err = (a[k] - c[k]).abs().max().item() if a[k].numel() else 0.0
        assert err <= 1e-12, f"decomposition mismatch in {k}: {err}"


def cell_specs():
    specs = []
    for mi, mode in enumerate(MODES):
        for bias in (True, False):
            for si, size in enumerate(CELL_SIZES):
                specs.append(dict(mode=mode, bias=bias, size=size, has_h0=(mi + bias + si) % 2 == 0))
    return specs


def edge_specs():
    """relu with a pre-activation of exactly 0: no bias, no h0 and an all-zero input row at t = 0 give
    a = 0 there, where PyTorch's relu has derivative 0 (threshold_backward: grad * (result > 0))."""
    return [
        ("layer", dict(mode="rnn_relu", L=2, bi=True, bias=False, bf=False, ragged=False, proj=0, has_h0=False,
                       size=(4, 3, 2, 3), dropout=0.0, short_max=False, zero_t0=[0, 2])),
        ("cell", dict(mode="rnn_relu", bias=False, size=(3, 2, 4), has_h0=False, zero_t0=[1])),
    ]


def build_cell_case(spec):
    mode, bias, has_h0 = spec["mode"], spec["bias"], spec["has_h0"]
    B, I, H = spec["size"]
    is_lstm = mode == "lstm"
    name = "_".join(["cell", mode, "bias" if bias else "nobias", "h0" if has_h0 else "noh0"] +
                    (["zerorows"] if spec.get("zero_t0") else []) + [f"B{B}I{I}H{H}"])
    seed = seed_of(name)
    torch.manual_seed(seed)
    m = make_cell(mode, I, H, bias)
    x = torch.randn(B, I)
    for bz in spec.get("zero_t0", []):
        x[bz] = 0.0
    h0 = torch.randn(B, H) if has_h0 else None
    c0 = torch.randn(B, H) if (has_h0 and is_lstm) else None
    grad_h_n = torch.randn(B, H)
    grad_c_n = torch.randn(B, H) if is_lstm else None

    m64 = copy.deepcopy(m).double()
    x64 = to_f64_grad(x)
    h064 = to_f64_grad(h0 if has_h0 else torch.zeros(B, H))
    c064 = to_f64_grad(c0 if has_h0 else torch.zeros(B, H)) if is_lstm else None
    if is_lstm:
        h1, c1 = m64(x64, (h064, c064))
        loss = (h1 * grad_h_n.double()).sum() + (c1 * grad_c_n.double()).sum()
    else:
        h1, c1 = m64(x64, h064), None
        loss = (h1 * grad_h_n.double()).sum()
    loss.backward()

    t = {}
    for n, p in m.state_dict().items():
        t["params." + n] = p.detach().float()
    t["input"] = x
    if has_h0:
        t["h0"] = h0
        if is_lstm:
            t["c0"] = c0
    t["grad_h_n"] = grad_h_n
    if is_lstm:
        t["grad_c_n"] = grad_c_n
    t["expected.h_n"] = h1.detach()
    if is_lstm:
        t["expected.c_n"] = c1.detach()
    t["expected.grad.input"] = x64.grad.detach()
    t["expected.grad.h0"] = h064.grad.detach()
    if is_lstm:
        t["expected.grad.c0"] = c064.grad.detach()
    for n, p in m64.named_parameters():
        t["expected.grad." + n] = grad_or_zeros(p)

    lines = [f"cell = {cell_ctor_text(mode, I, H, bias)}",
             "cell.load_state_dict(params); cell = cell.double()",
             "input = input.double().requires_grad_()"]
    if has_h0:
        lines.append("h0 = h0.double().requires_grad_()" + ("; c0 = c0.double().requires_grad_()" if is_lstm else ""))
    else:
        z = "h0 = torch.zeros(B, H, dtype=torch.float64, requires_grad=True)"
        if is_lstm:
            z += "; c0 = torch.zeros(B, H, dtype=torch.float64, requires_grad=True)"
        lines.append(z + "  # same as passing no state")
    if is_lstm:
        lines.append("h_n, c_n = cell(input, (h0, c0))")
        lines.append("loss = (h_n*grad_h_n).sum() + (c_n*grad_c_n).sum(); loss.backward()")
    else:
        lines.append("h_n = cell(input, h0)")
        lines.append("loss = (h_n*grad_h_n).sum(); loss.backward()")
    meta = {
        "module": "cell",
        "mode": mode,
        "input_size": str(I),
        "hidden_size": str(H),
        "num_layers": "1",
        "proj_size": "0",
        "bias": b(bias),
        "batch_first": "false",
        "bidirectional": "false",
        "seq_len": "1",
        "batch": str(B),
        "has_h0": b(has_h0),
        "ragged": "false",
        "dropout": "0",
        "snippet": "\n".join(lines),
    }
    return name, t, meta


def save_deterministic(tensors, path, metadata):
    """safetensors.torch.save_file, except that the JSON header is re-serialized with sorted keys:
    safetensors keeps the metadata in a hash map, so its order (and hence the file's bytes) would
    change from run to run. The data section (layout chosen by safetensors) is kept as is."""
    raw = safetensors.torch.save(tensors, metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])
    # round trip through the official reader
    back = safetensors.torch.load_file(str(path))
    assert back.keys() == tensors.keys()
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
    with safetensors.safe_open(str(path), "pt") as f:
        assert f.metadata() == metadata


def save_case(name, tensors, meta):
    out = {}
    for k, v in tensors.items():
        assert v.dtype in (torch.float32, torch.float64, torch.int64), (k, v.dtype)
        if k.startswith("expected."):
            assert v.dtype == torch.float64, k
        elif k != "lengths":
            assert v.dtype == torch.float32, k
        out[k] = v.detach().contiguous().clone()
    path = PARITY / f"{name}.safetensors"
    assert not path.exists(), f"duplicate case name {name}"
    save_deterministic(out, path, meta)
    return path


# --------------------------------------------------------------------------------------------------
# state dicts saved the way users save them


class Encoder(nn.Module):
    def __init__(self, rnn, width):
        super().__init__()
        self.rnn = rnn
        self.norm = nn.LayerNorm(width)


class Tagger(nn.Module):
    def __init__(self, vocab, emb, rnn, width, n_tags):
        super().__init__()
        self.embed = nn.Embedding(vocab, emb)
        self.encoder = Encoder(rnn, width)
        self.head = nn.Linear(width, n_tags)


class Classifier(nn.Module):
    def __init__(self, rnn, width, n_out):
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(width, n_out)


class Stack(nn.Module):
    def __init__(self, rnn, I):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(I, I), rnn])
        self.head = nn.Linear(rnn.hidden_size * (2 if rnn.bidirectional else 1), 2)


def state_dict_specs():
    # name, builder(seed) -> (model, rnn, prefix), mode, (T, B)
    return [
        ("tagger_lstm_l2_bi_proj", "lstm", "encoder.rnn.", (5, 3),
         lambda: (lambda rnn: (Tagger(13, 6, rnn, 2 * 3, 4), rnn))(
             nn.LSTM(6, 5, num_layers=2, bidirectional=True, proj_size=3))),
        ("classifier_gru_bf", "gru", "rnn.", (4, 3),
         lambda: (lambda rnn: (Classifier(rnn, 5, 3), rnn))(nn.GRU(4, 5, batch_first=True))),
        ("stack_rnn_relu_l2", "rnn_relu", "blocks.1.", (6, 2),
         lambda: (lambda rnn: (Stack(rnn, 3), rnn))(nn.RNN(3, 4, num_layers=2, nonlinearity="relu"))),
        ("bare_lstm_nobias_bf", "lstm", "", (3, 2),
         lambda: (lambda rnn: (rnn, rnn))(nn.LSTM(2, 3, bias=False, batch_first=True))),
    ]


def build_state_dicts():
    entries = []
    for name, mode, prefix, (T, B), builder in state_dict_specs():
        torch.manual_seed(seed_of("state_dict/" + name))
        model, rnn = builder()
        model.eval()
        is_lstm = mode == "lstm"
        sd_path = STATE_DICT / f"{name}.safetensors"
        safetensors.torch.save_file(model.state_dict(), str(sd_path))
        sd_path.chmod(0o644)  # safetensors creates files 0600
        keys = list(model.state_dict().keys())
        assert any(k.startswith(prefix + "weight_ih_l0") for k in keys)
        x = torch.randn(B, T, rnn.input_size) if rnn.batch_first else torch.randn(T, B, rnn.input_size)
        with torch.no_grad():
            out, hn = rnn(x)
        t = {"input": x, "expected.output": out}
        if is_lstm:
            t["expected.h_n"], t["expected.c_n"] = hn
        else:
            t["expected.h_n"] = hn
        t = {k: v.detach().float().contiguous().clone() for k, v in t.items()}
        meta = {
            "prefix": prefix,
            "mode": mode,
            "batch_first": b(rnn.batch_first),
            "nonlinearity": getattr(rnn, "nonlinearity", "tanh") if mode.startswith("rnn_") else "",
            "input_size": str(rnn.input_size),
            "hidden_size": str(rnn.hidden_size),
            "num_layers": str(rnn.num_layers),
            "proj_size": str(getattr(rnn, "proj_size", 0)),
            "bias": b(rnn.bias),
            "bidirectional": b(rnn.bidirectional),
            "seq_len": str(T),
            "batch": str(B),
            "snippet": (f"safetensors.torch.save_file(model.state_dict(), '{name}.safetensors')  # model = {type(model).__name__}\n"
                        f"rnn = model{''.join('.' + p if not p.isdigit() else f'[{p}]' for p in prefix.rstrip('.').split('.') if p)}"
                        f"  # {layer_ctor_text(mode, rnn.input_size, rnn.hidden_size, rnn.num_layers, rnn.bias, rnn.batch_first, rnn.bidirectional, getattr(rnn, 'proj_size', 0))}\n"
                        f"model.eval(); output, {'(h_n, c_n)' if is_lstm else 'h_n'} = rnn(input)  # float32, h0 = zeros"),
        }
        io_path = STATE_DICT / f"{name}.io.safetensors"
        save_deterministic(t, io_path, meta)
        entries.append({"name": name, "file": str(sd_path.relative_to(FIXTURES)),
                        "io_file": str(io_path.relative_to(FIXTURES)), "keys": keys, "metadata": meta})
    return entries


# --------------------------------------------------------------------------------------------------


def clean(d):
    d.mkdir(parents=True, exist_ok=True)
    for p in sorted(d.iterdir()):
        if p.is_file() or p.is_symlink():
            p.unlink()
        else:
            raise RuntimeError(f"unexpected directory {p}")


def main():
    # f32 forward of the state-dict models: oneDNN does not do LSTM projections, PyTorch says so and
    # falls back to its own implementation (only affects the f32 .io files, not the f64 parity cases)
    warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    clean(PARITY)
    clean(STATE_DICT)

    cases = []
    specs = [("layer", s) for s in layer_specs()] + [("dropout", s) for s in dropout_specs()] + \
            [("cell", s) for s in cell_specs()] + edge_specs()
    for kind, spec in specs:
        name, t, meta = build_cell_case(spec) if kind == "cell" else build_layer_case(spec)
        path = save_case(name, t, meta)
        cases.append({"name": name, "kind": kind, "file": str(path.relative_to(FIXTURES)),
                      "bytes": path.stat().st_size, "metadata": meta})
    sds = build_state_dicts()

    summary = {}
    for c in cases:
        key = f"{c['kind']}/{c['metadata']['mode']}"
        summary[key] = summary.get(key, 0) + 1
    manifest = {
        "generator": "scripts/gen_fixtures.py",
        "command": COMMAND,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
        "format": "tests/fixtures/FORMAT.md",
        "counts": summary,
        "cases": cases,
        "state_dicts": sds,
    }
    (FIXTURES / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    total = sum(c["bytes"] for c in cases)
    print(f"wrote {len(cases)} parity cases ({total} bytes) and {len(sds)} state dicts; torch {torch.__version__}")
    for k in sorted(summary):
        print(f"  {k}: {summary[k]}")


if __name__ == "__main__":
    main()
