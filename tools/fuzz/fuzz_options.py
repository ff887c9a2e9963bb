#!/usr/bin/env python3
"""Build and run the libFuzzer target over PATCH_STAGE's options (ASan + UBSan).

The target (tools/fuzz/options_fuzz_target.cc) drives the kernel's public
API (micro_ops/plan_parser.h, plan_validation.h, schedule.h):
ComputePlanMemoryBytes and ParsePlan (the FlexBuffer reader underneath),
ValidatePlan against the tensors the plan asks for or perturbed ones, and
ComputeScratchBytes and RunStage (reference layers) on small validated plans. The kernel
sources are the ones tflm_patch.native compiles (its source-list constants),
so the target follows the kernel's files. The corpus starts from real plans:
the PATCH_STAGE options of the converted test models (extract_plans.py).

    python tools/fuzz/fuzz_options.py --runs 1000000     # the long run
    python tools/fuzz/fuzz_options.py --runs 20000       # a CI-sized run

Needs clang with libFuzzer (Debian: apt-get install clang). Exit 0 when the
run ends with no finding; a crashing input is saved in --artifacts.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tflm_patch import native  # noqa: E402

TARGET = Path(__file__).resolve().parent / "options_fuzz_target.cc"
FLAGS = ("-std=c++17", "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=fuzzer,address,undefined",
         "-fno-sanitize-recover=all", "-Wall", "-Wextra")


def clang() -> str | None:
    for name in (os.environ.get("FUZZ_CXX"), "clang++", *(f"clang++-{v}" for v in range(20, 12, -1))):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def why_unavailable() -> str | None:
    """None if a libFuzzer build works here, else the reason."""
    cxx = clang()
    if cxx is None:
        return "no clang++ (apt-get install clang)"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t.cc"
        src.write_text('#include <cstdint>\n#include <cstddef>\nextern "C" int LLVMFuzzerTestOneInput('
                       'const uint8_t*, size_t) { return 0; }\n')
        proc = subprocess.run([cxx, "-fsanitize=fuzzer,address,undefined", str(src), "-o", str(Path(tmp) / "t")],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            return f"{cxx} cannot link libFuzzer with ASan/UBSan: {proc.stderr.strip().splitlines()[-1:]}"
    return None


def build(out_dir: Path | None = None) -> Path:
    """The fuzzer binary, cached by the content of the kernel sources, the target and the flags."""
    cxx = clang()
    if cxx is None:
        raise RuntimeError("no clang++ with libFuzzer")
    names = native.ENGINE_CORE_SOURCES + native.ENGINE_CORE_HEADERS + ("host/tensor_desc_array.h",)
    files = native._read_sources(names)
    digest = hashlib.sha256()
    for item in (cxx, *FLAGS):
        digest.update(item.encode() + b"\0")
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    digest.update(TARGET.read_bytes())
    out_dir = Path(out_dir or native.cache_dir())
    target = out_dir / f"options_fuzzer-{digest.hexdigest()[:16]}"
    if target.exists():
        return target
    work = Path(tempfile.mkdtemp(prefix="fuzz-build-", dir=out_dir))
    try:
        for name, data in files.items():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_bytes(data)
        shutil.copy(TARGET, work / TARGET.name)
        sources = [str(work / s) for s in native.ENGINE_CORE_SOURCES] + [str(work / TARGET.name)]
        cmd = [cxx, *FLAGS, f"-I{work}", "-o", str(work / target.name), *sources]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"building the fuzzer failed:\n{' '.join(cmd)}\n{proc.stderr}")
        os.replace(work / target.name, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def run(binary: Path, corpus: Path, runs: int, seed: int, artifacts: Path, max_time: int = 0,
        jobs: int = 1) -> dict:
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [str(binary), f"-runs={runs}", f"-seed={seed}", "-max_len=65536", "-print_final_stats=1",
           "-rss_limit_mb=2048", "-timeout=30", f"-artifact_prefix={artifacts}/", str(corpus)]
    if max_time:
        cmd.insert(1, f"-max_total_time={max_time}")
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    log = proc.stderr
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", log))
    cov = re.findall(r"cov: (\d+) ft: (\d+)", log)
    crashes = sorted(p.name for p in artifacts.iterdir() if p.name.startswith(("crash-", "leak-", "timeout-", "oom-")))
    return {"exit": proc.returncode, "execs": int(stats.get("number_of_executed_units", 0)),
            "seconds": int(stats.get("total_run_time", 0) or 0) if "total_run_time" in stats else None,
            "coverage": int(cov[-1][0]) if cov else 0, "features": int(cov[-1][1]) if cov else 0,
            "corpus": len(list(corpus.iterdir())), "findings": crashes, "log": log}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-time", type=int, default=0, help="seconds (0: no limit)")
    p.add_argument("--corpus", type=Path, help="corpus directory (default: a fresh one from the test models)")
    p.add_argument("--artifacts", type=Path, default=Path("fuzz-artifacts"))
    args = p.parse_args(argv)
    reason = why_unavailable()
    if reason:
        print(f"cannot build the fuzzer: {reason}", file=sys.stderr)
        return 2
    binary = build()
    corpus = args.corpus
    if corpus is None:
        corpus = Path(tempfile.mkdtemp(prefix="tflm-patch-fuzz-corpus-"))
    if not any(corpus.iterdir()) if corpus.exists() else True:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from extract_plans import extract
        print(f"{len(extract(str(corpus)))} real plans in the starting corpus {corpus}")
    r = run(binary, corpus, args.runs, args.seed, args.artifacts, args.max_time)
    print(f"options fuzz campaign, seed {args.seed}: {r['execs']:,} executions, coverage {r['coverage']} edges "
          f"({r['features']} features), corpus {r['corpus']} inputs, findings {len(r['findings'])}, "
          f"libFuzzer exit {r['exit']}")
    if r["exit"] != 0 or r["findings"]:
        print(r["log"][-6000:], file=sys.stderr)
        print(f"findings saved in {args.artifacts}: {r['findings']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
