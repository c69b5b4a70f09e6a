"""nfreplay next to tcpcopy + intercept under `hey` (run by hand, as root; not a test).

    .venv/bin/python -m tests.bench.hey_bench [--short-rates 2000,5000,10000,0] [--duration 10]
        [--ka-rates 20000,0] [--online-args "--workers 2"] [--assist-args ARGS]
        [--tcpcopy BIN --intercept BIN [--rounds N]] [--paths link,tunnel,mirror]
    .venv/bin/python -m tests.bench.hey_bench --quick ...   # short 2000/s, ka 20000/s, 5 s each
    .venv/bin/python -m tests.bench.hey_bench --paths link,tunnel,mirror ...   # nfreplay's ways

Builds the four-namespace lab (tests/lab/topology.py) with nginx on online and target; per tool
sets up its replay path, runs the ladder, and tears the path down before the next tool. nfreplay:
Lab.start_replay. tcpcopy: the same `nfreplay target up` route on the target; on the assistant
`iptables -t raw -I PREROUTING -p tcp -s 198.18.0.3 --sport 80 -d 198.18.1.0/24 -j NFQUEUE
--queue-num 0` and intercept (:36524); on online `tcpcopy -x 198.18.0.2:80-198.18.0.3:80 -s
198.18.0.4` (the clients' addresses kept, as nfreplay keeps them). `--paths` adds nfreplay's
other ways as tools of their own, each compared with link delivery (tool "nfreplay") in a last
block: tunnel (Lab.start_tunnel_replay: `--deliver tunnel`, VXLAN to the target, the
colocated assist there) and mirror (nfreplay-online on the mirror input in a collector
namespace, Lab(collector=True), fed by the kernel's VXLAN copies of the online host's eth0,
Lab.mirror, only while that tool runs, replaying through the same assistant).

A step is `hey -z <duration>s` from the client namespace to the online nginx, short connections
(`-disable-keepalive`) or keep-alive; throttled: 50 workers at rate/50 q/s each (hey's -q is per
worker); rate 0: unthrottled, 100 workers. Each (tool, step) has its own URL path, counted in both
nginx access logs once the target's count has not grown for 2 s (at most 20 s).

    offer/s        rate asked of hey ("max" = unthrottled)    hey req  requests hey made
    online/target  lines with the step's path in the online / target access log
    ach/s          online lines / duration     fidelity  target / online (1.0000 = all replayed)
    onl/ast s/10k  CPU s (user+sys of the process and its children, drain included) of the online
                   tool (nfreplay-online / tcpcopy) and the assistant tool (nfreplay-assist /
                   intercept) per 10 000 online requests
    box%           the whole machine busy (/proc/stat, all CPUs; hey and both nginx share it)
    shed           delta of nfreplay-online's `sessions_shed` counter ("-" if it has none)

With both tools a last block sets their CPU per 10k and fidelity side by side, and the online
tools' system CPU per 10k (nf sys, tc sys: the kernel's share, which over veth includes the
target's whole receive path, run inside the send). Timings on a shared VM drift by 10-15 % from
minute to minute: `--rounds N` runs the ladders N times, the tools taking turns, and compares
medians, each round's nfreplay against the tcpcopy run next to it. Exit code 0 when
every step of every tool ran, else 1; everything is torn down in `finally`.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tests.lab import netns
from tests.lab.topology import ADDR, CLIENT_NET, COLLECTOR, Lab

TICK = os.sysconf("SC_CLK_TCK")
CTL_PORT = 36524
NFQ_RULE = ["PREROUTING", "-p", "tcp", "-s", ADDR["target"], "--sport", "80", "-d", CLIENT_NET,
            "-j", "NFQUEUE", "--queue-num", "0"]
COLS = [("tool", 8), ("kind", 5), ("offer/s", 7), ("hey req", 8), ("online", 8), ("target", 8),
        ("ach/s", 7), ("fidelity", 8), ("onl s/10k", 9), ("ast s/10k", 9), ("box%", 5),
        ("shed", 5)]
Popen = subprocess.Popen[bytes]
Replay = tuple[Popen, Popen, Callable[[], list[str]]]  # online, assist, teardown


@dataclass
class Row:
    tool: str
    kind: str
    rate: int
    duration: float
    hey_req: int = 0
    online: int = 0
    target: int = 0
    cpu_online: float = 0.0
    cpu_online_sys: float = 0.0  # of cpu_online, in the kernel (the target's receive path too)
    cpu_assist: float = 0.0
    box: float = 0.0
    shed: int | None = None
    round: int = 1

    @property
    def fidelity(self) -> float:
        return self.target / self.online if self.online else float("nan")

    def per10k(self, cpu: float) -> float:
        return cpu / self.online * 10000 if self.online else float("nan")

    def cells(self) -> list[str]:
        return [self.tool, self.kind, str(self.rate or "max"), str(self.hey_req),
                str(self.online), str(self.target), f"{self.online / self.duration:.0f}",
                f"{self.fidelity:.4f}", f"{self.per10k(self.cpu_online):.3f}",
                f"{self.per10k(self.cpu_assist):.3f}", f"{self.box:.0f}",
                "-" if self.shed is None else str(self.shed)]


def fmt(cells: list[str]) -> str:
    return " ".join(c.rjust(w) for c, (_, w) in zip(cells, COLS, strict=True))


def tree_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU s (utime+cutime, stime+cstime) of `pid` and its live descendants
    (0 if it is gone)."""
    stat: dict[int, tuple[int, float, float]] = {}
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{int(d)}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
        except (ValueError, OSError):
            continue
        stat[int(d)] = (int(f[1]), (int(f[11]) + int(f[13])) / TICK,
                         (int(f[12]) + int(f[14])) / TICK)
    user = system = 0.0
    todo, seen = [pid], set()
    while todo and len(seen) < 10000:
        p = todo.pop()
        if p not in seen and p in stat:
            seen.add(p)
            user, system = user + stat[p][1], system + stat[p][2]
            todo.extend(c for c, (ppid, _, _) in stat.items() if ppid == p)
    return user, system


