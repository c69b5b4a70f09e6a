"""The four-host lab in network namespaces: client, online, target and assistant on one bridge.

    198.18.1.10-13/24  client      (on-link route to 198.18.0.0/24)
    198.18.0.2/24      online      nginx :80, nfreplay-online (on-link route to 198.18.1.0/24)
    198.18.0.3/24      target      nginx :80, `nfreplay target up` routes 198.18.1.0/24 via .4
    198.18.0.4/24      assistant   nfreplay-assist, ip_forward = 0
    198.18.0.5-6/24    online2, online3 (only with `Lab(onlines=2|3)`: fan-in) like online
    bridge             in a fifth namespace, so the root namespace is never touched

With `Lab(collector=True)`, a mirror collector too (the cloud deployment of issue 17):

    198.18.0.9/24      collector   on the bridge: reaches target and assistant, sees no
                                   client traffic; nfreplay-online --input vxlan runs here
    198.18.2.1/30 <->  198.18.2.2/30   a separate link online:mir0 - collector:mir0 that only
                                   carries the mirror's VXLAN (as a cloud's mirror is out of
                                   band of the instance), MTU 9000 so full frames fit

Every name carries a per-run prefix; `Lab.close()` stops what it started and deletes the
namespaces, treating "already gone" as success. Used by the lab tests and by the demo.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from tests.lab import netns

ADDR = {"online": "198.18.0.2", "target": "198.18.0.3", "assist": "198.18.0.4",
        "online2": "198.18.0.5", "online3": "198.18.0.6"}
CLIENTS = ["198.18.1.10", "198.18.1.11", "198.18.1.12", "198.18.1.13"]
CLIENT_NET = "198.18.1.0/24"
HOST_NET = "198.18.0.0/24"
ROLES = ("client", "online", "target", "assist")
COLLECTOR = "198.18.0.9"
MIRROR_LINK = ("198.18.2.1", "198.18.2.2")  # online's and the collector's end, /30
VXLAN_PORT = 4789
MORE_ONLINE = ("online2", "online3")  # further online hosts of a fan-in lab (Lab(onlines=N))
BIN = Path(sys.executable).parent  # the venv's bin: nfreplay, nfreplay-online, nfreplay-assist

# What both lab nginx configurations share: foreground, files in the run's own directory.
_NGINX_HEAD = """\
worker_processes 1;
daemon off;
master_process off;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
"""
_NGINX_HTTP = """\
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 10000;
    keepalive_timeout 30s;
"""

NGINX_CONF = _NGINX_HEAD + """\
http {{
    log_format paths '$request_uri';
    access_log {dir}/access.log paths;
""" + _NGINX_HTTP + """\
    server {{
        listen {ip}:80 reuseport;
        location / {{ return 200 "{name} $request_uri\\n"; }}
{extra}    }}
}}
"""


BIG_SIZE = 1 << 20  # the 1 MiB file nginx serves under /big/ (same bytes on online and target)

# `$request_uri $status $bytes_sent $request_length` per line. /big/... answers the 1 MiB file
# (any path under it), /up/... reads a request body of up to 2 MiB (proxied to a local server:
# nginx counts a body in $request_length only when a module reads it, `return` discards it),
# anything else answers "<name> <uri>" like NGINX_CONF ("online" and "target" are both 6 bytes
# long, so the two servers' responses have the same length).
NGINX_FILES_CONF = _NGINX_HEAD + """\
http {{
    log_format files '$request_uri $status $bytes_sent $request_length';
    access_log {dir}/access.log files;
""" + _NGINX_HTTP + """\
    client_max_body_size 2m;
    client_body_buffer_size 2m;
    server {{
        listen {ip}:80 reuseport;
        location /big/ {{ root {dir}/www; rewrite ^ /big.bin break; }}
        location /up/ {{ proxy_pass http://127.0.0.1:8081; }}
        location / {{ return 200 "{name} $request_uri\\n"; }}
    }}
    server {{
        listen 127.0.0.1:8081;
        access_log off;
        location / {{ return 200 "{name} $request_uri\\n"; }}
    }}
}}
"""


# Run argv[2:] with argv[1] more descriptors open (inherited, pointing at /dev/null), so that
# every socket the daemon opens gets a number above them (select() fails above 1023).
_PAD_FDS = """\
import os, resource, sys
n = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 1024)), hard))
for _ in range(n):
    os.set_inheritable(os.open(os.devnull, os.O_RDONLY), True)
