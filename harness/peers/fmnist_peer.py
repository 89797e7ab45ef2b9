#!/usr/bin/python3
"""fmnist_peer.py: the PyTorch side of `make peer-fmnist` (CPU) and `make gpu-check` (--device cuda).

Trains the model descent trains (same nn.Sequential layout, batch, optimizer,
threads; the same initial parameters when --init names descent's --save-init
file) on Fashion-MNIST and reports the median step time, samples/s, test
accuracy and peak RSS; or, with --adam-bench N, times torch.optim.Adam steps
over N parameters. Run it with Debian's /usr/bin/python3 (python3-torch).

The timed step is what descent's step does: zero_grad, gather and convert the
batch (uint8 -> float32 / 255), forward, loss, backward, optimizer step. With
--device cuda the model, Adam's state and the whole data set (uint8, uploaded
once) live on the GPU, the batch is gathered and converted there, and each
timed step is bracketed by torch.cuda.synchronize(); TF32 is off unless
--tf32 on (descent's default), cudnn.benchmark is left at its default.

  fmnist_peer.py --model mlp|cnn|cnn-small|softmax [--epochs 1] [--steps N [--warmup W]]
                 [--batch 128] [--lr 1e-3] [--threads 2] [--seed 1] [--init FILE.safetensors]
                 [--data DIR] [--device cpu|cuda] [--tf32 off|on] [--json]
  fmnist_peer.py --adam-bench 10000000 [--threads 2] [--repeat 30] [--json]

Needs torch only (numpy is not used). Exit codes: 0 ok, 2 bad usage or input
(missing data, bad checkpoint, --device cuda without a usable GPU).
"""
import argparse
import gzip
import json
import os
import resource
import struct
import sys
import time

# Before torch loads: its OpenMP pool and OpenBLAS's own pool contend for the
# same 2 cores otherwise (../../shared/CEILINGS.md: 40-70 ms spikes). The
# caller's explicit values win; torch.set_num_threads below sets the count.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
MODELS = ("mlp", "cnn", "cnn-small", "softmax")


def die(msg):
    print("fmnist_peer.py: " + msg, file=sys.stderr)
    sys.exit(2)


try:
    import torch
    import torch.nn as nn
except ImportError as e:  # the pyenv python first on PATH has no torch
    die("%s (run with Debian's /usr/bin/python3; apt-get install python3-torch)" % e)


# ------------------------------------------------------------------ data

def read_idx(path):
    """An IDX file (gzip or plain) as a uint8 tensor: magic 0x0000TTDD, where
    TT = 0x08 is unsigned byte and DD the number of big-endian u32 dims."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = bytearray(f.read())  # writable: torch.frombuffer warns on bytes
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        die("%s: not an unsigned-byte IDX file" % path)
    ndim = raw[3]
    dims = struct.unpack(">%dI" % ndim, raw[4:4 + 4 * ndim])
    count = 1
    for d in dims:
        count *= d
    if len(raw) < 4 + 4 * ndim + count:
        die("%s: truncated (%d bytes, dims %s)" % (path, len(raw), dims))
    data = torch.frombuffer(raw, dtype=torch.uint8, count=count, offset=4 + 4 * ndim)
    return data.reshape(dims).clone()


def find_idx(folder, stem):
    for name in (stem + ".gz", stem):
        p = os.path.join(folder, name)
        if os.path.exists(p):
            return p
    die("no %s(.gz) in %s (install Debian's dataset-fashion-mnist, or set DESCENT_DATA "
        "to a folder holding the four IDX files)" % (stem, folder))


def load_fmnist(folder):
    """uint8 images [N, 784] and int64 labels [N], train and test."""
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = read_idx(find_idx(folder, prefix + "-images-idx3-ubyte"))
        y = read_idx(find_idx(folder, prefix + "-labels-idx1-ubyte"))
        if x.shape[0] != y.shape[0] or tuple(x.shape[1:]) != (28, 28):
            die("%s: %s images %s and labels %s do not match" % (folder, split, tuple(x.shape), tuple(y.shape)))
        out[split] = (x.reshape(x.shape[0], 784).contiguous(), y.to(torch.int64))
    return out


# ------------------------------------------------------------------ models

def build_model(name):
    """The nn.Sequential whose state_dict names descent's --save-init writes."""
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    if name == "softmax":
        return nn.Sequential(nn.Linear(784, 10))
    if name == "cnn":
        # descent's classic fmnist-cnn (workloads/fmnist.c), 3,274,634 parameters: 'same'
        # convolutions, 28 -> pool 14 -> pool 7: 64 * 7 * 7 = 3136; dropout 0.5 before the
        # last layer (descent's default for the classic variant). State dict: 0.*, 3.*, 7.*, 10.*.
        return nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(3136, 1024), nn.ReLU(), nn.Dropout(0.5),
                             nn.Linear(1024, 10))
    if name == "cnn-small":
        # 28 -> conv5 24 -> pool 12 -> conv5 8 -> pool 4: 64 * 4 * 4 = 1024; 62,346 parameters.
        return nn.Sequential(nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(1024, 10))
    raise ValueError(name)


