"""Fig. 6 benchmark: latency and activation memory of DAR's aggregation (Eq. 5) vs the number of sources N.

    python -m dar kernel-bench --device cuda --out results/bench/kernel.json   # the paper's working point
    python -m dar kernel-bench --device cpu --out smoke.json                   # CPU smoke run (CI)

Methods, all given the same inputs (a list of N bf16 [B, T, D] sources, no stack):
    naive     the PyTorch reference dar.routing.aggregate.aggregate, eager
    compiled  torch.compile of the same reference (mode --compile-mode, one compile per shape)
    fused     the fused Triton kernel (kernels/dar_aggregate.py), CUDA only

Passes: fwd (forward with autograd recording, as in training), bwd (backward of a
recorded forward, via torch.autograd.grad w.r.t. sources, query and norm weight),
full (both). On CUDA each is timed with triton.testing.do_bench (median and 20/80 %
quantiles, compile and autotune warm-up excluded). Peak activation memory is the
increase of max_memory_allocated over what is allocated before the pass: for fwd
the output plus everything saved for backward; for bwd the gradients plus
temporaries. Achieved bandwidth uses the minimum HBM traffic of the operation (one
slice = one [B, T, D] bf16 tensor): fwd reads N sources (+ a per-token query) and
writes h; bwd reads N sources, dL/dh and h (+ the query) and writes N gradients (+ dq).

The fraction of peak bandwidth needs the device's peak: H100 SXM 3.35 TB/s and H200
4.8 TB/s are known; any other device is recorded with a null peak unless --peak-tbps
is given. Targets (H100/H200, N = 57): fwd >= 80 % and bwd >= 60 % of peak, speedups
>= 11.5x fwd / 8.5x bwd over naive, faster than compiled. The JSON reports what was
measured; it never asserts the targets.

With --out, what is measured so far is kept in `<name>.partial.json` beside it after
every method at every shape (a benchmark cut off keeps its numbers) and removed once --out is written;
the final name only ever holds a complete run.

--device cpu is a smoke mode for CI: tiny sizes, naive and compiled only (the Triton
interpreter is not a performance path), wall-clock timing; its numbers are labelled
CPU smoke numbers and say nothing about the paper's working point.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dar.config import parse_with_config
from dar.io import write_json
from dar.routing.aggregate import aggregate

# Fig. 6 / App. E of the paper: dynamic variant, N = 57, SiT-XL/2 sizes, on an H20 (~4.0 TB/s), batch not stated.
PAPER_FIG6 = {
    "source": "App. E, Fig. 6: fused Triton kernel vs naive PyTorch, dynamic variant, N = 57, SiT-XL/2 (T=256, D=1152)",
    "device": "NVIDIA H20 (about 4.0 TB/s peak HBM bandwidth); batch size not stated",
    "N": 57,
    "query": "dynamic",
    "ms": {"fwd": {"naive": 22.5, "fused": 1.96}, "bwd": {"naive": 115.8, "fused": 13.6}},
    "speedup_over_naive": {"fwd": 11.5, "bwd": 8.5},
    "memory_reduction": {"fwd": 0.787, "bwd": 0.746, "static_max": 0.821},
}
TARGETS = {  # this reproduction's goals on H100/H200 at N = 57; reported against, never claimed
    "N": 57,
    "fraction_of_peak_bandwidth": {"fwd": 0.80, "bwd": 0.60},
    "speedup_over_naive": {"fwd": 11.5, "bwd": 8.5},
    "faster_than_compiled": True,
}
PEAK_BANDWIDTH = [  # (substrings that must all occur in the device name, bytes/s, label)
    (("H200",), 4.8e12, "NVIDIA H200 spec, 4.8 TB/s"),
    (("H100", "HBM3"), 3.35e12, "NVIDIA H100 SXM spec, 3.35 TB/s"),
    (("H100", "SXM"), 3.35e12, "NVIDIA H100 SXM spec, 3.35 TB/s"),
]
QUERY_KINDS = {"static": "[D]", "explicit": "[B, D]", "dynamic": "[B, T, D]"}  # the paper's variants -> query shape
METHODS = ("naive", "compiled", "fused")
PASSES = ("fwd", "bwd", "full")
GPU_DEFAULTS = dict(batch=[32, 128], sources=[2, 4, 8, 16, 32, 57], tokens=256, dim=1152)  # SiT-XL/2, Fig. 6
CPU_DEFAULTS = dict(batch=[2], sources=[2, 4, 8], tokens=16, dim=64)
CPU_NOTE = (
    "CPU smoke numbers: tiny sizes, wall-clock timing on CPU, naive and torch.compile only. They exercise the "
    "benchmark code path and say nothing about the fused kernel or the paper's working point (Fig. 6 needs a GPU)."
)


def peak_bandwidth(name: str, override_tbps: float | None) -> tuple[float | None, str]:
    if override_tbps is not None:
        return override_tbps * 1e12, f"given on the command line (--peak-tbps {override_tbps})"
    for keys, bps, label in PEAK_BANDWIDTH:
        if all(k in name.upper() for k in keys):
            return bps, label
    return None, f"unknown device {name!r}: no peak bandwidth assumed, fractions of peak are null (pass --peak-tbps)"


def make_inputs(query: str, N: int, B: int, T: int, D: int, dtype: torch.dtype, device: str):
    """Sources as the model makes them: N activations [B, T, D]; the query and the RMSNorm
    weight as parameters (static / explicit: fp32) or an activation (dynamic: W_q v, dtype)."""
    g = torch.Generator(device).manual_seed(0)
    sources = [torch.randn(B, T, D, generator=g, device=device, dtype=dtype).requires_grad_() for _ in range(N)]
    shape = {"static": (D,), "explicit": (B, D), "dynamic": (B, T, D)}[query]
    q_dtype = dtype if query == "dynamic" else torch.float32
    q = torch.randn(shape, generator=g, device=device, dtype=q_dtype).requires_grad_()
    w = (1 + 0.1 * torch.randn(D, generator=g, device=device)).requires_grad_()
    return sources, q, w


def min_bytes(pass_: str, query: str, N: int, B: int, T: int, D: int, itemsize: int) -> int:
    """Minimum HBM traffic of one pass, in bytes (see the module docstring)."""
    slice_ = B * T * D * itemsize
    q_slices = 1 if query == "dynamic" else 0
    fwd = (N + 1 + q_slices) * slice_
    bwd = (2 * N + 2 + 2 * q_slices) * slice_
    return {"fwd": fwd, "bwd": bwd, "full": fwd + bwd}[pass_]


def build_method(name: str, compile_mode: str) -> Callable:
    if name == "naive":
        return aggregate
    if name == "compiled":
        torch._dynamo.reset()  # a fresh compile per shape: no recompile-limit fallback to eager
        return torch.compile(aggregate, mode=None if compile_mode == "default" else compile_mode, fullgraph=True, dynamic=False)
    from kernels.dar_aggregate import fused_aggregate

    return fused_aggregate


def make_passes(fn: Callable, sources, q, w) -> dict[str, tuple[Callable | None, Callable]]:
    """pass -> (untimed setup, timed run). The backward is timed on a fresh forward each
    time: compiled backwards donate buffers and cannot be replayed with retain_graph."""
    inputs = [*sources, q, w]
    grad_h = torch.randn_like(fn(sources, q, w))
    state = {}

    def forward():
        state["h"] = fn(sources, q, w)

    def backward():
        torch.autograd.grad(state.pop("h"), inputs, grad_h)

    return {
        "fwd": (None, lambda: fn(sources, q, w)),
        "bwd": (forward, backward),
        "full": (None, lambda: torch.autograd.grad(fn(sources, q, w), inputs, grad_h)),
    }


def time_pass(setup: Callable | None, run: Callable, smoke: bool, args) -> tuple[float, float, float]:
    """(median, 20 %, 80 % quantile) in ms. CUDA: triton.testing.do_bench, or, when an untimed
    setup step must precede each run, CUDA events around `run` with the L2 cache flushed
    before each repetition as do_bench does. CPU: wall clock over --cpu-reps repetitions."""
    if not smoke and setup is None:
        from triton.testing import do_bench

        p50, p20, p80 = do_bench(run, warmup=args.warmup_ms, rep=args.rep_ms, quantiles=[0.5, 0.2, 0.8])
        return p50, p20, p80
    times: list[float] = []
    if smoke:
        for _ in range(args.cpu_reps):
            if setup:
                setup()
            t0 = time.perf_counter()
            run()
            times.append((time.perf_counter() - t0) * 1e3)
    else:
        cache = torch.empty(256 * 2**20, dtype=torch.int8, device="cuda")
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        while len(times) < 5 or (sum(times) < args.rep_ms and len(times) < 1000):
            setup()
            cache.zero_()
            start.record()
            run()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    if len(times) == 1:
        return times[0], times[0], times[0]
    q = statistics.quantiles(times, n=5)
    return statistics.median(times), q[0], q[-1]


def peak_memory(fn: Callable, sources, q, w) -> dict[str, int]:
    """Peak allocation increase (bytes) of a forward (output + saved tensors) and of its backward."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    h = fn(sources, q, w)
    torch.cuda.synchronize()
    fwd = torch.cuda.max_memory_allocated() - base
    grad_h = torch.randn_like(h)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    grads = torch.autograd.grad(h, [*sources, q, w], grad_h)
    torch.cuda.synchronize()
    bwd = torch.cuda.max_memory_allocated() - base
    del h, grads, grad_h
    return {"fwd": fwd, "bwd": bwd}


