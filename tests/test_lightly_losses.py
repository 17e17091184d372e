"""DINO, SimCLR, Barlow Twins and VICReg train with lightly's losses: each method's loss equals
lightly's on the method's own embeddings; DINO's teacher takes no gradient, follows the student
at its schedule's EMA rate, and its temperature warms up step by step."""
import pytest
import pytorch_lightning as pl
import torch
from lightly import loss as lightly_loss
from torch.utils.data import DataLoader, Dataset

from medssl.pretrain.methods import DINO, BarlowTwins, SimCLR, VICReg
from medssl.pretrain.methods.losses import BarlowTwinsLoss, DINOLoss, NTXentLoss, VICRegLoss

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def views(n_views, batch=6, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, size, size, generator=g) for _ in range(n_views)]


def embeddings(module, batch):
    """The two views' projections, as the method computes them (BatchNorm in training mode)."""
    return module.projection_head(module.backbone(torch.cat(batch))).chunk(2)


TWO_VIEWS = {  # the method with settings of its own, and lightly's loss with the same settings
    "simclr": lambda: (SimCLR(arch="resnet18", hidden_dim=32, out_dim=16, temperature=0.2),
                       lightly_loss.NTXentLoss(0.2)),
    "barlowtwins": lambda: (BarlowTwins(arch="resnet18", hidden_dim=32, out_dim=32, lambda_param=0.01),
                            lightly_loss.BarlowTwinsLoss(lambda_param=0.01)),
    "vicreg": lambda: (VICReg(arch="resnet18", hidden_dim=32, out_dim=32, invariance_weight=20,
                              variance_weight=15, covariance_weight=2), lightly_loss.VICRegLoss(20, 15, 2)),
}


@pytest.mark.parametrize("method", list(TWO_VIEWS))
def test_a_two_view_method_loss_is_lightlys_on_its_embeddings(method):
    torch.manual_seed(0)
    module, lightly_criterion = TWO_VIEWS[method]()
    batch = views(2)
    loss, _ = module.training_loss(batch)
    with torch.no_grad():
        z0, z1 = embeddings(module, batch)
    torch.testing.assert_close(loss, lightly_criterion(z0, z1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ours, theirs", [
    (NTXentLoss(0.3), lightly_loss.NTXentLoss(0.3)),
    (VICRegLoss(25, 25, 1), lightly_loss.VICRegLoss(25, 25, 1)),
    (BarlowTwinsLoss(0.01), lightly_loss.BarlowTwinsLoss(0.01)),
], ids=["ntxent", "vicreg", "barlowtwins"])
def test_fixed_shape_losses_match_lightlys_values_and_gradients(ours, theirs):
    z = [torch.randn(8, 16, generator=torch.Generator().manual_seed(s), requires_grad=True) for s in (1, 2)]
    ours(*z).backward()
    grads = [t.grad.clone() for t in z]
    for t in z:
        t.grad = None
    theirs(*z).backward()
    torch.testing.assert_close(ours(*z), theirs(*z))
    for grad, t in zip(grads, z):
        torch.testing.assert_close(grad, t.grad)


def test_dino_loss_and_centre_follow_lightlys_with_a_tensor_temperature():
    ours, theirs = DINOLoss(16, center_momentum=0.8), lightly_loss.DINOLoss(16, center_momentum=0.8)
    g = torch.Generator().manual_seed(0)
    for temperature in (0.02, 0.05):  # the second call uses the centre the first one moved
        teacher = [torch.randn(4, 16, generator=g) for _ in range(2)]
        student = [torch.randn(4, 16, generator=g) for _ in range(5)]
        got = ours(teacher, student, teacher_temp=torch.tensor(temperature))
        torch.testing.assert_close(got, theirs(teacher, student, teacher_temp=temperature))
        torch.testing.assert_close(ours.center, theirs.center)
    assert ours.center.abs().sum() > 0


def small_dino(**kwargs):
    return DINO(arch="resnet18", hidden_dim=32, bottleneck_dim=8, out_dim=32,
                optimizer=DINO.OPTIMIZER.replace(warmup_epochs=0), **kwargs)


def test_dino_teacher_starts_as_the_student_and_moves_at_the_schedules_rate(monkeypatch):
    module = small_dino(tau_base=0.9)
    pairs = [(module.backbone, module.backbone_momentum), (module.projection_head, module.projection_head_momentum)]
    for student, teacher in pairs:
        for s, t in zip(student.state_dict().values(), teacher.state_dict().values()):
            assert torch.equal(s, t)
    monkeypatch.setattr(module, "total_steps", lambda: 11)  # no Trainer: at step 0 of 11
    assert module.tau(0) == pytest.approx(0.9) and module.tau(10) == 1.0
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(1.0)
    before = [[t.detach().clone() for t in teacher.parameters()] for _, teacher in pairs]
    module.after_optimizer_step()
    for (student, teacher), old in zip(pairs, before):
        for s, t, o in zip(student.parameters(), teacher.parameters(), old):
            torch.testing.assert_close(t, 0.9 * o + 0.1 * s)


