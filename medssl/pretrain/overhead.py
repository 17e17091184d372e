"""What a method's training step costs beyond its network passes: the same backbone and
projection-head passes run bare (no loss, queues, other heads or momentum updates), and SparK's
encoder and decoder run densely. A method's step time over its bare one is its overhead (the
goal in the benchmarks and in ``medssl doctor``: at most ``OVERHEAD_GOAL``)."""
from __future__ import annotations

import copy

import torch

from .methods import OptimizerConfig, PretrainMethod, SparK
from .methods import method as registered_method

OVERHEAD_GOAL = 1.15  # method step / its bare-passes step, at most
# Backbone passes per step: (trained view groups, no-grad view groups through a momentum copy);
# the views of a group go through together, as the method passes them.
BARE_PASSES = {
    "supervised": ([[0]], []),
    "swav": ([[0, 1], [2, 3, 4, 5, 6, 7]], []),
    "mocov2": ([[0]], [[1]]),
    "byol": ([[0, 1]], [[0, 1]]),
    "dino": ([[0, 1], [2, 3, 4, 5, 6, 7, 8, 9]], [[0, 1]]),
    "simclr": ([[0, 1]], []),
    "barlowtwins": ([[0, 1]], []),
    "vicreg": ([[0, 1]], []),
}
# What a method's step time is compared with (goal: <= 1.15x); others: with "supervised".
BASELINES = {"swav": "bare_swav", "mocov2": "bare_mocov2", "byol": "bare_byol", "spark": "spark_dense",
             "dino": "bare_dino", "simclr": "bare_simclr", "barlowtwins": "bare_barlowtwins",
             "vicreg": "bare_vicreg"}


def config_views(method: str, size: int) -> tuple[list[dict], dict]:
    """The views and intensity of the method's config, the largest view resized to ``size`` and
    the others in proportion (SwAV's 96 px -> size * 96 / 224)."""
    data = registered_method(method).data_config()
    largest = max(v["size"] for v in data["views"])
    views = [{**v, "size": size if v["size"] == largest else max(16, v["size"] * size // largest)}
             for v in data["views"]]
    return views, data["intensity"]


def bare_passes(method: str, arch: str):
    """One pass of the backbone and the method's projection head (``supervised``: a linear
    head and cross-entropy) per trained view group, SGD, and one no-grad pass of their copies
    per momentum-encoder group: the method's network work without its loss, queues, other heads
    and momentum updates. The projection heads count as work, not overhead: Barlow Twins' and
    VICReg's 8192-wide ones outweigh a ResNet-18."""
    trained, no_grad = BARE_PASSES[method]
    head = head_momentum = None
    if method != "supervised":
        cls = registered_method(method).cls
        real = cls(arch=arch, optimizer=cls.OPTIMIZER.replace(warmup_epochs=0))
        head = getattr(real, "projection_head", None)
        head_momentum = getattr(real, "projection_head_momentum", None)  # DINO's: deepcopy refuses it

    class BarePasses(PretrainMethod):
        def __init__(self):
            super().__init__(arch=arch, optimizer=OptimizerConfig(name="sgd", lr=0.01))
            self.head = head if head is not None else torch.nn.Linear(self.feature_dim, 10)  # supervised
            self.backbone_momentum = copy.deepcopy(self.backbone).requires_grad_(False) if no_grad else None
            self.head_momentum = None
            if no_grad:
                self.head_momentum = (head_momentum if head_momentum is not None
                                      else copy.deepcopy(self.head).requires_grad_(False))

        def training_loss(self, batch):
            views = self.views_to_device_format(batch)
            loss = 0.0
            for group in trained:
                out = self.head(self.backbone(join(views, group)))
                if head is None:
                    labels = torch.zeros(len(out), dtype=torch.long, device=out.device)
                    loss = loss + torch.nn.functional.cross_entropy(out, labels)
                else:
                    loss = loss + out.float().square().mean()
            with torch.no_grad():
                for group in no_grad:
                    self.head_momentum(self.backbone_momentum(join(views, group)))
            return loss, {}

    return BarePasses()


def join(views, group):
    return views[group[0]] if len(group) == 1 else torch.cat([views[i] for i in group])


def build(method: str, arch: str):
    if method == "supervised" or method.startswith("bare_"):
        return bare_passes(method.removeprefix("bare_"), arch)
    if method == "spark_dense":
        class DenseSparK(SparK):
            """The same encoder + decoder run densely: no masking, plain BatchNorm, no tokens;
            the loss over every patch. What SparK's masking costs on top of it is its overhead."""

            def forward(self, images, mask):
                r = self.backbone
                x = r.maxpool(r.relu(r.bn1(r.conv1(images))))
                features = []
                for layer in (r.layer1, r.layer2, r.layer3, r.layer4):
                    x = layer(x)
                    features.append(x)
                d = self.densify
                return self.decoder([p(n(f)) for f, n, p in zip(features[::-1], d.norms, d.projections)])

            def make_mask(self, images, generator=None):
                g = images.shape[-1] // 32
                return torch.zeros(len(images), 1, g, g, dtype=torch.bool, device=images.device)

        cls = DenseSparK
    else:
        cls = registered_method(method).cls
    return cls(arch=arch, optimizer=cls.OPTIMIZER.replace(warmup_epochs=0))


def view_shapes(method: str, size: int):
    """The sides of the views of one image: those of the method's config (SparK's for
    spark_dense, the method's for bare_<method>, one view for supervised)."""
    method = {"spark_dense": "spark"}.get(method, method.removeprefix("bare_"))
    if method == "supervised":
        return [size]
    views, _ = config_views(method, size)
    return [v["size"] for v in views for _ in range(v["count"])]


