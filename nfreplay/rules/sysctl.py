"""Kernel parameters through /proc/sys, in the calling process's network namespace
(net.* keys are per namespace: /proc/sys/net shows the namespace of the reader)."""

from __future__ import annotations

import os

from nfreplay.errors import RulesError

__all__ = ["ProcSysctlBackend", "sysctl_path"]


def sysctl_path(key: str, root: str = "/proc/sys") -> str:
    """`net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`. A key written with slashes
    (`net/ipv4/conf/eth0.100/rp_filter`) is taken as a path, as sysctl(8) does, for
    interface names that contain dots."""
    parts = key.split("/") if "/" in key else key.split(".")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"bad sysctl key {key!r}")
    return os.path.join(root, *parts)


class ProcSysctlBackend:
    """Read and write /proc/sys/<key>."""

    def __init__(self, root: str = "/proc/sys") -> None:
        self._root = root

    def read(self, key: str) -> str:
        """Current value with runs of whitespace collapsed (multi-value keys use tabs)."""
        try:
            with open(sysctl_path(key, self._root), encoding="ascii") as f:
                return " ".join(f.read().split())
        except OSError as exc:
            raise RulesError(f"cannot read sysctl {key}: {exc.strerror or exc}") from exc

    def write(self, key: str, value: str) -> None:
        """Write `value` (one write(2), as the kernel parses each write whole)."""
        try:
            with open(sysctl_path(key, self._root), "w", encoding="ascii") as f:
                f.write(value + "\n")
        except OSError as exc:
            raise RulesError(f"cannot set sysctl {key}={value}: {exc.strerror or exc}") from exc
