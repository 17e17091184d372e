"""Online evaluation during pre-training on a small labelled set (``LabelledSetCallback``): a
linear probe trained on detached features, and a 2-D picture of the features at the end."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import move_data_to_device, rank_zero_only

from .labelled_set import LabelledSetCallback
from .resume import stopping_for_requeue

TSNE_MIN_POINTS = 20  # fewer: PCA (t-SNE needs a few neighbours per point for its perplexity)


class OnlineLinearProbe(LabelledSetCallback):
    """Every ``every_n_epochs`` epochs, train a linear classifier on the backbone's features of
    the labelled set's training part for ``steps`` steps, and log its accuracy there
    (``probe/train_accuracy``) and on the held-out part (``probe/val_accuracy``).

    The classifier (``nn.Linear``) and its optimiser (SGD, momentum 0.9, no weight decay) are the
    callback's own: the method's optimiser never sees them, and the features are computed under
    ``no_grad`` in eval mode, so no gradient reaches the backbone. It carries on from epoch to
    epoch, following the backbone as it changes; features are standardised by the training
    part's mean and standard deviation of the moment. Its weights, optimiser state and history
    are saved in the run's checkpoints and come back on resume. Under DDP every rank trains the
    same classifier on the same all-gathered features with the same seed.

    Args:
        data: the labelled set (``medssl.pretrain.labelled_set.load_labelled``): a MedMNIST-style
            ``.npz`` or a slice store with a ``label`` column.
        every_n_epochs: train and log every this many epochs.
        steps: classifier steps each time (shuffled passes over the training part's features;
            a fixed number, so that the cost does not grow with the set).
        lr: the classifier's learning rate.
        probe_batch_size: features per classifier step.
        batch_size: images per backbone pass.
        seed: the classifier's initial weights and the order of its passes.
    """

    def __init__(self, data: str, every_n_epochs: int = 1, steps: int = 100, lr: float = 0.1,
                 probe_batch_size: int = 64, batch_size: int = 256, seed: int = 0):
        super().__init__(data, batch_size)
        self.every_n_epochs, self.steps, self.lr = every_n_epochs, steps, lr
        self.probe_batch_size, self.seed = probe_batch_size, seed
        self.head: torch.nn.Linear | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.history: list[dict[str, float]] = []
        self._restored: dict | None = None  # a checkpoint's head and optimiser, until built

    def build(self, module) -> None:
        """The classifier and its optimiser on the module's device, from the checkpoint if any."""
        if self.head is None:
            with torch.random.fork_rng(devices=[]):  # the run's random streams stay untouched
                torch.manual_seed(self.seed)
                self.head = torch.nn.Linear(module.feature_dim, self.num_classes).to(module.device)
            self.optimizer = torch.optim.SGD(self.head.parameters(), lr=self.lr, momentum=0.9)
        self._restore()

    def _restore(self) -> None:
        if self._restored is not None and self.head is not None:
            self.head.load_state_dict(self._restored["head"])
            self.optimizer.load_state_dict(self._restored["optimizer"])
            self._restored = None

    def on_train_epoch_end(self, trainer, module) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs or stopping_for_requeue(trainer):
            return
        (_, bank_y), (_, query_y) = self.sets["bank"], self.sets["query"]
        bank, query = self.set_features(trainer, module)
        mean, std = bank.mean(0), bank.std(0, correction=0).clamp_min(1e-6)
        bank, query = (bank - mean) / std, (query - mean) / std
        bank_y, query_y = bank_y.to(module.device), query_y.to(module.device)
        self.build(module)
        with one_cpu_thread():
            self.fit(bank, bank_y, trainer.current_epoch)
            figures = {"train_accuracy": self.accuracy(bank, bank_y), "val_accuracy": self.accuracy(query, query_y)}
        self.history.append({"epoch": trainer.current_epoch, "step": trainer.global_step, **figures})
        module.log_dict({f"probe/{k}": v for k, v in figures.items()}, sync_dist=True)  # equal on all ranks

    def fit(self, features: torch.Tensor, labels: torch.Tensor, epoch: int) -> None:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        batches = []
        with torch.enable_grad():
            for _ in range(self.steps):
                if not batches:
                    batches = list(torch.randperm(len(labels), generator=generator).split(self.probe_batch_size))
                rows = batches.pop().to(features.device)
                loss = F.cross_entropy(self.head(features[rows]), labels[rows])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()

    @torch.no_grad()
    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        return float((self.head(features).argmax(1) == labels).float().mean())

    def state_dict(self) -> dict:
        if self.head is None:
            return {"history": list(self.history), **(self._restored or {})}
        state = {"head": self.head.state_dict(), "optimizer": self.optimizer.state_dict()}
        return {"history": list(self.history), **move_data_to_device(state, "cpu")}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict["history"])
        if "head" in state_dict:
            self._restored = {k: state_dict[k] for k in ("head", "optimizer")}
            self._restore()  # now if built, else when built


