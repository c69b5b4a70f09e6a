"""The one choke point through which the rule manager runs external programs.

Every iptables / iptables-save invocation passes through `run`: an argv list (never a shell),
stderr captured, the C locale so messages can be recognised, a time limit, and a failure
turned into one line that names the command and the first line the program printed.
Backends take a `Runner` in their constructor so unit tests can script the replies.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from typing import Collection, Protocol, Sequence

from nfreplay.errors import HostError, RulesError

__all__ = ["Completed", "Runner", "run", "first_line"]

#: Long enough for `iptables -w` to wait out another process holding the xtables lock.
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Completed:
    """A finished command."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    """Signature of `run`; fakes in tests implement the same."""

    def __call__(self, argv: Sequence[str], *, ok: Collection[int] = (0,)) -> Completed: ...


def first_line(text: str) -> str:
    """The first non-blank line of `text`, stripped ('' if none)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def run(argv: Sequence[str], *, ok: Collection[int] = (0,)) -> Completed:
    """Run `argv` and return its result if the exit code is in `ok`.

    Raises HostError when the program does not exist, RulesError on any other failure
    (exit code not in `ok`, timeout, exec error), in one line.
    """
    args = [str(a) for a in argv]
    cmd = shlex.join(args)
    # LC_ALL=C: callers recognise a few messages ("does a matching rule exist").
    env = {**os.environ, "LC_ALL": "C"}
    try:
        proc = subprocess.run(args, capture_output=True, text=True, env=env,
                              timeout=TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise HostError(f"{args[0]} not found: apt-get install iptables") from exc
    except subprocess.TimeoutExpired as exc:
        raise RulesError(f"{cmd}: no answer after {TIMEOUT_S:.0f}s") from exc
    except OSError as exc:
        raise RulesError(f"{cmd}: {exc.strerror or exc}") from exc
    done = Completed(tuple(args), proc.returncode, proc.stdout, proc.stderr)
    if proc.returncode not in ok:
        why = first_line(proc.stderr) or first_line(proc.stdout) or "no message"
        raise RulesError(f"{cmd} failed (exit {proc.returncode}): {why}")
    return done
