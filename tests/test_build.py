"""The installed llama.cpp is the build the project chose: portable (x86-64-v3) unless native was asked for.

This is the test that would have caught a `-march=native` build on a machine whose CPU reports AMX or
AVX-512 through cpuid: the library reports what it was compiled with, whatever this machine enables.
"""
import importlib.util
import json
import platform
import sys
import tomllib
from pathlib import Path

import pytest

from engine.requests.providers import diagnosis

ROOT = Path(__file__).resolve().parent.parent
RECORD = Path(sys.prefix) / "llama-build.json"


def load_build_script():
    spec = importlib.util.spec_from_file_location("build_llama", ROOT / "tools" / "build_llama.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_installed_llama_cpp_reports_only_portable_cpu_features():
    info = diagnosis.system_info()
    features = diagnosis.compiled_features(info)
    assert "AVX2" in features or platform.machine() != "x86_64", info
    record = json.loads(RECORD.read_text()) if RECORD.exists() else {"mode": "unrecorded"}
    if record["mode"] == "native":
        pytest.skip(f"native build chosen (make setup LLAMA_NATIVE=1): {info}")
    assert not diagnosis.non_portable(features), (
        f"llama.cpp was compiled with {sorted(diagnosis.non_portable(features))} (mode {record['mode']}): a "
        f"machine whose kernel does not enable them dies with SIGILL. Rebuild with `make setup`.\n{info}")


def test_the_recorded_build_is_the_pinned_version_with_the_portable_flags():
    build = load_build_script()
    _, version = build.pinned_requirement()
    record = json.loads(RECORD.read_text())
    assert record["version"] == version
    if record["mode"] == "portable" and platform.machine() == "x86_64":
        assert "-DGGML_NATIVE=OFF" in record["cmake_args"] and "-DGGML_AMX_INT8=OFF" in record["cmake_args"]
        assert "-DGGML_AVX512=OFF" in record["cmake_args"]
    pinned = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["embedded"]
    assert f"llama-cpp-python[server]=={version}" in pinned  # the [embedded] extra's pin, the one built


def test_a_changed_flag_or_version_means_a_rebuild():
    build = load_build_script()
    wanted = {"version": "1.0", "mode": "portable", "cmake_args": build.cmake_flags(native=False)}
    assert build.up_to_date(dict(wanted, wheel="w"), wanted)
    assert not build.up_to_date(dict(wanted, mode="native", cmake_args=build.cmake_flags(native=True)), wanted)
    assert not build.up_to_date(dict(wanted, version="0.9"), wanted)
    assert not build.up_to_date(None, wanted)
    assert build.cmake_flags(native=True) != build.cmake_flags(native=False)


def test_a_sigill_crash_names_the_features_this_kernel_does_not_enable(monkeypatch):
    monkeypatch.setattr(diagnosis, "system_info", lambda: "CPU : AVX2 = 1 | AMX_INT8 = 1 | AVX512 = 1 | OPENMP = 1")
    monkeypatch.setattr(diagnosis, "enabled_cpu_flags", lambda: {"avx2", "avx512f", "fma"})
    advice = diagnosis.crash_advice(-4)
    assert "compiled in but not enabled on this machine: AMX_INT8" in advice and "make setup" in advice
