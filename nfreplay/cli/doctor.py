"""`nfreplay doctor online|assist|target`: what a role needs on this host, checked before `up`.

Each check prints one line: `ok`, `warn` (works, but costs or may surprise) or `FIX` (`up`
would fail, or the replay would not work) with what to do. Exit code 1 if any check says FIX.
Nothing is changed on the host.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nfreplay.cli import options
from nfreplay.config import Config, Online
from nfreplay.errors import NfreplayError
from nfreplay.proto import vxlan

OK, WARN, FIX = "ok", "warn", "FIX"


@dataclass(frozen=True)
class Check:
    status: str  # OK, WARN or FIX
    what: str
    detail: str = ""

    def line(self) -> str:
        return f"{self.status:<4} {self.what}" + (f": {self.detail}" if self.detail else "")


# -------------------------------------------------------------------- pure interpretation


def offloads(ethtool_k: str) -> dict[str, bool]:
    """`ethtool -k IFACE` output → {feature: on}."""
    out = {}
    for line in ethtool_k.splitlines():
        name, sep, value = line.strip().partition(":")
        if sep and value.strip():
            out[name.strip()] = value.split()[0] == "on"
    return out


def offload_check(iface: str, features: dict[str, bool]) -> Check:
    """Receive offloads on the capture interface merge segments before the capture sees them:
    nfreplay splits them again to the MTU (packets_split), which costs CPU."""
    merged = [f for f in ("generic-receive-offload", "large-receive-offload")
              if features.get(f)]
    if merged:
        return Check(WARN, f"receive offloads on {iface}",
                     f"{', '.join(merged)} on: captured segments are merged and nfreplay "
                     f"splits them to the MTU again (costs CPU); `ethtool -K {iface} gro off "
                     "lro off` avoids it")
    return Check(OK, f"receive offloads on {iface}", "off")


def mirror_check(port: int, vni: int | None, datagrams: int, seconds: float,
                 vnis: dict[int, int], bad: int) -> list[Check]:
    """What arrived on the mirror's UDP port while doctor listened: VXLAN datagrams (by VNI)
    and others (`bad`)."""
    what = "mirrored packets arriving"
    if not datagrams:
        return [Check(WARN, what, f"none on udp {port} in {seconds:g} s: is this host the "
                                  "mirror session's target, is UDP "
                                  f"{port} allowed to it (security group, firewall), and is "
                                  "there traffic on the mirrored interface?")]
    seen = ", ".join(f"{v} ({n})" for v, n in sorted(vnis.items(), key=lambda i: -i[1]))
    checks = [Check(OK if vnis else FIX, what,
                    f"{datagrams} datagrams in {seconds:.1f} s, VNI {seen or 'none'}"
                    + (f", {bad} not VXLAN (mirror_bad)" if bad else ""))]
    if vni is not None:
        if vni in vnis:
            checks.append(Check(OK, f"VNI {vni} seen"))
        elif vnis:
            checks.append(Check(FIX, f"VNI {vni} seen", f"only {', '.join(map(str, vnis))}: "
                                "online.vxlan_vni must be the mirror session's VNI "
                                "(nothing else is replayed)"))
    elif len(vnis) > 1:
        checks.append(Check(WARN, "VNI", f"{len(vnis)} networks arrive and online.vxlan_vni "
                                          "is unset: all of them are replayed"))
    return checks


def route_check(net: str, via: str, route: dict[str, str] | None, error: str = "",
                dev: str = "") -> Check:
    """How the kernel routes a reply to a host of client network `net` (`ip route get`):
    it must go via the assistant `via` (or, with a tunnel and no assistant, into the tunnel
    device `dev`, where a colocated assist queues it), or not at all (a blackhole fails
    closed)."""
    what = (f"replies to {net} go via the assistant {via}" if via else
            f"replies to {net} go into the tunnel device {dev} (a colocated assist takes them)")
    if route is None:
        if "nreachable" in error or "nvalid argument" in error:
            return Check(FIX, what, f"no route ({error}): nothing reaches the assistant; "
                                    "run `nfreplay target up`")
        return Check(FIX, what, f"cannot ask the kernel: {error}")
    if via and route.get("gateway") == via:
        return Check(OK, what, f"dev {route.get('dev', '?')}")
    if not via and not route.get("gateway") and route.get("dev") == dev:
        return Check(OK, what)
    where = f"via {route['gateway']}" if route.get("gateway") else f"out of {route.get('dev')}"
    how = f"--via {via}" if via else "--tunnel"
    return Check(FIX, what, f"they go {where}, to the real clients: run `nfreplay target up "
                            f"--clients {net} {how}`")


def tunnel_size_check(path_mtu: int, kind: str) -> Check:
    """What the tunnel's outer headers cost: segments split, SYNs' MSS clamped."""
    from nfreplay.proto import tunnel

    encap = tunnel.encapsulation(kind)
    inner, mss = tunnel.inner_mtu(path_mtu, encap), tunnel.max_mss(path_mtu, encap)
    what = f"{kind} tunnel in a path MTU of {path_mtu} (online.mtu)"
    detail = (f"{encap.overhead} bytes of outer headers: inner packets of at most {inner} bytes "
              f"(larger ones are split, packets_split), replayed SYNs announce an MSS of at "
              f"most {mss} (mss_clamped)")
    if mss < 536:
        return Check(FIX, what, f"{detail}: too small, raise online.mtu")
    if path_mtu <= 1500:
        return Check(WARN, what, f"{detail}; full-size client segments are sent in two: if "
                                 "the path takes larger packets (9001 inside an AWS VPC), "
                                 "set online.mtu to it")
    return Check(OK, what, detail)


def rp_filter_check(values: dict[str, str]) -> Check:
    """Replayed packets arrive with the clients' addresses: strict reverse-path filtering
    drops them unless the route back to the clients leaves by the interface they came in."""
    strict = sorted(k for k, v in values.items() if v == "1")
    if strict:
        return Check(WARN, "rp_filter",
                     f"strict (1) on {', '.join(strict)}: replayed packets are dropped unless "
                     "the route back to the clients leaves by the interface they arrive on; "
                     "2 (loose) is safe")
    return Check(OK, "rp_filter", ", ".join(f"{k}={v}" for k, v in sorted(values.items())))


# -------------------------------------------------------------------- host probes


def _root() -> Check:
    if os.geteuid() == 0:
        return Check(OK, "running as root")
    return Check(FIX, "running as root", "`up` needs root (CAP_NET_ADMIN, CAP_NET_RAW)")


def _sysctl(key: str) -> str:
    from nfreplay.rules.sysctl import ProcSysctlBackend

    return ProcSysctlBackend().read(key)


def _ethtool(iface: str) -> Check:
    from nfreplay.adapters.probes import ethtool_features

    out, why = ethtool_features(iface)
    if out is None:
        return Check(WARN, f"receive offloads on {iface}", why)
    return offload_check(iface, offloads(out))


def _interface(iface: str) -> list[Check]:
    if iface == "any":
        return [Check(OK, "capture interface", "any")]
    try:
        socket.if_nametoindex(iface)
    except OSError:
        return [Check(FIX, f"capture interface {iface}", "no such interface (`ip link`)")]
    return [Check(OK, f"capture interface {iface}"), _ethtool(iface)]


MIRROR_WAIT = 3.0  # seconds doctor listens on the mirror's port
_MIRROR_MAX = 10_000  # datagrams looked at, at most


def _mirror(ip: str, port: int, vni: int | None, wait: float = MIRROR_WAIT) -> list[Check]:
    """`online.input = "vxlan"`: the UDP port free, then what arrives on it for `wait` s."""
    what = f"mirror socket udp {ip}:{port}"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        try:
            sock.bind((ip, port))
        except OSError as exc:
            return [Check(FIX, what, f"{exc.strerror or exc}: nfreplay-online or another "
                                     "collector runs, or a vxlan device with dstport "
                                     f"{port} holds it (`ip -d link show type vxlan`)")]
        started = time.monotonic()
        deadline = started + wait
        datagrams = bad = 0
        vnis: Counter[int] = Counter()
        while datagrams < _MIRROR_MAX:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                buf = sock.recv(65535)
            except (TimeoutError, socket.timeout):
                break
            datagrams += 1
            v = vxlan.header(buf)
            if v < 0:
                bad += 1
            else:
                vnis[v] += 1
        elapsed = time.monotonic() - started
    return [Check(OK, what, "free"),
            *mirror_check(port, vni, datagrams, elapsed, dict(vnis), bad)]


def _reachable(ip: str, port: int, timeout: float = 2.0) -> Check:
    what = f"control port of the assistant {ip}:{port}"
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return Check(OK, what, "accepts connections")
    except OSError as exc:
        return Check(FIX, what, f"{exc.strerror or exc}: is nfreplay-assist up there, with "
                                "this host in assist.online, and the port open?")


def _raw_socket() -> Check:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
    except OSError as exc:
        return Check(FIX, "raw socket for injection", exc.strerror or str(exc))
    return Check(OK, "raw socket for injection")


def _link_path(target_ip: str) -> list[Check]:
    """`online.inject = "link"`: the packet socket, and the path the target's packets take."""
    from nfreplay.adapters.rawsock import NetlinkLookup
    from nfreplay.proto.nexthop import Path

    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except OSError as exc:
        return [Check(FIX, "packet socket for injection", f"{exc.strerror or exc} (or "
                                                          "online.inject = \"ip\")")]
    what = f"path of the replayed packets to {target_ip}"
    try:
        lookup = NetlinkLookup()
        try:
            found = lookup(target_ip)
        finally:
            lookup.close()
    except OSError as exc:
        return [Check(WARN, what, f"rtnetlink: {exc.strerror or exc}")]
    if isinstance(found, Path):
        return [Check(OK, "packet socket for injection"), Check(OK, what, found.describe())]
    return [Check(OK, "packet socket for injection"),
            Check(OK, what, f"through the kernel for now: {found}")]


