"""What the lab tests share: waiting on conditions, load from the client namespace, what
the target logged, captures in the client namespace, the daemons' counters."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from nfreplay.proto import tcpip
from nfreplay.proto.pcapfile import open_capture
from tests.lab import netns
from tests.lab.servers import REDIS_PORT
from tests.lab.topology import ADDR, CLIENTS, COLLECTOR, Lab, Tcpdump

HERE = Path(__file__).parent
LOAD = HERE / "load.py"
HTTP_CLIENT = HERE / "clients" / "http.py"
FTP_CLIENT = HERE / "clients" / "ftp.py"


def in_client(lab: Lab, argv: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return netns.run_in(lab.ns["client"], argv, check=False, timeout=timeout, **kw)


def run_script(lab: Lab, script: Path, *args: str, timeout: float = 120) -> dict:
    done = in_client(lab, [sys.executable, str(script), *args], timeout=timeout)
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise AssertionError(f"{script.name} {args}: exit {done.returncode}\n{done.stderr}")


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


def counters(lab: Lab) -> dict[str, int]:
    return lab.online_status().get("counters", {})


def nonzero(c: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in c.items() if v}


def settled_counters(lab: Lab, timeout: float = 10.0) -> dict[str, int]:
    """Online counters from a snapshot taken after this call (snapshots are written about
    once a second), once no session is live any more or `timeout` passed."""
    since = time.time()
    c: dict[str, int] = {}

    def quiet() -> bool:
        nonlocal c
        st = lab.online_status()
        if st.get("stats_time", 0) <= since:
            return False
        c = st.get("counters", {})
        return c.get("sessions_live", 1) == 0

    wait_until(quiet, timeout, 0.3)
    return c or counters(lab)


def fidelity(name: str, got: int, want: int) -> float:
    share = 100.0 * got / want if want else 0.0
    print(f"fidelity {name}: {got}/{want} = {share:.1f} %")
    return share


def access_log(path: Path) -> dict[str, tuple[int, int, int]]:
    """uri -> (status, bytes_sent, request_length) from NGINX_FILES_CONF's log format."""
    entries = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:
                entries[parts[0]] = (int(parts[1]), int(parts[2]), int(parts[3]))
    return entries


def target_connections(lab: Lab, port: int) -> list[str]:
    """The target's own TCP connections on `port` with a client (state, peer), TIME-WAIT
    excluded: a replayed session closed as the client closed it leaves none."""
    out = lab.sh("target", "ss", "-Htan", "state", "all", f"( sport = :{port} )").stdout
    conns = []
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 5 and f[4].startswith("198.18.1.") and f[0] != "TIME-WAIT":
            conns.append(f"{f[0]} {f[4]} send-q={f[2]}")
    return conns


def report_unclosed(lab: Lab, port: int, wait: float = 3.0) -> list[str]:
    """Target connections still open `wait` s after the sessions ended (printed)."""
    conns: list[str] = []

    def closed() -> bool:
        nonlocal conns
        conns = target_connections(lab, port)
        return not conns

    wait_until(closed, wait, 0.5)
    print(f"target connections on :{port} not closed: {len(conns)} {conns[:6]}")
    return conns


def wait_target_log(target_log: Path, want: dict[str, tuple[int, int, int]],
                    timeout: float) -> dict[str, tuple[int, int, int]]:
    got: dict[str, tuple[int, int, int]] = {}

    def complete() -> bool:
        nonlocal got
        got = {u: e for u, e in access_log(target_log).items() if u in want}
        return len(got) == len(want)

    wait_until(complete, timeout)
    return got


def redis_cli(lab: Lab, stdin: str, *extra: str) -> subprocess.CompletedProcess:
    return in_client(lab, ["redis-cli", "-h", ADDR["online"], "-p", str(REDIS_PORT), *extra],
                     input=stdin, timeout=60)


def resp(*words: str) -> str:
    return f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)


def run_load(lab: Lab, tag: str, short: int, keepalive: int, per_conn: int = 5) -> dict:
    done = subprocess.run(
        ["ip", "netns", "exec", lab.ns["client"], sys.executable, str(LOAD),
         "--server", ADDR["online"], "--sources", ",".join(CLIENTS), "--tag", tag,
         "--short", str(short), "--keepalive", str(keepalive), "--per-conn", str(per_conn),
         "--threads", "8", "--deadline", "240"],
        capture_output=True, text=True, timeout=300)
    summary = json.loads(done.stdout)
    assert summary["failed"] == 0 and summary["unsent"] == 0, summary
    return summary


