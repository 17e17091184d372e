import numpy as np
import pandas as pd
import pytest

from medssl.data import SliceStore, StoreError, phantom
from medssl.data.phantom import (
    HU_MAX,
    HU_MIN,
    Patient,
    Tissue,
    patient_rng,
    phantom_volume,
    render_body,
    render_head,
    write_phantom_store,
)


def test_volume_is_reproducible_and_independent_of_other_patients():
    a, la, ra = phantom_volume(seed=3, index=5, n_slices=4, size=32)
    b, lb, rb = phantom_volume(seed=3, index=5, n_slices=4, size=32)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert ra == rb
    other_seed, _, _ = phantom_volume(seed=4, index=5, n_slices=4, size=32)
    other_patient, _, _ = phantom_volume(seed=3, index=6, n_slices=4, size=32)
    assert not np.array_equal(a, other_seed)
    assert not np.array_equal(a, other_patient)


@pytest.fixture(scope="module")
def slices_256():
    out = []
    for k in range(4):
        p = Patient.sample(patient_rng(11, k), 11)
        for z in (0.3, 0.7):
            out.append(render_body(p, z, p.default_view(256), patient_rng(11, k, 1)))
    return out


@pytest.mark.parametrize("tissue, low, high", [
    (Tissue.AIR, -1030, -960),
    (Tissue.LUNG_LEFT, -900, -790),
    (Tissue.LUNG_RIGHT, -900, -790),
    (Tissue.FAT, -130, -60),
    (Tissue.MUSCLE, 25, 75),
    (Tissue.LIVER, 40, 140),
    (Tissue.BONE, 300, 1500),
])
def test_tissues_have_realistic_hounsfield_units(slices_256, tissue, low, high):
    medians = [np.median(hu[label == tissue]) for hu, label in slices_256
               if (label == tissue).sum() > 50]
    assert medians, f"no {tissue.name} in the test slices"
    assert low <= np.median(medians) <= high, (tissue.name, medians)


def test_contrast_organs_are_enhanced():
    enhanced = []
    for k in range(30):
        p = Patient.sample(patient_rng(2, k), 2)
        enhanced.append((p.phase, p.hu[Tissue.BLOOD]))
    plain = [hu for phase, hu in enhanced if phase == "none"]
    contrast = [hu for phase, hu in enhanced if phase == "arterial"]
    assert plain and contrast
    assert max(plain) < 60 < min(contrast)


def test_slices_are_int16_hu_with_chest_and_abdomen_anatomy(slices_256):
    (chest, chest_label), (abdomen, abdomen_label) = slices_256[:2]
    for hu, _ in slices_256:
        assert hu.dtype == np.int16 and HU_MIN <= hu.min() and hu.max() <= HU_MAX
    assert (chest_label == Tissue.LUNG_LEFT).any() and (chest_label == Tissue.HEART).any()
    assert not (abdomen_label == Tissue.LUNG_LEFT).any()
    assert (abdomen_label == Tissue.LIVER).any() and (abdomen_label == Tissue.KIDNEY_LEFT).any()
    # radiological convention: patient's left lung on the image's right
    left_cols = np.nonzero(chest_label == Tissue.LUNG_LEFT)[1].mean()
    right_cols = np.nonzero(chest_label == Tissue.LUNG_RIGHT)[1].mean()
    assert left_cols > right_cols


def test_bodies_vary_in_shape_position_and_rotation():
    boxes = []
    for k in range(6):
        p = Patient.sample(patient_rng(0, k), 0)
        _, label = render_body(p, 0.5, p.default_view(64), patient_rng(0, k, 1))
        ys, xs = np.nonzero(label != Tissue.AIR)
        boxes.append((xs.min(), xs.max(), ys.min(), ys.max()))
    assert len(set(boxes)) == 6
    angles = [Patient.sample(patient_rng(0, k)).angle for k in range(6)]
    assert np.std(angles) > 0.02


def test_lesions_and_head_bleeds_are_drawn():
    p = Patient.sample(patient_rng(1, 0), 1)
    _, with_lesion = render_body(p, 0.3, p.default_view(128), patient_rng(1, 0, 1), lesions=3)
    _, without = render_body(p, 0.3, p.default_view(128), patient_rng(1, 0, 1), lesions=0)
    assert (with_lesion == Tissue.LESION).sum() > 10 and not (without == Tissue.LESION).any()
    _, bleed = render_head(np.random.default_rng(5), 64, hemorrhage=True)
    _, clean = render_head(np.random.default_rng(5), 64, hemorrhage=False)
    assert (bleed == Tissue.HEMORRHAGE).any() and not (clean == Tissue.HEMORRHAGE).any()


def test_phantom_store_is_deterministic_and_well_formed(tmp_path):
    a = write_phantom_store(tmp_path / "a", patients=3, slices_per_patient=5, size=32, seed=9,
                            workers=2, progress=False)
    b = write_phantom_store(tmp_path / "b", patients=3, slices_per_patient=5, size=32, seed=9,
                            workers=1, progress=False)
    assert len(a) == 15 and a.size == (32, 32) and a.units == "HU"
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i], b[i])
    pd.testing.assert_frame_equal(a.manifest, b.manifest)
    m = a.manifest
    assert m["patient_id"].nunique() == 3 and (m["modality"] == "CT").all()
    for _, series in m.groupby("series_uid"):
        assert series["position_mm"].is_monotonic_increasing
        assert series["slice_index"].tolist() == list(range(5))
    assert np.allclose(m["spacing_row_mm"], m["spacing_col_mm"])
    same = write_phantom_store(tmp_path / "a", patients=3, slices_per_patient=5, size=32, seed=9,
                               progress=False)
    assert len(same) == 15
    with pytest.raises(StoreError, match="different store"):
        write_phantom_store(tmp_path / "a", patients=4, slices_per_patient=5, size=32, seed=9,
                            progress=False)


def test_interrupted_phantom_store_resumes_without_duplicates(tmp_path, monkeypatch):
    real = phantom.phantom_volume
    calls = []

    def failing(seed, index, n_slices, size):
        calls.append(index)
        if index == 3:
            raise KeyboardInterrupt
        return real(seed, index, n_slices, size)

    monkeypatch.setattr(phantom, "phantom_volume", failing)
    with pytest.raises(KeyboardInterrupt):
        write_phantom_store(tmp_path / "s", patients=5, slices_per_patient=3, size=16,
                            shard_slices=3, workers=1, progress=False)
    with pytest.raises(StoreError, match="incomplete"):
        SliceStore(tmp_path / "s")
    monkeypatch.setattr(phantom, "phantom_volume", real)
    resumed = write_phantom_store(tmp_path / "s", patients=5, slices_per_patient=3, size=16,
                                  shard_slices=3, workers=1, progress=False)
    reference = write_phantom_store(tmp_path / "r", patients=5, slices_per_patient=3, size=16,
                                    workers=1, progress=False)
    assert len(resumed) == 15
    assert resumed.manifest["source"].is_unique
    for i in range(15):
        np.testing.assert_array_equal(resumed[i], reference[i])