def comm(pid: int) -> str:
    path = Path(f"/proc/{pid}/comm")
    return path.read_text().strip() if path.exists() else "?"


def box_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies summed over all CPUs; busy leaves out idle and iowait."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:9]]
    return sum(f) - f[3] - f[4], sum(f)


def count(path: Path, start: int, prefix: str) -> int:
    """Complete access-log lines ($request_uri) from byte `start` that begin with `prefix`."""
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read()
    p = prefix.encode()
    return sum(1 for ln in data[:data.rfind(b"\n") + 1].split(b"\n") if ln.startswith(p))


def iptables_root() -> list[str]:
    out = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return [ln.split(" [", 1)[0] for ln in out.splitlines() if not ln.startswith("#")]


def wait_ss(lab: Lab, role: str, argv: list[str], proc: Popen, what: str) -> None:
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode} before it was ready")
        if lab.sh(role, "ss", *argv, check=False).stdout.strip():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not ready after 10 s")


def _start_nf(lab: Lab, start: Callable[..., tuple[Popen, Popen]], a: argparse.Namespace
              ) -> Replay:
    """nfreplay's path as `start` (a Lab method) sets it up, with the bench's extra flags."""
    try:
        assist, online = start(80, *shlex.split(a.online_args),
                               assist_extra=shlex.split(a.assist_args))
    except BaseException:  # stop what did start, so the next tool meets a clean lab
        for proc in lab.procs:
            if "nfreplay-" in " ".join(map(str, proc.args)):
                lab.stop(proc, timeout=10.0)
        lab.nfreplay("target", "nfreplay", "target", "down", check=False)
        raise

    def down() -> list[str]:
        rcs = dict(zip(("online", "assist"), lab.stop_replay(assist, online), strict=True))
        return [f"nfreplay-{n} exited {rc}" for n, rc in rcs.items() if rc]
    return online, assist, down


def start_nfreplay(lab: Lab, a: argparse.Namespace) -> Replay:
    return _start_nf(lab, lab.start_replay, a)


