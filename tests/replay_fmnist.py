#!/usr/bin/python3
"""replay_fmnist.py: descent's fmnist-mlp training, replayed step for step in PyTorch.

What it checks. descent trains fmnist-mlp (784-256-128-10, ReLU) with
`--shuffle off --save-init INIT --save FINAL`; this script then builds the same
nn.Sequential in PyTorch, loads INIT with load_state_dict(strict=True), feeds
the same batches in file order (batch k = training rows [kB, kB+B), a short
last batch at the end of an epoch, then the next epoch from row 0: a
DataLoader with shuffle=False, drop_last=False), with pixels x/255 in float32
(or (x/255 - mean)/std with --normalize, mean and std the population
statistics of the training pixels computed in double and cast to float32, as
descent does), nn.CrossEntropyLoss (mean) and torch.optim.Adam / SGD built from
torch's own defaults plus the case's explicit settings, in float32 on
torch.set_num_threads(2) threads. It then compares every tensor of FINAL with
PyTorch's: ||descent - torch|| / ||torch|| must be within --tol (1e-4) for
each. It also compares what descent reports in curve.csv and summary.csv
(1e-4 relative; the accuracy within 5 test images): the training loss at
initialisation, the mean minibatch loss and gradient norm over the run, the
final training and test loss and the test accuracy.

Cases (--case, repeatable; default all three):
  adam       --optimizer adam --lr 1e-3 --batch 128 --steps 200
  sgd        --optimizer sgd --lr 0.005 --momentum 0.9 --batch 128 --steps 200
  sgd-epoch  --optimizer sgd --lr 0.005 --momentum 0.9 --batch 256 --steps 240 --normalize
             (crosses the epoch boundary at step 235 through a 96-row batch)

Why SGD runs at lr 0.005. Parity holds only as far as the trajectory is
stable against float32 rounding. descent and PyTorch sum their GEMMs in
different orders, so their parameters differ by 1e-9 to 1e-7 (relative) from
the first steps on; a ReLU input that lies within that distance of zero can
fall on different sides of the kink in the two, one sample's gradient through
one unit then differs, and the dynamics amplify it. At lr 0.05 (momentum 0.9)
this happens at step 106 (layer 0, unit 104, sample 65 of the batch: +8.9e-8
in PyTorch's GEMM, -2.4e-7 exactly) and grows to 3e-2 by step 200. PyTorch
against itself, with every gradient scaled by 1 + 1e-7 N(0,1) per element
(which reproduces descent's early gap), parts by more than 1e-4 in 15 of 20
runs at lr 0.05, 6/20 at 0.02, 0/20 at 0.005 (and 0/20 for sgd-epoch), and
1/20 for Adam at lr 1e-3 (Adam's steps are about lr whatever the gradient's
size, so even a small gradient changed by a tie moves weights by a full step).
So after a change of BLAS, CPU or torch, a failure can be such a tie rather
than a wrong update: the output lists the ReLU inputs PyTorch saw closest to
zero; rerun with --steps N around them to find the step where the gap opens
(it jumps there instead of growing smoothly). `--case sgd --lr 0.05` shows
one such failure.

Rerun it (from the repository root, Debian's python3 has python3-torch):
  /usr/bin/python3 tests/replay_fmnist.py [--descent build/descent] [--case adam] [--keep DIR]
tests/test_replay.c runs one case per cmocka test (make test).

To see it fail: --torch-lr-scale 1.01 (PyTorch's learning rate 1% off) or
--perturb-step K (PyTorch's gradient of step K scaled by 1.01).

Exit codes: 0 every case within tolerance, 1 a mismatch, 2 bad usage or
descent failed, 77 skipped (no torch, or no Fashion-MNIST files).
"""
import argparse
import gzip
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

SKIP = 77
DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
THREADS = 2

CASES = {
    "adam": dict(optimizer="adam", lr="1e-3", batch=128, steps=200),
    "sgd": dict(optimizer="sgd", lr="0.005", momentum="0.9", batch=128, steps=200),
    "sgd-epoch": dict(optimizer="sgd", lr="0.005", momentum="0.9", batch=256, steps=240, normalize=True),
}

# Secondary quantities (losses, accuracy): descent accumulates in double,
# PyTorch in float32 with its own summation order.
LOSS_RTOL = 1e-4
ACC_ATOL = 5e-4  # five test images out of 10,000 on either side of an argmax tie


