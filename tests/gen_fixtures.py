#!/usr/bin/python3
"""gen_fixtures.py: the PyTorch reference trajectories behind tests/test_parity.c.

What it makes: tests/fixtures/parity_<family>.json, one file per optimizer family
(gd, sgd, adam, adamw, rmsprop, adagrad). Each file holds the problem (a small
MLP nn.Sequential(Linear(6, 8), Tanh(), Linear(8, 3)) with nn.CrossEntropyLoss
(mean) on 32 samples of 6 features and 3 classes), its initial parameters, and
cases: one optimizer configuration x one of {none, l2, wd, clip, a schedule},
plus a few l1 cases and one with biases excluded from decay; Adagrad's
schedule case also has lr_decay (59 cases in all). The file records the batch
indices of each of the 50 steps (gd takes the whole set); a case records the
descent option names and values, the learning rate, loss and gradient norm
(before clipping) of each step, and the 83 flat parameters after each step
(state_dict order: 0.weight [8, 6], 0.bias, 2.weight [3, 8], 2.bias).

How to regenerate (Debian's python3-torch; `python3` on PATH may lack torch):

    /usr/bin/python3 tests/gen_fixtures.py          # writes tests/fixtures/
    /usr/bin/python3 tests/gen_fixtures.py --check  # recomputes, compares, writes nothing

The output is deterministic (fixed seeds, CPU, float64), so regenerating with
the same torch gives the same files.

How the reference is computed, and why it is the one descent must match:
- The data and the initial parameters are drawn in float32 (torch's own
  nn.Linear initialisation) and cast to float64; the fixture stores them with
  9 significant digits, which round-trips float32 exactly, so descent (float32)
  and this script (float64) start from identical values.
- Everything else runs in float64 with PyTorch's own optimizers (SGD, Adam,
  AdamW, RMSprop, Adagrad), torch.nn.utils.clip_grad_norm_ and schedulers
  (StepLR, CosineAnnealingLR, SequentialLR(LinearLR, CosineAnnealingLR)). The
  rates the schedulers produce are checked here against descent's closed forms
  (optimizers/schedule.h); torch 1.13's SequentialLR agrees with them (the
  script stops if it ever does not).
- Rules descent has and torch lacks are emulated exactly as optimizers/optim.h
  documents them, in its order: after clipping, g <- g + l1*sign(p) (l1), and
  p <- p*(1 - lr*wd) before the optimizer's update (wd on SGD, RMSprop and
  Adagrad; for Adam it is torch's AdamW, which does precisely that). When an
  AdamW case also has l2 (torch's coupled weight_decay, which AdamW lacks) the
  script adds l2*p to the gradient before the step, that is with the
  undecayed p, as descent does.
- Parameters are stored to 8 decimal places (absolute error 5e-9 each; with
  ||theta|| >= 2 the norm-relative representation error stays below 3e-8,
  over 300 times below the 1e-5 the test allows). 12 significant digits would
  take the 59 cases to about 4.3 MB, past the 3 MB budget. Losses and gradient
  norms keep 9 significant digits, rates 12.

Checks made here (the script fails rather than write a weak fixture):
- every scheduler's rates equal descent's closed forms to 1e-12 relative;
- the clip threshold actually clips in at least 60% of the steps of each case;
- every case moves: ||theta_50 - theta_0|| / ||theta_0|| > 0.1 (0.35 to 1.96);
- every regularized or scheduled case ends at least 1e-3 (relative) away from
  the same configuration without it (amsgrad from plain Adam, lr_decay from
  the same schedule without it, biases kept out of decay from biases decayed),
  so a rule that descent ignored would fail the test by 100x its tolerance;
- each file stays under 1.25 MiB and all of them together under 3 MB.
"""

import json
import math
import os
import sys
import warnings

import torch

STEPS = 50
N_TRAIN = 32
N_IN, N_HIDDEN, N_CLASSES = 6, 8, 3
BATCH = 8
SEED = 20240601
DECIMALS = 8  # decimal places of the stored trajectories (see the header)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures")

