#!/usr/bin/env python3
"""Generate the PyTorch fixtures of recur::nn: optimizers, learning-rate schedules, losses and
gradient clipping.

    python3 scripts/gen_nn_fixtures.py

Writes (after deleting the safetensors files that were there before):
  tests/fixtures/nn/optim_<case>.safetensors   one optimizer configuration run for 6 steps
  tests/fixtures/nn/schedules.safetensors      the lr sequences of the schedules
  tests/fixtures/nn/losses.safetensors         mse_loss / l1_loss values and gradients
  tests/fixtures/nn/clip.safetensors           clip_grad_value_ / clip_grad_norm_
  tests/fixtures/nn/MANIFEST.json              torch version, command, list of cases

The format is described in tests/fixtures/FORMAT.md ("recur::nn"). Everything is computed in
float64 from float32-representable inputs, with fixed seeds (a CRC of each case's name), so
re-running gives the same files.

If torch is not importable with the interpreter that runs this script, the script re-executes
itself with the venv python printed by scripts/venv.sh.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(ROOT / "scripts"))
import venvpy  # noqa: E402

venvpy.ensure()

import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import warnings  # noqa: E402
import zlib  # noqa: E402

import numpy  # noqa: E402
import safetensors  # noqa: E402
import safetensors.torch  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.optim import lr_scheduler  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "nn"
COMMAND = "python3 scripts/gen_nn_fixtures.py"
STEPS = 6
# Two parameter tensors, so that the optimizer's state covers two parts back to back.
SHAPES = [(3, 4), (5,)]
# Gradients of different sizes from step to step, so that AMSGrad's maximum matters.
GRAD_SCALES = [1.0, 3.0, 0.2, 1.0, 0.1, 2.0]


def seed_of(name):
    return zlib.crc32(name.encode("utf-8"))


def f32_randn(shape, gen, scale=1.0):
    """float32 normal values (times a float32 scale), returned as exact float64."""
    return (torch.randn(shape, generator=gen, dtype=torch.float32) * torch.tensor(scale, dtype=torch.float32)).double()


def save(path, tensors, metadata):
    """safetensors.torch.save_file with the JSON header re-serialized with sorted keys:
    safetensors keeps the metadata in a hash map, whose order (and hence the file's bytes) would
    change from run to run. The data section is kept as is."""
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    raw = safetensors.torch.save(tensors, metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])
    back = safetensors.torch.load_file(str(path))
    assert back.keys() == tensors.keys()
    for k, v in tensors.items():
        assert torch.equal(back[k], v), k


# --------------------------------------------------------------------------------------------------
# optimizers: the spec is what recur parses (OptimizerConfig::parse); the same text is turned
# into the torch.optim constructor here.

OPTIM_CLASSES = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}
BOOLS = {"nesterov", "amsgrad", "centered"}


def torch_kwargs(spec):
    name, _, rest = spec.partition(":")
    kw = {}
    betas = {}
    for item in filter(None, rest.split(",")):
        k, v = item.split("=")
        if k in BOOLS:
            kw[k] = {"true": True, "false": False}[v]
        elif k in ("beta1", "beta2"):
            betas[k] = float(v)
        else:
            kw[k] = float(v)
    if betas:
        kw["betas"] = (betas.get("beta1", 0.9), betas.get("beta2", 0.999))
    return name, kw


# (case name, recur spec, lr of each step as factors of the spec's lr, or None for constant)
OPTIM_CASES = [
    ("sgd_plain", "sgd:lr=0.1", None),
    ("sgd_momentum_dampening_wd", "sgd:lr=0.05,momentum=0.9,dampening=0.1,weight_decay=0.01", None),
    ("sgd_nesterov_wd_lrs", "sgd:lr=0.05,momentum=0.8,nesterov=true,weight_decay=0.05", [1, 0.5, 0.5, 0.25, 1, 2]),
    ("adam_default", "adam:lr=0.01", None),
    ("adam_wd_amsgrad", "adam:lr=0.01,weight_decay=0.1,amsgrad=true", None),
    ("adam_betas_eps_lrs", "adam:lr=0.02,beta1=0.8,beta2=0.99,eps=1e-06", [1, 0.7, 0.49, 1.5, 0.1, 1]),
    ("adamw_default", "adamw:lr=0.01", None),
    ("adamw_wd_amsgrad_lrs", "adamw:lr=0.01,weight_decay=0.1,amsgrad=true", [0.5, 1, 1, 0.3, 2, 1]),
    ("rmsprop_default", "rmsprop:lr=0.01", None),
    ("rmsprop_centered_momentum_wd", "rmsprop:lr=0.01,alpha=0.9,momentum=0.9,centered=true,weight_decay=0.01", None),
    ("rmsprop_momentum_eps", "rmsprop:lr=0.005,momentum=0.5,eps=1e-06", [1, 2, 0.5, 1, 1, 0.25]),
    ("rmsprop_centered", "rmsprop:lr=0.01,centered=true", None),
    ("adagrad_default", "adagrad:lr=0.1", None),
    (
        "adagrad_decay_wd_init",
        "adagrad:lr=0.1,lr_decay=0.05,weight_decay=0.01,initial_accumulator_value=0.1,eps=1e-08",
        None,
    ),
]

STATE_NAMES = {
    "sgd": ["momentum_buffer"],
    "adam": ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
    "adamw": ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
    "rmsprop": ["square_avg", "momentum_buffer", "grad_avg"],
    "adagrad": ["sum"],
}


def build_optim(case, spec, factors):
    gen = torch.Generator().manual_seed(seed_of(case))
    name, kw = torch_kwargs(spec)
    params0 = [f32_randn(s, gen) for s in SHAPES]
    grads = [[f32_randn(s, gen, GRAD_SCALES[t]) for s in SHAPES] for t in range(STEPS)]
    lr = kw.get("lr")
    lrs = [lr * f for f in factors] if factors else [lr] * STEPS
    params = [p.clone().requires_grad_() for p in params0]
    opt = OPTIM_CLASSES[name](params, foreach=False, **kw)
    after = []
    for t in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = lrs[t]
        for p, g in zip(params, grads[t]):
            p.grad = g.clone()
        opt.step()
        after.append(torch.cat([p.detach().reshape(-1) for p in params]))
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts])  # noqa: E731
    tensors = {
        "params0": flat(params0),
        "grads": torch.stack([flat(g) for g in grads]),
        "lrs": torch.tensor(lrs, dtype=torch.float64),
        "expected.params": torch.stack(after),
    }
    steps = set()
    names = []
    for key in STATE_NAMES[name]:
        per_param = [opt.state[p].get(key) for p in params]
        if all(v is None for v in per_param):
            continue
        tensors[f"expected.{key}"] = flat([v.detach() for v in per_param])
        names.append(key)
    for p in params:
        steps.add(int(opt.state[p]["step"])) if "step" in opt.state[p] else steps.add(STEPS)
    assert steps == {STEPS}, steps
    kwtext = ", ".join(f"{k}={v!r}" for k, v in kw.items())
    snippet = (
        f"params = [p.double().requires_grad_() for p in split(params0, {SHAPES})]\n"
        f"opt = torch.optim.{OPTIM_CLASSES[name].__name__}(params, foreach=False, {kwtext})\n"
        f"for t in range({STEPS}):\n"
        "    for g in opt.param_groups: g['lr'] = lrs[t]\n"
        "    for p, g in zip(params, split(grads[t])): p.grad = g\n"
        "    opt.step(); expected.params[t] = cat(params)\n"
        "expected.<name> = cat(opt.state[p][name] for p in params)"
    )
    meta = {
        "optimizer": spec,
        "torch_class": OPTIM_CLASSES[name].__name__,
        "parts": ",".join(str(math.prod(s)) for s in SHAPES),
        "steps": str(STEPS),
        "state": ",".join(names),
        "snippet": snippet,
    }
    path = OUT / f"optim_{case}.safetensors"
    save(path, tensors, meta)
    return {"name": case, "file": f"nn/{path.name}", "optimizer": spec, "state": names}


# --------------------------------------------------------------------------------------------------
# schedules: recur's spec (Schedule::parse with base_lr, total_steps, warmup_steps) and the PyTorch
# code that makes the same schedule over `opt`.


def warmup(w):
    return f"lr_scheduler.LinearLR(opt, start_factor=1/({w}+1), end_factor=1.0, total_iters={w})"


SCHED_CASES = [
    # name, spec, base_lr, total_steps, warmup_steps, steps recorded, torch code
    ("constant", "constant", 0.01, 10, 0, 10, None),
    ("step", "step:step_size=3,gamma=0.5", 0.1, 20, 0, 20, "lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)"),
    (
        "multistep",
        "multistep:milestones=2/5/5/9,gamma=0.3",
        0.1,
        12,
        0,
        12,
        "lr_scheduler.MultiStepLR(opt, milestones=[2, 5, 5, 9], gamma=0.3)",
    ),
    ("exponential", "exp:gamma=0.9", 0.05, 40, 0, 40, "lr_scheduler.ExponentialLR(opt, gamma=0.9)"),
    (
        "cosine_short_past_tmax",
        "cosine:t_max=10,eta_min=0.001",
        0.1,
        35,
        0,
        35,
        "lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.001)",
    ),
    ("cosine_long", "cosine", 0.001, 1000, 0, 1000, "lr_scheduler.CosineAnnealingLR(opt, T_max=1000, eta_min=0.0)"),
    (
        "cosine_long_eta_min",
        "cosine:eta_min=1e-5",
        0.003,
        1800,
        0,
        1800,
        "lr_scheduler.CosineAnnealingLR(opt, T_max=1800, eta_min=1e-05)",
    ),
    (
        "linear_warmup_only",
        "linear:start_factor=0.25,end_factor=1.0,total_iters=8",
        0.1,
        12,
        0,
        12,
        "lr_scheduler.LinearLR(opt, start_factor=0.25, end_factor=1.0, total_iters=8)",
    ),
    ("linear_decay", "linear", 0.1, 10, 0, 12, "lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=0.0, total_iters=10)"),
    (
        "warmup_cosine",
        "cosine:eta_min=1e-4",
        0.1,
        30,
        5,
        30,
        f"lr_scheduler.SequentialLR(opt, [{warmup(5)}, lr_scheduler.CosineAnnealingLR(opt, T_max=25, eta_min=0.0001)], milestones=[5])",
    ),
    (
        "warmup_cosine_long",
        "cosine",
        0.002,
        1800,
        100,
        1800,
        f"lr_scheduler.SequentialLR(opt, [{warmup(100)}, lr_scheduler.CosineAnnealingLR(opt, T_max=1700, eta_min=0.0)], milestones=[100])",
    ),
    (
        "warmup_step",
        "step:step_size=4,gamma=0.5",
        0.1,
        20,
        3,
        20,
        f"lr_scheduler.SequentialLR(opt, [{warmup(3)}, lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)], milestones=[3])",
    ),
    (
        "warmup_multistep",
        "multistep:milestones=3/6,gamma=0.1",
        0.1,
        12,
        2,
        12,
        f"lr_scheduler.SequentialLR(opt, [{warmup(2)}, lr_scheduler.MultiStepLR(opt, milestones=[3, 6], gamma=0.1)], milestones=[2])",
    ),
    (
        "warmup_exponential",
        "exponential:gamma=0.95",
        0.01,
        30,
        4,
        30,
        f"lr_scheduler.SequentialLR(opt, [{warmup(4)}, lr_scheduler.ExponentialLR(opt, gamma=0.95)], milestones=[4])",
    ),
    (
        "warmup_linear_decay",
        "linear",
        0.1,
        20,
        5,
        22,
        f"lr_scheduler.SequentialLR(opt, [{warmup(5)}, lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=0.0, total_iters=15)], milestones=[5])",
    ),
    (
        "warmup_constant",
        "constant",
        0.1,
        10,
        3,
        10,
        f"lr_scheduler.SequentialLR(opt, [{warmup(3)}, lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)], milestones=[3])",
    ),
]


def build_schedules():
    tensors = {}
    cases = []
    closed_form = {}
    for name, spec, base_lr, total, warm, n, code in SCHED_CASES:
        opt = torch.optim.SGD([torch.zeros(1, dtype=torch.float64, requires_grad=True)], lr=base_lr)
        sched = eval(code) if code else None
        lrs = [opt.param_groups[0]["lr"]]
        for _ in range(n):
            opt.step()
            if sched is not None:
                sched.step()
            lrs.append(opt.param_groups[0]["lr"] if sched is None else sched.get_last_lr()[0])
        tensors[f"lr.{name}"] = torch.tensor(lrs, dtype=torch.float64)
        cases.append(
            {
                "name": name,
                "spec": spec,
                "base_lr": base_lr,
                "total_steps": total,
                "warmup_steps": warm,
                "steps": n,
                "snippet": (
                    f"opt = torch.optim.SGD(params, lr={base_lr!r})\n"
                    + (f"sched = {code}\n" if code else "sched = None  # constant\n")
                    + f"lrs = [lr]; for t in range({n}): opt.step(); sched.step(); lrs.append(sched.get_last_lr()[0])"
                ),
            }
        )
        if name.startswith("cosine_long"):
            # The documented closed form against PyTorch's recursion.
            T = total
            eta = float(spec.split("eta_min=")[1]) if "eta_min" in spec else 0.0
            worst = 0.0
            for t, v in enumerate(lrs):
                c = eta + (base_lr - eta) * (1 + math.cos(math.pi * t / T)) / 2
                if v != 0:
                    worst = max(worst, abs(c - v) / abs(v))
            closed_form[name] = worst
    save(OUT / "schedules.safetensors", tensors, {"cases": json.dumps(cases)})
    return cases, closed_form


# --------------------------------------------------------------------------------------------------
# losses and clipping


def build_losses():
    gen = torch.Generator().manual_seed(seed_of("losses"))
    T, B, Fdim = 4, 3, 2
    inp = f32_randn((T, B, Fdim), gen)
    tgt = f32_randn((T, B, Fdim), gen)
    tgt[0, 0, 0] = inp[0, 0, 0]  # a zero difference: l1's gradient is sign(0) = 0 there
    tgt[2, 1, 1] = inp[2, 1, 1]
    lengths = [4, 2, 3]
    mask_tb = torch.tensor([[t < lengths[b] for b in range(B)] for t in range(T)])
    mask_el = torch.rand((T, B, Fdim), generator=gen) < 0.6
    tensors = {
        "input": inp,
        "target": tgt,
        # flattened (row-major) to 1-D: (T, B) -> (12,), (T, B, F) -> (24,)
        "mask.tb": mask_tb.to(torch.int64).reshape(-1),
        "mask.elem": mask_el.to(torch.int64).reshape(-1),
    }
    cases = []
    fns = {"mse": F.mse_loss, "l1": F.l1_loss}
    for loss in ("mse", "l1"):
        for red in ("mean", "sum"):
            for mask in ("none", "tb", "elem"):
                x = inp.clone().requires_grad_()
                if mask == "none":
                    value = fns[loss](x, tgt, reduction=red)
                else:
                    m = mask_tb if mask == "tb" else mask_el
                    value = fns[loss](x[m], tgt[m], reduction=red)
                value.backward()
                name = f"{loss}_{red}_{mask}"
                tensors[f"expected.{name}.loss"] = value.detach().reshape(1)
                tensors[f"expected.{name}.grad"] = x.grad.detach()
                sel = "" if mask == "none" else f"[mask.{mask}.bool()]"
                cases.append(
                    {
                        "name": name,
                        "loss": loss,
                        "reduction": red,
                        "mask": mask,
                        "snippet": f"x = input.requires_grad_(); loss = F.{fns[loss].__name__}(x{sel}, target{sel}, reduction='{red}'); loss.backward(); grad = x.grad",
                    }
                )
    save(OUT / "losses.safetensors", tensors, {"cases": json.dumps(cases)})
    return cases


def build_clip():
    gen = torch.Generator().manual_seed(seed_of("clip"))
    grads = [f32_randn(s, gen, 3.0) for s in SHAPES]
    tensors = {"grad.a": grads[0], "grad.b": grads[1]}
    ps = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    for p, g in zip(ps, grads):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_value_(ps, 0.5, foreach=False)
    tensors["expected.value.a"], tensors["expected.value.b"] = (p.grad.clone() for p in ps)
    for p, g in zip(ps, grads):
        p.grad = g.clone()
    total = torch.nn.utils.clip_grad_norm_(ps, 1.0, foreach=False)
    tensors["expected.norm.total"] = total.detach().reshape(1)
    tensors["expected.norm.a"], tensors["expected.norm.b"] = (p.grad.clone() for p in ps)
    snippet = (
        "p.grad = grad (a: (3, 4), b: (5,)); torch.nn.utils.clip_grad_value_(params, 0.5, foreach=False) -> expected.value.*\n"
        "p.grad = grad; total = torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=False) -> expected.norm.*"
    )
    save(OUT / "clip.safetensors", tensors, {"clip_value": "0.5", "max_norm": "1.0", "snippet": snippet})


def main():
    torch.use_deterministic_algorithms(True)
    warnings.simplefilter("error")
    OUT.mkdir(parents=True, exist_ok=True)
    for p in OUT.glob("*.safetensors"):
        p.unlink()
    optim = [build_optim(*c) for c in OPTIM_CASES]
    scheds, closed_form = build_schedules()
    losses = build_losses()
    build_clip()
    manifest = {
        "generator": "scripts/gen_nn_fixtures.py",
        "command": COMMAND,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
        "format": "tests/fixtures/FORMAT.md",
        "optimizers": optim,
        "schedules": [{k: c[k] for k in ("name", "spec", "base_lr", "total_steps", "warmup_steps")} for c in scheds],
        "cosine_closed_form_max_rel_diff": closed_form,
        "losses": [c["name"] for c in losses],
        "clip": ["clip_grad_value_", "clip_grad_norm_"],
    }
    (OUT / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(optim)} optimizer cases, {len(scheds)} schedules, {len(losses)} losses, clip to {OUT}")
    for k, v in closed_form.items():
        print(f"{k}: closed-form cosine vs PyTorch's recursion, max relative difference {v:.3e}")


if __name__ == "__main__":
    main()
