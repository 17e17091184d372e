import copy
import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torchvision
from torch.utils.data import DataLoader, Dataset

from medssl.models import build_backbone
from medssl.models.spark_decoder import Densify, LightDecoder, UpBlock
from medssl.models.sparse import SparseResNet, mask_at, masked_batch_norm, random_mask
from medssl.pretrain.cli import pretrain_cli
from medssl.pretrain.methods import SparK

from conftest import phantom_store, run_two_process_ddp

ROOT = Path(__file__).resolve().parents[1]


def randomised_resnet(arch=torchvision.models.resnet18, seed=0):
    torch.manual_seed(seed)
    model = arch()
    for m in model.modules():  # BatchNorm with shifts and scales that would leak if unmasked
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-1, 1)
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return model


@pytest.fixture
def mask():
    g = torch.Generator().manual_seed(1)
    return random_mask(4, 3, 0.6, generator=g)  # 96 px input: 3 x 3 grid


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("arch", [torchvision.models.resnet18, torchvision.models.resnet50],
                         ids=["basic", "bottleneck"])
def test_masked_positions_stay_zero_and_do_not_influence_visible_ones(arch, train, mask):
    a = SparseResNet(randomised_resnet(arch))
    b = copy.deepcopy(a)
    a.train(train), b.train(train)
    x = torch.randn(4, 3, 96, 96)
    hidden = 1 - mask_at(mask, 96)
    x_changed = x + 5 * torch.randn_like(x) * hidden  # differs only under the mask
    fa, fb = a(x, mask), b(x_changed, mask)
    assert [f.shape[-1] for f in fa] == [24, 12, 6, 3]
    for f_a, f_b in zip(fa, fb):
        masked = 1 - mask_at(mask, f_a.shape[-2:])
        assert torch.count_nonzero(f_a * masked) == 0  # exactly zero under the mask
        assert torch.equal(f_a, f_b)  # visible outputs do not see the masked input
        assert f_a.abs().sum() > 0
    for bn_a, bn_b in zip(
            [m for m in a.modules() if isinstance(m, torch.nn.BatchNorm2d)],
            [m for m in b.modules() if isinstance(m, torch.nn.BatchNorm2d)]):
        assert torch.equal(bn_a.running_mean, bn_b.running_mean)
        assert torch.equal(bn_a.running_var, bn_b.running_var)


@pytest.mark.parametrize("train", [True, False])
def test_visible_only_batchnorm_equals_batchnorm_on_the_visible_positions(train, mask):
    torch.manual_seed(0)
    x = torch.randn(4, 8, 12, 12) * 3 + 1
    m = mask_at(mask, 12)
    ours = torch.nn.BatchNorm2d(8)
    ours.weight.data.uniform_(0.5, 1.5)
    ours.bias.data.uniform_(-1, 1)
    plain = torch.nn.BatchNorm1d(8)
    plain.load_state_dict(ours.state_dict())
    ours.train(train), plain.train(train)
    out = masked_batch_norm(x, m, ours)
    visible = m[:, 0].bool()
    reference = plain(x.permute(0, 2, 3, 1)[visible])
    torch.testing.assert_close(out.permute(0, 2, 3, 1)[visible], reference, rtol=1e-4, atol=1e-5)
    assert torch.count_nonzero(out.permute(0, 2, 3, 1)[~visible]) == 0
    torch.testing.assert_close(ours.running_mean, plain.running_mean)
    torch.testing.assert_close(ours.running_var, plain.running_var)


def test_state_dict_names_stay_torchvisions():
    model = SparK(arch="resnet18", decoder_width=64)
    names = set(model.backbone.state_dict())
    assert names == set(torchvision.models.resnet18().state_dict()) - {"fc.weight", "fc.bias"}
    assert model.encoder.resnet is model.backbone