class EmbeddingPicture(LabelledSetCallback):
    """At the end of training, a 2-D map of the backbone's features of the labelled set (t-SNE;
    PCA under ``TSNE_MIN_POINTS`` images), one colour per class, named in the legend by the
    labelled set's class names (``LabelledSet.class_names``: numbers where the set has none), the
    training part as dots and the held-out part as crosses: ``<run folder>/embedding.png``, and
    the same figure under the tag ``embedding`` in TensorBoard (at the run's last step).

    Args:
        data: the labelled set (``medssl.pretrain.labelled_set.load_labelled``).
        batch_size: images per backbone pass.
        seed: t-SNE's seed.
    """

    def __init__(self, data: str, batch_size: int = 256, seed: int = 0):
        super().__init__(data, batch_size)
        self.seed = seed
        self.path: Path | None = None

    def on_train_end(self, trainer, module) -> None:
        if stopping_for_requeue(trainer):
            return
        (_, bank_y), (_, query_y) = self.sets["bank"], self.sets["query"]
        features = torch.cat(self.set_features(trainer, module))  # every rank: all-gather
        folder = Path(trainer.log_dir or trainer.default_root_dir)  # every rank: a broadcast
        self.draw(trainer, F.normalize(features, dim=1).cpu().numpy(), torch.cat([bank_y, query_y]).numpy(),
                  len(bank_y), folder / "embedding.png")

    @rank_zero_only
    def draw(self, trainer, features: np.ndarray, labels: np.ndarray, train_count: int, path: Path) -> None:
        fig = self.figure(features, labels, train_count, trainer.global_step)  # Agg: before pyplot
        import matplotlib.pyplot as plt

        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure("embedding", fig, global_step=trainer.global_step, close=False)
                logger.experiment.flush()
        plt.close(fig)
        self.path = path

    def figure(self, features: np.ndarray, labels: np.ndarray, train_count: int, step: int):
        """The picture (a matplotlib figure) of (N, D) ``features`` of images of class ``labels``
        (N,), the first ``train_count`` the training part: one colour per class, named in the
        legend (outside the axes, on the right) by the labelled set's class names."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        points, how = project_2d(features, self.seed)
        names = self.sets.class_names
        held_out = np.arange(len(labels)) >= train_count
        fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
        for c in np.unique(labels):
            colour = class_colour(int(c), len(names))
            for part, marker in ((~held_out, "o"), (held_out, "x")):
                rows = part & (labels == c)
                ax.scatter(points[rows, 0], points[rows, 1], s=12, marker=marker, color=colour,
                           label=legend_name(names[c]) if marker == "o" else None)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(title="class", fontsize=7, title_fontsize=7, markerscale=1.5, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
        ax.set_title(f"{how} of {len(labels)} images ({train_count} dots train, {len(labels) - train_count} "
                     f"crosses held out), step {step}", fontsize=9)
        return fig


LEGEND_NAME_CHARS = 28  # longer class names are cut (MedMNIST's longest run to 70 characters)


def legend_name(name: str) -> str:
    return name if len(name) <= LEGEND_NAME_CHARS else name[:LEGEND_NAME_CHARS - 1].rstrip() + "\u2026"


def class_colour(c: int, classes: int):
    """Class ``c``'s colour: tab10 up to 10 classes; else tab20's ten strong hues first, then
    their light pairs (tab20 alternates them: classes 0 and 1 would share a hue)."""
    from matplotlib import colormaps

    if classes <= 10:
        return colormaps["tab10"](c % 10)
    return colormaps["tab20"]((2 * c) % 20 + (c // 10) % 2)


@contextmanager
def one_cpu_thread():
    """Run tiny CPU work (a linear layer on a few hundred rows) on one thread: split over threads
    it mostly waits at barriers, and much longer when the cores are shared (loader workers, other
    jobs): 100 steps took 0.08 s on one thread and 4 to 6 s on two, on 2 busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def project_2d(features: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """(N, 2) points of (N, D) ``features`` and the projection's name: scikit-learn's t-SNE
    (perplexity 30, or (N - 1) / 3 for small N) of their first 50 principal components, or PCA
    under ``TSNE_MIN_POINTS`` points."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    if len(features) < 2:
        raise ValueError(f"a 2-D picture needs at least 2 images; the labelled set has {len(features)}")
    if len(features) < TSNE_MIN_POINTS:
        return PCA(n_components=2, random_state=seed).fit_transform(features), "PCA"
    # One thread: for a few hundred points OpenMP threads mostly wait at barriers, and much
    # longer when the cores are shared (loader workers, other jobs): 4 s vs 30 s on 2 busy cores.
    with threadpool_limits(limits=1):
        reduced = PCA(n_components=min(50, *features.shape), random_state=seed).fit_transform(features)
        tsne = TSNE(n_components=2, perplexity=min(30.0, (len(features) - 1) / 3), init="pca", random_state=seed)
        return tsne.fit_transform(reduced), "t-SNE"
