"""Torch thread policy on a shared machine: 1 vs 2 intra-op threads, the other core idle or busy.

    python -m experiments.bench.threads [--repeats 3] [--workloads train,elementwise,matmul]

Each measurement runs in a fresh child process (so OpenMP settings read at start-up apply):
torch threads 1, 2 (OpenMP's default active waiting) and 2 with OMP_WAIT_POLICY=PASSIVE, with no
extra load and with one extra process spinning on a core for the whole measurement. Workloads,
each a fixed amount of work timed by wall clock (median of --repeats):

- train:       a small conv net's forward + backward + AdamW step on a (2,3,128,128) batch, x10;
- elementwise: float64 map arithmetic as the old metric suite did it (480x640, 30 ops), x20;
- matmul:      (512,512) float32 matrix products, x40.

Prints seconds per workload and condition, and each setting's time over 1 thread's in the same
condition. The machine's load average is printed too: on a shared machine "idle" means "no load
added by this bench".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WORKLOADS = ("train", "elementwise", "matmul")
SETTINGS = {"1 thread": ("1", None), "2 threads": ("2", None), "2 threads, passive wait": ("2", "PASSIVE")}


def run_workload(name: str) -> float:
    """Wall seconds of one pass of workload `name` in this process."""
    import torch

    gen = torch.Generator().manual_seed(0)
    if name == "train":
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(32, 32, 3, padding=1),
            torch.nn.SiLU(), torch.nn.Conv2d(32, 3, 3, padding=1))
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
        x = torch.randn(2, 3, 128, 128, generator=gen)
        start = time.perf_counter()
        for _ in range(10):
            loss = (net(x) - x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return time.perf_counter() - start
    if name == "elementwise":
        p, g = torch.rand(1, 480, 640, generator=gen, dtype=torch.float64), torch.rand(1, 480, 640, generator=gen, dtype=torch.float64) + 0.5
        start = time.perf_counter()
        for _ in range(20):
            x = p
            for _ in range(10):
                x = ((x * g + 0.1).abs() / g).log1p()
        return time.perf_counter() - start
    if name == "matmul":
        a, b = torch.randn(512, 512, generator=gen), torch.randn(512, 512, generator=gen)
        start = time.perf_counter()
        for _ in range(40):
            a = torch.tanh(a @ b)
        return time.perf_counter() - start
    raise ValueError(f"unknown workload {name!r}; choose from {WORKLOADS}")


def child(threads: int, workloads: list[str], repeats: int) -> None:
    """Entry of a child process: print JSON {workload: median seconds}."""
    import torch

    torch.set_num_threads(threads)
    run_workload(workloads[0])  # warm-up (thread pool start, allocator)
    out = {w: statistics.median(run_workload(w) for _ in range(repeats)) for w in workloads}
    print(json.dumps(out))


def measure(threads: str, wait_policy: str | None, workloads: list[str], repeats: int) -> dict[str, float]:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY"):
        env.pop(key, None)
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    cmd = [sys.executable, "-m", "experiments.bench.threads", "--child", threads,
           "--workloads", ",".join(workloads), "--repeats", str(repeats)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    workloads = [w for w in args.workloads.split(",") if w]
    if any(w not in WORKLOADS for w in workloads):
        parser.error(f"--workloads: choose from {WORKLOADS}")
    if args.child:
        child(args.child, workloads, args.repeats)
        return {}
    results: dict = {}
    for condition in ("idle", "busy"):
        spinner = None
        if condition == "busy":  # one extra process spinning on a core
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            load = os.getloadavg()[0]
            results[condition] = {name: measure(t, w, workloads, args.repeats) for name, (t, w) in SETTINGS.items()}
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
        print(f"\n{condition} (other core {'spinning' if spinner else 'not loaded by this bench'}; "
              f"load average {load:.1f} on {os.cpu_count()} cores)")
        print(f"{'workload':12s} " + " ".join(f"{name:>26s}" for name in SETTINGS))
        for w in workloads:
            base = results[condition]["1 thread"][w]
            cells = [f"{results[condition][name][w]:8.3f} s ({results[condition][name][w] / base:5.2f}x)" for name in SETTINGS]
            print(f"{w:12s} " + " ".join(f"{c:>26s}" for c in cells))
    return results


if __name__ == "__main__":
    main()