def input_shape(name):
    return (1, 28, 28) if name.startswith("cnn") else (784,)


# ------------------------------------------------------------------ safetensors

def read_safetensors(path):
    """name -> float32 tensor. Format: u64 little-endian header length, a JSON
    header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?},
    then the raw little-endian data the offsets index."""
    if sys.byteorder != "little":
        die("--init %s: reading safetensors needs a little-endian machine" % path)
    try:
        with open(path, "rb") as f:
            raw = bytearray(f.read())  # writable: torch.frombuffer warns on bytes
    except OSError as e:
        die("--init %s: %s" % (path, e.strerror))
    if len(raw) < 8:
        die("--init %s: too short for a safetensors file" % path)
    (hlen,) = struct.unpack("<Q", raw[:8])
    if 8 + hlen > len(raw):
        die("--init %s: header length %d past the end of the file" % (path, hlen))
    try:
        header = json.loads(bytes(raw[8:8 + hlen]).decode("utf-8"))
    except ValueError as e:
        die("--init %s: bad JSON header: %s" % (path, e))
    base = 8 + hlen
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info.get("dtype") != "F32":
            die("--init %s: tensor %s has dtype %s (expected F32)" % (path, name, info.get("dtype")))
        shape = [int(d) for d in info["shape"]]
        begin, end = (int(o) for o in info["data_offsets"])
        count = 1
        for d in shape:
            count *= d
        if end - begin != 4 * count or base + end > len(raw):
            die("--init %s: tensor %s: offsets [%d, %d] do not hold shape %s" % (path, name, begin, end, shape))
        t = torch.frombuffer(raw, dtype=torch.float32, count=count, offset=base + begin) if count else \
            torch.empty(0, dtype=torch.float32)
        tensors[name] = t.reshape(shape).clone()
    return tensors


# ------------------------------------------------------------------ training

def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def evaluate(model, x_u8, y, shape):
    """Mean cross-entropy and accuracy over a whole split, in batches of 1000."""
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, x_u8.shape[0], 1000):
            logits = model((x_u8[i:i + 1000].float() / 255.0).view((-1,) + shape))
            loss += float(nn.functional.cross_entropy(logits, y[i:i + 1000], reduction="sum"))
            correct += int((logits.argmax(1) == y[i:i + 1000]).sum())
    model.train()
    return loss / x_u8.shape[0], correct / x_u8.shape[0]


def setup_device(args):
    """(torch.device, facts for the output, synchronize function). On the GPU:
    TF32 set explicitly both ways (cuBLAS matmuls and cuDNN convolutions; torch's
    own defaults differ: matmul off, cuDNN on), cudnn.benchmark left alone."""
    if args.device == "cpu":
        return torch.device("cpu"), {}, lambda: None
    if not torch.cuda.is_available():
        die("--device cuda: torch.cuda.is_available() is False (torch %s, built with CUDA %s): "
            "no GPU visible, or a CPU-only torch" % (torch.__version__, torch.version.cuda or "none"))
    tf32 = args.tf32 == "on"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    dev = torch.device("cuda")
    torch.cuda.reset_peak_memory_stats(dev)
    facts = {
        "device": "cuda",
        "gpu": torch.cuda.get_device_name(dev),
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version(),
        "tf32": "%s (torch.backends.cuda.matmul.allow_tf32=%s, torch.backends.cudnn.allow_tf32=%s)" % (
            args.tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32),
        "cudnn_benchmark": "%s (torch's default, not set)" % torch.backends.cudnn.benchmark,
    }
    return dev, facts, torch.cuda.synchronize