def test_loss_ignores_visible_patches_and_refuses_an_empty_mask():
    model = SparK(arch="resnet18", decoder_width=64)
    images = torch.randn(2, 3, 64, 64)
    mask = torch.tensor([[[[True, False], [False, True]]], [[[False, True], [True, True]]]])
    prediction = torch.randn(2, 3, 64, 64)
    changed = prediction.clone()
    changed[0, :, :32, :32] += 10  # patch (0, 0) of image 0 is visible
    changed[1, :, 32:, 32:] -= 10  # patch (1, 1) of image 1 is visible
    assert model.loss(images, prediction, mask) == model.loss(images, changed, mask)
    changed[0, :, :32, 32:] += 1  # a masked patch: the loss sees it
    assert model.loss(images, prediction, mask) != model.loss(images, changed, mask)
    empty = SparK(arch="resnet18", decoder_width=64, mask_ratio=0.0)
    with pytest.raises(ValueError, match="no masked patch"):
        empty.make_mask(images)
    with pytest.raises(ValueError, match="no masked patch"):  # a 1x1 grid keeps its one cell
        model.make_mask(torch.randn(2, 3, 32, 32))


def test_mask_ratio_and_shape():
    m = random_mask(64, 7, 0.6, generator=torch.Generator().manual_seed(0))
    assert m.shape == (64, 1, 7, 7)
    assert (m.flatten(1).sum(1) == round(49 * 0.4)).all()
    assert len({tuple(r.tolist()) for r in m.flatten(1)}) > 50  # per-sample masks
    with pytest.raises(ValueError):
        random_mask(1, 7, 1.0)
    with pytest.raises(ValueError, match="divisible by 32"):
        SparK(arch="resnet18", decoder_width=64).make_mask(torch.zeros(1, 3, 50, 50))


class FixedImages(Dataset):
    """Phantom CT slices (structure a decoder can learn), fixed: a batch to overfit."""

    def __init__(self, n=8, size=64):
        from medssl.data.intensity import window
        from medssl.data.phantom import phantom_volume

        hu, _, _ = phantom_volume(0, 0, n, size, z_range=(0.2, 0.7))
        x = torch.from_numpy((window(hu, 40, 800) - 0.5) / 0.25)[:, None]
        self.x = x.expand(-1, 3, -1, -1).contiguous()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return [self.x[i]]


@pytest.mark.slow
def test_loss_drops_when_overfitting_one_batch():
    class History(pl.Callback):
        losses = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.losses.append(float(outputs["loss"]))

    pl.seed_everything(0)
    model = SparK(arch="resnet18", decoder_width=64, drop_path=0.0, final_weight_decay=0.0,
                  optimizer=SparK.OPTIMIZER.replace(name="adam", lr=0.064 * 256 / 8, warmup_epochs=0,
                                                    weight_decay=0.0))
    fixed = random_mask(8, 2, 0.6, generator=torch.Generator().manual_seed(0))
    model.make_mask = lambda images, generator=None: fixed[: len(images)]  # one batch, one mask
    history = History()
    trainer = pl.Trainer(max_steps=30, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[history])
    trainer.fit(model, DataLoader(FixedImages(), batch_size=8))
    assert all(math.isfinite(v) for v in history.losses)
    assert np.mean(history.losses[-5:]) < 0.8 * np.mean(history.losses[:3]), history.losses


def test_weight_decay_schedule_and_scaled_lr(tmp_path):
    model = SparK(arch="resnet18", decoder_width=32, optimizer=SparK.OPTIMIZER.replace(warmup_epochs=0))
    trainer = pl.Trainer(max_steps=5, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(FixedImages(n=8, size=64), batch_size=4))
    opt = trainer.optimizers[0]
    assert model.peak_lr() == pytest.approx(2e-4 * 4 / 256)
    assert opt.param_groups[1]["weight_decay"] == 0.0  # biases, norms, mask tokens
    total = model.total_steps()
    for step in range(total):
        want = 0.2 - (0.2 - 0.04) * (math.cos(math.pi * step / (total - 1)) + 1) / 2
        assert model.weight_decay_at(step) == pytest.approx(want)
    assert type(opt).__name__ == "Lamb" and tuple(opt.param_groups[0]["betas"]) == (0.9, 0.95)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return phantom_store(tmp_path_factory, patients=2, size=64)


