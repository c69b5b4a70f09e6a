"""The choke point runs argv lists and turns failures into one line."""

from __future__ import annotations

import pytest

from nfreplay.errors import HostError, RulesError
from nfreplay.rules.command import first_line, run


def test_success_and_accepted_codes() -> None:
    done = run(["sh", "-c", "echo out; echo err >&2; exit 1"], ok=(0, 1))
    assert (done.returncode, done.stdout, done.stderr) == (1, "out\n", "err\n")


def test_failure_is_one_line_with_command_and_first_stderr_line() -> None:
    with pytest.raises(RulesError) as err:
        run(["sh", "-c", "echo; echo 'first problem' >&2; echo second >&2; exit 3"])
    assert str(err.value) == ("sh -c 'echo; echo '\"'\"'first problem'\"'\"' >&2; echo second >&2; "
                              "exit 3' failed (exit 3): first problem")


def test_no_shell_is_involved() -> None:
    done = run(["echo", "$HOME;", "|", "x"])
    assert done.stdout == "$HOME; | x\n"


def test_missing_program_is_a_host_error() -> None:
    with pytest.raises(HostError, match="^nfreplay-no-such-binary not found"):
        run(["nfreplay-no-such-binary"])


def test_first_line() -> None:
    assert first_line("\n  \n x y \nz") == "x y"
    assert first_line("") == ""
