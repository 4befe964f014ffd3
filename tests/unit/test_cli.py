"""The console script's contract: every command is still there, and one missing piece says what to do."""

from __future__ import annotations

import sys

import pytest

from azswitch.cli import _parser, main


@pytest.mark.parametrize("command", ["run", "simulate", "control-plane", "demo"])
def test_every_command_is_still_there(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert f"azswitch {command}" in capsys.readouterr().out


def test_dev_commands_without_the_dev_tooling_say_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What the container image looks like: azswitch/dev/ is left out of it.
    monkeypatch.setitem(sys.modules, "azswitch.dev.demo", None)
    assert main(["demo", "--once"]) == 2
    error = capsys.readouterr().err
    assert "no development tooling" in error and "source checkout" in error
