"""The registered pre-training methods as the tests see them: every test that runs each method
parametrizes over the registry; a method without small settings here runs with its quick config's."""
from medssl.pretrain.methods import method


def quick_views(name: str) -> list[dict]:
    """The views of the method's quick config."""
    return method(name).data_config(quick=True)["views"]


def view_sizes(views: list[dict]) -> list[int]:
    """The side of each view of one image, in batch order."""
    return [v["size"] for v in views for _ in range(v.get("count", 2))]


def build(name: str, small: dict[str, dict], **extra):
    """The method on ResNet-18 with the test's small settings for it (none for a method the
    test does not know: its defaults)."""
    return method(name).cls(arch="resnet18", **small.get(name, {}), **extra)


def without_warmup(name: str):
    """The method's default optimiser settings with no learning-rate warm-up."""
    return method(name).cls.OPTIMIZER.replace(warmup_epochs=0)
