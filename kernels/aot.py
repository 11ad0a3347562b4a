"""Compile the fused DAR kernels ahead of time for a CUDA target, on a machine without a GPU.

    python -m dar kernel-compile                                 # sm_90 (H100 / H200), SiT-XL/2 (D = 1152)
    python -m dar kernel-compile --arch 80 --dim 100 --out aot.json

Triton lowers each kernel of `kernels/dar_aggregate.py` to PTX, the ptxas that ships
with Triton assembles it, and Triton's cuobjdump reads the cubin's resource usage. The
cases are the ones the launchers produce: forward (training, statistics saved) and
backward, for the static / per-sample / per-token query, over the source dtypes a model
passes (all bf16; fp32 v_0 + bf16 sublayer outputs under autocast; all fp32), with the
launchers' own block sizes (`launch_config`) and 16-byte pointer alignment.

This checks what the CPU interpreter cannot: that the compiler accepts the kernels,
that they do not spill registers to local memory, that their shared memory fits the
SM, and that the loop over sources is software-pipelined (cp.async in the PTX). The
occupancy column is derived from those numbers (registers, shared memory, warps per
SM). These are compiler facts, not timings: they say nothing about achieved bandwidth.

Exit status 1 when a case fails to compile, spills or does not fit; 2 on bad usage
(including TRITON_INTERPRET=1, under which kernels are interpreter functions).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import triton

from dar.io import write_json

# Per-SM limits: shared memory per block opt-in (bytes), registers, warps.
SM_LIMITS = {80: (163 * 1024, 65536, 64), 86: (99 * 1024, 65536, 48), 89: (99 * 1024, 65536, 48), 90: (227 * 1024, 65536, 64)}
QUERIES = {"static": 0, "per-sample": 1, "per-token": 2}  # kernels.dar_aggregate.QUERY_*
# Source dtypes: (group 0 = sources[0]'s dtype, group 1 or None). "fp32+bf16" is bf16
# autocast training: v_0 (patch embedding + fp32 positions) is fp32, sublayer outputs bf16.
SOURCE_DTYPES = {"bf16": ("bf16", None), "fp32+bf16": ("fp32", "bf16"), "fp32": ("fp32", None)}
ELEMENT_BYTES = {"bf16": 2, "fp32": 4}

# What each kernel argument carries: a dtype, or the role whose dtype it takes.
ARG_TYPES = {
    "table": "*i64",
    "n0": "i32",
    "n1": "i32",
    "T": "i32",
    "eps": "fp32",
    "inv_sqrt_d": "fp32",
    "src0": "*group0",
    "dv0": "*group0",
    "h_ptr": "*group0",
    "g_ptr": "*group0",
    "src1": "*group1",
    "dv1": "*group1",
    "q_ptr": "*query",
    "dq_ptr": "*query",
    "w_ptr": "*fp32",
    "h32_ptr": "*fp32",
    "hs_ptr": "*fp32",
    "lse_ptr": "*fp32",
    "part_ptr": "*fp32",
}


@dataclass
class Case:
    kernel: str  # "fwd" | "bwd"
    query: str
    dtypes: str
    D: int
    block_rows: int
    block_d: int
    num_warps: int
    stages: int
    ok: bool = False
    registers: int | None = None
    spill_bytes: int | None = None  # local memory per thread (register spills)
    shared_bytes: int | None = None
    pipelined: bool | None = None  # cp.async in the PTX: the source loop is software-pipelined
    programs_per_sm: int | None = None
    compile_s: float | None = None
    error: str | None = None


def kernel_source(kernel: str, query: str, dtypes: str, D: int, cfg):
    """The ASTSource of one case: the launcher's argument types, constexprs and alignment."""
    from kernels import dar_aggregate as K

    fn = K._aggregate_fwd_kernel if kernel == "fwd" else K._aggregate_bwd_kernel
    g0, g1 = SOURCE_DTYPES[dtypes]
    roles = {
        "group0": g0,
        "group1": g1 or g0,  # the launcher passes a group-0 tensor when group 1 is empty
        "query": (g1 or g0) if query == "per-token" else "fp32",  # W_q v (an activation) or a parameter
    }
    align = {"bf16": 8, "fp32": 4}  # 16 bytes in elements; an empty group gets 1, as in `_offsets`
    constexprs = dict(
        D=D, BLOCK_R=cfg.block_rows, BLOCK_D=cfg.block_d, QUERY=QUERIES[query], STAGES=cfg.stages,
        ALIGN0=align[g0], ALIGN1=align[g1] if g1 else 1,
    )  # fmt: skip
    if kernel == "fwd":
        constexprs.update(SAVE_H32=g0 == "bf16", SAVE_LSE=True)
    signature, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in constexprs:
            signature[name] = "constexpr"
            continue
        kind = ARG_TYPES[name]
        if kind.startswith("*"):
            kind = "*" + roles.get(kind[1:], kind[1:])
            attrs[(i,)] = [["tt.divisibility", 16]]  # torch allocations are 256-byte aligned
        signature[name] = kind
    return triton.compiler.ASTSource(fn, signature, constexprs, attrs)