def measure(fn: Callable, sources, q, w, args, smoke: bool) -> tuple[list[dict], dict | None]:
    """Latency of each requested pass (after a warm-up that compiles / autotunes) and, on CUDA, peak memory."""
    runs = make_passes(fn, sources, q, w)
    for _ in range(2):  # compile / autotune / first-launch warm-up, not timed
        runs["full"][1]()
    mem = None if smoke else peak_memory(fn, sources, q, w)
    recs = []
    for pass_ in args.passes:
        ms = time_pass(*runs[pass_], smoke, args)
        recs.append({"pass": pass_, "ms": ms[0], "ms_p20": ms[1], "ms_p80": ms[2]})
    return recs, mem


def format_record(r: dict) -> str:
    head = f"{r['method']:>9} {r['query']:>8} B={r['B']:<4} N={r['N']:<3}"
    if not r["pass"]:
        return f"{head} {r['error']}"
    return f"{head} {r['pass']:>4} {r['ms']:10.3f} ms {r['gbps']:9.3g} GB/s"


def sweep_configs(query: str, N: int, B: int, T: int, D: int, dtype, warmup_ms: float, rep_ms: float) -> list[dict]:
    """Time the fused forward and backward launchers over a grid of block sizes (CUDA)."""
    import triton
    from triton.testing import do_bench

    from kernels import dar_aggregate as K

    sources, q, w = make_inputs(query, N, B, T, D, dtype, "cuda")
    sources, q, w = [v.detach() for v in sources], q.detach(), w.detach()
    h, lse, h32 = K.aggregate_forward(sources, q, w)
    hs, g = (h32 if h32.numel() else h), torch.randn_like(h)
    default = K.launch_config(D, T)
    out = []
    for rows in (1, 2, 4):
        for warps in (4, 8, 16):
            for stages in (1, 2, 3, 4):
                cfg = K.LaunchConfig(rows, triton.next_power_of_2(D), warps, stages)
                rec = {"query": query, "N": N, "B": B, "block_rows": rows, "num_warps": warps, "stages": stages}
                rec["default"] = cfg == default
                try:
                    fwd = do_bench(lambda cfg=cfg: K.aggregate_forward(sources, q, w, config=cfg), warmup=warmup_ms, rep=rep_ms)
                    bwd = do_bench(
                        lambda cfg=cfg: K.aggregate_backward(g, sources, q, w, hs, lse, config=cfg), warmup=warmup_ms, rep=rep_ms
                    )
                    rec.update(fwd_ms=fwd, bwd_ms=bwd)
                except Exception as e:  # e.g. out of shared memory / registers for this config
                    rec["error"] = f"{type(e).__name__}: {e}"[:300]
                out.append(rec)
                print(f"  sweep {rec}", file=sys.stderr, flush=True)
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m dar kernel-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", choices=("cuda", "cpu"), default=None, help="cuda (Fig. 6) or cpu (smoke mode); default: cuda")
    p.add_argument("--out", default=None, help="write the results as JSON to this file (atomically); default: print only")
    p.add_argument("--batch", type=int, nargs="+", default=None, help="batch sizes B; default: 32 128 (cpu: 2)")
    p.add_argument("--sources", type=int, nargs="+", default=None, help="source counts N; default: 2 4 8 16 32 57 (cpu: 2 4 8)")
    p.add_argument("--tokens", type=int, default=None, help="tokens T; default: 256, SiT-XL/2 at 256px (cpu: 16)")
    p.add_argument("--dim", type=int, default=None, help="hidden size D; default: 1152, SiT-XL/2 (cpu: 64)")
    p.add_argument("--queries", nargs="+", choices=list(QUERY_KINDS), default=["dynamic", "static"], help="DAR query variants")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=None, help="default: all (cpu: naive compiled)")
    p.add_argument("--passes", nargs="+", choices=PASSES, default=list(PASSES), help="passes to time")
    p.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16", help="dtype of the sources")
    p.add_argument("--compile-mode", default="max-autotune-no-cudagraphs", help="torch.compile mode of the compiled baseline")
    p.add_argument(
        "--compiled-sources",
        type=int,
        nargs="+",
        default=None,
        help="run the compiled baseline only at these N (each shape is one compile, a minute or more with max-autotune); "
        "default: every N",
    )
    p.add_argument("--peak-tbps", type=float, default=None, help="peak HBM bandwidth in TB/s (default: known H100 SXM / H200)")
    p.add_argument("--warmup-ms", type=float, default=25.0, help="do_bench warm-up time per measurement (ms)")
    p.add_argument("--rep-ms", type=float, default=100.0, help="do_bench measurement time per measurement (ms)")
    p.add_argument("--cpu-reps", type=int, default=20, help="timed repetitions per measurement in CPU smoke mode")
    p.add_argument("--sweep", action="store_true", help="also time the fused kernel over a grid of block sizes (cuda)")
    return p, parse_with_config(p, argv)


