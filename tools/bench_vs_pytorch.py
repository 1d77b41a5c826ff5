#!/usr/bin/python3
"""deltagraph and PyTorch side by side on the shapes and training steps of issue 7, the ops of
the newer models and the Fashion-MNIST classifier's training step.

Run through tools/bench-vs-pytorch, which installs PyTorch (Debian's python3-torch) and builds
the benchmarks first. Needs /usr/bin/python3 with torch; the deltagraph side runs the Google
Benchmark programs build/bin/bench_ops and build/bin/bench_train, whose cases this file mirrors
case by case (same shapes, same ops, same gradients asked for).

Every round runs deltagraph's cases (one bench_ops and one bench_train process, JSON output),
then the same cases in a fresh PyTorch process; rounds alternate so both see the same machine
load. Each case's time in a round is the mean of a timed batch of iterations lasting at least
--min-time seconds, after warm-up (Google Benchmark's rule, mimicked for PyTorch); the table
shows the median over --reps rounds, the ratio deltagraph / PyTorch (below 1: deltagraph
faster), the peak RSS of each training step in a process of its own, and last
`geomean ratio: X.XX` over every case.

Fairness: forward cases run the op alone with nothing recorded (torch.no_grad; deltagraph
without a tape); forward+backward cases record the op and ask for the gradients of the same
inputs (torch.autograd.grad; dg::grad) with a cotangent of ones made before the timing. Inputs
are made outside the timing in both. Both use --threads threads (OMP_NUM_THREADS and
torch.set_num_threads), bound to cores (OMP_PROC_BIND=true, unless --no-bind); the tiny training
step uses 1 thread in both. Batch norm runs in training mode (batch statistics, running buffers
updated) in its op case and in the classifier's step, whose dropout drops too.
"""

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# The cases: (benchmark program, benchmark name in it, label, PyTorch builder name, arguments).
# The names are bench_ops' and bench_train's; the PyTorch builders are below.
CONVS = [  # N, C, H(=W), O, k, stride, padding
    ("N8_C64_56_O64_k3_p1", (8, 64, 56, 64, 3, 1, 1)),
    ("N8_C1_28_O32_k5_p2", (8, 1, 28, 32, 5, 1, 2)),
    ("N8_C32_14_O64_k5_p2", (8, 32, 14, 64, 5, 1, 2)),
    ("N32_C3_32_O64_k3_p1", (32, 3, 32, 64, 3, 1, 1)),
    ("N8_C64_28_O128_k3_s2_p1", (8, 64, 28, 128, 3, 2, 1)),
]
CONVTS = [
    ("N8_C64_14_O32_k4_s2_p1", (8, 64, 14, 32, 4, 2, 1)),
    ("N8_C32_28_O1_k5_p2", (8, 32, 28, 1, 5, 1, 2)),
]


def case_list():
    cases = []

    def add(fn, shape_name, builder, args):
        for mode in ("fwd", "fwdbwd"):
            label = "%s %s %s" % (fn.replace("_case", ""), shape_name.replace("_", " "),
                                  "fwd" if mode == "fwd" else "fwd+bwd")
            cases.append({"bench": "bench_ops", "name": "%s/%s_%s" % (fn, shape_name, mode),
                          "label": label, "builder": builder, "args": list(args),
                          "backward": mode == "fwdbwd"})

    for name, args in CONVS:
        add("conv2d_case", name, "conv2d", args)
    for name, args in CONVTS:
        add("conv_transpose2d_case", name, "conv_transpose2d", args)
    add("conv1x1_case", "N8_C256_28_O64", "conv1x1", ())
    add("max_pool2d_case", "N8_C64_56_k2", "max_pool2d", ())
    add("max_unpool2d_case", "N8_C64_56_k2", "max_unpool2d", ())
    add("pool_unpool_case", "N8_C64_56_k2", "pool_unpool", ())
    add("bias_case", "N8_C64_56", "bias_add", ())
    add("xent_case", "N256_C10", "softmax_xent", ([256, 10],))
    add("xent_case", "N8_C21_64x64", "softmax_xent", ([8, 21, 64, 64],))
    add("batch_norm2d_case", "N32_C64_28", "batch_norm2d", ())
    add("upsample_cat_case", "N16_C64_14_skip_C32_28", "upsample_cat", ())
    add("pad2d_case", "N32_C64_28_reflect_p1", "pad2d_reflect", ())
    add("adaptive_avg_pool2d_case", "N32_C128_7_1x1", "adaptive_avg_pool2d", ())
    cases.append({"bench": "bench_train", "name": "BM_LeNetStep", "builder": "lenet", "args": [],
                  "label": "train step LeNet-like, batch 64", "backward": True})
    cases.append({"bench": "bench_train", "name": "BM_ClassifierStep", "builder": "classifier",
                  "args": [], "label": "train step classifier, batch 128", "backward": True})
    cases.append({"bench": "bench_train", "name": "BM_TinyStep", "builder": "tiny", "args": [],
                  "label": "train step tiny, batch 32 (1 thread)", "backward": True})
    cases.append({"bench": "bench_forward", "name": "BM_Hvp", "builder": "hvp", "args": [],
                  "label": "hvp small CNN, batch 16 (forward over reverse)", "backward": True})
    return cases


