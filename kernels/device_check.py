"""`python -m dar device-check`: the GPU checks of the fused kernel (issue 9) as one time-boxed run.

    python -m dar device-check --out "$OUT"            # on a lent H100 / H200, from the repository root
    python -m dar device-check --smoke --out /tmp/dc   # the same stages at toy sizes on CPU (checks the plumbing)

A lent GPU comes with a few minutes of device time in all, its start included, so
every check that needs one runs from this one command. Stages run in order of value,
each under its own time cap and all under --budget seconds; a stage that cannot get
--min-stage seconds is skipped and says so, and a stage cut off at its cap is
killed with its whole process group. What a stage measured before it was cut off
is kept (the kernel benchmark writes `kernel.partial.json` as it goes).

    env          GPU name, driver, torch / triton / CUDA versions
    tests        pytest tests/test_kernels.py: the compiled kernels against the PyTorch
                 reference (TestGPU adds SiT-XL/2-sized bf16 cases)
    kernel       Fig. 6: naive vs fused over N = 2..57 at B = 32, 128 (dynamic and static
                 queries); the torch.compile baseline at N = 57 only (one compile per shape)
    train        train-bench SiT-XL/2, batch 32, bf16: residual, dar-static-c4 and
                 dar-dynamic-c4 with the fused kernel (the <= 1.10x step target)
    train_torch  dar-static-c4 with the PyTorch reference aggregation (what the kernel saves end to end)
    sweep        the fused kernel's block sizes at N = 57, B = 32, dynamic query
    zoo          train-bench SiT-XL/2, batch 32, bf16: the routing zoo (dar.routing.ZOO) beside the
                 residual step (each method's step time relative to residual = 1.00)

Writes into --out (at most 8 files, what the device tool brings back): device_check.log
(every stage's output), kernel.json, train.json, train_torch.json, sweep.json, zoo.json and
summary.json (stage status and the headline numbers, which are also printed last).
Nothing here asserts a target: the summary reports each measured value beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dar.io import write_json
from dar.routing import ZOO
from kernels.bench import partial_path

TRAIN_STEP_TARGET = 1.10  # issue 9: fused DAR-static-c4 step <= 1.10x the residual step (SiT-XL/2, batch 32, bf16)

ENV_SNIPPET = """
import json, platform, torch
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available()}
try:
    import triton
    info["triton"] = triton.__version__
except ImportError:
    info["triton"] = None
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(device=p.name, sms=p.multi_processor_count, memory_gib=round(p.total_memory / 2**30, 1),
                capability=f"{p.major}.{p.minor}")
print("ENV " + json.dumps(info))
"""


@dataclass(frozen=True)
class Stage:
    name: str
    cap_s: float  # the most this stage may take
    argv: list[str]
    env: dict[str, str] | None = None  # added to the environment


@dataclass
class StageResult:
    name: str
    status: str  # ok | failed | timed out | skipped
    seconds: float
    returncode: int | None
    output: str
    note: str = ""


def run_stage(stage: Stage, timeout: float, log) -> StageResult:
    """Run one stage in its own process group with its output appended to `log`; kill the group at `timeout`."""
    log.write(f"\n===== {stage.name}: {' '.join(stage.argv)} (up to {timeout:.0f} s)\n")
    log.flush()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(stage.env or {})}
    t0 = time.monotonic()
    with tempfile.TemporaryFile("w+") as buf:
        try:
            proc = subprocess.Popen(stage.argv, stdout=buf, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        except FileNotFoundError as e:
            return StageResult(stage.name, "failed", 0.0, None, "", f"cannot start: {e}")
        try:
            rc = proc.wait(timeout=timeout)
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            rc, status = None, "timed out"
        buf.seek(0)
        output = buf.read()
    seconds = time.monotonic() - t0
    log.write(output)
    log.write(f"===== {stage.name}: {status} after {seconds:.1f} s" + (f" (exit {rc})" if rc not in (0, None) else "") + "\n")
    log.flush()
    return StageResult(stage.name, status, seconds, rc, output)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the stage's process group, SIGKILL it if still there after 5 s."""
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_stages(stages: list[Stage], budget_s: float, min_stage_s: float, log, echo: Callable[[str], None]) -> list[StageResult]:
    """Each stage under min(its cap, what is left of the budget); skipped when less than min_stage_s is left."""
    deadline = time.monotonic() + budget_s
    results = []
    for st in stages:
        left = deadline - time.monotonic()
        if left < min_stage_s:
            note = f"{left:.0f} s of the {budget_s:.0f} s budget left, under --min-stage {min_stage_s:.0f} s"
            log.write(f"\n===== {st.name}: skipped ({note})\n")
            results.append(StageResult(st.name, "skipped", 0.0, None, "", note))
            echo(f"[device-check] {st.name}: skipped ({note})")
            continue
        echo(f"[device-check] {st.name} (up to {min(st.cap_s, left):.0f} s) ...")
        res = run_stage(st, min(st.cap_s, left), log)
        echo(f"[device-check] {st.name}: {res.status} in {res.seconds:.1f} s")
        results.append(res)
    return results


