"""Install llama-cpp-python (the embedded model's server) built for a portable CPU baseline.

Why this exists: llama.cpp's own default is `GGML_NATIVE=ON` (`-march=native`). On a VM whose CPU reports
AMX or AVX-512 through cpuid but whose kernel has not enabled their register state, a native build dies
with SIGILL on its first completion. So the project chooses the flags:

- portable (default): x86-64-v3, i.e. SSE4.2, AVX, AVX2, FMA, F16C, BMI2; no AVX-512, no AVX-VNNI, no AMX.
  Runs on every x86-64 machine with AVX2, whatever else its CPU reports. Other architectures get
  llama.cpp's non-native generic build (`GGML_NATIVE=OFF`).
- native (`--native`, i.e. `make setup LLAMA_NATIVE=1`): `-march=native`, faster where it works, only for
  the machine (and kernel) it was built on.

Pip caches wheels it builds by source, not by CMAKE_ARGS, so a cached native wheel would silently come back.
Here the wheel is built with pip's cache off, kept under `<venv>/llama-wheels/<flags digest>/` (switching
back and forth does not rebuild), installed by path, and recorded in `<venv>/llama-build.json`; the record
is what `make setup` compares to decide whether to rebuild, and what the test suite checks.

Standard library only: it runs in the fresh venv before the project is installed.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORD = Path(sys.prefix) / "llama-build.json"
WHEELS = Path(sys.prefix) / "llama-wheels"


def _load_diagnosis():
    """engine/requests/providers/diagnosis.py, by path: the engine is not installed yet; the feature list is shared."""
    spec = importlib.util.spec_from_file_location("llama_diagnosis", ROOT / "engine" / "requests" / "providers" / "diagnosis.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


diagnosis = _load_diagnosis()
PORTABLE_X86_FLAGS = [
    "-DGGML_NATIVE=OFF", "-DGGML_SSE42=ON", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON", "-DGGML_AVX_VNNI=OFF", "-DGGML_AVX512=OFF", "-DGGML_AVX512_VBMI=OFF",
    "-DGGML_AVX512_VNNI=OFF", "-DGGML_AVX512_BF16=OFF", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF",
    "-DGGML_AMX_BF16=OFF", "-DGGML_CPU_ALL_VARIANTS=OFF", "-DGGML_BACKEND_DL=OFF",
]
PORTABLE_OTHER_FLAGS = ["-DGGML_NATIVE=OFF"]
NATIVE_FLAGS = ["-DGGML_NATIVE=ON"]
COMMON_FLAGS = ["-DLLAVA_BUILD=OFF"]  # the multimodal helper library is not used: less to compile


def pinned_requirement() -> tuple[str, str]:
    """('llama-cpp-python[server]==X', 'X') from pyproject.toml's [embedded] extra: the version is written in one
    place. Installed here first, it satisfies that extra's pin, so `pip install '.[embedded]'` does not rebuild it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project.get("optional-dependencies", {}).get("embedded", []) + project.get("dependencies", [])
    for dep in deps:
        m = re.fullmatch(r"llama-cpp-python(\[[^\]]*\])?==([\w.]+)", dep.replace(" ", ""))
        if m:
            return dep, m.group(2)
    raise SystemExit("pyproject.toml's [embedded] extra must pin llama-cpp-python with == "
                     "(the build is recorded per version)")


def cmake_flags(native: bool) -> list[str]:
    if native:
        return NATIVE_FLAGS + COMMON_FLAGS
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return (PORTABLE_X86_FLAGS if x86 else PORTABLE_OTHER_FLAGS) + COMMON_FLAGS


def up_to_date(record: dict | None, wanted: dict) -> bool:
    """The installed build is the one wanted: same version, same mode, same flags."""
    return bool(record) and all(record.get(k) == v for k, v in wanted.items())


def installed_version() -> str | None:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None


def read_record() -> dict | None:
    try:
        return json.loads(RECORD.read_text())
    except (OSError, ValueError):
        return None


def system_info() -> str:
    try:
        return diagnosis.system_info()
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None


def pip(*args: str, env: dict | None = None) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)


def build_wheel(version: str, flags: list[str], into: Path) -> Path:
    """Build llama-cpp-python==version from source with `flags`, bypassing pip's wheel cache."""
    into.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CMAKE_ARGS": " ".join(flags), "FORCE_CMAKE": "1"}
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    with tempfile.TemporaryDirectory() as tmp:
        # the source archive may come from pip's HTTP cache; the build must not come from its wheel cache
        pip("download", "--no-deps", "--no-binary", ":all:", f"llama-cpp-python=={version}", "-d", tmp)
        sdist = next(Path(tmp).glob("llama_cpp_python-*"))
        print(f"building llama.cpp with CMAKE_ARGS={env['CMAKE_ARGS']!r} (a few minutes on 2 cores)", flush=True)
        pip("wheel", "--no-deps", "--no-cache-dir", str(sdist), "-w", str(into), env=env)
    return next(into.glob("llama_cpp_python-*.whl"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--native", action="store_true", help="-march=native: faster, this machine only")
    parser.add_argument("--check", action="store_true", help="only print the installed build and its features")
    args = parser.parse_args()
    requirement, version = pinned_requirement()
    mode = "native" if args.native else "portable"
    flags = cmake_flags(args.native)
    record = read_record()
    if args.check:
        print(json.dumps(record, indent=2) if record else "no recorded llama.cpp build in this venv")
        print(system_info())
        return
    wanted = {"version": version, "mode": mode, "cmake_args": flags}
    if up_to_date(record, wanted) and installed_version() == version:
        print(f"llama-cpp-python {version}: {mode} build already installed ({RECORD})")
        return
    digest = hashlib.sha256(json.dumps([version, flags, platform.machine()]).encode()).hexdigest()[:12]
    folder = WHEELS / digest
    wheel = next(folder.glob("llama_cpp_python-*.whl"), None) or build_wheel(version, flags, folder)
    pip("install", "--no-deps", "--force-reinstall", str(wheel))
    pip("install", requirement)  # the server's own dependencies; llama-cpp-python itself is satisfied
    info = system_info()
    features = diagnosis.compiled_features(info)
    if mode == "portable" and platform.machine().lower() in ("x86_64", "amd64"):
        extra = diagnosis.non_portable(features)
        if extra:
            raise SystemExit(f"the portable build reports features outside x86-64-v3: {sorted(extra)}\n{info}")
    RECORD.write_text(json.dumps({**wanted, "wheel": str(wheel), "system_info": info}, indent=2))
    print(f"llama-cpp-python {version}: {mode} build installed; compiled CPU features: "
          f"{', '.join(sorted(features)) or 'none'}")


if __name__ == "__main__":
    main()