def start_nf_tunnel(lab: Lab, a: argparse.Namespace) -> Replay:
    """nfreplay with tunnelled delivery and the assist colocated on the target."""
    return _start_nf(lab, lab.start_tunnel_replay, a)



def start_nf_mirror(lab: Lab, a: argparse.Namespace) -> Replay:
    """nfreplay-online on the mirror input in the collector, the online host's eth0 mirrored
    to it as VXLAN, the same assistant and target route as nfreplay's."""
    started: list[Popen] = []

    def down() -> list[str]:
        problems = [f"nfreplay-{n} exited {rc}" for n, p in zip(("online", "assist"), started)
                    if (rc := lab.stop(p, timeout=10.0))]
        lab.nfreplay("target", "nfreplay", "target", "down", check=False)
        lab.unmirror()
        return problems

    try:
        lab.mirror()
        lab.nfreplay("target", "nfreplay", "target", "up", "--clients", CLIENT_NET,
                     "--via", ADDR["assist"])
        assist = lab.start_assist("--online", COLLECTOR, *shlex.split(a.assist_args))
        started.append(assist)
        online = lab.start_online("--input", "vxlan", *shlex.split(a.online_args),
                                  host="collector")
        started.insert(0, online)
    except BaseException:
        down()
        raise
    return online, assist, down


def start_tcpcopy(lab: Lab, a: argparse.Namespace) -> Replay:
    state: dict[str, Popen | bool] = {}
    logs = {n: lab.dir / f"{n}.daemon.log" for n in ("tcpcopy", "intercept")}

    def down() -> list[str]:
        problems = []
        for name in ("tcpcopy", "rule", "intercept"):  # the rule goes before intercept stops
            p = state.pop(name, None)
            if name == "rule" and p and lab.sh("assist", "iptables", "-t", "raw", "-D",
                                               *NFQ_RULE, check=False).returncode:
                problems.append("could not delete the NFQUEUE rule")
            elif isinstance(p, subprocess.Popen):
                rc = lab.stop(p, timeout=10.0)
                text = logs[name].read_text(errors="replace") if logs[name].exists() else ""
                lines = [ln.split("] ", 1)[-1] for ln in text.splitlines()]
                bad = [ln for ln in text.splitlines()
                       if re.search(r"\[(error|crit|alert|emerg)\]", ln)]
                if rc not in (0, -signal.SIGTERM) or bad:
                    problems.append(f"{name} exited {rc}, {len(bad)} error lines; log tail: "
                                    f"{bad[-3:] or lines[-5:]}")
                if name == "tcpcopy":  # its own end-of-run counters, as tcpcopy users read them
                    keys = ("conns:", "send syn:", "retransmit:", "total captured")
                    print("   tcpcopy log: " + "; ".join(ln for ln in lines if ln.startswith(keys)),
                          flush=True)
        if state.pop("route", False):
            lab.nfreplay("target", "nfreplay", "target", "down", check=False)
        return problems

    try:
        lab.nfreplay("target", "nfreplay", "target", "up", "--clients", CLIENT_NET,
                     "--via", ADDR["assist"])
        state["route"] = True
        lab.sh("assist", "iptables", "-t", "raw", "-I", *NFQ_RULE)
        state["rule"] = True
        icpt = state["intercept"] = lab.spawn(
            "assist", [a.intercept, "-l", str(logs["intercept"])], "intercept.log")
        wait_ss(lab, "assist", ["-Hltn", f"sport = :{CTL_PORT}"], icpt, "intercept")
        tcpc = state["tcpcopy"] = lab.spawn(
            "online", [a.tcpcopy, "-x", f"{ADDR['online']}:80-{ADDR['target']}:80",
                       "-s", ADDR["assist"], "-l", str(logs["tcpcopy"])], "tcpcopy.log")
        wait_ss(lab, "online", ["-Htn", "state", "established", f"dport = :{CTL_PORT}"], tcpc,
                "tcpcopy (its connection to intercept)")
        time.sleep(1.0)  # let tcpcopy finish its start-up once connected
    except BaseException:
        down()
        raise
    return tcpc, icpt, down


