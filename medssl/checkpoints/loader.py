"""The one backbone loader: detects a checkpoint's format from its keys, maps them to
torchvision ResNet names, and refuses to return a network that is only partly loaded."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..data.input_mapping import DEFAULT, IMAGENET_INPUT, STUDY_INPUTS, InputMapping, InputMappingError
from ..models.backbone import BACKBONES
from .export import FORMAT as EXPORT_FORMAT
from .export import pretraining_input
from .formats import CheckpointFormat
from .registry import RELEASED, local_path, released_alternatives
from .safe_pickle import TRUST_HINT, UnsafeCheckpointError, safe_load, whole_module_refusal
from .safetensors_files import is_safetensors, read_safetensors, timm_weights

# Known layouts, most specific first: (format, method, prefix of the backbone's keys).
KNOWN_PREFIXES = [
    (CheckpointFormat.MOCO_RELEASE, "mocov2", "encoder_q."),
    (CheckpointFormat.BYOL_RELEASE, "byol", "online_network.encoder."),
    (CheckpointFormat.SWAV_RELEASE, "swav", "model."),
    (CheckpointFormat.LIGHTLY, None, "backbone."),
    (CheckpointFormat.TORCHVISION, None, ""),
]
# The key under which our pre-training checkpoints record their method and arch.
MEDSSL_KEY = "medssl"
SEQUENTIAL_NAMES = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
RELEASE_FORMATS = (CheckpointFormat.SPARK_RELEASE, CheckpointFormat.MOCO_RELEASE,
                   CheckpointFormat.BYOL_RELEASE, CheckpointFormat.SWAV_RELEASE)
IMAGENET_CLASSES = 1000  # a torchvision / timm ResNet with this many outputs is an ImageNet-1k classifier
SAFETENSORS = "safetensors (no pickle: no code can run)"


def format_label(fmt: CheckpointFormat, module_prefix: bool = False) -> str:
    """A format as shown to people, noting DataParallel / DDP's ``module.`` prefix if present."""
    return f"{fmt}{' + DataParallel/DDP module. prefix' if module_prefix else ''}"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot give a complete backbone; the message says why and what to do."""


@dataclass
class LoadReport:
    """What a load found: the file, its format and method, the ResNet it holds, how many
    backbone tensors were taken, what was left out, and how the file was unpickled."""
    source: str
    format: CheckpointFormat
    method: str | None
    arch: str
    loaded: int
    missing: list[str]
    ignored: dict[str, int] = field(default_factory=dict)  # key prefix -> number of tensors
    unpickling: str = "weights_only"
    metadata: dict = field(default_factory=dict)
    container: str = ""  # where the tensors sat: state_dict, module, top level, ...
    file_tensors: int = 0
    module_prefix: bool = False  # keys were saved under DataParallel / DDP's ``module.``
    input: InputMapping = DEFAULT  # what the backbone was fed in pre-training (see input_from)
    input_from: str = "project default: the file records none"

    @property
    def format_label(self) -> str:
        return format_label(self.format, self.module_prefix)

    def __str__(self) -> str:
        ignored = ", ".join(f"{p or '(top)'} x{n}" for p, n in self.ignored.items()) or "nothing"
        return (f"{self.source}: {self.format_label} ({self.method or 'method unknown'}), {self.arch}; "
                f"{self.loaded} backbone tensors loaded; missing {self.missing or 'nothing'}; "
                f"ignored {ignored}; unpickling: {self.unpickling}")


@functools.cache
def expected_keys(arch: str) -> dict[str, torch.Size]:
    """The shapes of an ``arch`` backbone's tensors, ``fc`` left out (read-only: shared)."""
    model = BACKBONES[arch][0](weights=None)
    return {k: v.shape for k, v in model.state_dict().items() if not k.startswith("fc.")}


