import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from medssl.data import SliceStore, SliceStoreWriter, StoreError


def make_group(rng, series, n, size=(16, 20)):
    slices = rng.integers(-32768, 32768, size=(n, *size), dtype=np.int16)
    slices[0, 0, :4] = [-32768, 32767, -1024, 3071]  # extremes survive
    rows = [{
        "source": f"/data/{series}/{i:04d}.dcm", "patient_id": "0001" if n % 2 else "NA",
        "series_uid": series, "modality": "CT", "slice_index": i,
        "position_mm": float("nan") if i == 0 else -120.5 + 2.5 * i,
        "spacing_row_mm": 0.703125, "spacing_col_mm": 0.8,
    } for i in range(n)]
    return slices, rows


def write_groups(path, groups, shard_slices=10, **kw):
    with SliceStoreWriter(path, (16, 20), shard_slices=shard_slices, **kw) as writer:
        for slices, rows in groups:
            writer.add(slices, rows)
    return SliceStore(path)


@pytest.fixture
def groups():
    rng = np.random.default_rng(7)
    return [make_group(rng, f"1.2.840.{k}", n) for k, n in enumerate([7, 3, 12, 1, 5])]


def test_round_trip_is_bit_exact(tmp_path, groups):
    store = write_groups(tmp_path / "s", groups)
    expected = np.concatenate([g[0] for g in groups])
    assert len(store) == len(expected) == 28
    assert store.size == (16, 20)
    for i in range(len(store)):
        got = store[i]
        assert got.dtype == np.int16 and got.shape == (16, 20)
        np.testing.assert_array_equal(got, expected[i])
    np.testing.assert_array_equal(store[-1], expected[-1])
    with pytest.raises(IndexError):
        store[len(store)]
    rows = pd.DataFrame([r for g in groups for r in g[1]])
    manifest = store.manifest
    assert list(manifest["patient_id"][:7]) == ["0001"] * 7  # ids stay strings
    assert manifest["patient_id"].iloc[10] == "NA"  # not read as missing
    pd.testing.assert_series_equal(manifest["position_mm"], rows["position_mm"])
    assert manifest["series_uid"].tolist() == rows["series_uid"].tolist()
    assert store.units == "HU"


def test_groups_never_split_across_shards(tmp_path, groups):
    store = write_groups(tmp_path / "s", groups, shard_slices=10)
    by_shard = {}
    for i in range(len(store)):
        shard, _ = store.locate(i)
        by_shard.setdefault(shard, set()).add(store.manifest["series_uid"][i])
    seen = [uid for uids in by_shard.values() for uid in uids]
    assert len(seen) == len(set(seen)) == len(groups)
    assert len(by_shard) > 1


def test_store_records_size_units_clip_and_attrs(tmp_path, groups):
    store = write_groups(tmp_path / "s", groups[:1], units="raw", clip=(-1000, 2000),
                         attrs={"note": "x"})
    assert store.units == "raw"
    assert store.clip == (-1000, 2000)
    assert store.attrs == {"note": "x"}
    meta = json.loads((tmp_path / "s" / "store.json").read_text())
    assert meta["dtype"] == "int16" and meta["size"] == [16, 20]


class StoreDataset(Dataset):
    def __init__(self, store):
        self.store = store

    def __len__(self):
        return len(self.store)

    def __getitem__(self, i):
        return torch.from_numpy(self.store[i].astype(np.int32)), os.getpid()


def test_memory_mapped_reads_from_several_workers(tmp_path, groups):
    store = write_groups(tmp_path / "s", groups)
    store[0]  # maps opened in the parent must not travel to the workers
    assert len(pickle.dumps(store)) < 20_000
    loader = DataLoader(StoreDataset(store), batch_size=3, shuffle=True, num_workers=2,
                        generator=torch.Generator().manual_seed(0), persistent_workers=False)
    seen, pids = {}, set()
    for batch, pid in loader:
        pids.update(pid.tolist())
        for image in batch:
            seen[image.numpy().tobytes()] = True
    expected = np.concatenate([g[0] for g in groups]).astype(np.int32)
    assert set(seen) == {e.tobytes() for e in expected}
    assert len(pids) == 2 and os.getpid() not in pids