def _backend(cfg: Config) -> Check:
    from nfreplay.rules import iptables

    try:
        backend = iptables.select_backend(cfg.general.backend)
        backend.probe()
    except NfreplayError as exc:
        return Check(FIX, "iptables backend", str(exc))
    return Check(OK, "iptables backend", f"{backend.name} (general.backend = "
                                         f"{cfg.general.backend})")


def _nfqueue() -> Check:
    if os.path.exists("/proc/net/netfilter/nfnetlink_queue"):
        return Check(OK, "NFQUEUE support", "nfnetlink_queue loaded")
    from nfreplay.adapters.probes import module_available

    if os.path.isdir("/sys/module/nfnetlink_queue") or module_available("nfnetlink_queue"):
        return Check(OK, "NFQUEUE support", "nfnetlink_queue available (loaded on first use)")
    return Check(FIX, "NFQUEUE support", "no nfnetlink_queue module: the kernel cannot queue")


def _port_free(ip: str, port: int) -> Check:
    what = f"control port {ip}:{port}"
    with socket.socket() as s:
        try:
            s.bind((ip, port))
        except OSError as exc:
            return Check(FIX, what, f"{exc.strerror or exc} (another nfreplay-assist or "
                                    "intercept running?)")
    return Check(OK, what, "free")