# Every option a case may set, with descent's defaults (harness/config.c and
# each optimizer's defaults()): the fixture writes all that the optimizer uses.
OPTIMIZER_KEYS = {
    "gd": ["lr", "momentum", "dampening", "nesterov"],
    "sgd": ["lr", "momentum", "dampening", "nesterov"],
    "adam": ["lr", "beta1", "beta2", "eps", "amsgrad"],
    "adamw": ["lr", "beta1", "beta2", "eps", "amsgrad"],
    "rmsprop": ["lr", "alpha", "eps", "momentum", "centered"],
    "adagrad": ["lr", "eps", "lr-decay", "initial-accumulator"],
}
DEFAULTS = {
    "gd": {"lr": 0.1, "momentum": 0.0, "dampening": 0.0, "nesterov": False, "wd": 0.0},
    "sgd": {"lr": 0.1, "momentum": 0.0, "dampening": 0.0, "nesterov": False, "wd": 0.0},
    "adam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "amsgrad": False, "wd": 0.0},
    "adamw": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "amsgrad": False, "wd": 0.01},
    "rmsprop": {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "centered": False,
                "wd": 0.0},
    "adagrad": {"lr": 1e-2, "eps": 1e-10, "lr-decay": 0.0, "initial-accumulator": 0.0,
                "wd": 0.0},
}
COMMON = {"l2": 0.0, "l1": 0.0, "decay-bias": True, "clip": 0.0, "schedule": "constant",
          "warmup": 0, "step-size": 0, "gamma": 0.1, "min-lr": 0.0}

