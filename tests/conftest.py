import http.server
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

from medssl.downstream.phantom_tasks import TaskCounts

ROOT = Path(__file__).resolve().parents[1]


def task_counts(*per_class: int) -> TaskCounts:
    """Phantom task counts (TaskCounts' positional fields) without the extra test images: tests
    that need a few images of a task, not a test set that decides a benchmark."""
    return TaskCounts(*per_class, covid_extra_test_per_class=0, brain_extra_test_per_class=0)

DDP_SCRIPT = textwrap.dedent("""
    import json, sys, torch, pytorch_lightning as pl
    from medssl.pretrain.datamodule import SliceStoreDataModule
    from medssl.pretrain.methods import BYOL, MoCoV2, SparK, SwAV
    from medssl.pretrain.online_eval import EmbeddingPicture, OnlineLinearProbe

    class Save(pl.Callback):
        def on_train_end(self, trainer, module):
            buffers = {k: v.detach().clone() for k, v in module.named_buffers()}
            params = {k: v.detach().clone() for k, v in module.named_parameters()}
            probes = [c.state_dict() for c in trainer.callbacks if isinstance(c, OnlineLinearProbe)]
            torch.save({"world": trainer.world_size, "params": params, "buffers": buffers, "probes": probes},
                       f"{sys.argv[2]}/rank{trainer.global_rank}.pt")

    if __name__ == "__main__":
        data = SliceStoreDataModule(sys.argv[1], views=json.loads(sys.argv[3]), batch_size=4,
                                    num_workers=0)
        model = eval(sys.argv[4])
        # SyncBatchNorm needs GPUs (the full configs turn it on); CPU DDP runs without it
        trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=2,
                             logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, default_root_dir=sys.argv[2],
                             callbacks=[*eval(sys.argv[5]), Save()])
        trainer.fit(model, data)
""")


def phantom_store(tmp_path_factory, patients: int, size: int):
    """A small phantom slice store (8 slices per patient) for training tests."""
    from medssl.data.phantom import write_phantom_store

    path = tmp_path_factory.mktemp("store") / "store"
    return write_phantom_store(path, patients=patients, slices_per_patient=8, size=size, seed=0,
                               workers=1, progress=False).path


def run_two_process_ddp(store, tmp_path, model: str, views: list[dict], callbacks: str = "[]") -> tuple[dict, dict]:
    """Train ``model`` (a constructor expression) for 2 steps on 2 CPU processes (gloo), with
    ``callbacks`` (an expression of a list) before the one that saves; return each rank's
    parameters, buffers and online probes' states."""
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(store), str(tmp_path),
                           json.dumps(views), model, callbacks], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = tuple(torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert ranks[0]["world"] == 2
    return ranks


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files from ``directory`` with HTTP Range support; records the Range headers."""

    ranges: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = Path(self.directory) / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        header = self.headers.get("Range")
        RangeHandler.ranges.append(header)
        if header and header.startswith("bytes="):
            start = int(header[6:].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = lambda *a, **k: RangeHandler(*a, directory=str(served), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    RangeHandler.ranges = []
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module that asks (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    tiny tensors gain nothing from a second thread and, on a busy machine, wait a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