def say(msg):
    print(msg, flush=True)


def die(msg, code=2):
    print("replay_fmnist.py: " + msg, file=sys.stderr, flush=True)
    sys.exit(code)


# The environment descent runs in: the caller's, untouched. This process
# caps OpenBLAS's own pool before torch loads (torch's OpenMP threads and
# OpenBLAS's would otherwise contend for the same 2 cores).
CHILD_ENV = dict(os.environ)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
try:
    import torch
    import torch.nn as nn
except ImportError as e:  # the pyenv python3 first on PATH has no torch
    print("replay_fmnist.py: SKIP: cannot import torch (%s); run with Debian's /usr/bin/python3 "
          "(apt-get install python3-torch)" % e, flush=True)
    sys.exit(SKIP)


# ------------------------------------------------------------------ files

def read_safetensors(path):
    """{name: float32 tensor} from a safetensors file: u64 little-endian header
    length, a JSON header {name: {dtype, shape, data_offsets}}, raw data."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        die("%s: too short for a safetensors file" % path)
    (hlen,) = struct.unpack("<Q", raw[:8])
    if 8 + hlen > len(raw):
        die("%s: header length %d past the end of the file" % (path, hlen))
    header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            die("%s: tensor %s has dtype %s, expected F32" % (path, name, info["dtype"]))
        lo, hi = info["data_offsets"]
        shape = list(info["shape"])
        count = 1
        for d in shape:
            count *= d
        if hi - lo != 4 * count or base + hi > len(raw):
            die("%s: tensor %s: offsets [%d, %d) do not hold shape %s" % (path, name, lo, hi, shape))
        vals = struct.unpack("<%df" % count, raw[base + lo:base + hi])
        out[name] = torch.tensor(vals, dtype=torch.float32).reshape(shape)
    return out


def read_idx(path, expect):
    """An unsigned-byte IDX file (gzip or plain) as a uint8 tensor of shape `expect`."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        die("%s: not an unsigned-byte IDX file" % path)
    ndim = raw[3]
    dims = list(struct.unpack(">%dI" % ndim, raw[4:4 + 4 * ndim]))
    if dims != list(expect):
        die("%s: shape %s, expected %s" % (path, dims, list(expect)))
    count = 1
    for d in dims:
        count *= d
    off = 4 + 4 * ndim
    if len(raw) - off != count:
        die("%s: %d data bytes, expected %d" % (path, len(raw) - off, count))
    return torch.frombuffer(bytearray(raw[off:]), dtype=torch.uint8).reshape(dims)


def data_files(folder):
    """The four IDX files, .gz where it exists, else the plain name (as descent)."""
    stems = {
        "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
        "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
    }
    out = {}
    for k, stem in stems.items():
        p = os.path.join(folder, stem)
        out[k] = p + ".gz" if os.path.exists(p + ".gz") or not os.path.exists(p) else p
    return out


def load_fmnist(folder):
    f = data_files(folder)
    return {
        "train_x": read_idx(f["train_x"], (60000, 28, 28)).reshape(60000, 784),
        "train_y": read_idx(f["train_y"], (60000,)).long(),
        "test_x": read_idx(f["test_x"], (10000, 28, 28)).reshape(10000, 784),
        "test_y": read_idx(f["test_y"], (10000,)).long(),
    }


def pixel_stats(train_x):
    """descent's --normalize statistics: population mean and std of x/255 over
    the training pixels, accumulated in double from the byte histogram in
    value order (bit for bit what workloads/fmnist.c computes), then float32."""
    hist = torch.bincount(train_x.reshape(-1), minlength=256).tolist()
    cnt = s1 = s2 = 0.0
    for v in range(256):
        x = v / 255.0
        c = float(hist[v])
        cnt += c
        s1 += c * x
        s2 += c * x * x
    mean = s1 / cnt
    var = s2 / cnt - mean * mean
    std = math.sqrt(var if var > 0.0 else 1.0)
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)


# ------------------------------------------------------------------ descent