def run_hey(lab: Lab, url: str, duration: float, rate: int, keepalive: bool
            ) -> tuple[int, list[str]]:
    """hey in the client namespace: (requests made = responses + errors, problems)."""
    c = 50 if rate else 100
    argv = ["hey", "-z", f"{duration:g}s", "-c", str(c), *(["-q", f"{rate / c:g}"] if rate else []),
            *([] if keepalive else ["-disable-keepalive"]), url]
    try:
        done = netns.run_in(lab.ns["client"], argv, check=False, timeout=duration + 60)
    except subprocess.TimeoutExpired:
        return 0, ["hey did not finish in time"]
    total, problems, section = 0, [], ""
    for ln in done.stdout.splitlines():
        section = ln if ln.endswith("distribution:") else section
        m = re.match(r"\s*\[(\d+)\]\s+(\S+)", ln)
        if m and section.startswith("Status") and m.group(2).isdigit():
            total += int(m.group(2))
            if m.group(1) != "200":
                problems.append(f"hey: {m.group(2)} responses {m.group(1)}")
        elif m and section.startswith("Error"):
            total += int(m.group(1))
            problems.append(f"hey error: {ln.strip()[:160]}")
    if done.returncode or not total:
        problems.append(f"hey exited {done.returncode}: {(done.stderr or done.stdout)[-400:]!r}")
    return total, problems[:5]


def step(lab: Lab, a: argparse.Namespace, tool: str, kind: str, n: int, rate: int,
         online_p: Popen, assist_p: Popen, logs: dict[str, Path],
         rnd: int = 1) -> tuple[Row, list[str]]:
    prefix = f"/b{tool}-{kind}{n}r{rnd}/"
    row = Row(tool, kind, rate, a.duration, round=rnd)
    start = {k: p.stat().st_size for k, p in logs.items()}

    def shed() -> int | None:
        if tool not in HOSTS:
            return None
        return lab.online_status(HOSTS[tool]).get("counters", {}).get("sessions_shed")
    shed0, box0 = shed(), box_jiffies()
    cpu0 = (tree_cpu(online_p.pid), tree_cpu(assist_p.pid))
    row.hey_req, problems = run_hey(lab, f"http://{ADDR['online']}{prefix}", a.duration, rate,
                                    kind == "ka")
    last, quiet_since = -1, time.monotonic()
    deadline = quiet_since + 20.0
    while time.monotonic() < deadline:  # drain: the target's count unchanged for 2 s
        now = count(logs["target"], start["target"], prefix)
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= 2.0:
            break
        time.sleep(0.2)
    cpu1 = (tree_cpu(online_p.pid), tree_cpu(assist_p.pid))
    row.cpu_online = sum(cpu1[0]) - sum(cpu0[0])
    row.cpu_online_sys = cpu1[0][1] - cpu0[0][1]
    row.cpu_assist = sum(cpu1[1]) - sum(cpu0[1])
    box1 = box_jiffies()
    row.box = 100.0 * (box1[0] - box0[0]) / max(box1[1] - box0[1], 1)
    row.online = count(logs["online"], start["online"], prefix)
    row.target = count(logs["target"], start["target"], prefix)
    shed1 = shed()
    row.shed = shed1 - shed0 if shed0 is not None and shed1 is not None else None
    return row, problems


def run_tool(lab: Lab, a: argparse.Namespace, tool: str, logs: dict[str, Path],
             rows: list[Row], rnd: int = 1) -> bool:
    """Set up `tool`'s replay path, run the ladder, tear down; True if every step ran."""
    ladder = [("short", r) for r in a.short_rates] + [("ka", r) for r in a.ka_rates]
    print(f"\n== {tool}" + (f", round {rnd} of {a.rounds}" if a.rounds > 1 else ""), flush=True)
    try:
        online_p, assist_p, down = STARTERS[tool](lab, a)
    except Exception as exc:  # reported; the next tool still runs
        print(f"   !! {tool}: setup failed: {exc}", flush=True)
        return False
    ok = True
    try:
        print(f"   pids: online {online_p.pid} ({comm(online_p.pid)}), assist {assist_p.pid} "
              f"({comm(assist_p.pid)})\n{fmt([c for c, _ in COLS])}", flush=True)
        for n, (kind, rate) in enumerate(ladder, 1):
            row, problems = step(lab, a, tool, kind, n, rate, online_p, assist_p, logs, rnd)
            rows.append(row)
            print(fmt(row.cells()), flush=True)
            for p in problems:
                print(f"   !! {p}", flush=True)
            ok = ok and row.hey_req > 0
            dead = [f"{nm} exited {p.returncode}" for nm, p in
                    (("online", online_p), ("assist", assist_p)) if p.poll() is not None]
            if dead:
                print(f"   !! {tool}: {', '.join(dead)}; {len(ladder) - n} steps not run")
                ok = False
                break
    finally:
        problems = down()
        for p in problems:
            print(f"   !! {tool} teardown: {p}", flush=True)
    return ok and not problems


