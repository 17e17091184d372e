"""Crafted and ordinary pickles against the safe checkpoint loader."""
import argparse
import os
import pickle
import re
import struct
import zipfile

import pytest
import torch
import torchvision

from medssl.checkpoints import CheckpointError, UnsafeCheckpointError, read_backbone, safe_load


# Pickle pieces, so that each crafted file reads as the opcodes it is made of.
def proto(n=2):
    return pickle.PROTO + bytes([n])


def glob(module, name):
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def text(s):
    data = s.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def stack_global(module, name):
    return text(module) + text(name) + pickle.STACK_GLOBAL


def zip_checkpoint(path, data_pkl: bytes):
    """A torch.save zip archive whose pickle is replaced by ``data_pkl``."""
    torch.save({}, path)
    with zipfile.ZipFile(path) as archive:
        records = {info.filename: archive.read(info) for info in archive.infolist()}
    records[next(name for name in records if name.endswith("/data.pkl"))] = data_pkl
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in records.items():
            archive.writestr(name, data)
    return path


@pytest.fixture
def namespace_class_unchanged():
    """Fails the test if loading changed argparse.Namespace (and undoes any change)."""
    before = dict(vars(argparse.Namespace))
    yield
    after = dict(vars(argparse.Namespace))
    for name in set(after) - set(before):
        delattr(argparse.Namespace, name)
    for name, value in before.items():
        if after.get(name) is not value:
            setattr(argparse.Namespace, name, value)
    assert after == before, "loading changed argparse.Namespace"


SET_REPR = {"__repr__": glob("builtins", "str")}


def state_dict_op(items):
    return pickle.EMPTY_DICT + pickle.MARK + b"".join(text(k) + v for k, v in items.items()) \
        + pickle.SETITEMS


@pytest.mark.parametrize("state", [
    state_dict_op(SET_REPR),  # BUILD with a dict: the class's __dict__
    pickle.NONE + state_dict_op(SET_REPR) + pickle.TUPLE2,  # BUILD with (None, slot state): setattr
], ids=["dict-state", "slot-state"])
def test_build_cannot_set_attributes_of_an_allowed_class(state, tmp_path, namespace_class_unchanged):
    path = zip_checkpoint(tmp_path / "build.pt", proto() + glob("argparse", "Namespace") + state
                          + pickle.BUILD + pickle.STOP)
    with pytest.raises(UnsafeCheckpointError, match="argparse.Namespace|<class 'type'>|BUILD"):
        safe_load(path)
    assert "__repr__" not in vars(argparse.Namespace)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: refused:")):
        read_backbone(path)


def test_build_on_a_loaded_object_stays_inside_it(tmp_path, namespace_class_unchanged):
    # a Namespace instance built with slot state: allowed, and only the instance changes
    path = zip_checkpoint(tmp_path / "ns.pt", proto() + glob("argparse", "Namespace") + pickle.EMPTY_TUPLE
                          + pickle.NEWOBJ + pickle.NONE + state_dict_op({"lr": text("0.1")})
                          + pickle.TUPLE2 + pickle.BUILD + pickle.STOP)
    obj, _ = safe_load(path)
    assert isinstance(obj, argparse.Namespace) and obj.lr == "0.1"


def test_protocol_2_names_of_builtins_are_mapped(tmp_path):
    # torch.save's default protocol 2 writes builtins as __builtin__.set, __builtin__.frozenset, ...
    args = argparse.Namespace(classes={"covid", "normal"}, frozen=frozenset({1, 2}), size=range(3))
    sd = {k: v for k, v in torchvision.models.resnet18().state_dict().items() if not k.startswith("fc.")}
    path = tmp_path / "released.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()},
                "hyper_parameters": {"args": args}}, path, pickle_protocol=2)
    assert b"__builtin__" in zipfile.ZipFile(path).read("released/data.pkl")
    obj, how = safe_load(path)
    assert obj["hyper_parameters"]["args"] == args and "stubbed" not in how
    state, report = read_backbone(path, arch="resnet18")
    assert torch.equal(state["conv1.weight"], sd["conv1.weight"]) and "stubbed" not in report.unpickling


class Evil:
    def __reduce__(self):
        return os.system, ("true",)