def paths(log: Path, tag: str) -> list[str]:
    if not log.exists():
        return []
    return [p for p in log.read_text().split() if f"/{tag}/" in p]


def wait_for(log: Path, tag: str, want: set[str], timeout: float) -> set[str]:
    deadline = time.monotonic() + timeout
    got: set[str] = set()
    while time.monotonic() < deadline:
        got = set(paths(log, tag))
        if want <= got:
            break
        time.sleep(0.25)
    return got


def status_json(lab: Lab, role: str) -> dict:
    done = lab.nfreplay(role, "nfreplay", "status", "--json", check=False)
    data = json.loads(done.stdout)
    assert done.returncode == data["verdict"]["code"], (done.returncode, data["verdict"])
    return data


def fresh_status(lab: Lab, role: str, counter: str, timeout: float = 5.0) -> dict:
    """`status --json` once the daemon published a snapshot with `counter` > 0 (snapshots
    are taken once a second, off the hot path)."""
    deadline = time.monotonic() + timeout
    while True:
        st = status_json(lab, role)
        daemons = st["daemons"]
        if (daemons and daemons[0]["counters"].get(counter, 0) > 0) or time.monotonic() > deadline:
            return st
        time.sleep(0.2)


def start_capture(lab: Lab) -> Tcpdump:
    """tcpdump in the client namespace: every IP packet addressed to this host (its MAC)
    from the target — which must be none — or from the online host — which proves the
    capture works."""
    return lab.start_tcpdump("client", "client", f"ether dst {lab.mac['client']} and ip and "
                             f"(src host {ADDR['target']} or src host {ADDR['online']})",
                             marker_from="online")


def count_captured(lab: Lab, td: Tcpdump) -> dict[str, int]:
    """Stop the capture (after everything before its end marker is written); TCP packets
    seen per source ("target", "online")."""
    lab.stop_tcpdump(td)
    names = {tcpip.ip2int(ADDR["target"]): "target", tcpip.ip2int(ADDR["online"]): "online"}
    seen = {"target": 0, "online": 0}
    with open_capture(td.pcap) as f:
        for frame in f:
            if frame.ip[9] == 6:
                seen[names[tcpip.parse(frame.ip).src]] += 1
    return seen


def wait_counters(read, done, what: str, timeout: float, log) -> dict:  # type: ignore[no-untyped-def]
    """`read()`'s counters once `done(counters)` holds; fails loudly, with `log()`, if never
    (`read` may fail or return {} while there is nothing to read yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            counters = read()
        except (OSError, ValueError, KeyError):
            counters = {}
        if counters and done(counters):
            return counters
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout} s: {counters}\n{log()}")
        time.sleep(0.05)


SCRAPE = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], " \
         "timeout=10).read().decode())"


def scrape(lab: Lab, role: str, address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics of `role`'s daemon, parsed by prometheus_client: {(name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    done = subprocess.run(["ip", "netns", "exec", lab.ns[role], sys.executable, "-c", SCRAPE,
                           f"http://{address}/metrics"], capture_output=True, text=True,
                          timeout=30, check=True)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(done.stdout) for s in f.samples}


# -- a lab that checks source addresses like a cloud network (test_cloud, test_containers)

PORTS = {"client": CLIENTS, "online": [ADDR["online"]], "target": [ADDR["target"]],
         "assist": [ADDR["assist"]], "kollector": [COLLECTOR]}  # bridge port p<first letter>


def vpc_source_check(lab: Lab) -> None:
    """Each bridge port may only send IPv4 from its own addresses (ARP passes)."""
    rules = ["table bridge vpc {", " chain forward {",
             "  type filter hook forward priority 0; policy accept;"]
    for role, own in PORTS.items():
        if role == "kollector" and "collector" not in lab.ns:
            continue
        rules.append(f"  iifname \"p{role[0]}\" ip saddr != {{ {', '.join(own)} }} "
                     "counter drop")
    rules += [" }", "}"]
    netns_nft(lab, "\n".join(rules))


def netns_nft(lab: Lab, script: str) -> None:
    subprocess.run(["ip", "netns", "exec", lab.switch, "nft", "-f", "-"], input=script,
                   text=True, check=True)


def host_state(lab: Lab) -> dict[str, object]:
    """What `down` must restore on both hosts: firewall, routes, rules, devices, sysctls."""
    links = {role: lab.sh(role, "ip", "-o", "link", "show").stdout.count(": nfr")
             for role in ("online", "target")}
    return {"firewall": lab.firewall_and_routes(), "links": links}