STARTERS: dict[str, Callable[[Lab, argparse.Namespace], Replay]] = {
    "nfreplay": start_nfreplay, "nf-tunnel": start_nf_tunnel, "nf-mirror": start_nf_mirror,
    "tcpcopy": start_tcpcopy}
#: --paths: nfreplay's ways to the target, as tools.
PATHS = {"link": "nfreplay", "tunnel": "nf-tunnel", "mirror": "nf-mirror"}
HOSTS = {"nfreplay": "online", "nf-tunnel": "online", "nf-mirror": "collector"}  # nfreplay-online's


def compare(rows: list[Row], one: str = "nfreplay", other: str = "tcpcopy") -> None:
    """Per step: `one`'s and `other`'s figures side by side (nf, tc). With several rounds,
    the medians, and the ratio as the median of each round's own ratio (both tools measured
    minutes apart, so slow drifts of the machine cancel) with its range."""
    steps: dict[tuple[str, int], dict[str, list[Row]]] = {}
    for r in rows:
        steps.setdefault((r.kind, r.rate), {}).setdefault(r.tool, []).append(r)
    rounds = max((r.round for r in rows), default=1)
    print(f"\n{one} (nf) vs {other} (tc): CPU s per 10k online requests, ratio = {one} / {other}"
          + (f" (medians of {rounds} rounds; the ratio's range in brackets)" if rounds > 1 else "")
          + f"\n{'kind':>5} {'offer/s':>7} {'nf onl':>8} {'tc onl':>8} {'ratio':>6} "
          f"{'nf ast':>8} {'tc ast':>8} {'ratio':>6} {'nf fid':>7} {'tc fid':>7} "
          f"{'nf sys':>7} {'tc sys':>7}" + ("  onl ratio range" if rounds > 1 else ""))
    for (kind, rate), by_tool in steps.items():
        nf, tc = by_tool.get(one, []), by_tool.get(other, [])
        if not nf or not tc:
            continue
        pairs = [(x, y) for x in nf for y in tc if x.round == y.round]

        def med(values: list[float]) -> float:
            return statistics.median(values) if values else float("nan")

        def ratio(cpu: Callable[[Row], float]) -> list[float]:
            return [x.per10k(cpu(x)) / y.per10k(cpu(y)) for x, y in pairs if y.per10k(cpu(y))]

        onl, ast = ratio(lambda r: r.cpu_online), ratio(lambda r: r.cpu_assist)
        cells = [f"{med([x.per10k(cpu(x)) for x in nf]):8.3f} {med([y.per10k(cpu(y)) for y in tc]):8.3f} "
                 f"{med(rs):6.2f}" for cpu, rs in (
                     (lambda r: r.cpu_online, onl), (lambda r: r.cpu_assist, ast))]
        spread = f"  [{min(onl):.2f} .. {max(onl):.2f}]" if rounds > 1 and onl else ""
        print(f"{kind:>5} {str(rate or 'max'):>7} {' '.join(cells)} "
              f"{med([x.fidelity for x in nf]):7.4f} {med([y.fidelity for y in tc]):7.4f} "
              f"{med([x.per10k(x.cpu_online_sys) for x in nf]):7.3f} "
              f"{med([y.per10k(y.cpu_online_sys) for y in tc]):7.3f}{spread}")


