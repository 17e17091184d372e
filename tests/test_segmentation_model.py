"""The segmentation network's encoder is the exported backbone, loaded by the one loader:
segmentation-models-pytorch's ResNet encoder under torchvision's names, every tensor equal."""
import pytest
import torch
import torchvision

from medssl.checkpoints import CheckpointError
from medssl.checkpoints.export import export_backbone
from medssl.downstream.segmentation.model import segmentation_model


@pytest.fixture
def exported(tmp_path):
    torch.manual_seed(0)
    backbone = torchvision.models.resnet18()
    backbone.fc = torch.nn.Identity()
    path = export_backbone(backbone, tmp_path / "simclr_backbone.pt", method="simclr", arch="resnet18")
    return backbone, path


@pytest.mark.parametrize("decoder", ["unet", "fpn"])
def test_the_encoder_holds_the_exported_backbone_and_the_output_is_per_pixel(exported, decoder):
    backbone, path = exported
    model, report = segmentation_model(str(path), num_classes=4, decoder=decoder)
    assert report.arch == "resnet18" and report.method == "simclr"
    trunk = {k: v for k, v in backbone.state_dict().items() if not k.startswith("fc.")}
    encoder = model.encoder.state_dict()
    assert set(encoder) == set(trunk)
    assert all(torch.equal(encoder[k], trunk[k]) for k in trunk)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
        features = model.encoder(torch.randn(1, 3, 64, 64))
    assert out.shape == (2, 4, 64, 64)
    assert features[-1].shape[1] == 512  # the trunk's last stage: ResNet-18's width


def test_random_init_takes_the_arch_asked_for_and_bad_settings_are_named(exported, tmp_path):
    model, report = segmentation_model(None, num_classes=3, arch="resnet18")
    assert report is None and not hasattr(model.encoder, "fc")
    assert sum(p.numel() for p in model.encoder.parameters()) == 11176512  # torchvision ResNet-18 without fc
    with pytest.raises(ValueError, match="unknown decoder 'deeplab'"):
        segmentation_model(None, num_classes=3, arch="resnet18", decoder="deeplab")
    with pytest.raises(ValueError, match="needs the background and one class"):
        segmentation_model(None, num_classes=1, arch="resnet18")
    with pytest.raises(CheckpointError, match="resnet50"):
        segmentation_model(str(exported[1]), num_classes=3, arch="resnet50")  # the file holds a ResNet-18
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        segmentation_model(str(tmp_path / "junk.pt"), num_classes=3)