def _route_get(ip: str) -> tuple[dict[str, str] | None, str]:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        with IPRoute() as ipr:
            msg = ipr.route("get", dst=ip)[0]
            dev = ipr.get_links(msg.get("oif"))[0].get("ifname") if msg.get("oif") else ""
    except NetlinkError as exc:
        return None, exc.args[1] if len(exc.args) > 1 else str(exc)
    except OSError as exc:
        return None, exc.strerror or str(exc)
    return {"gateway": msg.get("gateway") or "", "dev": dev or ""}, ""


# -------------------------------------------------------------------- per role


def _tunnel_path(o: Online) -> list[Check]:
    """`online.deliver = "tunnel"`: the socket, the way to the target host, the sizes."""
    from nfreplay.adapters.rawsock import TunnelSender
    from nfreplay.proto import tunnel

    checks = []
    try:
        TunnelSender(tunnel.encapsulation(o.tunnel), o.tunnel_port).close()
        checks.append(Check(OK, f"{o.tunnel} tunnel socket"))
    except (OSError, NfreplayError) as exc:
        checks.append(Check(FIX, f"{o.tunnel} tunnel socket", str(exc)))
    for ip in dict.fromkeys([o.target_ip or "", *(t for _, _, t, _ in o.more_services)]):
        what = f"tunnel peer (the target host) {ip}"
        route, error = _route_get(ip)
        if route is None:
            checks.append(Check(FIX, what, f"no route: {error}"))
        else:
            via = f"via {route['gateway']} " if route.get("gateway") else ""
            checks.append(Check(OK, what, f"{via}dev {route.get('dev', '?')}; the target "
                                          f"must accept {describe_outer(o)} from this host"))
    checks.append(tunnel_size_check(o.mtu, o.tunnel))
    return checks