def run_descent(binary, case, work):
    init = os.path.join(work, "init.safetensors")
    final = os.path.join(work, "final.safetensors")
    out = os.path.join(work, "run")
    argv = [binary, "run", "--workload", "fmnist-mlp", "--optimizer", case["optimizer"],
            "--lr", case["lr"], "--batch", str(case["batch"]), "--steps", str(case["steps"]),
            "--shuffle", "off", "--seed", "1", "--threads", str(THREADS),
            "--eval-every", str(case["steps"]),  # two curve rows: evaluation is most of descent's time
            "--save-init", init, "--save", final, "--out", out]
    if "momentum" in case:
        argv += ["--momentum", case["momentum"]]
    if case.get("normalize"):
        argv += ["--normalize", "on"]
    say("  descent: " + " ".join(argv))
    t0 = time.time()
    p = subprocess.run(argv, env=CHILD_ENV, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    dt = time.time() - t0
    bad = [s for s in ("Sanitizer", "runtime error:", "internal error") if s in p.stderr]
    if p.returncode != 0 or bad:
        die("descent exited %d%s after %.1f s\n  stdout: %s\n  stderr: %s"
            % (p.returncode, " and reported '%s'" % bad[0] if bad else "", dt, p.stdout[-2000:],
               p.stderr[-4000:]))
    say("  descent took %.1f s" % dt)
    return init, final, out


def read_csv(path):
    import csv
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def descent_reports(out):
    curve = read_csv(os.path.join(out, "curve.csv"))
    summary = read_csv(os.path.join(out, "summary.csv"))[0]
    with open(os.path.join(out, "meta.json")) as f:
        meta = json.load(f)
    return curve, summary, meta


# ------------------------------------------------------------------ PyTorch

def make_model():
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def make_optimizer(case, params, lr_scale):
    lr = float(case["lr"]) * lr_scale
    if case["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=lr)
    if case["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(case.get("momentum", "0")))
    die("no PyTorch optimizer for '%s'" % case["optimizer"])


def to_float(x8, stats):
    x = x8.float() / 255
    if stats is not None:
        x = (x - stats[0]) / stats[1]
    return x


@torch.no_grad()
def evaluate(model, x8, y, stats, chunk=10000):
    """Mean cross-entropy (summed in double) and accuracy over a split."""
    loss_sum, correct = 0.0, 0
    for lo in range(0, x8.shape[0], chunk):
        logits = model(to_float(x8[lo:lo + chunk], stats))
        yy = y[lo:lo + chunk]
        loss_sum += nn.functional.cross_entropy(logits, yy, reduction="sum").double().item()
        correct += int((logits.argmax(dim=1) == yy).sum())
    return loss_sum / x8.shape[0], correct / x8.shape[0]


class NearTies:
    """The ReLU inputs closest to zero, step by step. Where one lies within
    float32 rounding of zero, descent and PyTorch can put it on different
    sides of the kink: one sample's gradient through one unit then differs,
    and the trajectories part (most of all under momentum)."""

    def __init__(self, model, threshold=1e-6):
        self.threshold, self.step, self.found = threshold, -1, []
        self.relus = [i for i, m in enumerate(model) if isinstance(m, nn.ReLU)]
        for i in self.relus:
            model[i].register_forward_hook(self.hook(i - 1))
        self.active = False

    def hook(self, layer):
        def f(module, inputs, output):
            if not self.active:
                return
            z = inputs[0].detach().abs()
            v, j = z.reshape(-1).min(dim=0)
            if float(v) < self.threshold:
                self.found.append((self.step + 1, layer, int(j) // z.shape[1], int(j) % z.shape[1], float(v)))
        return f


def replay(case, init, data, stats, lr_scale, perturb_step):
    model = make_model()
    model.load_state_dict(read_safetensors(init), strict=True)
    ties = NearTies(model)
    opt = make_optimizer(case, model.parameters(), lr_scale)
    lossf = nn.CrossEntropyLoss()
    x8, y = data["train_x"], data["train_y"]
    n, B = x8.shape[0], case["batch"]
    rep = {}
    rep["init_train_loss"], _ = evaluate(model, x8, y, stats)
    pos, loss_sum, norm_sum, samples = n, 0.0, 0.0, 0
    t0 = time.time()
    ties.active = True
    for step in range(case["steps"]):
        ties.step = step
        if pos >= n:  # a new epoch, from row 0 (file order)
            pos = 0
        take = min(B, n - pos)
        xb, yb = to_float(x8[pos:pos + take], stats), y[pos:pos + take]
        pos += take
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(xb), yb)
        loss.backward()
        if step == perturb_step:
            for p in model.parameters():
                p.grad.mul_(1.01)
        norm = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.parameters()))
        opt.step()
        loss_sum += float(loss) * take
        norm_sum += norm
        samples += take
    ties.active = False
    rep["train_s"] = time.time() - t0
    rep["mean_minibatch_loss"] = loss_sum / samples
    rep["mean_grad_norm"] = norm_sum / case["steps"]
    rep["near_ties"] = ties.found
    rep["final_train_loss"], _ = evaluate(model, x8, y, stats)
    rep["final_eval_loss"], rep["final_eval_metric"] = evaluate(model, data["test_x"], data["test_y"], stats)
    return model.state_dict(), rep


# ------------------------------------------------------------------ compare

def rel(a, b):
    a, b = a.double(), b.double()
    den = float(b.norm())
    num = float((a - b).norm())
    return num / den if den > 0 else num


def run_case(name, args, data):
    case = dict(CASES[name])
    if args.lr:
        case["lr"] = args.lr
    if args.steps:
        case["steps"] = args.steps
    say("case %s: %s" % (name, " ".join("%s=%s" % kv for kv in sorted(case.items()))))
    if args.keep:
        work = os.path.join(args.keep, name)
        os.makedirs(work, exist_ok=True)
    else:
        work = tempfile.mkdtemp(prefix="descent-replay-")
    try:
        init, final_path, out = run_descent(args.descent, case, work)
        curve, summary, meta = descent_reports(out)
        stats = None
        if case.get("normalize"):
            stats = pixel_stats(data["train_x"])
            desc = meta["workload"]["description"]
            say("  normalisation: mean %.9g std %.9g (descent: %s)"
                % (float(stats[0]), float(stats[1]), desc[desc.rfind("(") + 1:desc.rfind(")")]))
            want = "(mean %.6f, std %.6f)" % (float(stats[0]), float(stats[1]))
            if want not in desc:
                say("  MISMATCH: descent's description lacks '%s': %s" % (want, desc))
                return result(name, False, float("inf"), args.tol, 0)
        init_sd = read_safetensors(init)
        final = read_safetensors(final_path)
        ours, rep = replay(case, init, data, stats, args.torch_lr_scale, args.perturb_step)
        say("  PyTorch replay: %d steps in %.1f s" % (case["steps"], rep["train_s"]))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    ties = sorted(rep["near_ties"], key=lambda t: t[4])
    say("  steps whose smallest |ReLU input| was under 1e-6 in PyTorch: %d%s"
        % (len(ties), "" if not ties else "; the closest: " + ", ".join(
            "step %d (%.1e: layer %d, sample %d, unit %d)" % (t[0], t[4], t[1], t[2], t[3]) for t in ties[:4])))
    ok = True
    if sorted(final) != sorted(ours):
        say("  MISMATCH: tensor names: descent %s, PyTorch %s" % (sorted(final), sorted(ours)))
        return result(name, False, float("inf"), args.tol, len(ties))
    worst = 0.0
    say("  %-9s %-11s %12s %12s" % ("tensor", "shape", "rel diff", "moved"))
    for k in ours:
        r = rel(final[k], ours[k])
        moved = rel(ours[k], init_sd[k])  # ||torch final - init|| / ||init||: how far training went
        worst = max(worst, r)
        flag = "" if r <= args.tol else "  > tolerance"
        ok = ok and r <= args.tol
        say("  %-9s %-11s %12.3e %12.3e%s" % (k, "x".join(map(str, ours[k].shape)), r, moved, flag))
    flat_d = torch.cat([final[k].reshape(-1) for k in ours])
    flat_t = torch.cat([ours[k].reshape(-1) for k in ours])
    flat_i = torch.cat([init_sd[k].reshape(-1) for k in ours])
    say("  %-9s %-11s %12.3e   (of the update ||final - init||: %.3e)"
        % ("all", str(flat_t.numel()), rel(flat_d, flat_t), float((flat_d - flat_t).double().norm())
           / float((flat_t - flat_i).double().norm())))

    # What descent reports, against the same quantities measured here.
    last = curve[-1]
    checks = [
        ("train loss at init (curve row 0)", float(curve[0]["train_loss"]), rep["init_train_loss"], LOSS_RTOL, True),
        ("mean minibatch loss (last curve row)", float(last["train_loss"]), rep["mean_minibatch_loss"], LOSS_RTOL, True),
        ("mean gradient norm (last curve row)", float(last["grad_norm"]), rep["mean_grad_norm"], LOSS_RTOL, True),
        ("final train loss (summary)", float(summary["final_train_loss"]), rep["final_train_loss"], LOSS_RTOL, True),
        ("final test loss (summary)", float(summary["final_eval_loss"]), rep["final_eval_loss"], LOSS_RTOL, True),
        ("final test accuracy (summary)", float(summary["final_eval_metric"]), rep["final_eval_metric"], ACC_ATOL, False),
    ]
    if int(last["step"]) != case["steps"]:
        say("  MISMATCH: descent's last curve row is step %s, expected %d" % (last["step"], case["steps"]))
        ok = False
    for what, d, t, tol, relative in checks:
        err = abs(d - t) / abs(t) if relative and t != 0 else abs(d - t)
        good = err <= tol
        ok = ok and good
        say("  %-38s descent %.9g  PyTorch %.9g  %s %.2e%s"
            % (what, d, t, "rel" if relative else "abs", err, "" if good else "  > %.0e" % tol))
    if not ok and ties:
        say("  note: a ReLU input within rounding of zero can take different sides of the kink in descent\n"
            "  and PyTorch; the trajectories then part for reasons other than a wrong update. Rerun with\n"
            "  --steps N (N just before and after step %d, the closest) to see whether the gap opens there."
            % ties[0][0])
    return result(name, ok, worst, args.tol, len(ties))


def result(name, ok, worst, tol, n_ties):
    """The line tests/test_replay.c reads."""
    say("RESULT %s max_rel=%.3e tol=%.3g near_ties=%d %s" % (name, worst, tol, n_ties, "PASS" if ok else "FAIL"))
    return ok, worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--descent", default=os.environ.get("DESCENT_BIN") or "build/descent",
                    help="the descent binary [$DESCENT_BIN or build/descent]")
    ap.add_argument("--case", action="append", choices=sorted(CASES),
                    help="case to run (repeatable) [all]")
    ap.add_argument("--tol", type=float, default=1e-4, help="relative tolerance per tensor [1e-4]")
    ap.add_argument("--data", default=None, help="Fashion-MNIST folder [$DESCENT_DATA or %s]" % DEFAULT_DATA)
    ap.add_argument("--keep", metavar="DIR", help="keep descent's files under DIR/<case>")
    ap.add_argument("--lr", help="override the case's learning rate (both sides)")
    ap.add_argument("--steps", type=int, help="override the case's number of steps (both sides)")
    ap.add_argument("--torch-lr-scale", type=float, default=1.0,
                    help="scale PyTorch's learning rate (to see the check fail) [1]")
    ap.add_argument("--perturb-step", type=int, default=-1,
                    help="scale PyTorch's gradient of this step by 1.01 (to see the check fail)")
    args = ap.parse_args()
    cases = args.case or list(CASES)

    if args.data:
        CHILD_ENV["DESCENT_DATA"] = args.data
    folder = args.data or os.environ.get("DESCENT_DATA") or DEFAULT_DATA
    missing = [p for p in data_files(folder).values() if not os.path.exists(p)]
    if missing:
        say("replay_fmnist.py: SKIP: no Fashion-MNIST files (%s); install Debian's dataset-fashion-mnist "
            "or set DESCENT_DATA" % ", ".join(missing))
        return SKIP
    if not os.access(args.descent, os.X_OK):
        die("no descent binary at %s (build it, or pass --descent / set DESCENT_BIN)" % args.descent)

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)  # nothing here draws random numbers; set for good measure
    say("PyTorch %s, %d threads; data from %s" % (torch.__version__, torch.get_num_threads(), folder))
    data = load_fmnist(folder)
    results = [run_case(c, args, data) for c in cases]
    for c, (ok, worst) in zip(cases, results):
        say("%-10s %s  max relative difference %.3e (tolerance %.3g)" % (c, "ok  " if ok else "FAIL", worst, args.tol))
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
