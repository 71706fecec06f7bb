"""Name -> network builder, weights file and checksum; strict loading; device choice.

Weights ship in the repository's `weights/` folder (or a folder named by
$NAPARI_VIDSEG_WEIGHTS). Every file is checked against the SHA-256 recorded
here before it is loaded, and loading is strict: a missing, corrupt or
mismatched file fails with a message that names the file and the problem.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from ..types import InputError
from .vidsegnet import VidSegNet


class WeightsError(InputError):
    """A weights file is missing, corrupt or does not fit the network."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    filename: str
    sha256: str
    in_channels: int
    card: str  # model card next to the weights


MODELS: dict[str, ModelSpec] = {
    "interactive": ModelSpec(
        "interactive", "interactive_v8.pt",
        "52544c4ef7e39c3c9b995482da10c4fa74b8f9b92f90868efff7b0b44b90df36",
        6, "interactive.md"),
    "parent": ModelSpec(
        "parent", "parent_v2.pt",
        "27e0252adc243b2b3e425a12370878f20b7b6a132d0cc6142d59a1d6126ff65e",
        3, "parent.md"),
}


def weights_dir() -> Path:
    env = os.environ.get("NAPARI_VIDSEG_WEIGHTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "weights"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=1)
def select_device() -> torch.device:
    """CUDA, then Apple MPS, then the CPU; chosen once per process."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX):
    there bf16 autocast runs the network about 2.5x faster (session 9, AMD
    EPYC, 864x480 propagation); elsewhere it is emulated and slower. Read
    from /proc/cpuinfo (Linux); False where that cannot be read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def load_state(path: Path, expected_sha: str | None) -> dict:
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path} (set NAPARI_VIDSEG_WEIGHTS or reinstall)")
    if expected_sha is not None:
        got = sha256(path)
        if got != expected_sha:
            raise WeightsError(
                f"weights file {path} has checksum {got[:12]}..., expected {expected_sha[:12]}...: "
                "it is corrupt or a different version")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated zip, a pickle that is not a state dict
        raise WeightsError(f"weights file {path} cannot be read: {e}") from e
    if isinstance(state, dict) and "model" in state:
        state = state["model"]
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def build(name: str, device: torch.device | None = None, path: Path | None = None,
          check: bool = True) -> VidSegNet:
    """The named network with its shipped weights, in eval mode on `device`."""
    if name not in MODELS:
        raise WeightsError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    spec = MODELS[name]
    path = Path(path) if path else weights_dir() / spec.filename
    state = load_state(path, spec.sha256 if check and path.name == spec.filename else None)
    net = VidSegNet(in_channels=spec.in_channels)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"weights file {path} does not fit the {name} network: {str(e)[:300]}") from e
    return net.eval().to(device or select_device())


def save_weights(net: VidSegNet, path: Path) -> str:
    """Half-precision state dict (halves the file; inference upcasts); returns its SHA-256."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    tmp = Path(path).with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return sha256(Path(path))