def describe_outer(o: Online) -> str:
    from nfreplay.proto import tunnel

    encap = tunnel.encapsulation(o.tunnel)
    return f"UDP {o.tunnel_port}" if encap.udp else f"IP protocol {encap.ip_proto}"


def online_checks(cfg: Config) -> list[Check]:
    o = cfg.online
    source = (_mirror(o.mirror_ip, o.mirror_port, o.vxlan_vni) if o.input == "vxlan"
              else _interface(o.interface))
    checks = [_root(), *source]
    if o.deliver != "tunnel":
        checks.append(_raw_socket())
    if o.deliver == "link" and o.target_ip:
        checks += _link_path(o.target_ip)
    if o.deliver == "tunnel" and o.target_ip:
        checks += _tunnel_path(o)
    checks += [_reachable(ip, port) for ip, port in o.assistants]
    if not o.assistants:
        checks.append(Check(FIX, "online.assistants", "not set (--assistant)"))
    return checks


def assist_checks(cfg: Config) -> list[Check]:
    a = cfg.assist
    checks = [_root(), _nfqueue(), _backend(cfg), _port_free(a.listen_ip, a.listen_port)]
    if a.mode == "assistant":
        value = _sysctl("net.ipv4.ip_forward")
        if value == "0":
            checks.append(Check(OK, "ip_forward", "0: the replies stop here"))
        else:
            checks.append(Check(WARN if a.fix_ip_forward else FIX, "ip_forward",
                                f"{value}: a reply missed by the queue would be forwarded "
                                "to the real client; `up` sets 0 with --fix-ip-forward, "
                                "else refuses"))
    if not a.online:
        checks.append(Check(WARN, "assist.online", "unset: only loopback may connect"))
    return checks