# ---------------------------------------------------------------------------------------------
# PyTorch side (runs in its own process: --torch-round, --torch-rss)


def torch_cases():
    """Builders: each returns (step, grad_enabled, threads or None); step() runs one iteration."""
    import torch
    import torch.nn.functional as F

    def ones_like_output(op):
        with torch.no_grad():
            return torch.ones_like(op())

    def op_case(op, inputs, backward):
        # op() reads `inputs` (leaf tensors); backward: gradients of every input, seeded with ones.
        if not backward:
            return (lambda: op()), False, None
        for t in inputs:
            t.requires_grad_(True)
        ones = ones_like_output(op)

        def step():
            return torch.autograd.grad(op(), inputs, ones)
        return step, True, None

    def conv2d(backward, N, C, H, O, k, s, p):
        x, w = torch.randn(N, C, H, H), torch.randn(O, C, k, k) * 0.1
        return op_case(lambda: F.conv2d(x, w, stride=s, padding=p), [x, w], backward)

    def conv_transpose2d(backward, N, C, H, O, k, s, p):
        x, w = torch.randn(N, C, H, H), torch.randn(C, O, k, k) * 0.1
        return op_case(lambda: F.conv_transpose2d(x, w, stride=s, padding=p), [x, w], backward)

    def conv1x1(backward):
        x, w = torch.randn(8, 256, 28, 28), torch.randn(64, 256, 1, 1) * 0.1
        return op_case(lambda: F.conv2d(x, w), [x, w], backward)

    def max_pool2d(backward):
        x = torch.randn(8, 64, 56, 56)
        return op_case(lambda: F.max_pool2d(x, 2, return_indices=True)[0], [x], backward)

    def max_unpool2d(backward):
        values, indices = F.max_pool2d(torch.randn(8, 64, 56, 56), 2, return_indices=True)
        return op_case(lambda: F.max_unpool2d(values, indices, 2, output_size=(56, 56)),
                       [values], backward)

    def pool_unpool(backward):
        x = torch.randn(8, 64, 56, 56)

        def op():
            values, indices = F.max_pool2d(x, 2, return_indices=True)
            return F.max_unpool2d(values, indices, 2, output_size=(56, 56))
        return op_case(op, [x], backward)

    def bias_add(backward):
        x, b = torch.randn(8, 64, 56, 56), torch.zeros(64)
        return op_case(lambda: x + b.view(1, -1, 1, 1), [x, b], backward)

    def softmax_xent(backward, shape):
        z = torch.randn(*shape)
        labels = torch.zeros([shape[0]] + shape[2:], dtype=torch.int64)
        return op_case(lambda: F.cross_entropy(z, labels), [z], backward)

    def batch_norm2d(backward):
        # Training mode: batch statistics; the running buffers are updated in place.
        x, w, b = torch.randn(32, 64, 28, 28), torch.ones(64), torch.zeros(64)
        rm, rv = torch.zeros(64), torch.ones(64)
        return op_case(lambda: F.batch_norm(x, rm, rv, w, b, training=True), [x, w, b], backward)

    def upsample_cat(backward):
        # A U-Net decoder step: upsample the low-resolution map, join the skip connection.
        low, skip = torch.randn(16, 64, 14, 14), torch.randn(16, 32, 28, 28)

        def op():
            up = F.interpolate(low, size=(28, 28), mode="bilinear", align_corners=False)
            return torch.cat([up, skip], 1)
        return op_case(op, [low, skip], backward)

    def pad2d_reflect(backward):
        x = torch.randn(32, 64, 28, 28)
        return op_case(lambda: F.pad(x, (1, 1, 1, 1), mode="reflect"), [x], backward)

    def adaptive_avg_pool2d(backward):
        x = torch.randn(32, 128, 7, 7)
        return op_case(lambda: F.adaptive_avg_pool2d(x, 1), [x], backward)

    def train_step(model, batch, optimizer=None, label_smoothing=0.0):
        images = torch.rand(batch, 1, 28, 28)
        labels = torch.arange(batch) % 10
        if optimizer is None:
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        model.train()

        def step():
            optimizer.zero_grad()
            loss = F.cross_entropy(model(images), labels, label_smoothing=label_smoothing)
            loss.backward()
            optimizer.step()
        return step

    def lenet(backward):
        nn = torch.nn
        model = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(3136, 1024), nn.ReLU(), nn.Linear(1024, 10))
        return train_step(model, 64), True, None

    def classifier(backward):
        # examples/classifier.h in PyTorch, shared with the state_dict round-trip test.
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                        "tests", "pytorch"))
        from torch_classifier import Classifier

        model = Classifier()
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)  # as examples/fashion_mnist
        return train_step(model, 128, optimizer, label_smoothing=0.1), True, None

    def tiny(backward):
        nn = torch.nn
        model = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1, bias=False), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.ReLU(),
            nn.Flatten(), nn.Linear(784, 10, bias=False))
        return train_step(model, 32), True, 1

    def hvp(backward):
        # tools/bench/bench_forward.cpp's SmallCnn: H t with respect to the first conv's weights,
        # torch.autograd.functional.hvp (reverse over reverse: the double-backward trick).
        x = torch.randn(16, 3, 32, 32)
        w2 = torch.randn(10, 16, 3, 3) * 0.1
        labels = torch.zeros(16, dtype=torch.int64)
        w1 = torch.randn(16, 3, 3, 3) * 0.2
        t = torch.randn(16, 3, 3, 3)

        def loss(w):
            h = F.max_pool2d(torch.relu(F.conv2d(x, w, padding=1)), 2)
            h = F.conv2d(h, w2, padding="same")
            return F.cross_entropy(h.mean(dim=(2, 3)), labels)

        def step():
            torch.autograd.functional.hvp(loss, w1, t)
        return step, True, None

    return {f.__name__: f for f in (conv2d, conv_transpose2d, conv1x1, max_pool2d, max_unpool2d,
                                    pool_unpool, bias_add, softmax_xent, batch_norm2d,
                                    upsample_cat, pad2d_reflect, adaptive_avg_pool2d, lenet,
                                    classifier, tiny, hvp)}