def test_exception_while_writing_leaves_an_incomplete_store_that_resumes(tmp_path, groups):
    path = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        with SliceStoreWriter(path, (16, 20), shard_slices=10) as writer:
            for k, (slices, rows) in enumerate(groups):
                if k == 3:
                    raise KeyboardInterrupt
                writer.add(slices, rows)
    with pytest.raises(StoreError, match="incomplete"):
        SliceStore(path)
    with pytest.raises(StoreError, match="unfinished"):
        SliceStoreWriter(path, (16, 20))
    writer = SliceStoreWriter(path, (16, 20), shard_slices=10, resume=True)
    assert writer.done_groups == {rows[0]["series_uid"] for _, rows in groups[:3]}
    with writer:
        for slices, rows in groups:
            if rows[0]["series_uid"] not in writer.done_groups:
                writer.add(slices, rows)
    resumed = SliceStore(path)
    reference = write_groups(tmp_path / "ref", groups)
    assert len(resumed) == len(reference)
    for i in range(len(reference)):
        np.testing.assert_array_equal(resumed[i], reference[i])
    pd.testing.assert_frame_equal(resumed.manifest, reference.manifest)


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from medssl.data import SliceStoreWriter
    writer = SliceStoreWriter(sys.argv[1], 8, shard_slices=4)
    for k in range(10):
        rows = [dict(source="x", patient_id="p", series_uid=f"s{k}", modality="CT", slice_index=i,
                     position_mm=float(i), spacing_row_mm=1.0, spacing_col_mm=1.0) for i in range(3)]
        writer.add(np.full((3, 8, 8), k, np.int16), rows)
        if k == 4:
            os.kill(os.getpid(), signal.SIGKILL)