def _tunnel_end(cfg: Config) -> list[Check]:
    """`target.tunnel`: the peers, the device (after `up`), the port (before it)."""
    from nfreplay.rules.model import TUNNEL_DEVICES, tunnel_device

    t = cfg.target
    dev = tunnel_device(cfg.general.instance)
    checks = []
    if t.tunnel not in TUNNEL_DEVICES:
        checks.append(Check(FIX, f"{t.tunnel} tunnel device", "nfreplay builds vxlan devices "
                                                              "only: use vxlan on both sides"))
    if not t.tunnel_peers:
        checks.append(Check(FIX, "target.tunnel_peers", "not set (--tunnel-peers): no online "
                                                        "host may send into the tunnel"))
    else:
        checks.append(Check(OK, "target.tunnel_peers", ", ".join(t.tunnel_peers)))
    try:
        socket.if_nametoindex(dev)
    except OSError:
        checks.append(Check(FIX, f"tunnel device {dev}", "not there: `nfreplay target up "
                                                          "--tunnel` creates it"))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("0.0.0.0", t.tunnel_port))
                checks.append(Check(OK, f"tunnel port UDP {t.tunnel_port}", "free"))
            except OSError as exc:
                checks.append(Check(FIX, f"tunnel port UDP {t.tunnel_port}",
                                    f"{exc.strerror or exc}: taken (target.tunnel_port)"))
        return checks
    checks.append(Check(OK, f"tunnel device {dev}", f"{t.tunnel}, UDP {t.tunnel_port}"))
    try:
        values = {k: _sysctl(f"net.ipv4.conf.{k}.rp_filter") for k in ("all", dev)}
    except NfreplayError as exc:
        return checks + [Check(WARN, f"rp_filter on {dev}", str(exc))]
    effective = max(values.values())
    if effective == "1" and t.via:
        checks.append(Check(FIX, f"rp_filter on {dev}", "strict (1): replayed packets arrive "
                                                        "here while the route back leaves via "
                                                        "the assistant: 2 (loose) is needed"))
    else:
        checks.append(Check(OK, f"rp_filter on {dev}", f"{effective} (the larger of all="
                                                       f"{values['all']} and {values[dev]})"))
    return checks


def target_checks(cfg: Config) -> list[Check]:
    t = cfg.target
    checks = [_root()]
    if not t.clients or not (t.via or t.tunnel):
        return checks + [Check(FIX, "target.clients and target.via", "not set (--clients, "
                                                                   "--via or --tunnel)")]
    via = t.via or ""
    if t.tunnel:
        checks += _tunnel_end(cfg)
    from nfreplay.rules.model import tunnel_device

    dev = "" if via else tunnel_device(cfg.general.instance)
    for net in t.clients:
        host = str(next(ipaddress.IPv4Network(net).hosts(), ipaddress.IPv4Network(net)[0]))
        route, error = _route_get(host)
        checks.append(route_check(net, via, route, error, dev))
    keys = {"all": "net.ipv4.conf.all.rp_filter", "default": "net.ipv4.conf.default.rp_filter"}
    values = {}
    for name, key in keys.items():
        try:
            values[name] = _sysctl(key)
        except NfreplayError:
            continue
    checks.append(rp_filter_check(values))
    return checks


FLAGS = {"--interface": "online.interface", "--assistant": "online.assistants",
         "--target": "online.target", "--deliver": "online.deliver", "--input": "online.input",
         "--vxlan-vni": "online.vxlan_vni", "--listen": "assist.listen", "--mode": "assist.mode",
         "--clients": "target.clients", "--via": "target.via", "--tunnel": "target.tunnel",
         "--tunnel-peers": "target.tunnel_peers"}

ROLES: dict[str, Callable[[Config], list[Check]]] = {
    "online": online_checks, "assist": assist_checks, "target": target_checks}


def doctor_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="nfreplay doctor",
        description="Check what ROLE needs on this host before `up`, from the same "
                    "configuration: one line per check (ok, warn, FIX with what to do). "
                    "Changes nothing. Exit code 1 if anything needs a fix.",
        epilog="examples:\n  nfreplay doctor target\n  nfreplay doctor online --config "
               "/etc/nfreplay/nfreplay.toml\n\n" + options.EPILOG_CONFIG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("role", choices=sorted(ROLES))
    g = p.add_argument_group("settings (override the config file)")
    for flag, key in FLAGS.items():
        g.add_argument(flag, metavar=key.split(".")[1].upper(), help=key)
    options.add_common(p)
    args = p.parse_args(argv)
    # Loaded like `status` does: a key this role would require is reported, not refused.
    cfg = options.load_config(args, "status", {f[2:].replace("-", "_"): k
                                              for f, k in FLAGS.items()})
    checks = ROLES[args.role](cfg)
    for check in checks:
        print(check.line())
    fixes = sum(c.status == FIX for c in checks)
    print(f"{args.role}: " + (f"{fixes} to fix" if fixes else "ready"))
    return 1 if fixes else 0
