"""``medssl doctor`` on this CPU: every check of a method runs and lands in the table."""
from __future__ import annotations

import pytest

from medssl.commands.doctor import main
from medssl.pretrain.methods import method_names


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("doctor") / "doctor.md"
    # batch 4, the CPU default: at 2 images SimCLR's first loss (4 views, temperature 0.1) moves 7 to
    # 13 % under bf16 where the CPU has bf16 kernels (AMX), at 4 about 3 %, at 32 0.1 %
    status = main(["--methods", "simclr", "spark", "barlowtwins", "--arch", "resnet18", "--size", "64",
                   "--batch", "4", "--steps", "1", "--precision", "bf16-mixed", "--ddp", "2", "--out", str(out)])
    return status, out.read_text()


def rows(text: str) -> dict[str, list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines)}


@pytest.mark.slow
def test_the_table_has_every_check_for_every_method(report):
    status, text = report
    assert status in (0, 2)  # 2: a method to look at (CPU speed ratios)
    table = rows(text)
    assert set(table) == {"simclr", "spark", "barlowtwins"}
    assert "precision bf16-mixed" in text and "requeue not armed" in text and "DDP: 2 processes" in text
    for name, (fp32, mixed, reads, breaks, speed, memory, overhead, ddp, verdict) in table.items():
        assert float(mixed) == pytest.approx(float(fp32), rel=0.05), name  # heads and losses in float32
        assert reads == "0", name  # LARS (SimCLR, Barlow Twins) included
        assert breaks == "-" and memory == "-"  # not asked; no GPU
        assert float(speed) > 0 and overhead.endswith("x")
        assert ddp == "agrees", (name, ddp)  # Barlow Twins: normalised over all processes
        assert verdict == "OK" or verdict.startswith("CHECK: step"), (name, verdict)  # CPU speed aside


def test_the_command_is_listed():
    from medssl.cli import COMMANDS

    assert "doctor" in COMMANDS
    assert {"simclr", "spark"} <= set(method_names())
