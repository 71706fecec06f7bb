"""Propagation methods by name: the registry every front end takes a method and its options from.

    from napari_vidseg.video import propagators
    method = propagators.get("osvos")                  # name -> Method (class, config, presets)
    config = propagators.make_config("osvos", preset="fast", steps=150)
    session.propagate(objects=None, method="osvos", config=config)

A method is a Propagator subclass (base.py) with a config dataclass; register
another with `register(name, cls, config_class, presets, help)`. The GUI,
`segment --method`, `eval-video` and the job (napari_vidseg/jobs.py) list and
build methods from here, so none keeps its own copy of a method's options.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ...types import InputError
from .base import ObjectsFrame, Propagator  # noqa: F401  (the protocol, re-exported)

DEFAULT = "osvos"


@dataclass(frozen=True)
class Method:
    name: str
    cls: type  # a Propagator subclass: cls(config, parent=..., refiner=...)
    config: type  # its options, a dataclass with defaults (and optionally check())
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)  # preset name -> options that differ
    help: str = ""


_METHODS: dict[str, Method] = {}


def register(name: str, cls: type, config: type, presets: dict[str, dict[str, Any]] | None = None,
             help: str = "") -> Method:
    """Add (or replace) a method; returns its entry."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"a method's config must be a dataclass, got {config!r}")
    method = Method(str(name), cls, config, dict(presets or {}), help)
    _METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    _METHODS.pop(name, None)


def names() -> list[str]:
    _builtin()
    return sorted(_METHODS)


def get(name: str | None = None) -> Method:
    _builtin()
    name = DEFAULT if name is None else str(name)
    if name not in _METHODS:
        raise InputError(f"unknown propagation method {name!r} (known: {', '.join(sorted(_METHODS))})")
    return _METHODS[name]


def make_config(name: str | None = None, config=None, preset: str | None = None, **options):
    """The method's config: `config` (or its defaults), then the preset's
    options, then `options`; an unknown preset or option is an InputError."""
    method = get(name)
    cfg = dataclasses.replace(config) if config is not None else method.config()
    changes: dict[str, Any] = {}
    if preset is not None:
        if preset not in method.presets:
            known = ", ".join(sorted(method.presets)) or "none"
            raise InputError(f"method {method.name!r} has no preset {preset!r} (presets: {known})")
        changes.update(method.presets[preset])
    changes.update({k: v for k, v in options.items() if v is not None})
    known = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise InputError(f"method {method.name!r} has no option {', '.join(unknown)} (options: {', '.join(sorted(known))})")
    cfg = dataclasses.replace(cfg, **changes)
    if hasattr(cfg, "check"):
        cfg.check()
    return cfg


def method_of(config) -> str:
    """The name of the method whose config `config` is (DEFAULT where none matches)."""
    _builtin()
    for m in _METHODS.values():
        if type(config) is m.config:
            return m.name
    return DEFAULT


def _builtin() -> None:
    if "memory" not in _METHODS:
        from .memory import PRESETS as MEMORY_PRESETS, MemoryConfig, MemoryPropagator

        register("memory", MemoryPropagator, MemoryConfig, MEMORY_PRESETS,
                 "no tuning: each frame's features (the parent's frozen encoder) matched to a memory of "
                 "annotated and confidently propagated frames and, locally, to the previous frame (docs/memory.md)")
    if "osvos" not in _METHODS:
        from ..finetune import FinetuneConfig
        from .osvos import OSVOS, PRESETS

        register("osvos", OSVOS, FinetuneConfig, PRESETS,
                 "one-shot fine-tuning of the parent network (OSVOS) with self-training and the click "
                 "segmenter's second opinion")
