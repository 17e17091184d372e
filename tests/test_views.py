"""Views made per image in the workers and per batch on the device: one distribution."""
import numpy as np
import pytest
import torch
import yaml
from scipy.stats import ks_2samp

from medssl.data.intensity import HUToIntensity
from medssl.data.phantom import phantom_volume
from medssl.pretrain.batch_views import BatchMultiView
from medssl.pretrain.views import MultiView

from conftest import ROOT

VIEWS = 500


def config_views(method: str) -> list[dict]:
    return yaml.safe_load((ROOT / "Pre-Training" / "configs" / f"{method}.yaml").read_text())["data"]["views"]


@pytest.fixture(scope="module")
def slice_intensity() -> torch.Tensor:
    hu, _, _ = phantom_volume(0, 3, 1, 128, z_range=(0.45, 0.45))
    return HUToIntensity(window_name="abdomen", mode="window")(torch.from_numpy(hu[0]))[None]


def statistics(views: torch.Tensor) -> dict[str, np.ndarray]:
    """What a view looks like, as numbers: brightness, spread, sharpness, left/right and top/bottom
    balance (flips, rotations, crop positions)."""
    x = views[:, 0].double()
    half = x.shape[-1] // 2
    return {"mean": x.mean((1, 2)), "std": x.std((1, 2)),
            "sharpness": (x[:, :, 1:] - x[:, :, :-1]).abs().mean((1, 2)),
            "left_right": x[:, :, :half].mean((1, 2)) - x[:, :, half:].mean((1, 2)),
            "top_bottom": x[:, :half].mean((1, 2)) - x[:, half:].mean((1, 2))}