def rates(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short-rates", type=rates, default=rates("2000,5000,10000,0"),
                   help="short-connection request rates/s, 0 = unthrottled (2000,5000,10000,0)")
    p.add_argument("--ka-rates", type=rates, default=rates("20000,0"),
                   help="keep-alive request rates/s, 0 = unthrottled (20000,0)")
    p.add_argument("--duration", type=float, default=10.0, help="hey seconds per step (10)")
    p.add_argument("--quick", action="store_true", help="short 2000/s and ka 20000/s, 5 s each")
    p.add_argument("--rounds", type=int, default=1,
                   help="run each tool's ladder this many times, the tools taking turns; the "
                        "comparison shows medians (1)")
    p.add_argument("--online-args", default="", help="extra nfreplay-online flags, one string")
    p.add_argument("--assist-args", default="", help="extra nfreplay-assist flags, one string "
                   "(e.g. \"--record-responses /tmp/rec-target\")")
    p.add_argument("--paths", default="link",
                   help="nfreplay's ways to the target to bench, comma list of " + ", ".join(PATHS)
                   + " (link)")
    p.add_argument("--tcpcopy", help="tcpcopy binary: also bench tcpcopy + intercept")
    p.add_argument("--intercept", help="intercept binary (NFQUEUE build), with --tcpcopy")
    a = p.parse_args(argv)
    if a.quick:
        a.short_rates, a.ka_rates, a.duration = [2000], [20000], 5.0
    if bool(a.tcpcopy) != bool(a.intercept):
        p.error("--tcpcopy and --intercept go together")
    if os.geteuid() != 0:
        print("hey_bench: needs root (network namespaces)", file=sys.stderr)
        return 1
    if shutil.which("hey") is None:
        print("hey not found: apt-get install -y hey", flush=True)
        subprocess.run(["apt-get", "install", "-y", "hey"], check=False, timeout=600)
        if shutil.which("hey") is None:
            return 1
    unknown = [x for x in a.paths.split(",") if x not in PATHS]
    if unknown:
        p.error(f"--paths: unknown {', '.join(unknown)} (choose from {', '.join(PATHS)})")
    tools = [PATHS[x] for x in dict.fromkeys(a.paths.split(","))] + (
        ["tcpcopy"] if a.tcpcopy else [])

    def terminate(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    t0, root_fw = time.monotonic(), iptables_root()
    lab = Lab(prefix=f"hb{os.getpid() % 100000}", collector="mirror" in a.paths.split(","))
    rows: list[Row] = []
    ok = True
    try:
        print(f"lab {lab.prefix}: {os.cpu_count()} CPUs, load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; tools {', '.join(tools)}; "
              f"short {a.short_rates}, ka {a.ka_rates} (0 = unthrottled), {a.duration:g} s each"
              + (f"; nfreplay-online extra: {a.online_args}" if a.online_args else "")
              + (f"; nfreplay-assist extra: {a.assist_args}" if a.assist_args else ""), flush=True)
        lab.build()
        # hey binds no address, so all its connections come from one: widen the port range.
        lab.sh("client", "sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000")
        logs = {role: lab.start_nginx(role) for role in ("online", "target")}
        for rnd in range(1, a.rounds + 1):
            for tool in tools:
                ok = run_tool(lab, a, tool, logs, rows, rnd) and ok
        if "tcpcopy" in tools and "nfreplay" in tools:
            compare(rows)
        for tool in tools:
            if tool.startswith("nf-") and "nfreplay" in tools:
                compare(rows, tool, "nfreplay")
    except KeyboardInterrupt as exc:
        print(f"\n!! interrupted: {exc}", flush=True)
        ok = False
    finally:
        lab.close()
        left = [ln for ln in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                            text=True).stdout.splitlines()
                if ln.startswith(lab.prefix)]
        fw = "unchanged" if iptables_root() == root_fw else "CHANGED"
        gone = f"{len(left)} {left}" if left else "0"
        print(f"\nteardown: namespaces of this run left: {gone}; root iptables-save {fw}; "
              f"run took {time.monotonic() - t0:.0f} s", flush=True)
        ok = ok and not left and fw == "unchanged"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