# The optimizer configurations (family, name, options) and, for each, its
# regularizer strengths and schedule. Strengths are chosen so that each
# regularizer changes the 50-step trajectory clearly (checked below).
CONFIGS = [
    ("gd", "gd", {"lr": 0.5}),
    ("sgd", "sgd", {"lr": 0.2}),
    ("sgd", "sgd-momentum", {"lr": 0.05, "momentum": 0.9}),
    ("sgd", "sgd-nesterov", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("sgd", "sgd-dampening", {"lr": 0.1, "momentum": 0.9, "dampening": 0.5}),
    ("adam", "adam", {"lr": 0.01}),
    ("adam", "adam-amsgrad", {"lr": 0.01, "beta1": 0.8, "beta2": 0.9, "amsgrad": True}),
    ("adamw", "adamw", {"lr": 0.01}),
    ("rmsprop", "rmsprop", {"lr": 0.002}),
    ("rmsprop", "rmsprop-centered-momentum",
     {"lr": 0.001, "alpha": 0.9, "momentum": 0.9, "centered": True}),
    ("adagrad", "adagrad", {"lr": 0.05}),
]

# Regularizer settings per configuration: l2 and wd strengths.
REG = {
    "gd": {"l2": 0.05, "wd": 0.1},
    "sgd": {"l2": 0.05, "wd": 0.1},
    "sgd-momentum": {"l2": 0.05, "wd": 0.2},
    "sgd-nesterov": {"l2": 0.05, "wd": 0.2},
    "sgd-dampening": {"l2": 0.05, "wd": 0.2},
    "adam": {"l2": 0.01, "wd": 0.5},
    "adam-amsgrad": {"l2": 0.01, "wd": 0.5},
    "adamw": {"l2": 0.01, "wd": 0.5},
    "rmsprop": {"l2": 0.01, "wd": 2.0},
    "rmsprop-centered-momentum": {"l2": 0.01, "wd": 2.0},
    "adagrad": {"l2": 0.01, "wd": 0.5},
}

# Which schedule each configuration runs in its schedule case: step, cosine and
# warmup-cosine are each used by several optimizers.
SCHEDULE = {
    "gd": {"schedule": "step", "step-size": 15, "gamma": 0.5},
    "sgd": {"schedule": "cosine"},
    "sgd-momentum": {"schedule": "warmup-cosine", "warmup": 5},
    "sgd-nesterov": {"schedule": "step", "step-size": 10, "gamma": 0.5},
    "sgd-dampening": {"schedule": "warmup-cosine", "warmup": 8, "min-lr": 0.01},
    "adam": {"schedule": "cosine", "min-lr": 0.001},
    "adam-amsgrad": {"schedule": "warmup-cosine", "warmup": 5},
    "adamw": {"schedule": "step", "step-size": 20, "gamma": 0.2},
    "rmsprop": {"schedule": "warmup-cosine", "warmup": 10, "min-lr": 0.0002},
    "rmsprop-centered-momentum": {"schedule": "cosine"},
    # Adagrad's lr_decay rides on its schedule case: clr = lr_t / (1 + (t-1) lr_decay)
    "adagrad": {"schedule": "step", "step-size": 12, "gamma": 0.5, "lr-decay": 0.05},
}

# Extra cases: (configuration, case suffix, options over the configuration's).
EXTRA = [
    ("sgd-momentum", "l1", {"l1": 0.005}),
    ("adam", "l1", {"l1": 0.005}),
    ("rmsprop", "l1", {"l1": 0.005}),
    ("adamw", "wd-no-bias-decay", {"wd": 0.5, "decay-bias": False}),
]

# Cases per family: tests/test_parity.c holds the same numbers.
EXPECTED = {"gd": 5, "sgd": 21, "adam": 11, "adamw": 6, "rmsprop": 11, "adagrad": 5}


def make_problem():
    """Data, labels and initial parameters, drawn in float32."""
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(N_TRAIN, N_IN, generator=g, dtype=torch.float32)
    # labels from a random teacher, with a few flipped, so the task is learnable
    teacher = torch.randn(N_IN, N_CLASSES, generator=g, dtype=torch.float32)
    y = (x @ teacher).argmax(dim=1)
    flip = torch.randperm(N_TRAIN, generator=g)[:4]
    y[flip] = (y[flip] + 1) % N_CLASSES
    torch.manual_seed(SEED + 1)
    f32 = torch.float32
    model = torch.nn.Sequential(torch.nn.Linear(N_IN, N_HIDDEN, dtype=f32), torch.nn.Tanh(),
                                torch.nn.Linear(N_HIDDEN, N_CLASSES, dtype=f32))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return x, y, init


def batch_order():
    """Minibatches of BATCH in a fixed order: one permutation per epoch."""
    g = torch.Generator().manual_seed(SEED + 2)
    out = []
    while len(out) < STEPS:
        perm = torch.randperm(N_TRAIN, generator=g).tolist()
        out += [perm[i:i + BATCH] for i in range(0, N_TRAIN, BATCH)]
    return out[:STEPS]


def closed_form_lr(o, t):
    """descent's ds_schedule_lr (optimizers/schedule.h) for step t (0-based)."""
    base, w = o["lr"], max(o["warmup"], 0)
    if t < w:
        return base * (t + 1) / w
    u, span = t - w, STEPS - w
    if o["schedule"] == "constant":
        return base
    if o["schedule"] == "step":
        return base * o["gamma"] ** (u // o["step-size"])
    if span <= 0:
        return base
    u = min(u, span)
    return o["min-lr"] + (base - o["min-lr"]) * (1 + math.cos(math.pi * u / span)) / 2


def make_scheduler(opt, o):
    s = o["schedule"]
    if s == "constant":
        return None
    if s == "step":
        assert o["warmup"] == 0
        return torch.optim.lr_scheduler.StepLR(opt, step_size=o["step-size"], gamma=o["gamma"])
    if s == "cosine":
        assert o["warmup"] == 0
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=STEPS, eta_min=o["min-lr"])
    if s == "warmup-cosine":
        w = o["warmup"]
        assert 1 < w < STEPS
        warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / w, end_factor=1.0,
                                                 total_iters=w - 1)
        cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=STEPS - w,
                                                         eta_min=o["min-lr"])
        return torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[w])
    raise ValueError(s)