def infer_arch(keys: dict[str, torch.Tensor]) -> str | None:
    """The torchvision ResNet whose trunk matches these (prefix-free) keys, if any."""
    blocks = {}
    for key in keys:
        m = re.match(r"layer(\d)\.(\d+)\.", key)
        if m:
            blocks[int(m[1])] = max(blocks.get(int(m[1]), 0), int(m[2]) + 1)
    bottleneck = "layer1.0.conv3.weight" in keys
    layout = tuple(blocks.get(i, 0) for i in (1, 2, 3, 4))
    for arch, (expect_layout, expect_bottleneck) in {
            "resnet18": ((2, 2, 2, 2), False), "resnet34": ((3, 4, 6, 3), False),
            "resnet50": ((3, 4, 6, 3), True), "resnet101": ((3, 4, 23, 3), True)}.items():
        if layout == expect_layout and bottleneck == expect_bottleneck:
            return arch
    return None


def _tensors(obj) -> dict[str, torch.Tensor]:
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def find_state_dict(obj) -> tuple[dict[str, torch.Tensor], str]:
    """The dict of tensors inside a loaded checkpoint, and where it was found."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"holds a {type(obj).__name__}, not a dict of tensors")
    for container in ("state_dict", "module", "model", "state_dict_ema"):
        inner = obj.get(container)
        if isinstance(inner, dict) and _tensors(inner):
            return _tensors(inner), container
    tensors = _tensors(obj)
    if tensors:
        return tensors, "top level"
    raise CheckpointError(f"no tensors found (top-level keys: {sorted(map(str, obj))[:10]})")


def _strip_module(keys: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """Remove DataParallel / DDP ``module.`` prefixes."""
    stripped = False
    while keys and all(k.startswith("module.") for k in keys):
        keys = {k[len("module."):]: v for k, v in keys.items()}
        stripped = True
    return keys, stripped


def _under(keys, prefix) -> dict[str, torch.Tensor]:
    out = {k[len(prefix):]: v for k, v in keys.items() if k.startswith(prefix)}
    if prefix == "backbone." and any(k.split(".")[0] in SEQUENTIAL_NAMES for k in out):
        # lightly examples: nn.Sequential(*list(resnet.children())[:-1]) -> backbone.0., .4.0. ...
        out = {SEQUENTIAL_NAMES.get(k.split(".")[0], k.split(".")[0]) + k[len(k.split(".")[0]):]: v
               for k, v in out.items()}
    return out


def detect(keys: dict[str, torch.Tensor], obj) -> tuple[CheckpointFormat, str | None, str]:
    """(format, method, prefix) decided from the keys alone."""
    if isinstance(obj, dict) and obj.get("format") == EXPORT_FORMAT:
        return CheckpointFormat.MEDSSL_EXPORT, obj.get("method"), ""
    medssl = obj.get(MEDSSL_KEY) if isinstance(obj, dict) else None
    for fmt, method, prefix in KNOWN_PREFIXES:
        under = _under(keys, prefix)
        if "conv1.weight" in under and "layer1.0.conv1.weight" in under:
            if fmt is CheckpointFormat.LIGHTLY and isinstance(medssl, dict):
                return CheckpointFormat.MEDSSL_LIGHTNING, medssl.get("method"), prefix
            if (fmt is CheckpointFormat.TORCHVISION and isinstance(obj, dict) and "module" in obj
                    and "fc.weight" not in keys):
                return CheckpointFormat.SPARK_RELEASE, "spark", prefix
            fc = under.get("fc.weight")
            if fmt is CheckpointFormat.TORCHVISION and fc is not None and fc.shape[0] == IMAGENET_CLASSES:
                return CheckpointFormat.IMAGENET, "imagenet", prefix
            return fmt, method, prefix
    prefixes = sorted({k.rsplit("conv1.weight", 1)[0] for k in keys if k.endswith("conv1.weight")
                       and "layer" not in k})
    raise CheckpointError("no ResNet backbone found under any known key prefix "
                          f"(prefixes that end in conv1.weight: {prefixes or 'none'})")


def backbone_input(obj, fmt: CheckpointFormat, method: str | None) -> tuple[InputMapping, str]:
    """(what the backbone was fed in pre-training, where that comes from): our export's
    ``input`` (or, for older exports, its data config), our Lightning checkpoint's data settings,
    the study's constants for its released files, else the project default."""
    if fmt is CheckpointFormat.MEDSSL_EXPORT and "input" in obj:
        try:
            return InputMapping.from_dict(obj["input"]), "recorded in the file"
        except InputMappingError as err:
            raise CheckpointError(f"its recorded input mapping cannot be used: {err}") from err
    data = None
    if fmt is CheckpointFormat.MEDSSL_EXPORT and isinstance(obj.get("config"), dict):
        data = obj["config"].get("data")
    if fmt is CheckpointFormat.MEDSSL_LIGHTNING:
        data = obj.get("datamodule_hyper_parameters")
    if isinstance(data, dict) and data:
        try:
            return pretraining_input(data), "the pre-training data settings in the file"
        except (InputMappingError, TypeError, ValueError) as err:
            raise CheckpointError(f"its pre-training data settings give no input mapping: {err}") from err
    if fmt is CheckpointFormat.IMAGENET:
        return (IMAGENET_INPUT, "ImageNet's normalisation for grey images copied to RGB (the averages "
                "of its channel means and stds; the file records none, the full HU range is assumed)")
    if fmt in RELEASE_FORMATS and method in STUDY_INPUTS:
        return (STUDY_INPUTS[method], f"the study's {method} settings (docs/protocol.md; the file "
                "records none, the full HU range is assumed)")
    return DEFAULT, "project default: the file records none"


