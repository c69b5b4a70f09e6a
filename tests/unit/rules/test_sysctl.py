"""ProcSysctlBackend against a fake /proc/sys tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from nfreplay.errors import RulesError
from nfreplay.rules.sysctl import ProcSysctlBackend, sysctl_path


def test_paths() -> None:
    assert sysctl_path("net.ipv4.ip_forward") == "/proc/sys/net/ipv4/ip_forward"
    assert sysctl_path("net/ipv4/conf/eth0.100/rp_filter") == "/proc/sys/net/ipv4/conf/eth0.100/rp_filter"
    for bad in ("net..x", "net/../../etc/passwd", ""):
        with pytest.raises(ValueError):
            sysctl_path(bad)


def test_read_write(tmp_path: Path) -> None:
    (tmp_path / "net" / "ipv4").mkdir(parents=True)
    (tmp_path / "net" / "ipv4" / "ip_forward").write_text("1\n")
    (tmp_path / "net" / "ipv4" / "ip_local_port_range").write_text("32768\t60999\n")
    backend = ProcSysctlBackend(str(tmp_path))
    assert backend.read("net.ipv4.ip_forward") == "1"
    assert backend.read("net.ipv4.ip_local_port_range") == "32768 60999"
    backend.write("net.ipv4.ip_forward", "0")
    assert (tmp_path / "net" / "ipv4" / "ip_forward").read_text() == "0\n"
    with pytest.raises(RulesError, match="^cannot read sysctl net.ipv4.nope: No such file"):
        backend.read("net.ipv4.nope")
    with pytest.raises(RulesError, match="^cannot set sysctl net.nope.x=1"):
        backend.write("net.nope.x", "1")