def make_optimizer(optimizer, o, groups):
    """torch's optimizer for a descent configuration. Returns (opt, coupled_l2_in_torch,
    wd_in_torch): which regularizers torch applies itself (the rest are emulated)."""
    lr = o["lr"]
    if optimizer in ("gd", "sgd"):
        wd_torch = False
        opt = torch.optim.SGD(groups, lr=lr, momentum=o["momentum"], dampening=o["dampening"],
                              nesterov=o["nesterov"])
    elif optimizer in ("adam", "adamw"):
        betas = (o["beta1"], o["beta2"])
        if o["wd"] > 0:
            # descent's adam/adamw with wd is exactly torch's AdamW
            wd_torch = True
            opt = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=o["eps"],
                                    amsgrad=o["amsgrad"])
        else:
            wd_torch = False
            opt = torch.optim.Adam(groups, lr=lr, betas=betas, eps=o["eps"],
                                   amsgrad=o["amsgrad"])
    elif optimizer == "rmsprop":
        wd_torch = False
        opt = torch.optim.RMSprop(groups, lr=lr, alpha=o["alpha"], eps=o["eps"],
                                  momentum=o["momentum"], centered=o["centered"])
    elif optimizer == "adagrad":
        wd_torch = False
        opt = torch.optim.Adagrad(groups, lr=lr, lr_decay=o["lr-decay"], eps=o["eps"],
                                  initial_accumulator_value=o["initial-accumulator"])
    else:
        raise ValueError(optimizer)
    # torch's coupled weight_decay is l2, except in AdamW where it means wd
    l2_torch = not wd_torch
    for grp in opt.param_groups:
        if wd_torch:
            grp["weight_decay"] = o["wd"] if grp["decay"] else 0.0
        else:
            grp["weight_decay"] = o["l2"] if grp["decay"] else 0.0
    return opt, l2_torch, wd_torch


def run_case(optimizer, o, x, y, init, batches):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(N_IN, N_HIDDEN), torch.nn.Tanh(),
                                torch.nn.Linear(N_HIDDEN, N_CLASSES)).double()
    model.load_state_dict({k: v.double() for k, v in init.items()})
    params = list(model.parameters())  # state_dict order: 0.weight, 0.bias, 2.weight, 2.bias
    names = [n for n, _ in model.named_parameters()]
    decay = [o["decay-bias"] or not n.endswith("bias") for n in names]
    groups = [{"params": [p for p, d in zip(params, decay) if d], "decay": True},
              {"params": [p for p, d in zip(params, decay) if not d], "decay": False}]
    groups = [grp for grp in groups if grp["params"]]
    opt, l2_torch, wd_torch = make_optimizer(optimizer, o, groups)
    sched = make_scheduler(opt, o)
    if not wd_torch and o["wd"] > 0 and o["l2"] > 0 and l2_torch:
        raise ValueError("emulated wd would change the p that torch's l2 sees")
    loss_fn = torch.nn.CrossEntropyLoss()
    xd = x.double()
    lrs, losses, norms, traj, clipped = [], [], [], [], 0
    for t in range(STEPS):
        idx = torch.tensor(batches[t])
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(xd[idx]), y[idx])
        loss.backward()
        norm = math.sqrt(sum(float((p.grad * p.grad).sum()) for p in params))
        if o["clip"] > 0:
            torch.nn.utils.clip_grad_norm_(params, o["clip"])
            clipped += o["clip"] / (norm + 1e-6) < 1.0
        lr = opt.param_groups[0]["lr"]
        assert all(grp["lr"] == lr for grp in opt.param_groups)
        want = closed_form_lr(o, t)
        if abs(lr - want) > 1e-12 * abs(want):
            sys.exit(f"gen_fixtures: {o['schedule']} step {t}: torch's rate {lr!r} is not "
                     f"descent's closed form {want!r}")
        with torch.no_grad():
            for p, d in zip(params, decay):
                if not d:
                    continue
                if o["l1"] > 0:
                    p.grad.add_(torch.sign(p), alpha=o["l1"])
                if not l2_torch and o["l2"] > 0:
                    p.grad.add_(p, alpha=o["l2"])
                if not wd_torch and o["wd"] > 0:
                    p.mul_(1.0 - lr * o["wd"])
        opt.step()
        if sched is not None:
            sched.step()
        lrs.append(lr)
        losses.append(float(loss))
        norms.append(norm)
        traj.append(torch.cat([p.detach().reshape(-1) for p in params]).tolist())
    return {"lr": lrs, "loss": losses, "grad_norm": norms, "params": traj, "clipped": clipped}


