"""The registry of pre-training methods: name -> LightningModule class and its two configs.

Everything that lists methods reads it: the command line (``pretrain_cli(name)``), the
benchmarks (through ``benchmarks/common.py``: their methods and quick configs) and the tests.
A method is registered by one line, for the project's own methods in
``medssl/pretrain/methods/__init__.py``::

    register_method("medssl.pretrain.methods.swav:SwAV", name="swav")   # imported when used
    register_method(SimSiam)                                            # a class

under its ``name``, the class's ``method_name`` (a ``module:Class`` entry is imported only when
its class is asked for, so listing methods needs no torch), with its configs ``<name>.yaml``
(the full run) and ``<name>_quick.yaml`` (a few minutes on a CPU) in ``config_dir``: by default
``$MEDSSL_PRETRAIN_CONFIGS``, else ``Pre-Training/configs`` of the working directory (the
repository's root), never a path inside the installed package. See docs/adding-a-method.md.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

CONFIGS_ENV = "MEDSSL_PRETRAIN_CONFIGS"


def default_config_dir() -> Path:
    """``$MEDSSL_PRETRAIN_CONFIGS``, else ``./Pre-Training/configs`` (absolute)."""
    return Path(os.environ.get(CONFIGS_ENV) or Path.cwd() / "Pre-Training" / "configs").resolve()


@dataclass(frozen=True)
class MethodEntry:
    """One registered method: its name, its LightningModule class and where its configs are."""

    name: str
    target: type | str  # the class, or "module:Class" imported when first asked for
    config_dir: Path | None = None  # None: default_config_dir() when asked

    @property
    def cls(self) -> type:
        if not isinstance(self.target, str):
            return self.target
        module, _, qualname = self.target.partition(":")
        cls = getattr(importlib.import_module(module), qualname)
        if cls.method_name != self.name:
            raise ValueError(f"{self.target} is registered as {self.name!r} but names itself {cls.method_name!r}")
        return cls

    @property
    def configs(self) -> Path:
        return self.config_dir or default_config_dir()

    @property
    def config(self) -> Path:
        """The full run's config (the study's settings)."""
        return self.configs / f"{self.name}.yaml"

    @property
    def quick_config(self) -> Path:
        """A few minutes on a laptop CPU: ResNet-18, small images, small heads."""
        return self.configs / f"{self.name}_quick.yaml"

    def data_config(self, quick: bool = False) -> dict:
        """The ``data`` section of a config (views, intensity, batch size)."""
        return yaml.safe_load((self.quick_config if quick else self.config).read_text())["data"]


METHODS: dict[str, MethodEntry] = {}


def register_method(cls: type | str, config_dir: str | Path | None = None, *, name: str | None = None) -> MethodEntry:
    """Register ``cls`` (a ``PretrainMethod`` subclass, or ``"module:Class"`` with its ``name``)
    under its ``method_name``."""
    if isinstance(cls, str):
        if not name or ":" not in cls:
            raise ValueError(f"register_method({cls!r}): give 'module:Class' and name=")
    else:
        name = cls.method_name
    known = METHODS.get(name)
    if known is not None and known.target != cls and (isinstance(cls, str) or known.cls is not cls):
        shown = known.target if isinstance(known.target, str) else known.target.__qualname__
        raise ValueError(f"a method named {name!r} is already registered: {shown}")
    entry = MethodEntry(name, cls, Path(config_dir).resolve() if config_dir else None)
    METHODS[name] = entry
    return entry


def unregister_method(name: str) -> None:
    METHODS.pop(name, None)


def method(name: str) -> MethodEntry:
    """The registered method ``name``; an error lists the registered ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown pre-training method {name!r}; registered: {', '.join(METHODS)}") from None


def method_names() -> list[str]:
    """The registered methods' names, in the order they were registered."""
    return list(METHODS)