VARIANTS = {
    # name: (pickle bytes, what the message must name)
    "call of a non-callable global": (proto() + glob("os", "sep") + pickle.EMPTY_TUPLE + pickle.REDUCE
                                      + pickle.STOP, r"os\.sep"),
    "allowed class, bad arguments": (proto() + glob("argparse", "Namespace") + text("a") + pickle.TUPLE1
                                     + pickle.REDUCE + pickle.STOP, r"argparse\.Namespace|TypeError"),
    "allowed builtin, bad arguments": (proto() + glob("builtins", "int") + text("a") + pickle.TUPLE1
                                       + pickle.REDUCE + pickle.STOP, r"ValueError|int"),
    "unknown class created with arguments": (proto() + glob("foo", "Bar") + text("a") + pickle.TUPLE1
                                             + pickle.NEWOBJ + pickle.STOP, r"foo\.Bar"),
    "os.system inside a list": (proto() + pickle.EMPTY_LIST + glob("os", "system") + text("true")
                                + pickle.TUPLE1 + pickle.REDUCE + pickle.APPEND + pickle.STOP, r"os\.system"),
    "STACK_GLOBAL os.system": (proto(4) + stack_global("os", "system") + text("true") + pickle.TUPLE1
                               + pickle.REDUCE + pickle.STOP, r"STACK_GLOBAL|os\.system"),
    "STACK_GLOBAL of an attribute": (proto(4) + stack_global("argparse", "Namespace.__repr__")
                                     + pickle.STOP, r"STACK_GLOBAL|Namespace\.__repr__"),
    "getattr on an allowed class": (proto() + glob("builtins", "getattr") + glob("argparse", "Namespace")
                                    + text("__init__") + pickle.TUPLE2 + pickle.REDUCE + pickle.STOP,
                                    r"builtins\.getattr"),
    "persistent id that is no storage": (proto() + text("abc") + pickle.BINPERSID + pickle.STOP,
                                         r"persistent"),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_refusal_names_the_file_and_what_was_refused(name, tmp_path, namespace_class_unchanged):
    data, named = VARIANTS[name]
    path = zip_checkpoint(tmp_path / "crafted.pt", data)
    with pytest.raises(UnsafeCheckpointError, match=named):
        safe_load(path)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: refused:") + ".*" + named
                       + ".*--trust-pickle"):
        read_backbone(path)


def test_legacy_and_raw_pickles_are_refused_clearly(tmp_path):
    marker = tmp_path / "pwned"
    evil = type("Evil", (), {"__reduce__": lambda self: (os.system, (f"touch {marker}",))})
    torch.save({"x": torch.ones(2), "e": evil()}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps(evil(), protocol=2))
    (tmp_path / "bad_pid.pt").write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
                                          + proto() + text("abc") + pickle.BINPERSID + pickle.STOP)
    for name, named in (("legacy.pt", r"(posix|os)\.system"), ("raw.pkl", r"(posix|os)\.system"),
                        ("bad_pid.pt", "persistent")):
        with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path / name}: refused:") + ".*" + named):
            read_backbone(tmp_path / name)
    assert not marker.exists()


def test_files_that_are_no_checkpoint_say_what_they_are(tmp_path):
    torch.save({"x": torch.ones(1000)}, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    for name, content, problem in (("empty.pt", b"", "the file is empty"),
                                   ("page.pt", b"<html>404</html>", "neither a zip archive nor a pickle"),
                                   ("cut.pt", data[: len(data) // 2], "a damaged zip archive")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path / name}: not a readable PyTorch "
                                                            f"checkpoint (ValueError: {problem}")):
            read_backbone(tmp_path / name)


def test_a_whole_pickled_module(tmp_path):
    net = torchvision.models.resnet18()
    torch.save(net, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match=r"model\.pt: refused: it holds a whole pickled module "
                                              r"\(torchvision\.models\.resnet\.ResNet\).*trust=True"):
        read_backbone(tmp_path / "model.pt", arch=None)
    state, report = read_backbone(tmp_path / "model.pt", arch=None, trust=True)
    assert report.arch == "resnet18" and report.unpickling == "trusted"
    assert "module" in report.container
    assert torch.equal(state["layer4.1.bn2.running_var"], net.layer4[1].bn2.running_var)


def test_a_pickled_module_inside_a_dict(tmp_path):
    net = torchvision.models.resnet18()
    torch.save({"model": net, "epoch": 3}, tmp_path / "run.pt")
    with pytest.raises(CheckpointError, match=r"refused: it holds a whole pickled module "
                                              r"\(torchvision\.models\.resnet\.ResNet under 'model'\)"):
        read_backbone(tmp_path / "run.pt", arch=None)
    state, report = read_backbone(tmp_path / "run.pt", arch=None, trust=True)
    assert report.container.startswith("model") and torch.equal(state["conv1.weight"], net.conv1.weight)


class Config:  # a class of some training script, unknown to the loader
    def __init__(self):
        self.lr = 0.1


def test_a_refusal_lists_every_name_beyond_the_allow_list(tmp_path):
    torch.save({"cfg": Config(), "args": argparse.Namespace(lr=0.1), "hook": Evil()}, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError) as refused:
        read_backbone(tmp_path / "mixed.pt")
    message = str(refused.value)
    assert re.search(r"refused: its pickle calls (posix|os)\.system", message)
    listed = re.search(r"not known to be harmless: ([^)]*)\)", message)
    assert listed and set(listed[1].split(", ")) == {"test_safe_pickle.Config", f"{os.system.__module__}.system"}