def resolve(source: str | Path, folder: str | Path | None = None) -> Path:
    """The file ``source`` names: a path, or a released checkpoint's name looked up in
    ``folder`` (see ``registry.checkpoint_dir``)."""
    path = Path(source)
    if path.exists():
        return timm_weights(path) or path
    name = str(source).lower()
    if name in RELEASED:
        local = local_path(name, folder)
        if local.exists():
            return local
        raise CheckpointError(f"released checkpoint {name!r} is not downloaded yet: run "
                              f"python checkpoints/download.py {name}  (expected at {local})")
    raise CheckpointError(f"{source}: no such file, and not a released checkpoint name "
                          f"({', '.join(RELEASED)})")


def read_backbone(source, arch: str | None = "resnet50", trust: bool = False,
                  folder: str | Path | None = None):
    """(backbone state dict with torchvision names, LoadReport) — every trunk tensor checked.
    ``folder``: where released checkpoints are looked up by name (see ``load_backbone``)."""
    path = resolve(source, folder)
    safetensors = path.is_file() and is_safetensors(path)
    try:
        obj, how = (read_safetensors(path), SAFETENSORS) if safetensors else safe_load(path, trust=trust)
    except UnsafeCheckpointError as err:
        raise CheckpointError(f"{path}: refused: {err} {TRUST_HINT}") from err
    except Exception as err:
        kind = "safetensors file" if safetensors else "PyTorch checkpoint"
        raise CheckpointError(f"{path}: not a readable {kind} ({type(err).__name__}: {err})") from err
    obj, module_class = _module_state_dicts(obj)
    try:
        keys, container = find_state_dict(obj)
        if module_class:
            container += f" (state_dict() of a pickled {module_class} module)"
        keys, had_module = _strip_module(keys)
        fmt, method, prefix = detect(keys, obj)
    except CheckpointError as err:
        refusal = whole_module_refusal(obj)
        if refusal:
            raise CheckpointError(f"{path}: refused: {refusal} {TRUST_HINT}") from err
        raise CheckpointError(f"{path}: {err}") from err
    label = format_label(fmt, had_module)
    trunk = {k: v for k, v in _under(keys, prefix).items() if not k.startswith("fc.")}
    found_arch = infer_arch(trunk)
    arch = arch or found_arch
    if arch is None:
        raise CheckpointError(f"{path}: {label}: the backbone is no torchvision ResNet layout; "
                              "pass arch= explicitly")
    if found_arch is not None and found_arch != arch:
        name = str(source).lower()
        others = released_alternatives(name, arch) if name in RELEASED and not Path(source).exists() else []
        raise CheckpointError(f"{path}: holds a {found_arch} backbone ({label}), but {arch} was "
                              f"asked for: leave the architecture unset, or give {found_arch} "
                              f"(--model.arch {found_arch})"
                              + (f", or the released {' / '.join(others)}" if others else ""))
    expected = expected_keys(arch)
    missing = sorted(set(expected) - set(trunk))
    if missing:
        raise CheckpointError(f"{path}: format guessed: {label} (prefix {prefix!r}); {len(missing)} "
                              f"of the {arch} backbone's tensors are missing, e.g. {missing[:5]}. "
                              "Nothing was loaded.")
    wrong = [f"{k}: {tuple(trunk[k].shape)} in the file, {tuple(s)} in {arch}"
             for k, s in expected.items() if trunk[k].shape != s]
    if wrong:
        raise CheckpointError(f"{path}: format guessed: {label}; shape mismatch: {'; '.join(wrong[:5])}")
    state = {k: trunk[k] for k in expected}
    used = {prefix + k for k in expected}
    ignored: dict[str, int] = {}
    for key in keys:
        if key not in used and not (prefix == "backbone." and _is_sequential_alias(key, used)):
            head = key[len(prefix):].split(".")[0] if key.startswith(prefix) else key.split(".")[0]
            label = (prefix + head) if key.startswith(prefix) else head
            ignored[label] = ignored.get(label, 0) + 1
    metadata = {k: v for k, v in obj.items() if k in ("method", "arch", "epochs", "steps", "epoch",
                                                      "global_step", "store_manifest_sha256")
                and isinstance(v, (int, float, str))} if isinstance(obj, dict) else {}
    try:
        mapping, mapping_from = backbone_input(obj if isinstance(obj, dict) else {}, fmt, method)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from err
    metadata["input"] = mapping.as_dict()
    report = LoadReport(str(path), fmt, method, arch, len(state), [], ignored, how, metadata,
                        container, len(keys), had_module, mapping, mapping_from)
    return state, report


