#!/usr/bin/python3
"""ddp_peer.py: the PyTorch side of `make peer-ddp`.

Trains descent's Fashion-MNIST model (the nn.Sequential of fmnist_peer.py,
loaded with descent's --save-init parameters, strict) for a fixed number of
steps, either in one process (--world 1: a plain module, no process group) or
data-parallel with DistributedDataParallel over gloo (--world 2: two
processes on this machine, started with torch.multiprocessing.spawn, talking
over 127.0.0.1). Every rank draws the same shuffled global batch and trains
on its slice of it, rows [n*r/W, n*(r+1)/W), as descent's ranks do; the
loss is scaled so that DDP's gradient average equals the gradient of the mean
over the global batch (descent's), whatever the split.

Threads per process are set explicitly before torch loads: OMP_NUM_THREADS =
torch.set_num_threads = --threads (default: CPUs / world), and
OPENBLAS_NUM_THREADS = MKL_NUM_THREADS = 1 (Debian's torch links OpenBLAS
with its own pool, which otherwise contends with torch's OpenMP pool).

The timed step (rank 0's clock, like descent's summary.csv) is zero_grad,
gather and convert this rank's rows, forward, loss, backward (with DDP: and
the gradient allreduce, which DDP's reducer launches from the backward pass,
bucket by bucket, and waits for before backward() returns), optimizer step.
--warmup steps run first, untimed. Reported: median step time over the
--steps timed steps, samples/s = global batch / median step, the mean per
step of forward (zero_grad + batch + forward + loss), backward (+ allreduce)
and optimizer step, DDP's buckets, and with --world 2 the median time of one
standalone allreduce of all the gradients (all parameters as one flat float32
tensor) measured after training.

  ddp_peer.py --model mlp|cnn-small [--world 1|2] [--batch 128] [--steps 300] [--warmup 20]
              [--optimizer adam|sgd] [--lr 1e-3] [--momentum 0.9] [--threads T]
              [--bucket-cap-mb 25] [--first-bucket-mb 1] [--seed 1] [--init FILE.safetensors] [--data DIR]
              [--eval-limit N] [--json]

Exit codes: 0 ok, 1 a rank failed, 2 bad usage or input, or no torch / gloo.
"""
import argparse
import datetime
import json
import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = ("mlp", "cnn-small")