def main(argv: list[str] | None = None) -> int:
    parser, args = parse_args(sys.argv[1:] if argv is None else argv)
    device = args.device or "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print(
            "kernel-bench: no CUDA device here. Fig. 6 needs a GPU; for the CPU smoke mode (CI) pass --device cpu.",
            file=sys.stderr,
        )
        return 2
    smoke = device == "cpu"
    defaults = CPU_DEFAULTS if smoke else GPU_DEFAULTS
    batches = args.batch or defaults["batch"]
    counts = args.sources or defaults["sources"]
    T, D = args.tokens or defaults["tokens"], args.dim or defaults["dim"]
    methods = args.methods or (["naive", "compiled"] if smoke else list(METHODS))
    if smoke and "fused" in methods:
        parser.error("the fused kernel is not benchmarked on CPU (the Triton interpreter is not a performance path)")
    if smoke and args.sweep:
        parser.error("--sweep needs --device cuda")
    if min(counts) < 1 or min(batches) < 1:
        parser.error("--sources and --batch must be >= 1")
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    itemsize = torch.finfo(dtype).bits // 8

    if smoke:
        device_name, peak, peak_note = "cpu", None, "CPU smoke mode: no peak bandwidth"
    else:
        device_name = torch.cuda.get_device_name()
        peak, peak_note = peak_bandwidth(device_name, args.peak_tbps)
    print(f"kernel-bench on {device_name}: {peak_note}" + (f"\n{CPU_NOTE}" if smoke else ""), flush=True)

    config = {
        "batch": batches,
        "sources": counts,
        "tokens": T,
        "dim": D,
        "queries": args.queries,
        "methods": methods,
        "compiled_sources": args.compiled_sources,
        "passes": args.passes,
        "dtype": args.dtype,
        "compile_mode": args.compile_mode,
        "timing": "wall clock, median of --cpu-reps" if smoke else "triton.testing.do_bench, median and 20/80 % quantiles",
        "warmup_ms": args.warmup_ms,
        "rep_ms": args.rep_ms,
    }
    device_info = {"name": device_name, "peak_bandwidth_bytes_per_s": peak, "peak_bandwidth_source": peak_note}
    partial = partial_path(args.out) if args.out else None
    records, memory = [], []
    for query in args.queries:
        for B in batches:
            for N in counts:
                sources, q, w = make_inputs(query, N, B, T, D, dtype, device)
                for name in methods:
                    if name == "compiled" and args.compiled_sources and N not in args.compiled_sources:
                        continue
                    key = {"method": name, "query": query, "N": N, "B": B}
                    try:
                        recs, mem = measure(build_method(name, args.compile_mode), sources, q, w, args, smoke)
                    except torch.cuda.OutOfMemoryError as e:
                        recs, mem = [{"pass": None, "error": f"out of memory: {e}"[:300]}], None
                    for r in recs:
                        r.update(key)
                        if r["pass"]:
                            r["min_bytes"] = min_bytes(r["pass"], query, N, B, T, D, itemsize)
                            r["gbps"] = r["min_bytes"] / (r["ms"] * 1e-3) / 1e9
                            r["fraction_of_peak"] = None if peak is None else r["gbps"] * 1e9 / peak
                        records.append(r)
                        print(format_record(r), flush=True)
                    if mem is not None:
                        memory.append({**key, "peak_bytes": mem})
                    if not smoke:
                        torch.cuda.empty_cache()
                    if partial:  # what is measured so far survives a kill (never under the final name)
                        write_json(partial, assemble(smoke, device_info, config, records, memory, [], complete=False))
                del sources, q, w

    sweep = []
    if args.sweep:
        for query in args.queries:
            for B in batches:
                sweep += sweep_configs(query, max(counts), B, T, D, dtype, args.warmup_ms, args.rep_ms)
    result = assemble(smoke, device_info, config, records, memory, sweep, complete=True)
    speedups, reductions = result["speedups"], result["memory_reduction"]
    print_summary(speedups, reductions)
    if args.out:
        write_json(args.out, result)
        partial.unlink(missing_ok=True)
        print(f"wrote {args.out}")
    return 0