def plan(out: Path, smoke: bool, junit: Path) -> list[Stage]:
    """The stages, GPU sizes or (smoke) toy sizes on CPU."""
    py = sys.executable
    dar = [py, "-m", "dar"]
    tests = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", "tests/test_kernels.py"]
    if smoke:
        tiny = ["--device", "cpu", "--model", "SiT-T/2", "--input-size", "8", "--in-channels", "1", "--num-classes", "10"]
        tiny += ["--batch", "8", "--steps", "2", "--warmup", "1", "--backend", "torch"]
        return [
            Stage("env", 60, [py, "-c", ENV_SNIPPET]),
            Stage("tests", 300, [*tests, "-k", "single_source or bad_inputs"], {"TRITON_INTERPRET": "1"}),
            Stage("kernel", 300, [*dar, "kernel-bench", "--device", "cpu", "--out", str(out / "kernel.json"),
                                  "--sources", "2", "4", "--queries", "static", "--methods", "naive", "--cpu-reps", "3"]),
            Stage("train", 300, [*dar, "train-bench", *tiny, "--routing", "residual", "dar-static-c4",
                                 "--out", str(out / "train.json")]),
            Stage("train_torch", 300, [*dar, "train-bench", *tiny, "--routing", "dar-static-c4",
                                       "--out", str(out / "train_torch.json")]),
            Stage("zoo", 300, [*dar, "train-bench", *tiny, "--routing", "residual", *ZOO, "--out", str(out / "zoo.json")]),
        ]  # fmt: skip
    xl = ["--model", "SiT-XL/2", "--batch", "32", "--precision", "bf16", "--steps", "20", "--warmup", "5"]
    return [
        Stage("env", 60, [py, "-c", ENV_SNIPPET]),
        Stage("tests", 240, tests),
        Stage("kernel", 300, [*dar, "kernel-bench", "--out", str(out / "kernel.json"), "--batch", "32", "128",
                              "--sources", "2", "4", "8", "16", "32", "57", "--queries", "dynamic", "static",
                              "--compiled-sources", "57"]),
        Stage("train", 200, [*dar, "train-bench", *xl, "--routing", "residual", "dar-static-c4", "dar-dynamic-c4",
                             "--backend", "triton", "--out", str(out / "train.json")]),
        Stage("train_torch", 90, [*dar, "train-bench", *xl, "--routing", "dar-static-c4", "--backend", "torch",
                                  "--out", str(out / "train_torch.json")]),
        Stage("sweep", 150, [*dar, "kernel-bench", "--out", str(out / "sweep.json"), "--batch", "32", "--sources", "57",
                             "--queries", "dynamic", "--methods", "fused", "--passes", "fwd", "--sweep"]),
        Stage("zoo", 240, [*dar, "train-bench", *xl, "--steps", "10", "--routing", "residual", *ZOO,
                           "--out", str(out / "zoo.json")]),
    ]  # fmt: skip


# ---------------------------------------------------------------------------
# Summary: the headline numbers of whatever the stages wrote
# ---------------------------------------------------------------------------


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def summarize_env(output: str) -> dict | None:
    lines = [ln for ln in output.splitlines() if ln.startswith("ENV ")]
    return json.loads(lines[-1][4:]) if lines else None