def train(args):
    folder = args.data or os.environ.get("DESCENT_DATA") or DEFAULT_DATA
    dev, dev_facts, sync = setup_device(args)  # first: no GPU fails before the data loads
    data = load_fmnist(folder)
    torch.manual_seed(args.seed)  # seeds the CUDA generators too (dropout)
    model = build_model(args.model)
    n_params = sum(p.numel() for p in model.parameters())
    if args.init:
        state = read_safetensors(args.init)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            die("--init %s does not fit the %s model: %s" % (args.init, args.model, e))
    model.to(dev)  # before the optimizer: its state is created on the parameters' device
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    # The whole data set, uint8, uploaded once (no-ops on the CPU); batches are
    # gathered and converted on the device, as descent does.
    xtr, ytr = (t.to(dev) for t in data["train"])
    xte, yte = (t.to(dev) for t in data["test"])
    shape = input_shape(args.model)
    # Test loss and accuracy before training: with descent's initial parameters
    # they must equal row 0 of its curve.csv, or the two models differ.
    init_loss, init_acc = evaluate(model, xte, yte, shape)
    n = xtr.shape[0]
    gen = torch.Generator().manual_seed(args.seed)

    # --steps N: exactly --warmup + N steps, over as many epochs as they take;
    # else --epochs whole epochs. The first --warmup steps are not timed.
    total = args.warmup + args.steps if args.steps else None
    step_s = []
    done = 0
    epochs = 0
    loss_sum, loss_n = 0.0, 0
    sync()
    t_start = time.perf_counter()
    while (done < total) if total is not None else (epochs < args.epochs):
        # the shuffle (on the CPU, the same order on either device) is not timed
        perm = torch.randperm(n, generator=gen).to(dev)
        epochs += 1
        loss_sum, loss_n = 0.0, 0
        for i in range(0, n, args.batch):
            if done == total:
                break
            sync()
            t0 = time.perf_counter()
            idx = perm[i:i + args.batch]
            opt.zero_grad()
            x = (xtr[idx].float() / 255.0).view((idx.shape[0],) + shape)
            loss = loss_fn(model(x), ytr[idx])
            loss.backward()
            opt.step()
            sync()  # the GPU's queued work is part of the step
            if done >= args.warmup:
                step_s.append(time.perf_counter() - t0)
            done += 1
            # .item() syncs nothing on the CPU but costs a little: kept out of the timed part.
            loss_sum += loss.item() * idx.shape[0]
            loss_n += idx.shape[0]
    sync()
    train_s = time.perf_counter() - t_start
    if not step_s:
        die("no timed steps: --warmup %d is not below the %d steps run" % (args.warmup, done))

    test_loss, test_acc = evaluate(model, xte, yte, shape)
    step_med = median(step_s)
    extra = {}
    if args.warmup or args.device != "cpu":
        extra["warmup_steps"] = args.warmup
    if args.device != "cpu":
        extra.update(dev_facts)
        extra["adam"] = ("torch.optim.Adam foreach=%s fused=%s (None: torch's default, which torch >= 2.0 "
                         "resolves to the multi-tensor foreach path for CUDA tensors)" % (
                             opt.defaults.get("foreach"), opt.defaults.get("fused", "n/a")))
        extra["peak_gpu_mib"] = torch.cuda.max_memory_allocated(dev) / 2.0 ** 20
    return {
        "side": "pytorch",
        "model": args.model,
        "params": n_params,
        "init": args.init or "torch default (seed %d)" % args.seed,
        "epochs": epochs if args.steps else args.epochs,
        "batch": args.batch,
        "lr": args.lr,
        "steps": len(step_s),
        "step_ms_median": step_med * 1e3,
        "step_ms_mean": sum(step_s) / len(step_s) * 1e3,
        "samples_per_s": args.batch / step_med,
        "train_s": train_s,
        "final_train_loss": loss_sum / max(loss_n, 1),
        "test_loss": test_loss,
        "test_accuracy": test_acc,
        "init_test_loss": init_loss,
        "init_test_accuracy": init_acc,
        "peak_rss_mib": peak_rss_mib(),
        **extra,
        **thread_facts(),
    }


# ------------------------------------------------------------------ Adam micro-benchmark

def time_steps(opt, repeat, warmup=3):
    for _ in range(warmup):
        opt.step()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        opt.step()
        ts.append(time.perf_counter() - t0)
    return median(ts)


