"""What the online linear probe and the embedding picture (medssl/pretrain/online_eval.py) cost a
pre-training run: the same run with and without them, ResNet-18 on a phantom store.

    python -m benchmarks.online_probe                          # ~2 min on 2 CPU cores
    python -m benchmarks.online_probe --method spark --size 128

Both do their work outside the training step: the probe at the end of each epoch (one no-grad
pass of the labelled set through the backbone, then a few hundred steps of a linear layer),
the picture once at the end of training (one pass, then t-SNE). So the figures are:
  - the training step's median time, with and without (the step itself is untouched);
  - the time between an epoch's last step and its end, with and without; the difference is the
    probe's, and over the epoch's training time (its first step's start to its last step's end,
    data loading included, in the same run) it is the probe's share: the overhead (goal: at
    most 5 %);
  - the picture's time at the end of the run (once per run, not per step).
The probe's cost grows with the labelled set and the overhead shrinks with the epoch: the
default labelled set is 0.28 labelled images per training image of an epoch, the demo's ratio
(357 images of the phantom organ task per 1280 store slices). Each configuration runs
--rounds times, alternately; each figure is the lowest of its rounds (interference from the
rest of the machine only ever slows a round down); the overhead is the median of the rounds'
ratios, each taken within one run.
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from benchmarks import common

GOAL = 0.05  # the probe's share of training time, at most
DEMO_RATIO = 357 / 1280  # labelled images used per training image of an epoch, in the demo


def now() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def make_data(folder: Path, slices: int, labelled_ratio: float) -> tuple[Path, Path]:
    """A phantom store of ``slices`` slices and the phantom organ task with about
    ``labelled_ratio`` x ``slices`` images in its train + test splits (the monitors' set)."""
    from medssl.data.phantom import write_phantom_store
    from medssl.downstream.phantom_tasks import TaskCounts, write_phantom_tasks

    store = write_phantom_store(folder / "store", patients=max(1, slices // 32), slices_per_patient=32,
                                size=64, seed=0, workers=1, progress=False).path
    per_class = max(2, round(labelled_ratio * slices / 7 / 0.85))  # 7 organs; train + test = 85 %
    counts = TaskCounts(per_class, 2, 2, covid_extra_test_per_class=0, brain_extra_test_per_class=0)  # organ only
    tasks = write_phantom_tasks(folder / "tasks", size=32, counts=counts, progress=False)
    return store, tasks["organ"]


def run_once(args, store: Path, labelled: Path | None, root: Path) -> dict:
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import TensorBoardLogger

    from medssl.pretrain.datamodule import SliceStoreDataModule
    from medssl.pretrain.methods import method as registered_method
    from medssl.pretrain.online_eval import EmbeddingPicture, OnlineLinearProbe

    class Clock(pl.Callback):
        """Step times; each epoch's training time (its start to its last step's end); the time
        from an epoch's last step to its end (after the other callbacks' epoch-end hooks); the
        time from the last epoch's end to the end of training."""

        def __init__(self):
            self.steps, self.epochs, self.epoch_ends, self.train_end = [], [], [], 0.0

        def on_train_epoch_start(self, *a):
            self.epoch_start = now()

        def on_train_batch_start(self, *a):
            self.start = now()

        def on_train_batch_end(self, *a):
            self.last = now()
            self.steps.append(self.last - self.start)

        def on_train_epoch_end(self, *a):
            self.epoch_end = now()
            self.epochs.append(self.last - self.epoch_start)
            self.epoch_ends.append(self.epoch_end - self.last)

        def on_train_end(self, *a):
            self.train_end = now() - self.epoch_end

    entry = registered_method(args.method)
    config = yaml.safe_load(entry.quick_config.read_text())  # its model and views, ResNet-18
    data_config = config["data"]
    views = [{**v, "size": args.size} for v in data_config["views"]]
    model = {**config["model"], "arch": "resnet18"}
    model["optimizer"] = {**model.get("optimizer", {}), "warmup_epochs": 0}
    module = entry.cls(**model)
    data = SliceStoreDataModule(str(store), views=views, intensity=data_config["intensity"],
                                batch_size=args.batch, num_workers=0)
    monitors = [OnlineLinearProbe(str(labelled)), EmbeddingPicture(str(labelled))] if labelled else []
    clock = Clock()
    pl.seed_everything(0)
    trainer = pl.Trainer(accelerator="auto", devices=1, precision=args.precision, max_epochs=args.epochs,
                         limit_train_batches=args.steps_per_epoch,
                         logger=TensorBoardLogger(root, name="", version=""), enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
                         callbacks=[*monitors, clock])  # the clock's hooks after the monitors'
    start = now()
    trainer.fit(module, data)
    return {"step_s": statistics.median(clock.steps[args.warmup:]), "epoch_s": statistics.median(clock.epochs),
            "epoch_end_s": statistics.median(clock.epoch_ends), "train_end_s": clock.train_end,
            "wall_s": now() - start, "steps": len(clock.steps),
            "probe_val_accuracy": monitors[0].history[-1]["val_accuracy"] if monitors else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="mocov2", help="a registered method; its quick config's model and views")
    ap.add_argument("--size", type=int, default=64, help="view size (px)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps-per-epoch", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2, help="first steps of a run left out of the step time")
    ap.add_argument("--labelled-ratio", type=float, default=DEMO_RATIO,
                    help="labelled images per training image of an epoch (default: the demo's)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--precision", default="32-true")
    ap.add_argument("--out", type=Path, default=common.RESULTS)
    args = ap.parse_args()

    from medssl.pretrain.labelled_set import load_labelled
    from medssl.quiet import quiet_lightning

    rounds = {"without": [], "with": []}
    with tempfile.TemporaryDirectory() as tmp, quiet_lightning():
        tmp = Path(tmp)
        store, labelled = make_data(tmp, args.steps_per_epoch * args.batch, args.labelled_ratio)
        for r in range(args.rounds):
            for name in ("without", "with") if r % 2 == 0 else ("with", "without"):  # no order effect
                rounds[name].append(run_once(args, store, labelled if name == "with" else None, tmp / f"{name}{r}"))
                print(f"round {r + 1} {name:7s} " + " ".join(
                    f"{k} {v:.3f}" for k, v in rounds[name][-1].items() if isinstance(v, float)), flush=True)
        labelled_images = sum(len(labels) for _, labels in load_labelled(labelled).values())
    best = {name: {k: min(r[k] for r in runs) for k in ("step_s", "epoch_s", "epoch_end_s", "train_end_s", "wall_s")}
            for name, runs in rounds.items()}
    probe_s = best["with"]["epoch_end_s"] - best["without"]["epoch_end_s"]
    picture_s = best["with"]["train_end_s"] - best["without"]["train_end_s"]
    shares = [(w["epoch_end_s"] - wo["epoch_end_s"]) / w["epoch_s"] for w, wo in zip(rounds["with"], rounds["without"])]
    overhead = statistics.median(shares)
    step_change = best["with"]["step_s"] / best["without"]["step_s"] - 1
    device, machine = common.machine(readable=True), common.machine()
    command = common.command("online_probe", [word for k, v in vars(args).items() if k != "out"
                                              for word in (f"--{k.replace('_', '-')}", str(v))])
    verdict = "PASS" if overhead <= GOAL else "MISS"
    lines = [f"# Online linear probe and embedding picture on {device}: resnet18, {args.method} views at "
             f"{args.size} px, batch {args.batch}, {args.steps_per_epoch} steps per epoch, {labelled_images} "
             f"labelled images", "", f"`{command}`", "",
             "| | without | with |", "|---|---:|---:|",
             f"| training step (median, s) | {best['without']['step_s']:.3f} | {best['with']['step_s']:.3f} |",
             f"| an epoch's training (s) | {best['without']['epoch_s']:.2f} | {best['with']['epoch_s']:.2f} |",
             f"| epoch's last step to its end (s) | {best['without']['epoch_end_s']:.3f} "
             f"| {best['with']['epoch_end_s']:.3f} |",
             f"| last epoch's end to the end of training (s) | {best['without']['train_end_s']:.3f} "
             f"| {best['with']['train_end_s']:.3f} |",
             f"| whole run (s) | {best['without']['wall_s']:.1f} | {best['with']['wall_s']:.1f} |", "",
             f"Probe: {probe_s:.2f} s per epoch = {100 * overhead:.1f} % of the epoch's training time "
             f"(rounds: {', '.join(f'{100 * s:.1f} %' for s in shares)}; goal <= {100 * GOAL:.0f} %): {verdict}.",
             f"Training step with vs without: {100 * step_change:+.1f} % (noise: the monitors do nothing in a step).",
             f"Embedding picture: {picture_s:.2f} s once, at the end of training."]
    report = {"machine": machine, "device": device, "command": command, "torch": torch.__version__,
              "args": {k: v for k, v in vars(args).items() if k != "out"}, "labelled_images": labelled_images,
              "rounds": rounds, "best": best, "probe_s_per_epoch": probe_s, "picture_s": picture_s,
              "overhead": overhead, "overhead_per_round": shares, "step_change": step_change,
              "goal_result": {"goal": "probe time / training time", "measured": round(overhead, 4),
                              "target": f"<= {GOAL}", "passed": overhead <= GOAL}}
    common.write(args.out, f"online_probe-{machine}", report, lines)


if __name__ == "__main__":
    main()