def partial_path(out: str | Path) -> Path:
    """Where the results so far are kept while the benchmark runs: beside --out, never under its name."""
    out = Path(out)
    return out.with_name(f"{out.stem}.partial{out.suffix}")


def assemble(smoke: bool, device: dict, config: dict, records: list, memory: list, sweep: list, complete: bool) -> dict:
    """The benchmark's JSON: records, derived speedups and memory reductions, targets, the paper's numbers."""
    speedups = compute_speedups(records)
    return {
        "schema": "dar-kernel-bench/1",
        "complete": complete,
        "mode": "cpu-smoke" if smoke else "gpu",
        "note": CPU_NOTE if smoke else "Fig. 6 reproduction at SiT-XL/2 sizes (see PAPER_FIG6 for the paper's numbers).",
        "device": device,
        "versions": versions(),
        "config": config,
        "records": records,
        "speedups": speedups,
        "memory": memory,
        "memory_reduction": compute_memory_reduction(memory),
        "targets": TARGETS,
        "target_check": None if smoke else check_targets(records, speedups, device["peak_bandwidth_bytes_per_s"]),
        "paper": PAPER_FIG6,
        "sweep": sweep,
    }


def versions() -> dict[str, str | None]:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {"torch": torch.__version__, "triton": triton_version, "cuda": torch.version.cuda}


