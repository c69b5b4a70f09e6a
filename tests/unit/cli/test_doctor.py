"""`nfreplay doctor`'s reading of what the host says (the probes run in the lab)."""

from __future__ import annotations

from nfreplay.cli.doctor import FIX, OK, WARN, Check, offload_check, offloads, route_check, \
    rp_filter_check

ETHTOOL_K = """Features for eth0:
rx-checksumming: on
tx-checksumming: off
\ttx-checksum-ipv4: off [fixed]
tcp-segmentation-offload: off
generic-receive-offload: on
large-receive-offload: off [fixed]
"""


def test_offloads_are_read_from_ethtool_k() -> None:
    features = offloads(ETHTOOL_K)
    assert features["generic-receive-offload"] and not features["large-receive-offload"]
    assert features["rx-checksumming"] and not features["tx-checksum-ipv4"]
    check = offload_check("eth0", features)
    assert check.status == WARN and "generic-receive-offload" in check.detail
    assert "large" not in check.detail and "ethtool -K eth0 gro off" in check.detail
    assert offload_check("eth0", {"generic-receive-offload": False}).status == OK


def test_the_route_to_the_clients_must_go_via_the_assistant() -> None:
    net, via = "198.18.1.0/24", "198.18.0.4"
    assert route_check(net, via, {"gateway": via, "dev": "eth0"}) == Check(
        OK, "replies to 198.18.1.0/24 go via the assistant 198.18.0.4", "dev eth0")
    leak = route_check(net, via, {"gateway": "198.18.0.1", "dev": "eth0"})
    assert leak.status == FIX and "via 198.18.0.1, to the real clients" in leak.detail
    assert "nfreplay target up --clients 198.18.1.0/24 --via 198.18.0.4" in leak.detail
    direct = route_check(net, via, {"gateway": "", "dev": "eth1"})
    assert direct.status == FIX and "out of eth1" in direct.detail
    none = route_check(net, via, None, "Network is unreachable")
    assert none.status == FIX and "nfreplay target up" in none.detail
    assert none.line().startswith("FIX  replies to 198.18.1.0/24 go via the assistant")


def test_strict_rp_filter_is_a_warning() -> None:
    assert rp_filter_check({"all": "0", "default": "2"}).status == OK
    check = rp_filter_check({"all": "1", "default": "0"})
    assert check.status == WARN and check.detail.startswith("strict (1) on all:")


def test_with_a_tunnel_and_no_assistant_replies_must_go_into_the_tunnel_device() -> None:
    net = "198.18.1.0/24"
    assert route_check(net, "", {"gateway": "", "dev": "nfr1t"}, dev="nfr1t").status == OK
    leak = route_check(net, "", {"gateway": "198.18.0.1", "dev": "eth0"}, dev="nfr1t")
    assert leak.status == FIX and "--tunnel" in leak.detail


def test_tunnel_sizes_say_what_is_split_and_clamped() -> None:
    from nfreplay.cli.doctor import tunnel_size_check

    check = tunnel_size_check(1500, "vxlan")
    assert check.status == WARN and "at most 1450 bytes" in check.detail \
        and "MSS of at most 1410" in check.detail
    assert tunnel_size_check(9001, "fou").status == OK
    assert tunnel_size_check(600, "vxlan").status == FIX


def test_the_mirror_socket_is_checked_free_then_listened_to() -> None:
    """online.input = "vxlan": the port must be free (FIX if not), what arrives within the
    wait is reported by VNI, and a configured VNI that never arrives while others do is a
    FIX; no datagram at all is a warning (maybe no traffic now)."""
    import socket
    import threading

    from nfreplay.cli.doctor import _mirror

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        (check,) = _mirror("127.0.0.1", port, None, wait=0.1)
        assert check.status == FIX and "vxlan device" in check.detail
    quiet = _mirror("127.0.0.1", port, None, wait=0.1)
    assert [c.status for c in quiet] == [OK, WARN] and "none on udp" in quiet[1].detail

    def mirror() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for _ in range(100):  # until doctor listens (bounded)
                for vni in (42, 42, 7):
                    tx.sendto(b"\x08\0\0\0" + vni.to_bytes(3, "big") + b"\0" + bytes(60),
                              ("127.0.0.1", port))
                tx.sendto(b"junk", ("127.0.0.1", port))
                if done.wait(0.01):
                    return

    done = threading.Event()
    t = threading.Thread(target=mirror)
    t.start()
    try:
        seen = _mirror("127.0.0.1", port, 42, wait=0.5)
        other = _mirror("127.0.0.1", port, 9, wait=0.3)
        anyvni = _mirror("127.0.0.1", port, None, wait=0.3)
    finally:
        done.set()
        t.join()
    assert [c.status for c in seen] == [OK, OK, OK], seen
    assert "VNI 42 (" in seen[1].detail and "not VXLAN (mirror_bad)" in seen[1].detail
    assert seen[2].what == "VNI 42 seen"
    assert other[2].status == FIX and "online.vxlan_vni must be" in other[2].detail
    assert anyvni[2].status == WARN and "all of them are replayed" in anyvni[2].detail