def test_quick_config_exports_a_backbone_and_pictures(store, tmp_path):
    cli = pretrain_cli("spark", args=[
        "fit", "--config", str(ROOT / "Pre-Training" / "configs" / "spark_quick.yaml"),
        "--data.store", str(store), "--data.batch_size", "8", "--data.num_workers", "0",
        "--trainer.max_steps", "3", "--trainer.default_root_dir", str(tmp_path),
        "--trainer.enable_progress_bar", "false"])
    log_dir = Path(cli.trainer.log_dir)
    payload = torch.load(log_dir / "spark_backbone.pt", weights_only=True)
    result = torchvision.models.resnet18().load_state_dict(payload["state_dict"], strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and not result.unexpected_keys
    assert payload["method"] == "spark" and payload["steps"] == 3
    pictures = sorted((log_dir / "reconstructions").glob("*.png"))
    assert pictures and pictures[-1].read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(store, tmp_path):
    rank0, rank1 = run_two_process_ddp(
        store, tmp_path, "SparK(arch='resnet18', decoder_width=32, sync_bn=True,"
        " optimizer=SparK.OPTIMIZER.replace(warmup_epochs=0))",
        [{"size": 64, "count": 1}])
    assert torch.equal(rank0["params"]["backbone.conv1.weight"], rank1["params"]["backbone.conv1.weight"])
    mean = "backbone.bn1.running_mean"  # visible-only statistics summed over both processes
    torch.testing.assert_close(rank0["buffers"][mean], rank1["buffers"][mean])


# --- the published design (keyu-tian/SparK, pretrain/spark.py and decoder.py), as facts -------

@pytest.fixture(scope="module")
def spark50():
    torch.manual_seed(0)
    return SparK(arch="resnet50", decoder_width=768)


def test_densify_projection_kernels_follow_the_published_design(spark50):
    """1x1 at the deepest scale (stride 32), 3x3 at strides 16, 8, 4; Identity at stride 32 when
    the encoder's and decoder's widths agree there."""
    shapes = [tuple(p.weight.shape) for p in spark50.densify.projections]
    assert shapes == [(768, 2048, 1, 1), (384, 1024, 3, 3), (192, 512, 3, 3), (96, 256, 3, 3)]
    assert [p.padding for p in spark50.densify.projections] == [(0, 0), (1, 1), (1, 1), (1, 1)]
    assert all(p.bias is not None for p in spark50.densify.projections)
    same = Densify([512, 256, 128, 64], [512, 256, 128, 64])  # ResNet-18 under a width-512 decoder
    assert isinstance(same.projections[0], torch.nn.Identity)
    assert [tuple(p.weight.shape[-2:]) for p in same.projections[1:]] == [(3, 3)] * 3


def test_decoder_block_layer_sequence(spark50):
    """Each x2 step: transposed conv 4/2/1 with bias, conv3x3-BN-ReLU6-conv3x3-BN, no final
    activation; widths halve from 768 over five steps, then a 1x1 head to 3 channels."""
    decoder = spark50.decoder
    nn = torch.nn
    for block in decoder.blocks:
        layers = [type(m) for m in block.modules() if not isinstance(m, (UpBlock, nn.Sequential))]
        assert layers == [nn.ConvTranspose2d, nn.Conv2d, nn.BatchNorm2d, nn.ReLU6, nn.Conv2d, nn.BatchNorm2d]
        up = block.up
        assert (up.kernel_size, up.stride, up.padding, up.bias is not None) == ((4, 4), (2, 2), (1, 1), True)
        assert up.in_channels == up.out_channels
        convs = [m for m in block.conv if isinstance(m, nn.Conv2d)]
        assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.bias is None for c in convs)
    assert [b.up.in_channels for b in decoder.blocks] == [768, 384, 192, 96, 48]
    assert [b.conv[3].out_channels for b in decoder.blocks] == [384, 192, 96, 48, 24]
    assert tuple(decoder.head.weight.shape) == (3, 24, 1, 1) and decoder.head.bias is not None