def time_per_iteration(step, min_time):
    """Google Benchmark's rule: grow the batch until it lasts min_time; mean of the last batch."""
    # Warm-up (allocator, oneDNN primitives, the thread pool, whose first uses can stall for
    # milliseconds): 3 iterations and at least 0.1 s.
    start = time.perf_counter()
    for i in range(10**9):
        step()
        if i >= 2 and time.perf_counter() - start >= 0.1:
            break
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            step()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time or n >= 10**9:
            return elapsed / n
        multiplier = min_time * 1.4 / max(elapsed, 1e-9)
        n = max(n + 1, int(n * min(multiplier, 10.0)))


def torch_round(args):
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    builders = torch_cases()
    results = {}
    for case in selected_cases(args):
        step, grad_enabled, threads = builders[case["builder"]](case["backward"], *case["args"])
        torch.set_num_threads(threads or args.threads)
        with torch.set_grad_enabled(grad_enabled):
            results[case["name"]] = time_per_iteration(step, args.min_time) * 1e3
        torch.set_num_threads(args.threads)
    json.dump({"torch": torch.__version__, "times": results}, sys.stdout)


def torch_rss(args):
    import torch
    torch.set_num_threads(args.threads)
    if args.torch_rss != "none":
        step, _, threads = torch_cases()[args.torch_rss](True)
        torch.set_num_threads(threads or args.threads)
        for _ in range(10):
            step()


# ---------------------------------------------------------------------------------------------
# The driver


def selected_cases(args):
    import re
    return [c for c in case_list() if re.search(args.cases, c["name"])]


def log(message):
    print(message, file=sys.stderr, flush=True)


BIND = True  # OMP_PROC_BIND=true for both sides (main() may turn it off)


def env_with_threads(threads):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    # Both libraries run on libgomp. Unbound, its threads were seen sharing one core of two for
    # a whole process (max_pool2d + max_unpool2d: 0.52 or 1.7 ms from one run to the next);
    # bound, every run was the fast one. The same setting for both sides; --no-bind drops it.
    if BIND:
        env.setdefault("OMP_PROC_BIND", "true")
    return env


def run_checked(command, env):
    result = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    if result.returncode != 0:
        sys.exit("failed (%d): %s\n%s" % (result.returncode, " ".join(command), result.stderr))
    return result.stdout


def deltagraph_round(args, cases):
    times = {}
    for bench in ("bench_ops", "bench_train", "bench_forward"):
        names = [c["name"] for c in cases if c["bench"] == bench]
        if not names:
            continue
        command = [os.path.join(args.build_dir, "bin", bench), "--benchmark_format=json",
                   "--benchmark_min_time=%g" % args.min_time,
                   "--benchmark_filter=^(%s)(/real_time)?$" % "|".join(names)]
        report = json.loads(run_checked(command, env_with_threads(args.threads)))
        for b in report["benchmarks"]:
            scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]
            times[b["name"].removesuffix("/real_time")] = b["real_time"] * scale
    missing = [n for n in (c["name"] for c in cases) if n not in times]
    if missing:
        sys.exit("benchmarks not found in the deltagraph programs: %s" % ", ".join(missing))
    return times