""")


def test_killed_writer_never_reads_as_complete(tmp_path):
    path = tmp_path / "s"
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)])
    assert proc.returncode == -signal.SIGKILL
    assert any((path / "shards").glob("*.npy"))
    with pytest.raises(StoreError, match="incomplete"):
        SliceStore(path)
    writer = SliceStoreWriter(path, 8, shard_slices=4, resume=True)
    assert writer.done_groups == {"s0", "s1", "s2", "s3"}  # the 5th was still in memory


def test_truncated_shard_gives_a_clear_error(tmp_path, groups):
    write_groups(tmp_path / "s", groups)
    shard = tmp_path / "s" / "shards" / "00001.npy"
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size - 100)
    with pytest.raises(StoreError, match=r"00001\.npy.*damaged.*truncated"):
        SliceStore(tmp_path / "s")


def test_missing_shard_gives_a_clear_error(tmp_path, groups):
    write_groups(tmp_path / "s", groups)
    (tmp_path / "s" / "shards" / "00000.npy").unlink()
    with pytest.raises(StoreError, match=r"00000\.npy: shard missing"):
        SliceStore(tmp_path / "s")


def test_corrupted_shard_fails_verification(tmp_path, groups):
    store = write_groups(tmp_path / "s", groups)
    store.verify(progress=False)
    shard = tmp_path / "s" / "shards" / "00000.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"00000\.npy.*checksum"):
        SliceStore(tmp_path / "s").verify(progress=False)


def test_damaged_metadata_and_manifest(tmp_path, groups):
    with pytest.raises(StoreError, match="not found"):
        SliceStore(tmp_path / "nowhere")
    write_groups(tmp_path / "s", groups)
    meta = tmp_path / "s" / "store.json"
    manifest = tmp_path / "s" / "manifest.csv"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(StoreError, match="manifest has 26 rows"):
        SliceStore(tmp_path / "s").manifest
    meta.write_text(meta.read_text()[:50])
    with pytest.raises(StoreError, match="unreadable store metadata"):
        SliceStore(tmp_path / "s")
    meta.write_text(json.dumps({"format": "something else", "version": 9}))
    with pytest.raises(StoreError, match="not a medssl-slice-store"):
        SliceStore(tmp_path / "s")


def test_writer_rejects_bad_slices(tmp_path):
    rng = np.random.default_rng(0)
    slices, rows = make_group(rng, "a", 2)
    writer = SliceStoreWriter(tmp_path / "s", (16, 20))
    with pytest.raises(ValueError, match="store holds"):
        writer.add(np.zeros((2, 8, 8), np.int16), rows)
    with pytest.raises(TypeError, match="integer"):
        writer.add(slices.astype(np.float32), rows)
    with pytest.raises(ValueError, match="int16 range"):
        writer.add(slices.astype(np.int32) + 40000, rows)
    with pytest.raises(ValueError, match="lack columns"):
        writer.add(slices, [{"source": "x"}] * 2)
    with pytest.raises(ValueError, match="2 slices but 1 manifest rows"):
        writer.add(slices, rows[:1])


def test_complete_store_is_not_overwritten_by_accident(tmp_path, groups):
    write_groups(tmp_path / "s", groups)
    with pytest.raises(StoreError, match="complete slice store"):
        SliceStoreWriter(tmp_path / "s", (16, 20))
    store = write_groups(tmp_path / "s", groups[:1], overwrite=True)
    assert len(store) == len(groups[0][0])


def test_resume_with_other_settings_is_refused(tmp_path, groups):
    path = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        with SliceStoreWriter(path, (16, 20), shard_slices=10, clip=(-1000, 1000)) as writer:
            writer.add(*groups[2])
            raise KeyboardInterrupt
    with pytest.raises(StoreError, match="cannot resume.*clip"):
        SliceStoreWriter(path, (16, 20), resume=True)
    with pytest.raises(StoreError, match="cannot resume"):
        SliceStoreWriter(path, (16, 20), clip=(-1000, 1000), units="raw", resume=True)
    writer = SliceStoreWriter(path, (16, 20), clip=(-1000, 1000), resume=True)
    assert writer.done_groups == {groups[2][1][0]["series_uid"]}


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_shard_edited_in_place_is_refused_on_open_and_named_by_verify(tmp_path, groups):
    write_groups(tmp_path / "s", groups)
    shards = sorted((tmp_path / "s" / "shards").glob("*.npy"))
    size = shards[1].stat().st_size
    flip_byte(shards[1], size // 2)  # same size, slices changed
    flip_byte(shards[2], size // 3)
    assert shards[1].stat().st_size == size
    with pytest.raises(StoreError, match=r"00001\.npy.*damaged"):
        SliceStore(tmp_path / "s")
    unchecked = SliceStore(tmp_path / "s", quick_check=False)
    with pytest.raises(StoreError) as err:
        unchecked.verify(progress=False)
    assert "00001.npy" in str(err.value) and "00002.npy" in str(err.value)
    assert "00000.npy" not in str(err.value)


def test_store_info_verify_names_every_damaged_shard(tmp_path, groups, capsys):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "Pre-Training" / "store_info.py"
    spec = importlib.util.spec_from_file_location("store_info", script)
    store_info = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(store_info)
    write_groups(tmp_path / "s", groups)
    assert store_info.main([str(tmp_path / "s"), "--verify"]) == 0
    assert "all shard checksums match" in capsys.readouterr().out
    for name in ("00000.npy", "00002.npy"):
        flip_byte(tmp_path / "s" / "shards" / name, 200)
    assert store_info.main([str(tmp_path / "s"), "--verify"]) == 1
    err = capsys.readouterr().err
    assert "00000.npy" in err and "00002.npy" in err and "00001.npy" not in err