def compute_speedups(records: list[dict]) -> list[dict]:
    """Latency ratios per (query, N, B, pass): baseline ms / method ms for every pair present."""
    by_key: dict[tuple, dict[str, float]] = {}
    for r in records:
        if r.get("pass"):
            by_key.setdefault((r["query"], r["N"], r["B"], r["pass"]), {})[r["method"]] = r["ms"]
    out = []
    for (query, N, B, pass_), ms in by_key.items():
        for base, faster in (("naive", "fused"), ("compiled", "fused"), ("naive", "compiled")):
            if base in ms and faster in ms:
                out.append({"query": query, "N": N, "B": B, "pass": pass_, "baseline": base, "method": faster,
                            "speedup": ms[base] / ms[faster]})  # fmt: skip
    return out


def compute_memory_reduction(memory: list[dict]) -> list[dict]:
    """1 - fused peak / baseline peak, per (query, N, B, pass)."""
    by_key: dict[tuple, dict[str, dict]] = {}
    for m in memory:
        by_key.setdefault((m["query"], m["N"], m["B"]), {})[m["method"]] = m["peak_bytes"]
    out = []
    for (query, N, B), peaks in by_key.items():
        for base in ("naive", "compiled"):
            if base in peaks and "fused" in peaks:
                for pass_ in ("fwd", "bwd"):
                    b, f = peaks[base][pass_], peaks["fused"][pass_]
                    out.append({"query": query, "N": N, "B": B, "pass": pass_, "baseline": base,
                                "reduction": None if b <= 0 else 1 - f / b})  # fmt: skip
    return out


