"""Int8 inference copies of a network for propagation on a CPU.

EfficientNet-Lite was designed to survive int8 quantization (ReLU6, no
squeeze-excitation), and x86 CPUs with VNNI run int8 convolutions about
twice as fast as float32 ones. Propagation quantizes the *tuned* network
once per run (static, post-training: weights per channel, activations per
tensor from a min/max calibration on the video's own frames), then runs
every frame through it. Making the copy costs about 40 s on a 2-core CPU
(mostly FX tracing in `prepare_fx`), so it pays off only on long videos;
docs/video.md has the figures. Not the default.

Uses torch's FX graph-mode quantization (`torch.ao.quantization`). When the
backend is missing or tracing fails, `quantize_int8` raises
`QuantizationUnavailable` and the caller keeps the float model.
"""
from __future__ import annotations

import copy
import warnings

import torch


class QuantizationUnavailable(RuntimeError):
    """This torch build or CPU cannot make an int8 copy of the network."""


def int8_supported() -> bool:
    """True when torch has an x86 int8 engine (fbgemm / onednn) here."""
    return "x86" in torch.backends.quantized.supported_engines


def _qconfig_mapping():
    from torch.ao.quantization import QConfig, QConfigMapping
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    # Min/max observers: one pass over a few frames is enough, and they are
    # cheap (with torch's default histogram observers the set-up took ~100 s
    # here instead of ~40 s).
    # reduce_range keeps activations in 7 bits, as torch's own x86 default
    # does: its fbgemm kernels can overflow with 8-bit activations on CPUs
    # without VNNI.
    qconfig = QConfig(
        activation=MinMaxObserver.with_args(dtype=torch.quint8, reduce_range=True),
        weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric),
    )
    return QConfigMapping().set_global(qconfig)


def quantize_int8(net: torch.nn.Module, calibration: torch.Tensor) -> torch.nn.Module:
    """An int8 copy of `net` (an eval-mode float model on the CPU, not
    modified), calibrated on `calibration` (N, C, H, W): real inputs of the
    size that will be run. Its forward takes and returns float tensors."""
    if not int8_supported():
        raise QuantizationUnavailable("this torch build has no x86 int8 engine")
    try:
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        torch.backends.quantized.engine = "x86"
        with warnings.catch_warnings():
            # FX quantization is deprecated in favour of torchao's pt2e, which
            # is not a dependency; the FX path still works in this torch.
            warnings.simplefilter("ignore")
            model = copy.deepcopy(net).cpu().eval()
            prepared = prepare_fx(model, _qconfig_mapping(), example_inputs=(calibration[:1],))
            with torch.inference_mode():
                prepared(calibration)
            return convert_fx(prepared).eval()
    except Exception as e:  # tracing or backend failure: the caller falls back to float
        raise QuantizationUnavailable(f"int8 quantization failed: {type(e).__name__}: {e}") from e
