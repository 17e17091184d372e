"""DataLoader workers hand their batches over through /dev/shm: the prefetch is sized so that
what is in flight fits, and where not even one batch per worker fits the error says what to
change (a container's small /dev/shm otherwise ends the run with a bus error)."""
from __future__ import annotations

import pytest

from medssl.pretrain import datamodule
from medssl.pretrain.datamodule import SliceStoreDataModule, prefetch_that_fits

from conftest import phantom_store

MB = 2**20


def test_the_prefetch_shrinks_to_what_fits_and_then_says_what_to_change():
    # 8 workers x 4 batches x 32 MiB per process, 4 processes on the node: 4 GiB in flight
    assert prefetch_that_fits(32 * MB, 8, 4, processes=4, free=64 * 2**30) == 4
    with pytest.warns(UserWarning, match="prefetching 2 batches per worker instead"):
        assert prefetch_that_fits(32 * MB, 8, 4, processes=4, free=4 * 2**30) == 2
    with pytest.raises(ValueError, match=r"/dev/shm has 0\.50 GiB free.*--data.num_workers.*--shm-size"):
        prefetch_that_fits(32 * MB, 8, 4, processes=4, free=2**29)
    assert prefetch_that_fits(32 * MB, 8, 4, processes=4, free=None) == 4  # no /dev/shm: as asked


@pytest.mark.parametrize("augment_on, per_image", [("device", 32 * 32 * 2), ("workers", 2 * 3 * 24 * 24 * 4)])
def test_the_data_module_sizes_its_batches(augment_on, per_image, tmp_path_factory, monkeypatch):
    store = phantom_store(tmp_path_factory, patients=1, size=32)
    data = SliceStoreDataModule(str(store), views=[{"size": 24, "count": 2}], batch_size=4, num_workers=2,
                                prefetch_factor=4, augment_on=augment_on)
    monkeypatch.setattr(datamodule, "shared_memory_free", lambda: 2 * 2 * 4 * per_image)  # 1 batch each
    with pytest.warns(UserWarning, match="prefetching 1 batches per worker"):
        loader = data.train_dataloader()
    assert data.batch_bytes() == 4 * per_image
    assert loader.prefetch_factor == 1
    monkeypatch.setattr(datamodule, "shared_memory_free", lambda: per_image)
    with pytest.raises(ValueError, match="Lower --data.num_workers or --data.batch_size"):
        data.train_dataloader()