def summarize_tests(junit: Path) -> dict | None:
    """Counts and the ids of failed tests from pytest's JUnit XML."""
    try:
        root = ET.parse(junit).getroot()
    except (FileNotFoundError, ET.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return None
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"], "failed": failed}


def summarize_kernel(bench: dict | None, n: int = 57) -> dict | None:
    """At the largest N measured (57 on a GPU): ms per method and pass, speedups, fraction of peak, memory reduction."""
    if not bench or not bench.get("records"):
        return None
    recs = [r for r in bench["records"] if r.get("pass")]
    if not recs:
        return {"complete": bench.get("complete"), "errors": [r.get("error") for r in bench["records"]]}
    n = n if any(r["N"] == n for r in recs) else max(r["N"] for r in recs)
    rows = {}
    for r in recs:
        if r["N"] == n:
            row = rows.setdefault(f"{r['query']} B={r['B']}", {})
            row.setdefault(r["pass"], {})[r["method"]] = {"ms": r["ms"], "fraction_of_peak": r.get("fraction_of_peak")}
    for s in bench.get("speedups", []):
        if s["N"] == n and s["method"] == "fused":
            rows[f"{s['query']} B={s['B']}"][s["pass"]][f"speedup_vs_{s['baseline']}"] = s["speedup"]
    for m in bench.get("memory_reduction", []):
        if m["N"] == n and m["baseline"] == "naive":
            rows[f"{m['query']} B={m['B']}"][m["pass"]]["memory_reduction_vs_naive"] = m["reduction"]
    return {"complete": bench.get("complete"), "device": bench.get("device", {}).get("name"), "N": n, "at_N": rows,
            "target_check": bench.get("target_check")}  # fmt: skip


def summarize_train(*benches: dict | None) -> dict | None:
    """ms/step per (routing, backend) and each row's ratio to the residual step."""
    rows = []
    for b in benches:
        if b:
            backend = b.get("args", {}).get("backend")
            rows += [{**r, "backend": backend} for r in b.get("rows", [])]
    if not rows:
        return None
    base = next((r["sec_per_step"] for r in rows if r["routing"] == "residual"), None)
    out = []
    for r in rows:
        ratio = None if base is None else r["sec_per_step"] / base
        row = {"routing": r["routing"], "backend": r["backend"], "ms_per_step": 1e3 * r["sec_per_step"],
               "peak_mem_gb": r.get("peak_mem_gb"), "ratio_to_residual": ratio}  # fmt: skip
        if r["routing"] == "dar-static-c4" and r["backend"] == "triton" and ratio is not None:
            row["target"], row["target_met"] = TRAIN_STEP_TARGET, ratio <= TRAIN_STEP_TARGET
        out.append(row)
    return {"model": rows[0]["model"], "batch": rows[0]["batch"], "precision": rows[0]["precision"], "rows": out}


def summarize_sweep(bench: dict | None) -> dict | None:
    if not bench or not bench.get("sweep"):
        return None
    ok = [s for s in bench["sweep"] if "fwd_ms" in s]
    if not ok:
        return {"configs": len(bench["sweep"]), "timed": 0}
    default = next((s for s in ok if s["default"]), None)
    best = {p: min(ok, key=lambda s, p=p: s[f"{p}_ms"]) for p in ("fwd", "bwd")}
    return {"configs": len(bench["sweep"]), "timed": len(ok), "default": default, "best": best}


def summarize(out: Path, results: list[StageResult], junit: Path) -> dict:
    by_name = {r.name: r for r in results}
    kernel = _load(out / "kernel.json") or _load(partial_path(out / "kernel.json"))
    return {
        "stages": [
            {"name": r.name, "status": r.status, "seconds": round(r.seconds, 1), "returncode": r.returncode, "note": r.note}
            for r in results
        ],
        "env": summarize_env(by_name["env"].output) if "env" in by_name else None,
        "tests": summarize_tests(junit),
        "kernel": summarize_kernel(kernel),
        "train": summarize_train(_load(out / "train.json"), _load(out / "train_torch.json")),
        "sweep": summarize_sweep(_load(out / "sweep.json")),
        "zoo": summarize_train(_load(out / "zoo.json")),
    }


def summary_lines(s: dict) -> list[str]:
    """The summary as the lines printed last (the numbers a README 'Measured' row needs)."""
    lines = ["stages: " + ", ".join(f"{st['name']} {st['status']} ({st['seconds']:.0f} s)" for st in s["stages"])]
    if s["env"]:
        e = s["env"]
        lines.append(f"device: {e.get('device', 'no CUDA')}; torch {e['torch']}, triton {e['triton']}, CUDA {e['cuda']}")
    if s["tests"]:
        t = s["tests"]
        lines.append(f"tests: {t['passed']} passed, {t['failures']} failed, {t['errors']} errors, {t['skipped']} skipped")
        lines += [f"  FAILED {name}" for name in t["failed"][:20]]
    k = s["kernel"]
    if k and "at_N" in k:
        lines.append(f"kernel at N = {k['N']} ({k['device']}{'' if k['complete'] else ', incomplete'}):")
        for key, passes in k["at_N"].items():
            for p, m in passes.items():
                ms = ", ".join(f"{meth} {v['ms']:.3f} ms" for meth, v in m.items() if isinstance(v, dict))
                extra = [f"vs {name[len('speedup_vs_') :]} {v:.2f}x" for name, v in m.items() if name.startswith("speedup_vs_")]
                frac = (m.get("fused") or {}).get("fraction_of_peak")
                if frac is not None:
                    extra.append(f"fused {100 * frac:.1f}% of peak")
                if m.get("memory_reduction_vs_naive") is not None:
                    extra.append(f"memory -{100 * m['memory_reduction_vs_naive']:.1f}% vs naive")
                lines.append(f"  {key} {p}: {ms}" + (f"; {'; '.join(extra)}" if extra else ""))
    elif k:
        lines.append(f"kernel: no timings ({k.get('errors')})")
    if s["train"]:
        tr = s["train"]
        lines.append(f"train step, {tr['model']} batch {tr['batch']} {tr['precision']}:")
        for r in tr["rows"]:
            ratio = "" if r["ratio_to_residual"] is None else f", {r['ratio_to_residual']:.3f}x residual"
            tgt = ""
            if "target" in r:
                tgt = f" (target <= {r['target']:.2f}x: {'met' if r['target_met'] else 'not met'})"
            lines.append(f"  {r['routing']} [{r['backend']}]: {r['ms_per_step']:.1f} ms/step{ratio}{tgt}")
    if s.get("zoo"):
        z = s["zoo"]
        lines.append(f"routing zoo step, {z['model']} batch {z['batch']} {z['precision']} (residual = 1.00):")
        for r in z["rows"]:
            ratio = "" if r["ratio_to_residual"] is None else f"{r['ratio_to_residual']:.2f}x, "
            lines.append(f"  {r['routing']}: {ratio}{r['ms_per_step']:.1f} ms/step")
    if s["sweep"] and s["sweep"].get("best"):
        sw = s["sweep"]
        for p, best in sw["best"].items():
            d = sw["default"]
            dflt = "" if d is None else f" (default {_block(d)}: {d[f'{p}_ms']:.3f} ms)"
            lines.append(f"sweep {p}: best {_block(best)} {best[f'{p}_ms']:.3f} ms{dflt}")
    return lines


def _block(cfg: dict) -> str:
    return f"rows={cfg['block_rows']} warps={cfg['num_warps']} stages={cfg['stages']}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dar device-check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default=os.environ.get("OUT") or "results/device-check",
                   help="output folder (default: $OUT if set, else results/device-check)")  # fmt: skip
    p.add_argument("--budget", type=float, default=540, help="seconds for all stages together (default: 540)")
    p.add_argument("--min-stage", type=float, default=30, help="skip a stage with less than this many seconds left (default: 30)")
    p.add_argument("--smoke", action="store_true", help="toy sizes on CPU: checks the stages' plumbing, measures nothing")
    p.add_argument("--stages", nargs="+", default=None, help="run only these stages (default: all, in order)")
    args = p.parse_args(argv)

    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("device-check: no CUDA device here; on a CPU machine pass --smoke to check the plumbing", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        stages = plan(out, args.smoke, junit)
        if args.stages:
            unknown = sorted(set(args.stages) - {s.name for s in stages})
            if unknown:
                p.error(f"unknown stage(s) {unknown}; stages: {[s.name for s in stages]}")
            stages = [s for s in stages if s.name in args.stages]
        with open(out / "device_check.log", "a") as log:
            log.write(f"\n##### device-check {time.strftime('%Y-%m-%d %H:%M:%S')} {'smoke' if args.smoke else 'gpu'}\n")
            results = run_stages(stages, args.budget, args.min_stage, log, lambda m: print(m, flush=True))
        summary = {"mode": "cpu-smoke" if args.smoke else "gpu", "date": time.strftime("%Y-%m-%d"),
                   **summarize(out, results, junit)}  # fmt: skip
    write_json(out / "summary.json", summary)
    print("\n".join(["", "===== device-check summary", *summary_lines(summary), f"wrote {out}/summary.json"]))
    return 0 if all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
