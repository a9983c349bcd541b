"""The extension loads on both interpreters and reports how it was built; the GIL stays off."""

import subprocess
import sys
import sysconfig

import pytest

import tm

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def test_build_info_reports_the_toolchain():
    info = tm.build_info()
    assert info["compiler"].split()[0] in {"GNU", "Clang"}
    assert info["boost"].count(".") == 2
    major, minor, _ = (int(part) for part in info["pybind11"].split("."))
    assert (major, minor) >= (2, 13)
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))


def test_build_info_knows_the_interpreter():
    info = tm.build_info()
    assert info["free_threaded"] is FREE_THREADED
    gil_now = sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True
    assert info["gil_enabled"] is gil_now


@pytest.mark.skipif(
    not FREE_THREADED, reason="only a free-threaded interpreter can keep the GIL off"
)
def test_gil_stays_off_after_importing_the_stack():
    # A fresh interpreter: an extension that re-enables the GIL does so at import time, and
    # pytest's own imports must not hide it. PYTHON_GIL is cleared so that nothing forces it.
    code = (
        "import sys, tm, twisted.internet, twisted.internet.reactor, tm_twisted, tm_asyncio\n"
        "assert not sys._is_gil_enabled(), 'the GIL was re-enabled'\n"
        "assert not tm.build_info()['gil_enabled']\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "GIL" not in result.stderr, result.stderr