class FixedViews(Dataset):
    def __init__(self, sizes, n=8):
        g = torch.Generator().manual_seed(0)
        self.views = [torch.randn(n, 3, s, s, generator=g) for s in sizes]

    def __len__(self):
        return len(self.views[0])

    def __getitem__(self, i):
        return [v[i] for v in self.views]


class Watch(pl.Callback):
    def __init__(self):
        self.temperatures, self.last_layer = [], []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.temperatures.append(float(module.teacher_temperature))
        self.last_layer.append(module.projection_head.last_layer.weight_v.detach().clone())


@pytest.mark.slow
def test_dino_trains_its_student_only_with_a_warming_teacher_temperature():
    module = small_dino(warmup_teacher_temp=0.02, teacher_temp=0.04, warmup_teacher_temp_epochs=1,
                        freeze_last_layer_epochs=1)
    initial_last_layer = module.projection_head.last_layer.weight_v.detach().clone()
    watch = Watch()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[watch])
    trainer.fit(module, DataLoader(FixedViews([32, 32, 16, 16]), batch_size=4))  # 2 steps an epoch
    assert watch.temperatures == pytest.approx([0.02, 0.03, 0.04, 0.04])
    # the head's last layer is fixed in the first epoch, trained in the second
    assert all(torch.equal(w, initial_last_layer) for w in watch.last_layer[:2])
    assert not torch.equal(watch.last_layer[-1], initial_last_layer)
    for name in ("backbone_momentum", "projection_head_momentum"):
        params = list(getattr(module, name).parameters())
        assert all(p.grad is None and not p.requires_grad for p in params), name
    assert any(p.grad is not None for p in module.backbone.parameters())
    # lr 0.03 per 256 images at batch 4; no weight decay on biases and norms (lightly's split)
    decay, no_decay = trainer.optimizers[0].param_groups
    assert decay["initial_lr"] == pytest.approx(0.03 * 4 / 256) and decay["weight_decay"] == 1e-4
    assert no_decay["weight_decay"] == 0.0 and all(p.ndim == 1 for p in no_decay["params"])
    assert module.backbone.bn1.weight in no_decay["params"] and module.backbone.conv1.weight in decay["params"]


# --- under DDP: negatives, variances and covariances over the batches of all processes ------
def halves(rank: int):
    """Rank ``rank``'s half of a batch of 8 pairs of embeddings."""
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    return z0[4 * rank: 4 * rank + 4], z1[4 * rank: 4 * rank + 4]


def ddp_worker(rank: int, port: int, out: str) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    result = {}
    for name, criterion in (("ntxent", NTXentLoss(0.3, gather_distributed=True)),
                            ("vicreg", VICRegLoss(25, 25, 1, gather_distributed=True)),
                            ("barlowtwins", BarlowTwinsLoss(0.01, gather_distributed=True))):
        z0, z1 = (z.clone().requires_grad_() for z in halves(rank))
        loss = criterion(z0, z1)
        (loss / 2).backward()  # the mean over the processes, as DDP averages gradients
        losses = [torch.zeros(()) for _ in range(2)]
        dist.all_gather(losses, loss.detach())
        grads = [torch.zeros(4, 16) for _ in range(2)]
        dist.all_gather(grads, z0.grad)
        result[name] = {"loss": sum(losses) / 2, "grad": torch.cat(grads)}
    if rank == 0:
        torch.save(result, out)
    dist.destroy_process_group()


@pytest.mark.slow
def test_under_ddp_the_losses_are_lightlys_on_the_whole_batch(tmp_path):
    """Two CPU processes (gloo), four pairs each: the mean of their losses and their gradients
    are lightly's single-process loss and gradients on all eight pairs."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(ddp_worker, args=(port, str(tmp_path / "rank0.pt")), nprocs=2)
    result = torch.load(tmp_path / "rank0.pt", weights_only=True)
    # Barlow Twins: lightly's own normalises each process's half on its own (a different loss)
    for name, criterion in (("ntxent", lightly_loss.NTXentLoss(0.3)), ("vicreg", lightly_loss.VICRegLoss(25, 25, 1)),
                            ("barlowtwins", lightly_loss.BarlowTwinsLoss(0.01))):
        z0, z1 = (torch.cat(parts).requires_grad_() for parts in zip(halves(0), halves(1)))
        loss = criterion(z0, z1)
        loss.backward()
        torch.testing.assert_close(result[name]["loss"], loss.detach())
        torch.testing.assert_close(result[name]["grad"], z0.grad)
