"""Int8 inference copies of a network for propagation on a CPU.

EfficientNet-Lite was designed to survive int8 quantization (ReLU6, no
squeeze-excitation), and x86 CPUs with VNNI run int8 convolutions about
twice as fast as float32 ones. Propagation quantizes the *tuned* network
once per run (static, post-training: weights per channel, activations per
tensor from a min/max calibration on a few of the video's own frames), then
runs every frame through it.

The slow part, FX tracing and observer insertion (`prepare_fx`, ~20-30 s on
a 2-core CPU), depends only on the architecture, not on the weights. So it is
done once per architecture and input size and kept (`_template`); each tuned
network then costs a copy of that template with its weights poured in, a
calibration pass and `convert_fx` (a few seconds). docs/video.md has the
figures. Not the default.

Uses torch's FX graph-mode quantization (`torch.ao.quantization`). When the
backend is missing or tracing fails, `quantize_int8` raises
`QuantizationUnavailable` and the caller keeps the float model.
"""
from __future__ import annotations

import copy
import threading
import warnings

import torch
from torch import nn

from .fuse import fuse_bn

# Frames of the calibration batch used: min/max settles within a few frames,
# and every observed frame costs about a float forward pass and more.
CALIBRATION_FRAMES = 4


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


def _tensors(model: nn.Module):
    return list(model.named_parameters()) + list(model.named_buffers())


# (architecture, input size) -> (prepared template, {template tensor name: source tensor name})
_TEMPLATES: dict[tuple, tuple[nn.Module, dict[str, str]]] = {}
_TEMPLATES_LOCK = threading.Lock()


def _signature(model: nn.Module, example: torch.Tensor) -> tuple:
    shapes = tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())
    return type(model).__qualname__, shapes, tuple(example.shape[1:])


def _template(fused: nn.Module, example: torch.Tensor) -> tuple[nn.Module, dict[str, str]]:
    """The prepared (observed, uncalibrated) graph for `fused`'s architecture,
    traced once and kept, with where each of its tensors comes from in the
    float model. Weights are not part of the key: callers pour theirs in."""
    from torch.ao.quantization.quantize_fx import prepare_fx

    key = _signature(fused, example)
    with _TEMPLATES_LOCK:
        if key not in _TEMPLATES:
            model = copy.deepcopy(fused)
            # prepare_fx re-uses the model's own parameter tensors (BatchNorm is
            # already folded, so it makes no new ones): identity names them.
            name_of = {id(v): k for k, v in _tensors(model)}
            prepared = prepare_fx(model, _qconfig_mapping(), example_inputs=(example[:1],))
            source = {k: name_of[id(v)] for k, v in _tensors(prepared) if id(v) in name_of}
            if len(set(source.values())) != len(name_of):
                raise QuantizationUnavailable(
                    f"int8 template: {len(name_of) - len(set(source.values()))} weights could not be traced")
            _TEMPLATES[key] = (prepared, source)
        return _TEMPLATES[key]


def quantize_int8(net: torch.nn.Module, calibration: torch.Tensor) -> torch.nn.Module:
    """An int8 copy of `net` (an eval-mode float model on the CPU, not
    modified), calibrated on up to CALIBRATION_FRAMES of `calibration`
    (N, C, H, W): real inputs of the size that will be run. Its forward takes
    and returns float tensors."""
    if not int8_supported():
        raise QuantizationUnavailable("this torch build has no x86 int8 engine")
    try:
        from torch.ao.quantization.quantize_fx import convert_fx

        torch.backends.quantized.engine = "x86"
        with warnings.catch_warnings():
            # FX quantization is deprecated in favour of torchao's pt2e, which
            # is not a dependency; the FX path still works in this torch.
            warnings.simplefilter("ignore")
            fused = fuse_bn(net).cpu()
            template, source = _template(fused, calibration)
            prepared = copy.deepcopy(template)  # convert_fx rewrites its input
            weights = dict(_tensors(fused))
            tensors = dict(_tensors(prepared))
            with torch.no_grad():
                for name, src in source.items():
                    tensors[name].copy_(weights[src])
            n = min(CALIBRATION_FRAMES, len(calibration))
            pick = torch.linspace(0, len(calibration) - 1, n).round().long()
            with torch.inference_mode():
                prepared(calibration[pick])
            return convert_fx(prepared).eval()
    except QuantizationUnavailable:
        raise
    except Exception as e:  # tracing or backend failure: the caller falls back to float
        raise QuantizationUnavailable(f"int8 quantization failed: {type(e).__name__}: {e}") from e