def check_targets(records: list[dict], speedups: list[dict], peak: float | None) -> list[dict]:
    """Measured values against TARGETS at N = 57 (one row per query, B and pass); informative only."""
    out = []
    for r in records:
        if r.get("method") != "fused" or r.get("N") != TARGETS["N"] or r.get("pass") not in ("fwd", "bwd"):
            continue
        p = r["pass"]
        sp = {s["baseline"]: s["speedup"] for s in speedups
              if (s["query"], s["N"], s["B"], s["pass"], s["method"]) == (r["query"], r["N"], r["B"], p, "fused")}  # fmt: skip
        frac = r["fraction_of_peak"]
        out.append({
            "query": r["query"], "B": r["B"], "pass": p,
            "fraction_of_peak": frac,
            "bandwidth_met": None if frac is None else frac >= TARGETS["fraction_of_peak_bandwidth"][p],
            "speedup_over_naive": sp.get("naive"),
            "speedup_met": None if "naive" not in sp else sp["naive"] >= TARGETS["speedup_over_naive"][p],
            "faster_than_compiled": None if "compiled" not in sp else sp["compiled"] > 1,
        })  # fmt: skip
    return out


def print_summary(speedups: list[dict], reductions: list[dict]) -> None:
    if speedups:
        print("\nspeedups (baseline ms / method ms):")
        for s in speedups:
            head = f"  {s['query']:>8} B={s['B']:<4} N={s['N']:<3} {s['pass']:>4}"
            print(f"{head}  {s['method']} vs {s['baseline']}: {s['speedup']:.2f}x")
    if reductions:
        print("\npeak activation memory reduction of the fused kernel:")
        for r in reductions:
            red = "n/a" if r["reduction"] is None else f"{100 * r['reduction']:.1f}%"
            print(f"  {r['query']:>8} B={r['B']:<4} N={r['N']:<3} {r['pass']:>4} vs {r['baseline']}: {red}")


if __name__ == "__main__":
    sys.exit(main())