def per_image_views(spec: dict, image: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(1)
    views = MultiView([{**spec, "count": 1}])
    return torch.stack([views(image)[0] for _ in range(VIEWS)])


def batch_views(spec: dict, image: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(2)
    views = BatchMultiView([{**spec, "count": 1}])
    return torch.cat([views(image.expand(100, -1, -1, -1))[0] for _ in range(VIEWS // 100)])


def smallest_p(a: torch.Tensor, b: torch.Tensor) -> tuple[str, float]:
    sa, sb = statistics(a), statistics(b)
    return min(((k, ks_2samp(sa[k].numpy(), sb[k].numpy()).pvalue) for k in sa), key=lambda kp: kp[1])


CASES = {  # the study's full MoCo v2 / BYOL pipeline, SwAV's shrinking low-resolution crops, centred crops
    "mocov2": ({**config_views("mocov2")[0], "size": 64}, {"jitter_p": 0.0}),
    "swav-low-res": ({**config_views("swav")[1], "size": 32}, {"scale": [0.2, 0.5]}),
    "centred-crops": ({"size": 64, "scale": [0.1, 0.3], "hflip_p": 0.5, "crop_position": "centre"},
                      {"crop_position": "random"}),
}


@pytest.mark.parametrize("case", CASES)
def test_device_views_follow_the_per_image_distribution(slice_intensity, case):
    spec, _ = CASES[case]
    reference = per_image_views(spec, slice_intensity)
    batched = batch_views(spec, slice_intensity)
    assert batched.shape == reference.shape
    name, p = smallest_p(reference, batched)  # 5 two-sample KS tests per case
    assert p > 1e-3, f"{name} differs between the paths (KS p = {p:.2g})"


@pytest.mark.parametrize("case", CASES)
def test_the_comparison_sees_a_changed_augmentation(slice_intensity, case):
    spec, change = CASES[case]
    reference = per_image_views(spec, slice_intensity)
    name, p = smallest_p(reference, batch_views({**spec, **change}, slice_intensity))
    assert p < 1e-4, f"{change} went unnoticed (smallest KS p = {p:.2g} for {name})"


@pytest.mark.parametrize("position", ["centre", "random"])
def test_centred_crops_keep_the_slice_centre_at_the_view_centre(position):
    image = torch.zeros(1, 64, 64)
    image[:, 30:34, 30:34] = 1.0  # a mark at the slice's centre
    spec = {"size": 32, "count": 1, "scale": [0.1, 0.5], "hflip_p": 0.0, "crop_position": position,
            "mean": [0.0], "std": [1.0], "channels": 1}
    torch.manual_seed(0)
    per_image = torch.stack([MultiView([spec])(image)[0] for _ in range(50)])
    batched = BatchMultiView([spec])(image[None].expand(50, -1, -1, -1))[0]
    for views in (per_image, batched):
        grid = torch.arange(32, dtype=torch.float64) + 0.5
        weights = views[:, 0].double().clamp(min=0)
        centre_x = (weights.sum(1) * grid).sum(1) / weights.sum((1, 2))
        centre_y = (weights.sum(2) * grid).sum(1) / weights.sum((1, 2))
        offset = torch.maximum((centre_x - 16).abs(), (centre_y - 16).abs())
        if position == "centre":
            assert offset.max() < 1.5  # at most a pixel's rounding off the view's centre
        else:
            assert offset.nan_to_num(nan=16.0).max() > 4  # random crops move the mark, or miss it (nan)


def test_a_crop_position_not_known_is_refused():
    with pytest.raises(ValueError, match="crop_position 'middle': one of random, centre"):
        MultiView([{"crop_position": "middle"}])


def test_batch_views_draw_per_image_and_keep_shapes():
    spec = config_views("byol")[0] | {"size": 32}
    images = torch.rand(1, 1, 48, 48).expand(8, -1, -1, -1)  # one image, eight times
    views = BatchMultiView([spec, {"size": 16, "count": 3, "channels": 1}])(images)
    assert [tuple(v.shape) for v in views] == [(8, 3, 32, 32)] * 2 + [(8, 1, 16, 16)] * 3
    assert len({v[0, 0].sum().item() for v in views[0].unbind()}) == 8  # fresh draws per image
    assert torch.equal(views[0][:, 0], views[0][:, 2])  # grey replicated


def test_random_window_draws_one_window_per_image():
    hu = torch.linspace(-1000, 1000, 64).view(1, 1, 8, 8).expand(6, -1, -1, -1)
    out = HUToIntensity(mode="random_window").batch(hu)
    assert out.shape == hu.shape and out.min() >= 0 and out.max() <= 1
    assert len({round(float(o.mean()), 6) for o in out}) == 6
    fixed = HUToIntensity(window_name="lung", mode="window")
    assert torch.equal(fixed.batch(hu), fixed(hu))


def test_seeded_device_views_draw_from_their_own_stream():
    spec = config_views("mocov2")[0] | {"size": 24}
    hu = torch.linspace(-1000, 1000, 48 * 48).view(1, 1, 48, 48).expand(4, -1, -1, -1)
    made = BatchMultiView([spec], intensity=HUToIntensity(mode="random_window"))

    torch.manual_seed(0)
    before = torch.get_rng_state()
    first, second = made(hu, seed=7)[0], made(hu, seed=8)[0]
    again = made(hu, seed=7)[0]  # after other draws: the seed alone decides
    assert torch.equal(torch.get_rng_state(), before)  # the global stream is left alone
    assert torch.equal(first, again)
    assert not torch.equal(first, second)
    assert not torch.equal(first[0], first[1])  # images of one batch draw apart


@pytest.mark.parametrize("batched", [False, True])
def test_blur_sigma_is_given_for_224_px_and_scales_with_the_view(batched):
    """A point through a 64 px view blurred with blur_sigma (2, 2) spreads over 2 * 64 / 224 px
    (the share of the image a 2 px blur covers at 224 px), not over 2 px."""
    spec = dict(size=64, count=1, scale=(1.0, 1.0), hflip_p=0.0, blur_p=1.0, blur_sigma=(2.0, 2.0),
                mean=[0.0], std=[1.0], channels=1)
    point = torch.zeros(1, 64, 64)
    point[0, 32, 32] = 1.0
    if batched:
        from medssl.pretrain.batch_views import BatchMultiView

        (view,) = BatchMultiView([spec])(point[None], seed=0)
        view = view[0]
    else:
        (view,) = MultiView([spec])(point)
    profile = view[0].sum(0).double()
    centre = (profile * torch.arange(64)).sum() / profile.sum()
    sigma = ((profile * (torch.arange(64) - centre) ** 2).sum() / profile.sum()).sqrt()
    assert sigma == pytest.approx(2.0 * 64 / 224, rel=0.1)


def test_pictured_views_are_the_views_training_makes(slice_intensity):
    """draw_views undoes the normalisation and keeps the orientation: a view that takes the whole
    slice through a fixed window is the windowed slice; one flipped with p = 1 is its mirror."""
    from medssl.data.intensity import WINDOWS
    from medssl.pretrain.view_pictures import draw_views

    hu, _, _ = phantom_volume(0, 3, 1, 64, z_range=(0.45, 0.45))
    level, width = WINDOWS["abdomen"]
    windowed = HUToIntensity(mode="window", level=level, width=width)(hu[0])
    whole = {"size": 64, "count": 1, "scale": [1.0, 1.0], "hflip_p": 0.0, "mean": [0.3], "std": [0.2]}
    data = {"intensity": {"mode": "window", "level": level, "width": width}, "views": [whole]}
    (view,) = draw_views(hu[0], data, count=1)
    flipped = draw_views(hu[0], {**data, "views": [{**whole, "hflip_p": 1.0}]}, count=3)
    assert np.abs(view - windowed).max() < 1e-5
    assert len(flipped) == 3 and all(np.abs(v - windowed[:, ::-1]).max() < 1e-5 for v in flipped)


def test_pictured_views_repeat_with_the_seed_and_leave_the_global_stream(tmp_path):
    from medssl.pretrain.view_pictures import draw_views, save_views_picture

    hu, _, _ = phantom_volume(0, 3, 1, 64, z_range=(0.45, 0.45))
    data = {"intensity": {"mode": "random_window"}, "views": config_views("swav")}
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    first, again = draw_views(hu[0], data, 4, seed=1), draw_views(hu[0], data, 4, seed=1)
    assert torch.equal(torch.rand(3), expected_next)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, draw_views(hu[0], data, 4, seed=2)))
    path = save_views_picture(hu[0], {"as-is": data, "no flips": data}, tmp_path / "views.png", count=3)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no configs"):
        save_views_picture(hu[0], {}, tmp_path / "none.png")
