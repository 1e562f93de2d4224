"""What the installed llama.cpp was compiled for, what this machine's kernel enables, and what to do when
the embedded server dies.

Standard library only and no relative imports: `tools/build_llama.py` loads this file by path before the
engine is installed, so the build and the runtime check agree on one list of portable features.
"""
from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

# x86-64-v3 and below: what the portable build may report through llama_print_system_info.
PORTABLE_X86_FEATURES = frozenset({"SSE3", "SSSE3", "SSE4_1", "SSE4_2", "AVX", "AVX2", "F16C", "FMA", "BMI2"})
# Entries of llama_print_system_info that name a build option, not an instruction set.
NOT_AN_ISA = frozenset({"OPENMP", "REPACK", "LLAMAFILE", "ACCELERATE", "KLEIDIAI", "METAL", "BLAS", "CUDA"})
# llama.cpp's name -> the flag Linux shows in /proc/cpuinfo when the CPU has it *and* the kernel enables it.
CPUINFO_FLAG = {"SSE3": "pni", "SSSE3": "ssse3", "AVX": "avx", "AVX2": "avx2", "F16C": "f16c", "FMA": "fma",
                "BMI2": "bmi2", "AVX_VNNI": "avx_vnni", "AVX512": "avx512f", "AVX512_VBMI": "avx512vbmi",
                "AVX512_VNNI": "avx512_vnni", "AVX512_BF16": "avx512_bf16", "AMX_INT8": "amx_int8",
                "AMX_BF16": "amx_bf16", "AMX_TILE": "amx_tile"}
PORTABLE_REBUILD = ("make setup   (in the engine's checkout: rebuilds llama.cpp for x86-64-v3 when the recorded "
                    "flags differ; `python tools/build_llama.py --check` shows what is installed)")


def system_info(python: str | None = None) -> str:
    """llama_print_system_info() of the installed llama_cpp, read in a child process (a bad build must not
    take the caller down with it)."""
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    out = subprocess.run([python or sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"llama_cpp does not import (exit {out.returncode}):\n{out.stderr[-2000:]}")
    return out.stdout.strip()


def compiled_features(info: str) -> set[str]:
    """Instruction sets a system-info line reports as compiled in (`AVX2 = 1`), build options left out."""
    return {m.group(1) for m in re.finditer(r"([A-Z][A-Z0-9_]*) = 1", info)} - NOT_AN_ISA


def non_portable(features: set[str]) -> set[str]:
    return set(features) - PORTABLE_X86_FEATURES


def enabled_cpu_flags() -> set[str] | None:
    """Flags of the first CPU in /proc/cpuinfo (Linux drops a feature the kernel does not enable), or None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def not_enabled_here(features: set[str]) -> list[str]:
    """Compiled-in features that this machine's kernel does not enable (would raise SIGILL when used)."""
    flags = enabled_cpu_flags()
    if flags is None:
        return []
    return sorted(f for f in features if f in CPUINFO_FLAG and CPUINFO_FLAG[f] not in flags)


def crash_advice(returncode: int | None) -> str:
    """What to tell a user whose embedded server died with `returncode` (negative: a signal)."""
    lines = []
    if returncode == -signal.SIGILL:
        try:
            missing = not_enabled_here(compiled_features(system_info()))
        except (RuntimeError, OSError, subprocess.SubprocessError):
            missing = []
        lines.append("  SIGILL: the CPU refused an instruction llama.cpp was compiled with"
                     + (f"; compiled in but not enabled on this machine: {', '.join(missing)}" if missing else
                        " (a build made for another CPU, or for features this machine's kernel does not enable)"))
    lines.append(f"  To rebuild llama.cpp portably: {PORTABLE_REBUILD}")
    return "\n".join(lines)
