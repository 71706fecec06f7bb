"""The npe2 manifest is valid and cheap: loading it (and the CLI's help) never imports torch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MANIFEST = Path(__file__).resolve().parents[1] / "napari_vidseg" / "napari.yaml"


def test_manifest_validates():
    import npe2

    pm = npe2.PluginManifest.from_file(MANIFEST)
    assert pm.name == "napari-vidseg"
    commands = {c.id for c in pm.contributions.commands}
    assert {"napari-vidseg.get_reader", "napari-vidseg.write_labels", "napari-vidseg.sample_clip",
            "napari-vidseg.make_widget"} <= commands
    patterns = pm.contributions.readers[0].filename_patterns
    for ext in ("mp4", "mov", "avi", "mkv", "webm", "gif"):
        assert f"*.{ext}" in patterns
    assert pm.contributions.readers[0].accepts_directories
    r = subprocess.run([sys.executable, "-m", "npe2", "validate", str(MANIFEST)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_manifest_and_reader_lookup_do_not_import_torch(synthetic_video):
    code = (
        "import sys, npe2, napari_vidseg\n"
        f"pm = npe2.PluginManifest.from_file({str(MANIFEST)!r})\n"
        "from napari_vidseg._napari.reader import get_reader\n"
        f"assert get_reader({str(synthetic_video)!r}) is not None\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_cli_help_lists_subcommands_without_torch():
    code = (
        "import sys\n"
        "from napari_vidseg.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for sub in ("segment", "sample", "bench-video", "eval-interactive", "eval-video"):
        assert sub in r.stdout
