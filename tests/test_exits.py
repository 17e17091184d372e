"""One exit-status rule for every command: 0 finished, 1 could not run, 2 finished with items
skipped, 128 + signal when a signal stopped it, with one line on how to go on."""
from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from pytorch_lightning.utilities.exceptions import SIGTERMException

from medssl.exits import COULD_NOT_RUN, FINISHED, SKIPPED, signal_status, stopped_by_signal

ROOT = Path(__file__).resolve().parents[1]


def test_lightnings_sigterm_exit_becomes_143_with_the_way_on(capsys):
    with pytest.raises(SystemExit) as stop, stopped_by_signal("run the same command again."):
        raise SIGTERMException  # Lightning's, a SystemExit with status 0
    assert stop.value.code == 143
    assert capsys.readouterr().err.strip() == "stopped by SIGTERM; run the same command again."


def test_ctrl_c_becomes_130_also_where_lightning_turns_it_into_exit_1(capsys):
    with pytest.raises(SystemExit) as stop, stopped_by_signal("go on."):
        os.kill(os.getpid(), signal.SIGINT)
    assert stop.value.code == 130
    with pytest.raises(SystemExit) as stop, stopped_by_signal("go on."):
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            raise SystemExit(1) from None  # what Lightning does after a KeyboardInterrupt in fit
    assert stop.value.code == 130
    assert capsys.readouterr().err.count("stopped by SIGINT; go on.") == 2
    with pytest.raises(SystemExit) as stop, stopped_by_signal("go on."):
        raise SystemExit(1)  # no signal: another exit, kept
    assert stop.value.code == 1


def test_the_readme_states_the_rule():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| exit status |"):].split("\n\n")[0]
    rows = dict(re.findall(r"^\| `?([^|`]+?)`? \| ([^|]+) \|$", table, re.M))
    assert rows[str(FINISHED)].startswith("finished") and rows[str(COULD_NOT_RUN)].startswith("could not run")
    assert rows[str(SKIPPED)].startswith("finished, with items skipped")
    assert "128 + signal" in rows and signal_status(signal.SIGTERM) == 143 and signal_status(signal.SIGINT) == 130