def resource_usage(cubin: bytes) -> dict[str, int]:
    """REG / LOCAL / SHARED of the cubin's one function, from Triton's cuobjdump."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.cubin"
        path.write_bytes(cubin)
        out = subprocess.run(
            [triton.knobs.nvidia.cuobjdump.path, "--dump-resource-usage", str(path)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    line = next(ln for ln in out.splitlines() if "REG:" in ln)
    return {k: int(v) for k, v in re.findall(r"(REG|LOCAL|SHARED):(\d+)", line)}


def programs_per_sm(registers: int, shared: int, num_warps: int, arch: int) -> int:
    """Resident programs per SM allowed by registers (allocated per warp in units of 256),
    shared memory, the warp limit and the 32-block limit."""
    smem_limit, regs_per_sm, warps_per_sm = SM_LIMITS[arch]
    regs_per_warp = -(-registers * 32 // 256) * 256
    by_regs = regs_per_sm // (regs_per_warp * num_warps)
    by_smem = smem_limit // shared if shared else by_regs
    return min(by_regs, by_smem, warps_per_sm // num_warps, 32)


def compile_case(kernel: str, query: str, dtypes: str, D: int, T: int, arch: int) -> Case:
    from kernels import dar_aggregate as K

    cfg = K.launch_config(D, T, interpret=False)
    case = Case(kernel, query, dtypes, D, cfg.block_rows, cfg.block_d, cfg.num_warps, cfg.stages)
    t0 = time.perf_counter()
    try:
        compiled = triton.compile(
            kernel_source(kernel, query, dtypes, D, cfg),
            target=triton.backends.compiler.GPUTarget("cuda", arch, 32),
            options={"num_warps": cfg.num_warps},
        )
        usage = resource_usage(compiled.asm["cubin"])
    except Exception as e:  # compiler rejection: reported per case, never a traceback
        case.error = f"{type(e).__name__}: {e}"[:500]
        return case
    case.compile_s = round(time.perf_counter() - t0, 2)
    case.registers = usage["REG"]
    case.spill_bytes = usage["LOCAL"]
    case.shared_bytes = compiled.metadata.shared + usage["SHARED"]
    case.pipelined = "cp.async" in compiled.asm["ptx"]
    case.programs_per_sm = programs_per_sm(case.registers, case.shared_bytes, cfg.num_warps, arch)
    case.ok = case.spill_bytes == 0 and case.shared_bytes <= SM_LIMITS[arch][0] and case.programs_per_sm >= 1
    return case


def format_case(c: Case) -> str:
    head = f"{c.kernel:>3} {c.query:>10} {c.dtypes:>9} D={c.D:<5} rows={c.block_rows:<2} warps={c.num_warps:<2} stages={c.stages}"
    if c.error:
        return f"{head}  FAILED  {c.error}"
    return (
        f"{head}  regs {c.registers:>3}  spill {c.spill_bytes} B  smem {c.shared_bytes / 1024:6.1f} KiB  "
        f"pipelined {'yes' if c.pipelined else 'no ':3}  programs/SM {c.programs_per_sm}  {'ok' if c.ok else 'NOT OK'}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dar kernel-compile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--arch", type=int, default=90, choices=sorted(SM_LIMITS), help="compute capability x10 (default: 90)")
    p.add_argument("--dim", type=int, nargs="+", default=[1152], help="hidden sizes D (default: 1152, SiT-XL/2)")
    p.add_argument("--tokens", type=int, default=256, help="tokens T, for the block sizes (default: 256)")
    p.add_argument("--queries", nargs="+", choices=list(QUERIES), default=list(QUERIES), help="query kinds")
    p.add_argument("--dtypes", nargs="+", choices=list(SOURCE_DTYPES), default=list(SOURCE_DTYPES), help="source dtypes")
    p.add_argument("--kernels", nargs="+", choices=("fwd", "bwd"), default=["fwd", "bwd"], help="kernels")
    p.add_argument("--out", help="also write the cases as JSON here (atomically)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if triton.knobs.runtime.interpret:
        p.error("TRITON_INTERPRET=1 is set: the kernels are interpreter functions here; unset it to compile them")

    print(f"kernel-compile: sm_{args.arch}, Triton {triton.__version__} (compiler output, not timings)", flush=True)
    cases = []
    for D in args.dim:
        for kernel in args.kernels:
            for query in args.queries:
                for dtypes in args.dtypes:
                    cases.append(compile_case(kernel, query, dtypes, D, args.tokens, args.arch))
                    print(format_case(cases[-1]), flush=True)
    bad = [c for c in cases if not c.ok]
    print(f"{len(cases) - len(bad)}/{len(cases)} cases compile without spills and fit sm_{args.arch}")
    if args.out:
        write_json(args.out, {
            "schema": "dar-kernel-compile/1", "arch": args.arch, "triton": triton.__version__, "tokens": args.tokens,
            "cases": [asdict(c) for c in cases],
        })  # fmt: skip
        print(f"wrote {args.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
