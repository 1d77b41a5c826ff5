#!/usr/bin/python3
"""PyTorch DDP's side of tools/bench-distributed: the main job's classifier
(tests/pytorch/torch_classifier.py), Adam, a global batch of real Fashion-MNIST images split over
`--ranks` processes (gloo backend on loopback, torch.multiprocessing), one line in
bench_distributed's format:

    /usr/bin/python3 tools/bench_distributed.py --ranks 2 [--threads 1] [--batch-size 128]
"""
import argparse
import gzip
import os
import statistics
import sys
import time

import numpy
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "pytorch"))
from torch_classifier import Classifier  # noqa: E402


def read_idx(path, count):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    data = numpy.frombuffer(raw, dtype=numpy.uint8, offset=4 + 4 * dims).reshape(shape)
    return data[:count]


def worker(rank, args, results):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(args.port)
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", rank=rank, world_size=args.ranks)
    n = args.batch_size * (args.steps + args.warmup)
    images = torch.from_numpy(read_idx(os.path.join(args.data, "train-images-idx3-ubyte.gz"), n)
                              .astype(numpy.float32) / 255).unsqueeze(1)
    images = (images - images.mean()) / images.std()
    labels = torch.from_numpy(read_idx(os.path.join(args.data, "train-labels-idx1-ubyte.gz"), n)
                              .astype(numpy.int64))
    torch.manual_seed(1)
    model = DistributedDataParallel(Classifier())  # broadcasts rank 0's parameters
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    lo = rank * args.batch_size // args.ranks
    hi = (rank + 1) * args.batch_size // args.ranks
    times = []
    for step in range(args.warmup + args.steps):
        first = step * args.batch_size
        x, y = images[first + lo:first + hi], labels[first + lo:first + hi]
        dist.barrier()
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    median = torch.tensor([statistics.median(times)])
    dist.all_reduce(median, op=dist.ReduceOp.MAX)  # the slowest rank's median step
    if rank == 0:
        results.put(median.item())
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--port", type=int, default=29517)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()
    results = mp.get_context("spawn").SimpleQueue()
    mp.spawn(worker, args=(args, results), nprocs=args.ranks, join=True)
    step = results.get()
    print(f"ranks {args.ranks} threads {args.threads} batch {args.batch_size} steps {args.steps} "
          f"step_ms {step * 1e3:.1f} images_per_s {args.batch_size / step:.1f}")


if __name__ == "__main__":
    main()
