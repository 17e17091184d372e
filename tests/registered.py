"""The registered pre-training methods as the tests see them: every test that runs each method
parametrizes over the registry and builds it with the method's own ``TINY`` settings (its class
attribute), changing only what the test is about."""
import json

from medssl.pretrain.methods import method


def quick_views(name: str) -> list[dict]:
    """The views of the method's quick config."""
    return method(name).data_config(quick=True)["views"]


def view_sizes(views: list[dict]) -> list[int]:
    """The side of each view of one image, in batch order."""
    return [v["size"] for v in views for _ in range(v.get("count", 2))]


def tiny(name: str, **changes) -> dict:
    """The method's ``TINY`` constructor arguments, ``changes`` over them."""
    return {**method(name).cls.TINY, **changes}


def build(name: str, **changes):
    """The method on ResNet-18 with its tiny settings (``changes`` over them)."""
    return method(name).cls(arch="resnet18", **tiny(name, **changes))


def tiny_arguments(name: str, **changes) -> list[str]:
    """The method's tiny settings as command-line options (``--model.hidden_dim 64 ...``)."""
    return [arg for key, value in tiny(name, **changes).items()
            for arg in (f"--model.{key}", value if isinstance(value, str) else json.dumps(value))]


def without_warmup(name: str):
    """The method's default optimiser settings with no learning-rate warm-up."""
    return method(name).cls.OPTIMIZER.replace(warmup_epochs=0)