os.execv(sys.argv[2], sys.argv[2:])
"""


def big_file_bytes() -> bytes:
    """The content of /big/ (deterministic, so online and target serve the same bytes)."""
    return bytes(range(256)) * (BIG_SIZE // 256)


class Lab:
    """Builds the namespaces; `start_*` helpers run real daemons inside them."""

    def __init__(self, prefix: str | None = None, collector: bool = False,
                 onlines: int = 1) -> None:
        self.prefix = prefix or f"nfl{os.getpid() % 100000}"
        # Fan-in: online hosts beyond the first ("online2", ...), each like "online".
        self.onlines = ("online", *MORE_ONLINE[:onlines - 1])
        self.hosts = (*ROLES, *self.onlines[1:])  # on the bridge, built alike
        self.ns = {role: f"{self.prefix}{role[0]}{role[6:]}" for role in self.hosts}
        self.roles: tuple[str, ...] = self.hosts  # every host, the collector too
        if collector:
            self.ns["collector"] = f"{self.prefix}k"
            self.roles = (*self.hosts, "collector")
        self.switch = f"{self.prefix}s"
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.mac: dict[str, str] = {}
        self._created: list[str] = []
        self.pad_fds = 0  # > 0: the daemons start with this many extra descriptors open

    # -------------------------------------------------------------- topology

    def build(self) -> "Lab":
        try:
            for name in [self.switch, *self.ns.values()]:
                netns.create(name)
                self._created.append(name)
                # nfreplay is IPv4-only; IPv6 autoconfiguration would only add noise.
                netns.run_in(name, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                                    "net.ipv6.conf.default.disable_ipv6=1"])
            self.sh("switch", "ip", "link", "add", "br0", "type", "bridge")
            self.sh("switch", "ip", "link", "set", "br0", "up")
            for role in self.hosts:
                port = f"p{role[0]}{role[6:]}"
                netns.veth(self.ns[role], "eth0", self.switch, port)
                self.sh("switch", "ip", "link", "set", port, "master", "br0")
                # Captured packets must carry real checksums, as they do off a real NIC.
                self.sh(role, "ethtool", "-K", "eth0", "tx", "off", check=False)
                self.mac[role] = self._mac(role)
            for role in self.hosts[1:]:
                self.sh(role, "ip", "addr", "add", f"{ADDR[role]}/24", "dev", "eth0")
            for ip in CLIENTS:
                self.sh("client", "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
            self.sh("client", "ip", "route", "add", HOST_NET, "dev", "eth0")
            for role in self.onlines:
                self.sh(role, "ip", "route", "add", CLIENT_NET, "dev", "eth0")
            self.sh("assist", "sysctl", "-qw", "net.ipv4.ip_forward=0")
            if "collector" in self.ns:
                self._build_collector()
        except BaseException:
            self.close()
            raise
        return self

    def _build_collector(self) -> None:
        ns = self.ns["collector"]  # created with the others
        netns.veth(ns, "eth0", self.switch, "pk")
        self.sh("switch", "ip", "link", "set", "pk", "master", "br0")
        self.sh("collector", "ethtool", "-K", "eth0", "tx", "off", check=False)
        self.sh("collector", "ip", "addr", "add", f"{COLLECTOR}/24", "dev", "eth0")
        netns.veth(self.ns["online"], "mir0", ns, "mir0")
        for role, ip in zip(("online", "collector"), MIRROR_LINK):
            self.sh(role, "ip", "link", "set", "mir0", "mtu", "9000")
            self.sh(role, "ip", "addr", "add", f"{ip}/30", "dev", "mir0")
        self.mac["collector"] = self._mac("collector")

    def mirror(self, copies: int = 1, vni: int = 42) -> None:
        """Copy every frame of the online host's eth0, in and out, to the collector as VXLAN
        (VNI `vni`, UDP 4789), as a cloud's traffic mirror does: the kernel's `tc` mirred
        action into a `vxlan` device on the online side; `copies` mirred actions per frame
        (2: every packet arrives twice). `unmirror` removes it (so does deleting the netns)."""
        local, remote = MIRROR_LINK
        self.sh("online", "ip", "link", "add", "vxm0", "type", "vxlan", "id", str(vni),
                "local", local, "remote", remote, "dstport", str(VXLAN_PORT), "dev", "mir0",
                "nolearning")
        self.sh("online", "ip", "link", "set", "vxm0", "mtu", "8950", "up")
        self.sh("online", "tc", "qdisc", "add", "dev", "eth0", "clsact")
        actions = ["action", "mirred", "egress", "mirror", "dev", "vxm0"] * copies
        for direction in ("ingress", "egress"):
            add = ["tc", "filter", "add", "dev", "eth0", direction, "protocol", "all"]
            # Every frame: matchall, or where the kernel lacks it (CONFIG_NET_CLS_MATCHALL)
            # u32's match-everything key.
            if self.sh("online", *add, "matchall", *actions, check=False).returncode:
                self.sh("online", *add, "u32", "match", "u32", "0", "0", *actions)

    def unmirror(self) -> None:
        self.sh("online", "tc", "qdisc", "del", "dev", "eth0", "clsact", check=False)
        self.sh("online", "ip", "link", "del", "vxm0", check=False)

    def _mac(self, role: str) -> str:
        out = self.sh(role, "cat", "/sys/class/net/eth0/address").stdout
        return out.strip()

    def sh(self, role: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        ns = self.switch if role == "switch" else self.ns[role]
        return netns.run_in(ns, list(argv), check=check)

    def spawn(self, role: str, argv: Sequence[str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.dir / log, "ab")
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[role], *argv], stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self.procs.append(p)
        return p

    # -------------------------------------------------------------- services

    def start_nginx(self, role: str, name: str | None = None, extra: str = "") -> Path:
        """nginx on `role` answering "<name> <uri>" (name: the role) to any path, and
        `extra` (more nginx `location` lines); returns its access log (`$request_uri`)."""
        d = self.dir / f"nginx-{role}"
        d.mkdir()
        conf = d / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=d, ip=ADDR[role], name=name or role,
                                          extra=extra))
        self.spawn(role, ["nginx", "-c", str(conf), "-e", str(d / "error.log")], f"nginx-{role}.log")
        self.wait_port(role, ADDR[role], 80)
        return d / "access.log"

    def start_nginx_files(self, role: str) -> Path:
        """nginx on `role` with NGINX_FILES_CONF (1 MiB download under /big/, up to 2 MiB
        upload under /up/); returns its access log (`$request_uri $status $bytes_sent
        $request_length` per line)."""
        d = self.dir / f"nginx-files-{role}"
        (d / "www").mkdir(parents=True)
        (d / "www" / "big.bin").write_bytes(big_file_bytes())
        conf = d / "nginx.conf"
        conf.write_text(NGINX_FILES_CONF.format(dir=d, ip=ADDR[role], name=role))
        self.spawn(role, ["nginx", "-c", str(conf), "-e", str(d / "error.log")],
                   f"nginx-files-{role}.log")
        self.wait_port(role, ADDR[role], 80)
        return d / "access.log"

    def wait_port(self, role: str, ip: str, port: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.sh(role, "ss", "-Hltn", f"src {ip}:{port}", check=False)
            if done.stdout.strip():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{role}: nothing listens on {ip}:{port} after {timeout} s")

    # -------------------------------------------------------------- nfreplay

    def state_dir(self, role: str) -> str:
        return str(self.dir / f"state-{role}")

    def nfreplay(self, role: str, tool: str, *args: str, check: bool = True,
                 timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run an nfreplay command inside `role`'s namespace with the lab's instance/state dir."""
        argv = [str(BIN / tool), *args, "--instance", self.prefix, "--state-dir", self.state_dir(role)]
        done = subprocess.run(["ip", "netns", "exec", self.ns[role], *argv], capture_output=True,
                              text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
        return done

    def start_assist(self, *extra: str) -> subprocess.Popen[bytes]:
        argv = [str(BIN / "nfreplay-assist"), "up", "--target", f"{ADDR['target']}:80",
                "--clients", CLIENT_NET, "--online", ",".join(ADDR[r] for r in self.onlines),
                "--instance", self.prefix,
                "--state-dir", self.state_dir("assist"), *extra]
        p = self.spawn("assist", self._padded(argv), "assist.log")
        if "--daemon" not in extra and "-d" not in extra:
            self.wait_stats("assist", p.pid)
        return p

    def start_online(self, *extra: str, host: str = "online") -> subprocess.Popen[bytes]:
        """nfreplay-online in `host`'s namespace: an online host ("online", or "online2"...
        in a fan-in lab; its log `<host>.log`), or the collector (give it "--input", "vxlan";
        its log `collector-online.log`); its state directory `state-<host>`."""
        service = ADDR["online"] if host == "collector" else ADDR[host]
        argv = [str(BIN / "nfreplay-online"), "up", "--service", f"{service}:80",
                "--target", f"{ADDR['target']}:80", "--assistant", ADDR["assist"],
                "--interface", "eth0", "--instance", self.prefix,
                "--state-dir", self.state_dir(host), *extra]
        name = "collector-online" if host == "collector" else host
        p = self.spawn(host, self._padded(argv), f"{name}.log")
        self.wait_stats(f"{host}-online", p.pid)
        return p

    def _padded(self, argv: list[str]) -> list[str]:
        return [sys.executable, "-c", _PAD_FDS, str(self.pad_fds), *argv] if self.pad_fds else argv

    def start_replay(self, port: int = 80, *online_extra: str, assist_extra: Sequence[str] = ()
                     ) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
        """The replay path for a service on `port` (online:port → target:port), in the
        README's order: the target's route, nfreplay-assist, then nfreplay-online (later
        flags win, so `--target`/`--service` override start_assist/start_online's :80).
        Returns (assist, online); `stop_replay` undoes it, and so does `close()`."""
        self.nfreplay("target", "nfreplay", "target", "up", "--clients", CLIENT_NET,
                      "--via", ADDR["assist"])
        assist = self.start_assist("--target", f"{ADDR['target']}:{port}", *assist_extra)
        online = self.start_online("--service", f"{ADDR['online']}:{port}",
                                   "--target", f"{ADDR['target']}:{port}", *online_extra)
        return assist, online

    def start_tunnel_replay(self, port: int = 80, *online_extra: str, deliver: str = "tunnel",
                            assist_extra: Sequence[str] = (), tunnel_end: bool = True,
                            host: str = "online"
                            ) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
        """The cloud deployment (README, Running in a cloud): the target's tunnel end
        (`nfreplay target up --tunnel`, no route to an assistant) and a colocated
        nfreplay-assist on the target; nfreplay-online in `host` (the online host, or the
        collector: give it "--input", "vxlan") delivering with `deliver`, its assistant the
        target itself. Returns (assist, online); `stop_replay` undoes it, and so does
        `close()`. `tunnel_end` False: no `target up` (what the online host sends is then
        only seen on the target's wire)."""
        peer = COLLECTOR if host == "collector" else ADDR["online"]
        if tunnel_end:
            self.nfreplay("target", "nfreplay", "target", "up", "--clients", CLIENT_NET,
                          "--tunnel", "--tunnel-peers", peer)
        argv = [str(BIN / "nfreplay-assist"), "up", "--mode", "colocated",
                "--target", f"{ADDR['target']}:{port}", "--clients", CLIENT_NET,
                "--online", peer, "--instance", self.prefix,
                "--state-dir", self.state_dir("target"), *assist_extra]
        assist = self.spawn("target", self._padded(argv), "assist.log")
        self.wait_stats("target-assist", assist.pid)
        online = self.start_online("--assistant", ADDR["target"], "--service",
                                   f"{ADDR['online']}:{port}", "--target",
                                   f"{ADDR['target']}:{port}", "--deliver", deliver,
                                   *online_extra, host=host)
        return assist, online

    def stop_replay(self, assist: subprocess.Popen[bytes],
                    online: subprocess.Popen[bytes]) -> tuple[int, int]:
        """nfreplay-online, then nfreplay-assist, then `target down` (of either replay path);
        the two exit codes."""
        rc_online = self.stop(online)
        rc_assist = self.stop(assist)
        self.nfreplay("target", "nfreplay", "target", "down", check=False)
        return rc_online, rc_assist

    def online_status(self, host: str = "online") -> dict:
        """`daemons[0]` of `nfreplay status --json` in the online namespace (or `host`'s)
        ({} if none); its "counters" are the session machine's (retransmits, sessions_*, ...)."""
        done = self.nfreplay(host, "nfreplay", "status", "--json", check=False)
        try:
            daemons = json.loads(done.stdout)["daemons"]
        except (ValueError, KeyError, TypeError):
            return {}
        return dict(daemons[0]) if daemons else {}

    def wait_stats(self, role: str, pid: int | None = None, timeout: float = 10.0) -> None:
        """Until `role`'s daemon (process `pid`, if given) has published its first snapshot:
        by then its rules are installed and its queue or capture is open."""
        host, _, daemon = role.partition("-")  # "target-assist": the assist daemon on target
        daemon = daemon or host
        path = Path(self.state_dir(host)) / f"{daemon}-{self.prefix}.stats.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if pid is None or json.loads(path.read_text()).get("pid") == pid:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{role}: no stats file after {timeout} s; log:\n{self.log(role)}")

    # -------------------------------------------------------------- packet captures

    def start_tcpdump(self, role: str, name: str, bpf: str, marker_from: str,
                      *extra: str) -> "Tcpdump":
        """tcpdump on `role`'s eth0 into `<dir>/<name>.pcap` (immediate mode, written per
        packet), once it says it listens. `marker_from` is the role whose UDP datagram to
        `role` (port MARKER_PORT, which `bpf` must let through) `stop_tcpdump` sends: it is
        stopped only once the marker is in the file, so every packet before it is too."""
        pcap = self.dir / f"{name}.pcap"
        p = self.spawn(role, ["tcpdump", "-i", "eth0", "-n", "--immediate-mode", "-U", *extra,
                              "-w", str(pcap), bpf], f"{name}.log")
        deadline = time.monotonic() + 10
        while "listening on" not in self.log(name):
            if time.monotonic() > deadline or p.poll() is not None:
                raise RuntimeError(f"tcpdump {name}: not listening: {self.log(name)}")
            time.sleep(0.05)
        return Tcpdump(p, pcap, role, marker_from)

    def stop_tcpdump(self, td: "Tcpdump") -> None:
        token = f"nfreplay-marker-{os.getpid()}-{time.monotonic_ns()}".encode()
        dst = CLIENTS[0] if td.role == "client" else ADDR[td.role]
        send = ["python3", "-c", "import socket,sys; socket.socket(socket.AF_INET, "
                "socket.SOCK_DGRAM).sendto(sys.argv[1].encode(), (sys.argv[2], int(sys.argv[3])))",
                token.decode(), dst, str(MARKER_PORT)]
        deadline = time.monotonic() + 10
        while not _has_marker(td.pcap, token):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{td.pcap}: the capture marker never arrived")
            self.sh(td.marker_from, *send)  # again: one datagram may be lost
            for _ in range(20):
                if _has_marker(td.pcap, token):
                    break
                time.sleep(0.05)
        self.stop(td.proc, signal.SIGINT)

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -------------------------------------------------------------- observation

    def firewall_and_routes(self) -> dict[str, tuple[str, str, str]]:
        """What `down` must restore: iptables-save (nft and legacy), routes and routing rules,
        per namespace."""
        state = {}
        for role in self.roles:
            nft = self.sh(role, "iptables-nft-save", check=False).stdout
            legacy = self.sh(role, "iptables-legacy-save", check=False).stdout
            routes = self.sh(role, "ip", "-4", "route", "show", "table", "all").stdout
            routes += self.sh(role, "ip", "-4", "rule").stdout
            state[role] = (_strip_comments(nft), _strip_comments(legacy), routes)
        return state

    # -------------------------------------------------------------- teardown

    def stop(self, p: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
             timeout: float = 15.0) -> int:
        if p.poll() is None:
            os.killpg(p.pid, sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        return p.returncode

    def close(self) -> None:
        for p in reversed(self.procs):
            try:
                self.stop(p, timeout=10.0)
            except ProcessLookupError:
                pass
        for name in reversed(self._created):
            netns.delete(name)
        self._created.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Lab":
        return self.build()

    def __exit__(self, *exc: object) -> None:
        self.close()


MARKER_PORT = 9  # discard: a capture's end marker (Lab.stop_tcpdump)


class Tcpdump:
    """A running tcpdump (Lab.start_tcpdump)."""

    def __init__(self, proc: subprocess.Popen[bytes], pcap: Path, role: str,
                 marker_from: str) -> None:
        self.proc, self.pcap, self.role, self.marker_from = proc, pcap, role, marker_from


def _has_marker(pcap: Path, token: bytes) -> bool:
    from nfreplay.errors import WireError
    from nfreplay.proto.pcapfile import open_capture

    try:
        with open_capture(pcap) as f:
            return any(frame.ip[9] == 17 and token in frame.ip for frame in f)
    except (OSError, WireError):
        return False  # not written yet


def _strip_comments(save: str) -> str:
    """iptables-save output without its timestamp comments and packet counters."""
    lines = []
    for line in save.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith(":"):
            line = line.split(" [", 1)[0]
        lines.append(line)
    return "\n".join(lines)
