"""Read-only looks at the host that need an external program (`nfreplay doctor`): each with
a time limit, and a failure turned into text for the check, never an exception."""

from __future__ import annotations

import shutil
import subprocess

__all__ = ["TIMEOUT_S", "ethtool_features", "module_available"]

TIMEOUT_S = 10.0


def _run(argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr); 127 when the program is missing, 124 on timeout."""
    if shutil.which(argv[0]) is None:
        return 127, "", f"{argv[0]} is not installed"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return 124, "", f"{argv[0]}: no answer after {TIMEOUT_S:.0f} s"
    except OSError as exc:
        return 126, "", f"{argv[0]}: {exc.strerror or exc}"
    return done.returncode, done.stdout, done.stderr


def ethtool_features(iface: str) -> tuple[str | None, str]:
    """`ethtool -k IFACE`: (its output, "") or (None, why not)."""
    rc, out, err = _run(["ethtool", "-k", iface])
    if rc:
        return None, err.strip() or f"ethtool -k failed (exit {rc})"
    return out, ""


def module_available(name: str) -> bool:
    """Whether `modinfo` knows the kernel module `name` (it can be loaded)."""
    return _run(["modinfo", name])[0] == 0
