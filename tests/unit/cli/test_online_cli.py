"""nfreplay-online's command line: tcpcopy's spellings and the capture filter it builds."""

import pytest

from nfreplay import config
from nfreplay.cli import online
from nfreplay.errors import ConfigError


def cfg_of(argv: list[str]) -> config.Config:
    args = online.parser().parse_args(["up", *argv])
    online.tcpcopy_x(args)
    overrides = {key: getattr(args, dest) for dest, key in online.FLAGS.items()}
    return config.load(None, overrides, role="online")


def test_tcpcopy_spellings_mean_the_same_as_ours() -> None:
    ours = cfg_of(["--service", "80", "--target", "198.18.0.3:8080", "--assistant",
                   "198.18.0.4", "--copies", "3", "--client-pool", "198.18.4.0/24",
                   "--percent", "30", "--session-timeout", "60", "--keepalive-timeout", "90",
                   "--no-wait", "--syn-only", "--mtu", "1400", "--fake-mss", "1200",
                   "--pcap", "f.pcap", "--speed", "2", "--loop", "3", "--connections", "4"])
    theirs = cfg_of(["-x", "80-198.18.0.3:8080", "-s", "198.18.0.4", "-n", "3",
                     "-c", "198.18.4.0/24", "-r", "30", "-t", "60", "-k", "90", "-W", "-O",
                     "-M", "1400", "-D", "1200", "-i", "f.pcap", "-a", "2", "-T", "3", "-C", "4"])
    assert theirs == ours


def test_several_x_mappings_become_more_services_and_one_filter() -> None:
    c = cfg_of(["-x", "80-198.18.0.3:80,8080-198.18.0.3:9090", "-s", "198.18.0.4"])
    assert c.online.more_services == ((None, 8080, "198.18.0.3", 9090),)
    assert online.bpf(c) == ("tcp and ((dst port 80) or (dst port 8080)) and not "
                             "((dst host 198.18.0.3 and dst port 80) or "
                             "(dst host 198.18.0.3 and dst port 9090))")


def test_bad_x_is_one_line() -> None:
    with pytest.raises(ConfigError, match="^-x: expected"):
        cfg_of(["-x", "80", "-s", "198.18.0.4"])


def test_workers_split_the_client_ports_in_the_capture_filter() -> None:
    c = cfg_of(["-x", "80-198.18.0.3:80", "-s", "198.18.0.4", "--workers", "3"])
    assert c.online.workers == 3
    base = "tcp and dst port 80 and not (dst host 198.18.0.3 and dst port 80)"
    assert online.bpf(c) == base
    assert online.bpf(c, (2, 3)) == base + " and (tcp[0:2] >> 1) % 3 = 2"
    assert cfg_of(["-x", "80-198.18.0.3:80", "-s", "198.18.0.4", "--workers", "auto"]
                  ).online.workers == 0
    with pytest.raises(ConfigError, match="online.workers: must be 1-64"):
        cfg_of(["-x", "80-198.18.0.3:80", "-s", "198.18.0.4", "--workers", "x"])


def test_the_supervisor_sums_its_workers_figures() -> None:
    from nfreplay.stats import _sum

    merged = _sum([{"received": 3, "up": 2, "interface": "eth0", "ok": True},
                   {"received": 4, "up": 2, "interface": "eth0", "ok": False}])
    assert merged == {"received": 7, "up": 4, "interface": "eth0", "ok": True}


def test_the_mirror_input_keeps_what_the_capture_filter_would() -> None:
    """online.input = "vxlan": for any TCP/UDP packet to or from the services, the target or
    elsewhere, the mirror's filter keeps it exactly when libpcap's compiled `bpf(cfg)` does
    (fragments aside: a capture passes a first fragment, which the engine cannot replay)."""
    import random

    import pcapy

    from nfreplay.proto import tcpip

    c = cfg_of(["-x", "198.18.0.2:80-198.18.0.3:80,8080-198.18.0.3:9090", "-s", "198.18.0.4",
                "--input", "vxlan:198.18.0.5:4789", "--vxlan-vni", "42"])
    assert (c.online.input, c.online.mirror_ip, c.online.mirror_port) == ("vxlan", "198.18.0.5",
                                                                          4789)
    program = pcapy.compile(pcapy.DLT_EN10MB, 65535, online.bpf(c), 1, 0)
    rng = random.Random(17)
    hosts = [tcpip.ip2int(a) for a in ("198.18.0.2", "198.18.0.3", "198.18.1.10", "198.18.0.9")]
    kept = 0
    for i in range(3000):
        m = online.mirror_filter(c)  # a new one each time: no duplicate to remember
        ports = [80, 8080, 9090, 81, rng.randrange(1, 65536)]
        p = tcpip.build(rng.choice(hosts), rng.choice(hosts), rng.choice(ports),
                        rng.choice(ports), i, 0, rng.randrange(256), ip_id=i)
        if rng.random() < 0.2:
            p[9] = 17  # UDP (the checksum does not matter to either)
        frame = bytes(12) + b"\x08\x00" + bytes(p)
        datagram = b"\x08\0\0\0" + (42).to_bytes(3, "big") + b"\0" + frame
        want = program.filter(frame) > 0
        assert (m.inner(datagram) >= 0) == want, (tcpip.parse(p) if p[9] == 6 else p[9])
        kept += want
    assert 300 < kept < 2700  # both answers were tested


def test_mirror_input_settings_that_cannot_go_together() -> None:
    base = ["-x", "80-198.18.0.3:80", "-s", "198.18.0.4"]
    cases = [
        (["--input", "vxlan", "--workers", "2"], "online.workers: the mirror input"),
        (["--input", "vxlan", "--pcap", "f.pcap"], "online.input: a capture file"),
        (["--vxlan-vni", "5"], "online.vxlan_vni: only with online.input"),
        (["--input", "vxlan", "--record-responses", "/tmp/x"], "online.record_responses:"),
    ]
    for extra, message in cases:
        with pytest.raises(ConfigError, match=f"^{message}"):
            online.up(cfg_of(base + extra), None, None)  # type: ignore[arg-type]