def die(msg, code=2):
    print("ddp_peer.py: " + msg, file=sys.stderr)
    sys.exit(code)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=MODELS, required=True)
    ap.add_argument("--world", type=int, default=1, choices=(1, 2),
                    help="processes: 1 (plain module, no DDP) or 2 (DDP over gloo)")
    ap.add_argument("--batch", type=int, default=128, help="global batch, split across the ranks")
    ap.add_argument("--steps", type=int, default=300, help="timed steps")
    ap.add_argument("--warmup", type=int, default=20, help="untimed steps before them")
    ap.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--momentum", type=float, default=0.9, help="for --optimizer sgd")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads per process (default: CPUs / world)")
    ap.add_argument("--bucket-cap-mb", type=float, default=25.0,
                    help="DDP's bucket_cap_mb (its default: 25)")
    ap.add_argument("--first-bucket-mb", type=float, default=0.0,
                    help="DDP's first bucket cap, dist._DEFAULT_FIRST_BUCKET_BYTES (0: its default, 1 MiB)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--init", metavar="FILE", help="safetensors written by descent --save-init")
    ap.add_argument("--data", metavar="DIR", help="IDX folder (default: $DESCENT_DATA, else "
                    "/usr/share/datasets/fashion-mnist)")
    ap.add_argument("--eval-limit", type=int, default=0, metavar="N",
                    help="evaluate on the first N test images only (0: all 10,000), as descent's --eval-limit")
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="seconds a collective may wait for the other rank")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args()  # exits 2 on bad usage
    for flag, v in (("--batch", args.batch), ("--steps", args.steps)):
        if v < 1:
            ap.error("%s must be at least 1 (got %d)" % (flag, v))
    if args.warmup < 0 or args.threads < 0 or args.eval_limit < 0:
        ap.error("--warmup, --threads and --eval-limit must not be negative")
    if args.batch < args.world:
        ap.error("--batch %d is smaller than --world %d" % (args.batch, args.world))
    if args.bucket_cap_mb <= 0 or args.first_bucket_mb < 0:
        ap.error("--bucket-cap-mb must be positive and --first-bucket-mb not negative")
    if args.threads == 0:
        args.threads = max(1, (os.cpu_count() or 2) // args.world)
    return args


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, args, port):
    """One rank (or the only process). Rank 0 prints the results."""
    # the environment was set by main() before torch loaded (and is inherited
    # by spawned ranks); fmnist_peer holds the model, data and checkpoint code
    sys.path.insert(0, HERE)
    import torch
    import torch.nn as nn
    import torch.distributed as dist
    import fmnist_peer as fp

    torch.set_num_threads(args.threads)
    W = args.world
    if W > 1:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        dist.init_process_group("gloo", rank=rank, world_size=W,
                                timeout=datetime.timedelta(seconds=args.timeout))

    folder = args.data or os.environ.get("DESCENT_DATA") or fp.DEFAULT_DATA
    data = fp.load_fmnist(folder)
    torch.manual_seed(args.seed)
    model = fp.build_model(args.model)
    n_params = sum(p.numel() for p in model.parameters())
    if args.init:
        state = fp.read_safetensors(args.init)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            die("--init %s does not fit the %s model: %s" % (args.init, args.model, e))
    xtr, ytr = data["train"]
    xte, yte = data["test"]
    if args.eval_limit:
        xte, yte = xte[:args.eval_limit], yte[:args.eval_limit]
    shape = fp.input_shape(args.model)
    # the test loss before training: with descent's parameters it equals row 0
    # of descent's curve.csv, or the models differ
    init_loss, _ = fp.evaluate(model, xte, yte, shape) if rank == 0 else (float("nan"), 0)

    if W > 1:
        if args.first_bucket_mb > 0:  # read by DDP's constructor
            dist._DEFAULT_FIRST_BUCKET_BYTES = int(args.first_bucket_mb * 1048576)
        net = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=args.bucket_cap_mb)
    else:
        net = model
    if args.optimizer == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    else:
        opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum)
    ce = nn.functional.cross_entropy

    n = xtr.shape[0]
    gen = torch.Generator().manual_seed(args.seed)  # the same order on every rank
    perm, pos = None, n
    step_s, fwd_s, bwd_s, opt_s = [], [], [], []
    loss_sum, loss_n = 0.0, 0
    for step in range(args.warmup + args.steps):
        if pos >= n:
            perm, pos = torch.randperm(n, generator=gen), 0
        gidx = perm[pos:pos + args.batch]  # the global batch (the last of an epoch is short)
        pos += args.batch
        nb = gidx.shape[0]
        idx = gidx[nb * rank // W:nb * (rank + 1) // W]
        t0 = time.perf_counter()
        opt.zero_grad()
        x = (xtr[idx].float() / 255.0).view((idx.shape[0],) + shape)
        # sum over this rank's rows * W / nb: DDP divides the summed gradients
        # by W, leaving the gradient of the mean over the global batch
        loss = ce(net(x), ytr[idx], reduction="sum") * (W / nb)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if step >= args.warmup:
            step_s.append(t3 - t0)
            fwd_s.append(t1 - t0)
            bwd_s.append(t2 - t1)
            opt_s.append(t3 - t2)
            loss_sum += loss.item() * nb / W
            loss_n += idx.shape[0]

    res = {
        "side": "pytorch-ddp" if W > 1 else "pytorch",
        "model": args.model,
        "params": n_params,
        "world": W,
        "threads": args.threads,
        "batch": args.batch,
        "rows_per_rank": args.batch // W,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "warmup": args.warmup,
        "steps": len(step_s),
        "step_ms_median": median(step_s) * 1e3,
        "step_ms_mean": sum(step_s) / len(step_s) * 1e3,
        "samples_per_s": args.batch / median(step_s),
        "fwd_ms": sum(fwd_s) / len(fwd_s) * 1e3,
        "bwd_ms": sum(bwd_s) / len(bwd_s) * 1e3,
        "opt_ms": sum(opt_s) / len(opt_s) * 1e3,
        "train_loss": loss_sum / max(loss_n, 1),
        "init": args.init or "torch default (seed %d)" % args.seed,
        "init_test_loss": init_loss,
        "eval_images": xte.shape[0],
    }
    if W > 1:
        ld = net._get_ddp_logging_data()
        buckets = str(ld.get("rebuilt_bucket_sizes") or ld.get("bucket_sizes", "")).replace(" ", "")
        res.update({
            "backend": dist.get_backend(),
            "bucket_cap_mb": args.bucket_cap_mb,
            "first_bucket_mib": dist._DEFAULT_FIRST_BUCKET_BYTES / 1048576.0,
            "grad_mib": 4.0 * n_params / 1048576.0,
            "bucket_bytes": buckets,  # rebuilt after the first iteration, in gradient-ready order
            "n_buckets": len([b for b in buckets.split(",") if b]),
            "gloo_threads": ld.get("gloo_num_threads", ""),
            # DDP's own sampled averages (ns): backward compute, comm, their overlap
            "ddp_avg_backward_compute_ms": ld.get("avg_backward_compute_time", 0) / 1e6,
            "ddp_avg_backward_comm_ms": ld.get("avg_backward_comm_time", 0) / 1e6,
            "ddp_avg_overlap_ms": ld.get("avg_backward_compute_comm_overlap_time", 0) / 1e6,
        })
        # one allreduce of all the gradients, alone: what the backward's comm costs
        flat = torch.ones(n_params)
        ts = []
        for i in range(60):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(flat)
            if i >= 10:
                ts.append(time.perf_counter() - t0)
        t = median(ts)
        res["allreduce_ms"] = t * 1e3
        res["allreduce_busbw_gbs"] = 2.0 * (W - 1) / W * 4.0 * n_params / t / 1e9
    if rank == 0:
        res["test_loss"], res["test_accuracy"] = fp.evaluate(model, xte, yte, shape)
        res["peak_rss_mib"] = fp.peak_rss_mib()
        res.update(fp.thread_facts())
        report(args, res)
    if W > 1:
        dist.barrier()
        dist.destroy_process_group()


def report(args, res):
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print("%-28s %s" % (k, v))
        if res["world"] > 1:
            print("DDP: bucket_cap_mb %g (DDP's default 25), first bucket capped at %g MiB "
                  "(dist._DEFAULT_FIRST_BUCKET_BYTES, default 1); %.2f MiB of gradients -> %d bucket(s) of %s bytes"
                  % (res["bucket_cap_mb"], res["first_bucket_mib"], res["grad_mib"], res["n_buckets"],
                     res["bucket_bytes"]))
    # machine-readable last line (key=value, no spaces in values) for peer_ddp.sh
    keys = ["model", "params", "world", "threads", "batch", "steps", "step_ms_median", "samples_per_s",
            "fwd_ms", "bwd_ms", "opt_ms", "test_accuracy", "init_test_loss", "peak_rss_mib",
            "torch_threads"]
    if res["world"] > 1:
        keys += ["allreduce_ms", "n_buckets", "bucket_bytes", "bucket_cap_mb", "first_bucket_mib"]
    print("ddp-peer " + " ".join("%s=%s" % (k, fmt(res[k])) for k in keys))
    sys.stdout.flush()


def fmt(v):
    return "%.9g" % v if isinstance(v, float) else str(v)


def main():
    args = parse_args()
    # before torch loads here or in a spawned rank (which inherits this environment)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    try:
        import torch
        import torch.distributed as dist
        import torch.multiprocessing as mp
    except ImportError as e:
        die("%s (run with Debian's /usr/bin/python3; apt-get install python3-torch)" % e)
    if args.world == 1:
        worker(0, args, 0)
        return
    if not (dist.is_available() and dist.is_gloo_available()):
        die("torch %s has no gloo backend (torch.distributed available: %s)"
            % (torch.__version__, dist.is_available()))
    try:
        mp.spawn(worker, args=(args, free_port()), nprocs=args.world, join=True)
    except mp.ProcessExitedException as e:
        # a rank called die() (exit 2: bad input) or crashed; the others were ended
        die("a rank exited: %s" % e, 2 if e.exit_code == 2 else 1)
    except mp.ProcessRaisedException as e:
        die("a rank failed:\n%s" % e, 1)


if __name__ == "__main__":
    main()
