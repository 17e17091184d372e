"""One exit-status rule for every command: 0 finished, 1 could not run, 2 finished with items
skipped, 128 + signal when a signal stopped it, with one line on how to go on."""
from __future__ import annotations

import os
import signal

import pytest
from pytorch_lightning.utilities.exceptions import SIGTERMException

from medssl.exits import stopped_by_signal


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