def read_input(source, trust: bool = False, folder: str | Path | None = None) -> tuple[InputMapping, str]:
    """(what the backbone of ``source`` was fed in pre-training, where that comes from), as
    ``read_backbone`` reports it; read once per version of the file."""
    path = resolve(source, folder)
    stat = path.stat()
    return _read_input(str(path.resolve()), stat.st_mtime_ns, stat.st_size, trust)


@functools.lru_cache(maxsize=16)
def _read_input(path: str, mtime_ns: int, size: int, trust: bool) -> tuple[InputMapping, str]:
    report = read_backbone(path, arch=None, trust=trust)[1]
    return report.input, report.input_from


def _module_state_dicts(obj):
    """torch.save(model) or {"model": model, ...}, loaded trusted: the same with each module's
    state_dict() in its place, and the first module's class name (None if there was none)."""
    if isinstance(obj, nn.Module):
        return obj.state_dict(), type(obj).__name__
    if isinstance(obj, dict):
        modules = [v for v in obj.values() if isinstance(v, nn.Module)]
        if modules:
            return ({k: v.state_dict() if isinstance(v, nn.Module) else v for k, v in obj.items()},
                    type(modules[0]).__name__)
    return obj, None


def _is_sequential_alias(key: str, used: set[str]) -> bool:
    first = key[len("backbone."):].split(".")[0]
    if first not in SEQUENTIAL_NAMES:
        return False
    return "backbone." + SEQUENTIAL_NAMES[first] + key[len("backbone.") + len(first):] in used


def load_backbone(source, arch: str | None = "resnet50", num_classes: int | None = None,
                  trust: bool = False, folder: str | Path | None = None) -> tuple[nn.Module, LoadReport]:
    """A torchvision ResNet holding the pretrained backbone of ``source`` (a path or the name
    of a released checkpoint), and a report of what was loaded, missing, ignored, and which
    format was detected. ``fc`` is a new ``Linear(features, num_classes)`` if ``num_classes``
    is given, else torchvision's untrained 1000-class ``fc``. ``arch=None``: take the file's.
    ``trust=True`` runs the file's pickled code (only for files you trust). Released names are
    looked up in ``folder``, else $MEDSSL_CHECKPOINTS, else ``./checkpoints``.

    Raises CheckpointError instead of ever returning a partly loaded network.
    """
    state, report = read_backbone(source, arch, trust, folder)
    model = BACKBONES[report.arch][0](weights=None)
    if num_classes is not None:
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    result = model.load_state_dict(state, strict=False)
    leftover = [k for k in result.missing_keys if not k.startswith("fc.")]
    if leftover or result.unexpected_keys:  # cannot happen after read_backbone's checks
        raise CheckpointError(f"{report.source}: incomplete load: missing {leftover}, "
                              f"unexpected {result.unexpected_keys}")
    report.missing = list(result.missing_keys)
    return model, report
