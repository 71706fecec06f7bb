"""triton must not be loaded next to the OpenGL driver's LLVM (it segfaulted the viewer
on the first propagation under Mesa's software renderer, e.g. Xvfb)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

from napari_vidseg._napari.llvm_guard import keep_triton_out, system_llvm_loaded

MESA_MAPS = """\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 131                        /usr/bin/python3.11
7f1a20000000-7f1a24000000 r-xp 00000000 08:01 2245                       /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1
7f1a30000000-7f1a30100000 r-xp 00000000 08:01 2246                       /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so
7ffd5e3f0000-7ffd5e411000 rw-p 00000000 00:00 0                          [stack]
"""
TRITON_ONLY_MAPS = """\
7f1a20000000-7f1a24000000 r-xp 00000000 08:01 2245                       /opt/venv/lib/python3.11/site-packages/triton/_C/libLLVM.so
7f1a30000000-7f1a30100000 r-xp 00000000 08:01 2246                       /usr/lib/x86_64-linux-gnu/libGLX_nvidia.so.0
7f1a30200000-7f1a30300000 rw-p 00000000 00:00 0
"""


def test_system_llvm_is_recognised_in_the_memory_map():
    assert system_llvm_loaded(MESA_MAPS)
    assert not system_llvm_loaded(TRITON_ONLY_MAPS)
    assert not system_llvm_loaded("")


def test_triton_is_kept_out_only_when_the_system_llvm_is_loaded():
    saved = sys.modules.pop("triton", "absent")
    try:
        assert not keep_triton_out(TRITON_ONLY_MAPS)
        assert "triton" not in sys.modules
        assert keep_triton_out(MESA_MAPS)
        assert sys.modules["triton"] is None
        with pytest.raises(ImportError):
            import triton  # noqa: F401
        assert importlib.util.find_spec("triton") is None
        assert keep_triton_out(TRITON_ONLY_MAPS)  # stays out
    finally:
        sys.modules.pop("triton", None)
        if saved != "absent":
            sys.modules["triton"] = saved


CHILD = textwrap.dedent("""
    import sys
    from qtpy.QtOpenGLWidgets import QOpenGLWidget
    from qtpy.QtWidgets import QApplication
    app = QApplication(sys.argv)
    w = QOpenGLWidget(); w.resize(64, 64); w.show()
    for _ in range(20):
        app.processEvents()
    from napari_vidseg._napari.llvm_guard import keep_triton_out, system_llvm_loaded
    if not system_llvm_loaded():
        print("NO-SYSTEM-LLVM"); sys.exit(0)
    keep_triton_out()
    import torch
    torch.optim.Adam(torch.nn.Linear(2, 2).parameters())  # imports torch._dynamo
    print("OPTIMIZER-OK")
""")


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
@pytest.mark.skipif(not os.environ.get("DISPLAY") or not sys.platform.startswith("linux"),
                    reason="needs an X display (pytest-xvfb starts one) on Linux")
def test_first_optimizer_after_opengl_does_not_crash():
    pytest.importorskip("qtpy.QtOpenGLWidgets")
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=900)
    if "NO-SYSTEM-LLVM" in r.stdout:
        pytest.skip("this OpenGL driver does not load the system LLVM")
    assert r.returncode == 0 and "OPTIMIZER-OK" in r.stdout, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