def adam_bench(args):
    """torch.optim.Adam over N float32 parameters, p = 0.5 and g = 1e-3 as in
    descent bench-optim: one flat tensor (CEILINGS.md's case) with 1.13's
    default (foreach=None, which 1.13 resolves to the per-tensor loop) and with
    foreach=True; and the same N split into 10 equal tensors, as a model's list."""
    n = args.adam_bench
    cases = []
    for key, label, shapes, foreach in (
            ("flat-default", "flat, default (foreach=None)", [(n,)], None),
            ("flat-foreach", "flat, foreach=True", [(n,)], True),
            ("list10-default", "10 tensors, default (foreach=None)", None, None)):
        if shapes is None:
            sizes = [n // 10 + (1 if i < n % 10 else 0) for i in range(10)]
            shapes = [(s,) for s in sizes]
        params = []
        for s in shapes:
            p = torch.full(s, 0.5, dtype=torch.float32, requires_grad=True)
            p.grad = torch.full(s, 1e-3, dtype=torch.float32)
            params.append(p)
        opt = torch.optim.Adam(params, lr=1e-3, foreach=foreach)
        t = time_steps(opt, args.repeat)
        cases.append({"key": key, "case": label, "step_ms": t * 1e3, "params_per_s": n / t,
                      "gbs_28B": 28.0 * n / t / 1e9})
        del opt, params
    return {"side": "pytorch", "adam_bench_n": n, "repeat": args.repeat, "cases": cases,
            "peak_rss_mib": peak_rss_mib(), **thread_facts()}


def thread_facts():
    return {
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", ""),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", ""),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=MODELS)
    ap.add_argument("--adam-bench", type=int, metavar="N", help="time torch.optim.Adam over N parameters")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=0,
                    help="time this many steps after --warmup, over as many epochs as they take "
                         "(0: all of --epochs); a quick speed check")
    ap.add_argument("--warmup", type=int, default=0, metavar="W",
                    help="run W untimed steps first (they train like the others)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cuda: model, optimizer and data set on the GPU, steps timed with synchronize")
    ap.add_argument("--tf32", choices=("off", "on"), default="off",
                    help="with --device cuda: TF32 in matmuls and convolutions (default off, as descent; "
                         "ignored on the CPU)")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--init", metavar="FILE", help="safetensors written by descent --save-init")
    ap.add_argument("--data", metavar="DIR", help="IDX folder (default: $DESCENT_DATA, else %s)" % DEFAULT_DATA)
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args()  # exits 2 on bad usage
    if (args.model is None) == (args.adam_bench is None):
        ap.error("give exactly one of --model or --adam-bench")
    if args.steps < 0:
        ap.error("--steps must be 0 (all of --epochs) or more (got %d)" % args.steps)
    if args.warmup < 0:
        ap.error("--warmup must be 0 or more (got %d)" % args.warmup)
    if args.adam_bench is not None and (args.device != "cpu" or args.warmup):
        ap.error("--adam-bench runs on the CPU only (no --device, --warmup)")
    for flag, v in (("--epochs", args.epochs), ("--batch", args.batch), ("--threads", args.threads),
                    ("--repeat", args.repeat), ("--adam-bench", args.adam_bench or 1)):
        if v < 1:
            ap.error("%s must be at least 1 (got %d)" % (flag, v))
    torch.set_num_threads(args.threads)
    res = train(args) if args.model else adam_bench(args)
    if args.json:
        print(json.dumps(res))
        return
    for k, v in res.items():
        if k != "cases":
            print("%-22s %s" % (k, v))
    # Machine-readable last lines (key=value, no spaces in values) for peer_fmnist.sh.
    if args.model:
        keys = ("model", "params", "steps", "step_ms_median", "samples_per_s", "test_accuracy",
                "peak_rss_mib", "train_s", "torch_threads", "init_test_loss")
        if args.device != "cpu":
            keys += ("warmup_steps", "final_train_loss", "peak_gpu_mib")
        line = " ".join("%s=%s" % (k, fmt(res[k])) for k in keys)
        if args.device != "cpu":
            line += " device=cuda tf32=" + args.tf32
        print("fmnist-peer " + line)
    else:
        for c in res["cases"]:
            print("%-36s %9.3f ms %12.4g params/s %7.2f GB/s (28 B/param)" %
                  (c["case"], c["step_ms"], c["params_per_s"], c["gbs_28B"]))
        for c in res["cases"]:
            print("fmnist-peer-adam case=%s n=%d step_ms=%s params_per_s=%s peak_rss_mib=%s torch_threads=%d" %
                  (c["key"], res["adam_bench_n"], fmt(c["step_ms"]), fmt(c["params_per_s"]),
                   fmt(res["peak_rss_mib"]), res["torch_threads"]))


def fmt(v):
    return "%.9g" % v if isinstance(v, float) else str(v)


if __name__ == "__main__":
    main()