def test_reconstruction_stage_takes_negative_values_before_the_head():
    torch.manual_seed(0)
    decoder = LightDecoder(width=32, steps=3)
    seen = {}
    decoder.blocks[-1].register_forward_hook(lambda m, i, o: seen.__setitem__("last", o))
    features = [torch.randn(2, 32 // 2 ** i, 2 * 2 ** i, 2 * 2 ** i) for i in range(3)]
    decoder(features)
    assert seen["last"].min() < 0 < seen["last"].max()  # no ReLU6 before the head


def test_parameter_counts_of_resnet50_at_width_768(spark50):
    """Counted on the official SparK code (timm ResNet-50, 224 px, LightDecoder width 768)."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(spark50.encoder) == 23_508_032  # the ResNet-50 without fc
    assert count(spark50.densify) == 6_230_688  # norms 7,680 + mask tokens 3,840 + projections
    assert count(spark50.densify.projections) == 6_219_168
    assert count(spark50.densify.projections[0]) == 1_573_632  # 2048 -> 768, 1x1, at stride 32
    assert count(spark50.decoder) == 23_183_115


def test_initialisation_as_the_official_code(spark50):
    nn = torch.nn
    tokens = torch.cat([t.flatten() for t in spark50.densify.mask_tokens])
    assert tokens.abs().max() <= 0.02 and 0.009 < tokens.std() < 0.0125  # N(0, .02) cut at +-.02
    for block in spark50.decoder.blocks:
        fan_out = block.up.weight.shape[0] * 16
        assert block.up.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.05)
        assert torch.count_nonzero(block.up.bias) == 0
        for conv in (block.conv[0], block.conv[3]):
            assert conv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.count_nonzero(spark50.decoder.head.bias) == 0
    norms = [m for m in [*spark50.decoder.modules(), *spark50.densify.norms]
             if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(bool((m.weight == 1).all() and (m.bias == 0).all()) for m in norms)
    for p in spark50.densify.projections:  # PyTorch's default init: the official init skips them
        fan_in = p.weight[0].numel()
        assert p.weight.std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.05)
        assert 0 < p.bias.abs().max() <= 1 / math.sqrt(fan_in)
    # the encoder: timm's ResNet starts every residual block's last BN at zero; torchvision's
    # default does not, so only SparK builds it so
    for arch, last in (("resnet50", "bn3"), ("resnet18", "bn2")):
        backbone = spark50.backbone if arch == "resnet50" else SparK(arch=arch, decoder_width=32).backbone
        blocks = [b for layer in SparseResNet(backbone).layers() for b in layer]
        assert all(bool((getattr(b, last).weight == 0).all()) for b in blocks)
        others = [m for name, m in backbone.named_modules()
                  if isinstance(m, nn.BatchNorm2d) and not name.endswith(last)]
        assert all(bool((m.weight == 1).all()) for m in others)
    assert bool((build_backbone("resnet18").layer1[0].bn2.weight == 1).all())  # others: unchanged


def test_sync_batchnorm_conversion_keeps_the_forward_on_cpu():
    """trainer.sync_batchnorm converts every BatchNorm (the masked ones read only attributes
    SyncBatchNorm shares); without a process group the converted model computes the same."""
    from pytorch_lightning.plugins import TorchSyncBatchNorm

    torch.manual_seed(0)
    model = SparK(arch="resnet18", decoder_width=32, drop_path=0.0)
    converted = TorchSyncBatchNorm().apply(copy.deepcopy(model))
    assert not [m for m in converted.modules() if type(m) is torch.nn.BatchNorm2d]
    assert converted.encoder.resnet is converted.backbone
    images = torch.randn(4, 3, 64, 64)
    mask = random_mask(4, 2, 0.6, generator=torch.Generator().manual_seed(0))
    for train in (True, False):
        model.train(train), converted.train(train)
        torch.testing.assert_close(converted(images, mask), model(images, mask), rtol=0, atol=0)
    for (name, a), (_, b) in zip(model.state_dict().items(), converted.state_dict().items()):
        assert torch.equal(a, b), name


def test_visible_only_batchnorm_keeps_float64(mask):
    torch.manual_seed(0)
    x = torch.randn(4, 8, 12, 12, dtype=torch.float64)
    bn = torch.nn.BatchNorm2d(8).double()
    plain = torch.nn.BatchNorm1d(8).double()
    out = masked_batch_norm(x, mask_at(mask, 12), bn)
    visible = mask_at(mask, 12)[:, 0].bool()
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.permute(0, 2, 3, 1)[visible], plain(x.permute(0, 2, 3, 1)[visible]),
                               rtol=0, atol=1e-12)