def pytorch_round(args):
    command = [sys.executable, os.path.abspath(__file__), "--torch-round",
               "--threads", str(args.threads), "--min-time", str(args.min_time),
               "--cases", args.cases]
    return json.loads(run_checked(command, env_with_threads(args.threads)))


def peak_rss_mb(command, env):
    """Runs command; returns (its standard output, its peak resident set size in MB) as GNU
    time measures it (%M). Not os.wait4 on a child of this process: Linux carries the RSS a
    process had before exec (this Python's) into the child's ru_maxrss."""
    import tempfile
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        out = run_checked(["/usr/bin/time", "-f", "%M", "-o", rss.name] + command, env)
        return out, int(rss.read().split()[-1]) / 1024.0  # kB


def rss_table(args):
    env = env_with_threads(args.threads)
    bench_train = os.path.join(args.build_dir, "bin", "bench_train")
    rows = []
    for label, ours, theirs in (("train step LeNet-like, batch 64", "BM_LeNetStep", "lenet"),
                                ("train step classifier, batch 128", "BM_ClassifierStep",
                                 "classifier"),
                                ("train step tiny, batch 32", "BM_TinyStep", "tiny"),
                                ("the process alone (no step)", None, "none")):
        dg_command = [bench_train, "--benchmark_format=json", "--benchmark_min_time=0.01",
                      "--benchmark_filter=^%s(/real_time)?$" % (ours or "none")]
        out, dg_mb = peak_rss_mb(dg_command, env)
        ran = [b["name"] for b in json.loads(out)["benchmarks"]] if ours else []
        if bool(ours) != bool(ran):
            sys.exit("peak RSS: %s ran %s" % (" ".join(dg_command), ran))
        torch_command = [sys.executable, os.path.abspath(__file__), "--torch-rss", theirs,
                         "--threads", str(args.threads)]
        rows.append((label, dg_mb, peak_rss_mb(torch_command, env)[1]))
    return rows


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for both (OMP_NUM_THREADS, torch.set_num_threads); "
                             "the tiny step always uses 1 (default 2)")
    parser.add_argument("--reps", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--min-time", type=float, default=0.3,
                        help="seconds per case and round, after warm-up (default 0.3)")
    parser.add_argument("--cases", default="",
                        help="regular expression on benchmark names (default: all)")
    parser.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS measurements")
    parser.add_argument("--no-bind", action="store_true",
                        help="leave OMP_PROC_BIND unset (default: true for both sides)")
    parser.add_argument("--torch-round", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--torch-rss", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global BIND
    BIND = not args.no_bind
    if args.threads < 1 or args.reps < 1 or args.min_time <= 0:
        parser.error("--threads and --reps must be at least 1, --min-time positive")
    if args.torch_round:
        return torch_round(args)
    if args.torch_rss:
        return torch_rss(args)

    cases = selected_cases(args)
    if not cases:
        parser.error("--cases %r matches no case" % args.cases)
    ours = {c["name"]: [] for c in cases}
    theirs = {c["name"]: [] for c in cases}
    for rep in range(args.reps):
        log("round %d/%d: deltagraph" % (rep + 1, args.reps))
        for name, ms in deltagraph_round(args, cases).items():
            ours[name].append(ms)
        log("round %d/%d: PyTorch" % (rep + 1, args.reps))
        report = pytorch_round(args)
        torch_version = report["torch"]
        for name, ms in report["times"].items():
            theirs[name].append(ms)

    print("deltagraph vs PyTorch %s, %s, %d threads (tiny step: 1), median of %d rounds, "
          "%s" % (torch_version, cpu_model(), args.threads, args.reps,
                  datetime.date.today().isoformat()))
    width = max(len(c["label"]) for c in cases)
    print("%-*s  %13s  %10s  %6s" % (width, "case", "deltagraph ms", "PyTorch ms", "ratio"))
    ratios = []
    for c in cases:
        a, b = statistics.median(ours[c["name"]]), statistics.median(theirs[c["name"]])
        ratios.append(a / b)
        print("%-*s  %13.3f  %10.3f  %6.2f" % (width, c["label"], a, b, a / b))
    if not args.no_rss:
        log("peak RSS")
        print()
        print("%-*s  %13s  %10s" % (width, "peak RSS (MB, whole process)", "deltagraph",
                                     "PyTorch"))
        for label, a, b in rss_table(args):
            print("%-*s  %13.1f  %10.1f" % (width, label, a, b))
    print("geomean ratio: %.2f" % math.exp(sum(math.log(r) for r in ratios) / len(ratios)))


if __name__ == "__main__":
    main()