def resolve(optimizer, opts):
    o = dict(COMMON)
    o.update(DEFAULTS[optimizer])
    o.update(opts)
    return o


def described(optimizer, o):
    """The options a fixture records: those the optimizer uses, regularizers, schedule."""
    keys = OPTIMIZER_KEYS[optimizer] + ["l2", "l1", "wd", "decay-bias", "clip", "schedule"]
    if o["schedule"] != "constant" or o["warmup"]:
        keys.append("warmup")
    if o["schedule"] == "step":
        keys += ["step-size", "gamma"]
    if o["schedule"] in ("cosine", "warmup-cosine"):
        keys.append("min-lr")
    return {k: o[k] for k in keys}


def schedule_suffix(opts):
    return "schedule-" + opts["schedule"] + ("-lr-decay" if opts.get("lr-decay") else "")


def rel(a, b):
    num = math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b)))
    den = math.sqrt(sum(v * v for v in b))
    return num / den


def choose_clip(optimizer, o, x, y, init, batches):
    """Half the median gradient norm of the unclipped run: clips most steps."""
    r = run_case(optimizer, o, x, y, init, batches)
    norms = sorted(r["grad_norm"])
    c = 0.5 * norms[len(norms) // 2]
    return float(f"{c:.2g}")


def rounded(v, digits):
    return float(f"{v:.{digits}g}")


def dump(obj, indent=0):
    """JSON with one vector per line (json.dumps would put each number on its own)."""
    pad = " " * indent
    if isinstance(obj, dict):
        items = [f'{pad} {json.dumps(k)}: {dump(v, indent + 1).lstrip()}' for k, v in obj.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and isinstance(obj[0], (list, dict)):
        return pad + "[\n" + ",\n".join(dump(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return pad + json.dumps(obj, separators=(",", ":"))


def main():
    check = "--check" in sys.argv[1:]
    warnings.filterwarnings("ignore", category=UserWarning)  # SequentialLR's step(0)
    torch.set_default_dtype(torch.float64)
    x32, y, init32 = make_problem()
    batches = batch_order()
    full = [list(range(N_TRAIN))] * STEPS
    names = list(init32.keys())
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"], names
    init_flat = torch.cat([init32[k].reshape(-1) for k in names]).tolist()
    n_params = len(init_flat)

    cases = {f: [] for f in EXPECTED}
    base_final = {}
    for family, cname, copts in CONFIGS:
        optimizer = family
        bt = full if optimizer == "gd" else batches
        base = resolve(optimizer, copts)
        clip = choose_clip(optimizer, base, x32, y, init32, bt)
        variants = [("none", {}), ("l2", {"l2": REG[cname]["l2"]}),
                    ("wd", {"wd": REG[cname]["wd"]}), ("clip", {"clip": clip}),
                    (schedule_suffix(SCHEDULE[cname]), SCHEDULE[cname])]
        variants += [(suffix, extra) for c2, suffix, extra in EXTRA if c2 == cname]
        for suffix, vopts in variants:
            o = resolve(optimizer, dict(copts, **vopts))
            name = f"{cname}/{suffix}"
            r = run_case(optimizer, o, x32, y, init32, bt)
            moved = rel(r["params"][-1], init_flat)
            if moved < 0.1:
                sys.exit(f"gen_fixtures: {name} moves only {moved:.3g} (relative) in {STEPS} steps")
            if o["clip"] > 0 and r["clipped"] < 0.6 * STEPS:
                sys.exit(f"gen_fixtures: {name}: clip {o['clip']} clips only {r['clipped']} steps")
            if suffix == "none":
                base_final[cname] = r["params"][-1]
            else:
                away = rel(r["params"][-1], base_final[cname])
                if away < 1e-3:
                    sys.exit(f"gen_fixtures: {name} ends only {away:.3g} from {cname}/none")
            print(f"{name:44s} moved {moved:.3f}  from none "
                  f"{0 if suffix == 'none' else away:.3g}"
                  + (f"  clipped {r['clipped']}/{STEPS} at {o['clip']}" if o["clip"] else ""))
            cases[family].append({
                "name": name,
                "optimizer": optimizer,
                "options": described(optimizer, o),
                "batch": "full" if optimizer == "gd" else "minibatch",
                "lr": [rounded(v, 12) for v in r["lr"]],
                "loss": [rounded(v, 9) for v in r["loss"]],
                "grad_norm": [rounded(v, 9) for v in r["grad_norm"]],
                "params": [[round(v, DECIMALS) for v in row] for row in r["params"]],
            })
            for row, stored in zip(r["params"], cases[family][-1]["params"]):
                if rel(stored, row) > 3e-8:
                    sys.exit(f"gen_fixtures: {name}: storing loses {rel(stored, row):.3g}")

    # Each variation matters on its own, against the same run without it:
    # amsgrad, lr_decay under the schedule, and keeping biases out of decay.
    def final(family, name):
        return next(c for c in cases[family] if c["name"] == name)["params"][-1]

    for family, name, optimizer, opts in [
            ("adam", "adam-amsgrad/none", "adam", dict(CONFIGS[6][2], amsgrad=False)),
            ("adagrad", "adagrad/" + schedule_suffix(SCHEDULE["adagrad"]), "adagrad",
             dict(CONFIGS[10][2], **dict(SCHEDULE["adagrad"], **{"lr-decay": 0.0}))),
            ("adamw", "adamw/wd-no-bias-decay", "adamw", dict(CONFIGS[7][2], wd=0.5))]:
        r = run_case(optimizer, resolve(optimizer, opts), x32, y, init32, batches)
        away = rel(final(family, name), r["params"][-1])
        if away < 1e-3:
            sys.exit(f"gen_fixtures: {name} ends only {away:.3g} from the same run "
                     "without its variation")
        print(f"{name:44s} from the same without its variation {away:.3g}")

    for f, n in EXPECTED.items():
        assert len(cases[f]) == n, (f, len(cases[f]), n)

    total = 0
    for family, cs in cases.items():
        doc = {
            "about": "PyTorch reference trajectories for tests/test_parity.c; made by "
                     "tests/gen_fixtures.py (regenerate: /usr/bin/python3 tests/gen_fixtures.py)",
            "torch": torch.__version__,
            "family": family,
            "steps": STEPS,
            "model": {"in": N_IN,
                      "layers": [{"kind": "linear", "units": N_HIDDEN}, {"kind": "tanh"},
                                 {"kind": "linear", "units": N_CLASSES}],
                      "loss": "cross-entropy",
                      "param_names": names,
                      "n_params": n_params},
            "n_train": N_TRAIN,
            "n_classes": N_CLASSES,
            # float32 values written so that they round-trip exactly
            "x": [float(f"{v:.9g}") for v in x32.reshape(-1).tolist()],
            "y": y.tolist(),
            "init": [float(f"{v:.9g}") for v in init_flat],
            # the rows of each step: "full" cases take all rows in order, "minibatch" ones these
            "batch_size": BATCH,
            "minibatches": batches,
            "n_cases": len(cs),
            "cases": cs,
        }
        text = dump(doc) + "\n"
        path = os.path.join(OUT_DIR, f"parity_{family}.json")
        if len(text) > 5 << 18:
            sys.exit(f"gen_fixtures: {path} would be {len(text)} bytes (over 1.25 MiB)")
        total += len(text)
        if check:
            with open(path) as fh:
                same = fh.read() == text
            print(f"{path}: {'same' if same else 'DIFFERENT'}")
            if not same:
                sys.exit(1)
        else:
            os.makedirs(OUT_DIR, exist_ok=True)
            with open(path + ".tmp", "w") as fh:
                fh.write(text)
            os.replace(path + ".tmp", path)
            print(f"wrote {path} ({len(cs)} cases, {len(text)} bytes)")
    if total > 3_000_000:
        sys.exit(f"gen_fixtures: the fixtures take {total} bytes (over 3 MB)")
    print(f"{sum(len(c) for c in cases.values())} cases, {total} bytes in all")


if __name__ == "__main__":
    main()
