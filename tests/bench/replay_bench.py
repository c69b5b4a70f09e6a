"""End-to-end replay benchmark in the four-namespace lab (run by hand, as root; not a test).

    .venv/bin/python -m tests.bench.replay_bench [--rates 500,1000,2000,4000] [--duration 10]
    .venv/bin/python -m tests.bench.replay_bench --quick          # 2 short steps, ~25 s
    .venv/bin/python -m tests.bench.replay_bench --rev HEAD       # daemons from a commit, not
                                                                  # the (shared) working tree

Builds the lab as tests/lab/demo.py does (nginx on online and target, `nfreplay target up`,
nfreplay-assist, nfreplay-online), then for each request rate drives an open-loop, paced HTTP/1.1
load from the client namespace (a single-threaded epoll generator in this file: sessions start on
a fixed schedule whether or not earlier ones finished; a mix of keep-alive connections of several
requests and short connections, half closed by the server and half by the client; every path
distinct per step), waits until the replay has drained, and prints one line per step:

    offered and achieved request rates, fidelity (target log ∩ online log / online log),
    packets/s through nfreplay-online, CPU and peak RSS of every process involved, µs per packet,
    capture and NFQUEUE drops, and the online counters that explain losses.

The machine is shared: the "box" and "other" columns say how busy it was and how much of that
was not ours. A daemon that exits or stops publishing stats (a wedged loop) ends the run early,
with a "!!" line and exit code 1. Everything is torn down in `finally`; the last line says
whether any namespace of this run is left. The generator is this file's own (wrk is not used:
it cannot pace open-loop, bind several source addresses or let the client close first).
"""

from __future__ import annotations

import argparse
import errno
import heapq
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TICK = os.sysconf("SC_CLK_TCK")
IP_BIND_ADDRESS_NO_PORT = 24

# ============================================================================ load generator
# Runs inside the client namespace (`--gen JSON`); prints one JSON summary on stdout.


class _Conn:
    __slots__ = ("sock", "paths", "idx", "mode", "buf", "connecting", "t_sent")

    def __init__(self, sock: socket.socket, paths: list[str], mode: str) -> None:
        self.sock = sock
        self.paths = paths
        self.idx = 0
        self.mode = mode  # "ka" keep-alive, "sc" server closes, "cc" client closes
        self.buf = b""
        self.connecting = True
        self.t_sent = 0.0


def generate(a: dict[str, Any]) -> dict[str, Any]:
    """Open-loop paced load: session i starts at t0 + (requests planned before it) / rate."""
    server, port, sources = a["server"], a["port"], a["sources"]
    rate, duration, max_requests = a["rate"], a["duration"], a["max_requests"]
    ka_share, per_conn, gap = a["ka_share"], a["per_conn"], a["gap"]
    max_open, drain, tag = a["max_open"], a["drain"], a["tag"]
    host = "Host: bench\r\n".encode()

    ep = select.epoll()
    conns: dict[int, _Conn] = {}
    timers: list[tuple[float, int]] = []  # (when, fd): next request of a keep-alive connection
    st: dict[str, Any] = {"planned": 0, "sessions": 0, "ok": 0, "failed": 0, "skipped": 0, "unfinished": 0,
          "connect_errors": 0, "late_max": 0.0}
    errors: dict[str, int] = {}
    lat: list[float] = []
    ka_reqs = 0
    n_short = 0
    sess = 0

    def request(c: _Conn) -> None:
        path = c.paths[c.idx]
        last = c.idx + 1 == len(c.paths)
        close = b"Connection: close\r\n" if (c.mode == "sc" and last) else b""
        c.sock.send(b"GET " + path.encode() + b" HTTP/1.1\r\n" + host + close + b"\r\n")
        c.t_sent = time.monotonic()

    def finish(fd: int, c: _Conn, failed: bool, why: str = "") -> None:
        if failed:
            st["failed"] += len(c.paths) - c.idx
            errors[why] = errors.get(why, 0) + 1
        try:
            ep.unregister(fd)
        except OSError:
            pass
        c.sock.close()
        del conns[fd]

    t0 = time.monotonic()
    stop_at = t0 + duration
    next_start = t0
    starting = True
    hard_stop = stop_at + drain
    while True:
        now = time.monotonic()
        if starting:
            while next_start <= now:
                if now >= stop_at or st["planned"] >= max_requests:
                    starting = False
                    break
                # Keep-alive whenever keep-alive requests are below their share so far.
                ka = ka_reqs < ka_share * (st["planned"] + per_conn)
                n = per_conn if ka else 1
                n = min(n, max_requests - st["planned"])
                sess += 1
                paths = [f"/{tag}/{sess}/{j}" for j in range(n)]
                st["planned"] += n
                st["late_max"] = max(st["late_max"], now - next_start)
                next_start += n / rate
                if ka:
                    ka_reqs += n
                    mode = "ka"
                else:
                    n_short += 1
                    mode = "sc" if n_short % 2 else "cc"
                if len(conns) >= max_open:
                    st["skipped"] += n
                    continue
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    s.bind((sources[sess % len(sources)], 0))
                    rc = s.connect_ex((server, port))
                except OSError as exc:
                    rc = exc.errno or -1
                if rc not in (0, errno.EINPROGRESS):
                    s.close()
                    st["connect_errors"] += 1
                    st["failed"] += n
                    why = errno.errorcode.get(rc, str(rc))
                    errors[why] = errors.get(why, 0) + 1
                    continue
                st["sessions"] += 1
                c = _Conn(s, paths, mode)
                conns[s.fileno()] = c
                ep.register(s.fileno(), select.EPOLLOUT)
        if not starting and not conns:
            break
        if now >= hard_stop:
            for fd, c in list(conns.items()):
                st["unfinished"] += len(c.paths) - c.idx
                finish(fd, c, False)
            break
        while timers and timers[0][0] <= now:
            _, fd = heapq.heappop(timers)
            tc = conns.get(fd)
            if tc is None:
                continue
            c = tc
            try:
                request(c)
                ep.modify(fd, select.EPOLLIN)
            except OSError as exc:
                finish(fd, c, True, errno.errorcode.get(exc.errno or 0, "send"))
        wake = hard_stop
        if starting:
            wake = min(wake, next_start)
        if timers:
            wake = min(wake, timers[0][0])
        timeout = max(0.0, min(wake - time.monotonic(), 0.05))
        for fd, _ev in ep.poll(timeout, 256):
            pc = conns.get(fd)
            if pc is None:
                continue
            c = pc
            if c.connecting:
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    st["connect_errors"] += 1
                    finish(fd, c, True, errno.errorcode.get(err, str(err)))
                    continue
                c.connecting = False
                try:
                    request(c)
                    ep.modify(fd, select.EPOLLIN)
                except OSError as exc:
                    finish(fd, c, True, errno.errorcode.get(exc.errno or 0, "send"))
                continue
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                finish(fd, c, True, errno.errorcode.get(exc.errno or 0, "recv"))
                continue
            if not data:
                finish(fd, c, True, "eof")
                continue
            buf = c.buf + data
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                c.buf = buf
                continue
            i = buf.find(b"Content-Length: ", 0, head_end)
            length = int(buf[i + 16:buf.index(b"\r\n", i)]) if i >= 0 else 0
            if len(buf) < head_end + 4 + length:
                c.buf = buf
                continue
            good = buf.startswith(b"HTTP/1.1 200")
            c.buf = buf[head_end + 4 + length:]
            lat.append(time.monotonic() - c.t_sent)
            if good:
                st["ok"] += 1
            else:
                st["failed"] += 1
                errors["status"] = errors.get("status", 0) + 1
            c.idx += 1
            if c.idx < len(c.paths):
                if gap > 0:
                    ep.modify(fd, 0)
                    heapq.heappush(timers, (time.monotonic() + gap, fd))
                else:
                    try:
                        request(c)
                    except OSError as exc:
                        finish(fd, c, True, errno.errorcode.get(exc.errno or 0, "send"))
            else:
                finish(fd, c, False)
    end = time.monotonic()
    ep.close()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    lat.sort()
    pct = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3, 2)) if lat else \
        (lambda q: None)
    st.update(elapsed=end - t0, send_window=min(duration, end - t0),
              cpu=ru.ru_utime + ru.ru_stime, maxrss_kb=ru.ru_maxrss, errors=errors,
              lat_p50_ms=pct(0.5), lat_p99_ms=pct(0.99), ka_requests=ka_reqs)
    return st


# ============================================================================ observation


def proc_cpu(pid: int, part: str = "both") -> float:
    """utime + stime of `pid` in seconds (0 if it is gone); `part` "user" or "sys" for one."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            rest = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    user, system = int(rest[11]) / TICK, int(rest[12]) / TICK
    return user if part == "user" else system if part == "sys" else user + system


def proc_hwm_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def box_cpu() -> tuple[float, float, float]:
    """(busy, softirq, total) CPU seconds summed over all CPUs since some origin.

    Only idle (and iowait) is taken from /proc/stat: on a tickless kernel it is measured
    precisely, while user/system there are tick samples that miss short bursts. Busy is then
    wall time × CPUs − idle; softirq is the tick-sampled column, as a rough indication."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    total = time.monotonic() * (os.cpu_count() or 1)
    return total - (f[3] + f[4]) / TICK, f[6] / TICK, total


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class Log:
    """An nginx access log ('$request_uri' per line), read from an offset."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def lines(self, start: int, prefix: str) -> list[str]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(start)
                data = fh.read()
        except OSError:
            return []
        cut = data.rfind(b"\n") + 1  # complete lines only
        p = prefix.encode()
        return [ln.decode() for ln in data[:cut].split(b"\n") if ln.startswith(p)]


# ============================================================================ the bench

LOSS = ("sessions_handshake_failed", "sessions_timed_out", "sessions_superseded",
        "responses_timed_out", "retransmits", "records_no_session")
MORE = ("packets_no_session", "packets_bad", "syn_retransmits", "stale_resets",
        "sessions_target_reset", "sessions_client_reset", "sessions_skipped_no_channel",
        "client_duplicates", "client_trimmed", "records_bad")

COLUMNS = [
    ("step", 4), ("offer/s", 7), ("cli ok/s", 8), ("onl/s", 6), ("fidel%", 7), ("tgt+", 4),
    ("cap pps", 7), ("snd pps", 7), ("cpu onl", 7), ("cpu ast", 7), ("cpu cli", 7),
    ("cpu ngx", 7), ("box%", 5), ("oth s", 5), ("us/pkt", 6), ("us/rec", 6), ("rss o/a MB", 10),
    ("capdrop", 7), ("nfq q/u", 7), ("hs_fail", 7), ("tmo", 4), ("supers", 6), ("resp_to", 7),
    ("retx", 5), ("rec_nos", 7), ("drain", 5),
]

LEGEND = """\
offer/s   requests/s the generator was asked for (open loop, schedule fixed in advance)
cli ok/s  requests answered 200 at the client / load seconds   onl/s  lines in the online nginx log / load s
fidel%    step paths in the target log ∩ online log, / online log   tgt+  target paths the online log lacks, plus duplicates
cap/snd pps  Δpackets_captured / Δpackets_sent of nfreplay-online per s, between its first and last
          stats snapshot (~1/s) inside the load window
cpu onl/ast/cli/ngx  CPU seconds of nfreplay-online, nfreplay-assist, the generator, both nginx (whole step incl. drain)
box%      machine busy over the step, % of 2 CPUs (includes softirq)   oth s  busy seconds not used by the processes above
us/pkt    nfreplay-online CPU µs per packet sent   us/rec  nfreplay-assist CPU µs per queued reply
rss o/a   VmHWM of nfreplay-online / nfreplay-assist   capdrop  Δcapture.dropped (libpcap ps_drop)
nfq q/u   Δqueue_dropped / Δuser_dropped of the assistant's NFQUEUE
hs_fail tmo supers resp_to retx rec_nos  Δ sessions_handshake_failed, sessions_timed_out, sessions_superseded,
          responses_timed_out, retransmits, records_no_session of nfreplay-online   drain  s waited after the load"""


def fmt_row(cells: list[str]) -> str:
    return " ".join(c.rjust(w) for c, (_, w) in zip(cells, COLUMNS))


class Bench:
    def __init__(self, lab: Any, a: argparse.Namespace) -> None:
        self.lab = lab
        self.a = a
        self.pids: dict[str, int] = {}
        self.failed = False
        self.logs: dict[str, Log] = {}
        self.online_stats = Path(lab.state_dir("online")) / f"online-{lab.prefix}.stats.json"
        self.assist_stats = Path(lab.state_dir("assist")) / f"assist-{lab.prefix}.stats.json"

    # -------------------------------------------------------------- samples

    def nfq(self) -> tuple[int, int]:
        done = self.lab.nfreplay("assist", "nfreplay", "status", "--json", check=False)
        try:
            queues = json.loads(done.stdout)["nfqueue"]["queues"]
        except (ValueError, KeyError, TypeError):
            return (0, 0)
        return (sum(q["queue_dropped"] for q in queues), sum(q["user_dropped"] for q in queues))

    def sample(self, with_nfq: bool = True) -> dict[str, Any]:
        busy, softirq, total = box_cpu()
        return {
            "mono": time.monotonic(),
            "cpu": {name: proc_cpu(pid) for name, pid in self.pids.items()},
            "sys": {name: proc_cpu(pid, "sys") for name, pid in self.pids.items()},
            "box": (busy, softirq, total),
            "online": read_json(self.online_stats),
            "assist": read_json(self.assist_stats),
            "nfq": self.nfq() if with_nfq else (0, 0),
        }

    def fresh_stats(self, after_wall: float, timeout: float = 3.0) -> bool:
        """Until both daemons published a snapshot taken after `after_wall` (they do ~1/s);
        False if one did not (a daemon that stopped publishing is dead or wedged)."""
        deadline = time.monotonic() + timeout
        while True:
            if all(read_json(p).get("time", 0) > after_wall
                   for p in (self.online_stats, self.assist_stats)):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def health(self) -> list[str]:
        """Why a daemon is not working, if it is not: exited, or its stats file is old."""
        bad = []
        for name, path in (("online", self.online_stats), ("assist", self.assist_stats)):
            pid = self.pids[name]
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    state = fh.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                bad.append(f"nfreplay-{name} (pid {pid}) has exited")
                continue
            age = time.time() - read_json(path).get("time", 0)
            if age > 3.0:
                cpu0 = proc_cpu(pid)
                time.sleep(1.0)
                bad.append(f"nfreplay-{name} (pid {pid}, state {state}, using "
                           f"{100 * (proc_cpu(pid) - cpu0):.0f} % CPU) has not published stats "
                           f"for {age:.0f} s: its loop is wedged; later figures are not valid")
        return bad

    # -------------------------------------------------------------- one step

    def step(self, n: int, rate: int) -> tuple[list[str], list[str], list[str]]:
        a, lab = self.a, self.lab
        tag = f"{lab.prefix}s{n}r{rate}"
        prefix = f"/{tag}/"
        start = {role: log.size() for role, log in self.logs.items()}
        self.fresh_stats(time.time())
        s0 = self.sample()
        gen_args = {
            "server": self.addr["online"], "port": 80, "sources": self.clients, "tag": tag,
            "rate": rate, "duration": a.duration,
            "max_requests": min(a.max_requests, int(rate * a.duration)),
            "ka_share": a.ka_share, "per_conn": a.per_conn, "gap": a.gap_ms / 1000,
            "max_open": a.max_open, "drain": 5.0,
        }
        wall0 = time.time()
        proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.ns["client"], sys.executable, "-m",
             "tests.bench.replay_bench", "--gen", json.dumps(gen_args)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # While the load runs, keep every stats snapshot of nfreplay-online: packet rates are
        # taken between the first and the last snapshot inside the load window.
        snaps: dict[float, dict[str, int]] = {}
        kill_at = time.monotonic() + a.duration + 40
        while proc.poll() is None and time.monotonic() < kill_at:
            doc = read_json(self.online_stats)
            if doc.get("time"):
                snaps[doc["time"]] = doc.get("counters", {})
            time.sleep(0.2)
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
        try:
            gen = json.loads(out)
        except ValueError:
            raise RuntimeError(f"generator exited {proc.returncode}: {err[-2000:]}") from None
        done_ok = proc.returncode == 0
        load_s = max(gen["send_window"], 1e-3)
        inside = sorted(t for t in snaps if wall0 + 0.5 <= t <= wall0 + load_s)
        if len(inside) < 2:  # too short a step: the snapshots bracketing it
            self.fresh_stats(time.time())
            inside = [s0["online"].get("time", 0)]
            snaps[inside[0]] = s0["online"].get("counters", {})
            doc = read_json(self.online_stats)
            inside.append(doc.get("time", 0))
            snaps[inside[1]] = doc.get("counters", {})
        oc0l, oc1l = snaps[inside[0]], snaps[inside[-1]]
        dt_load = inside[-1] - inside[0]

        # Drain: until the target logged every path the online nginx did, or its log stopped
        # growing for longer than response_timeout (3 s), at most drain_timeout.
        t_drain = time.monotonic()
        online_paths = set(self.logs["online"].lines(start["online"], prefix))
        last_size, last_growth = -1, time.monotonic()
        deadline = t_drain + a.drain_timeout
        while time.monotonic() < deadline:
            size = self.logs["target"].size()
            if size != last_size:
                last_size, last_growth = size, time.monotonic()
                if online_paths <= set(self.logs["target"].lines(start["target"], prefix)):
                    break
            elif time.monotonic() - last_growth >= a.quiet:
                break
            time.sleep(0.2)
        drain_s = time.monotonic() - t_drain
        self.fresh_stats(time.time())
        s2 = self.sample()

        # ---- figures
        online_lines = self.logs["online"].lines(start["online"], prefix)
        target_lines = self.logs["target"].lines(start["target"], prefix)
        online_paths, target_paths = set(online_lines), set(target_lines)
        seen = len(online_paths & target_paths)
        extra = len(target_paths - online_paths) + (len(target_lines) - len(target_paths))
        fidelity = 100.0 * seen / len(online_paths) if online_paths else float("nan")

        oc0, oc2 = s0["online"].get("counters", {}), s2["online"].get("counters", {})
        cap_pps = ((oc1l.get("packets_captured", 0) - oc0l.get("packets_captured", 0))
                   / max(dt_load, 1e-3))
        snd_pps = (oc1l.get("packets_sent", 0) - oc0l.get("packets_sent", 0)) / max(dt_load, 1e-3)

        def d(name: str) -> int:
            return oc2.get(name, 0) - oc0.get(name, 0)

        cpu = {k: s2["cpu"][k] - s0["cpu"][k] for k in self.pids}
        sysd = {k: s2["sys"][k] - s0["sys"][k] for k in self.pids}
        ngx = cpu["nginx-online"] + cpu["nginx-target"]
        busy = s2["box"][0] - s0["box"][0]
        total = s2["box"][2] - s0["box"][2]
        ours = cpu["online"] + cpu["assist"] + ngx + gen["cpu"]
        sent = d("packets_sent")
        ac0, ac2 = s0["assist"].get("counters", {}), s2["assist"].get("counters", {})
        queued = ac2.get("packets_queued", 0) - ac0.get("packets_queued", 0)
        capdrop = (s2["online"].get("extra", {}).get("capture", {}).get("dropped", 0)
                   - s0["online"].get("extra", {}).get("capture", {}).get("dropped", 0))
        nfq = (s2["nfq"][0] - s0["nfq"][0], s2["nfq"][1] - s0["nfq"][1])
        row = [
            str(n), str(rate), f"{gen['ok'] / load_s:.0f}", f"{len(online_lines) / load_s:.0f}",
            f"{fidelity:.2f}", str(extra), f"{cap_pps:.0f}", f"{snd_pps:.0f}",
            f"{cpu['online']:.2f}", f"{cpu['assist']:.2f}", f"{gen['cpu']:.2f}", f"{ngx:.2f}",
            f"{100 * busy / max(total, 1e-3):.0f}", f"{busy - ours:.1f}",
            f"{1e6 * cpu['online'] / sent:.1f}" if sent else "-",
            f"{1e6 * cpu['assist'] / queued:.1f}" if queued else "-",
            f"{proc_hwm_mb(self.pids['online']):.0f}/{proc_hwm_mb(self.pids['assist']):.0f}",
            str(capdrop), f"{nfq[0]}/{nfq[1]}", *(str(d(k)) for k in LOSS), f"{drain_s:.1f}",
        ]
        notes = [
            f"client: planned {gen['planned']} requests in {gen['sessions']} connections "
            f"({gen['ka_requests']} on keep-alive), ok {gen['ok']}, failed {gen['failed']}, "
            f"skipped {gen['skipped']} (>{a.max_open} open), unfinished {gen['unfinished']}, "
            f"errors {gen['errors'] or '-'}, latency p50/p99 {gen['lat_p50_ms']}/"
            f"{gen['lat_p99_ms']} ms, schedule late by ≤{gen['late_max'] * 1e3:.0f} ms, "
            f"load {load_s:.1f} s",
            f"logs: online {len(online_lines)}, target {len(target_lines)} "
            f"({seen} of the online paths, {len(online_paths) - seen} missing); "
            f"online Δ sessions_opened {d('sessions_opened')}, established "
            f"{d('sessions_established')}, completed {d('sessions_completed')}, requests_sent "
            f"{d('requests_sent')}, sessions_live now {oc2.get('sessions_live')}, "
            f"in table {s2['online'].get('extra', {}).get('sessions_in_table')}",
            "online Δ " + (", ".join(f"{k} {d(k)}" for k in MORE if d(k)) or "other loss counters 0")
            + f"; send_errors {s2['online'].get('extra', {}).get('send_errors')}; channel "
            f"{s2['online'].get('extra', {}).get('channel')}",
            "assist Δ " + ", ".join(f"{k} {ac2.get(k, 0) - ac0.get(k, 0)}" for k in (
                "packets_queued", "records_sent", "records_unrouted", "records_parked",
                "records_dropped_backlog", "verdict_errors", "client_adds")),
            f"cpu s: nfreplay-online {cpu['online']:.2f} (sys {sysd['online']:.2f}), "
            f"nfreplay-assist {cpu['assist']:.2f} (sys {sysd['assist']:.2f}), "
            f"nginx online {cpu['nginx-online']:.2f}, target {cpu['nginx-target']:.2f}; "
            f"box busy {busy:.1f} s of {total:.1f} (softirq {s2['box'][1] - s0['box'][1]:.1f})"
            f"; online µs per captured packet "
            + (f"{1e6 * cpu['online'] / d('packets_captured'):.1f}" if d("packets_captured")
               else "-"),
        ]
        warnings = self.health()
        if not done_ok:
            warnings.append("the generator ran out of time")
        return row, notes, warnings

    # -------------------------------------------------------------- the run

    def run(self) -> int:
        from tests.lab.topology import ADDR, CLIENT_NET, CLIENTS

        a, lab = self.a, self.lab
        self.addr, self.clients = ADDR, CLIENTS
        print(f"lab {lab.prefix}: namespaces {', '.join(lab.ns.values())}", flush=True)
        # Many short connections: a wide port range so four source addresses last the run.
        lab.sh("client", "sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000")
        self.logs["online"] = Log(lab.start_nginx("online"))
        self.logs["target"] = Log(lab.start_nginx("target"))
        lab.nfreplay("target", "nfreplay", "target", "up", "--clients", CLIENT_NET,
                     "--via", ADDR["assist"])
        assist = lab.start_assist()
        online = lab.start_online()
        for p in lab.procs:
            argv = " ".join(str(x) for x in p.args)
            if "nginx-online" in argv:
                self.pids["nginx-online"] = p.pid
            elif "nginx-target" in argv:
                self.pids["nginx-target"] = p.pid
        self.pids["online"], self.pids["assist"] = online.pid, assist.pid
        print(f"pids: {self.pids}", flush=True)
        print(f"load: {a.ka_share:.0%} of requests on keep-alive connections of {a.per_conn} "
              f"(gap {a.gap_ms:g} ms), the rest one per connection (half closed by the server, "
              f"half by the client); {a.duration:g} s per step, sources {', '.join(CLIENTS)}",
              flush=True)
        # What the daemons cost doing nothing, to read the per-step CPU figures against.
        self.fresh_stats(time.time())
        idle0 = {k: proc_cpu(pid) for k, pid in self.pids.items()}
        t_idle = time.monotonic()
        time.sleep(3.0)
        idle_s = time.monotonic() - t_idle
        print("idle CPU: " + ", ".join(
            f"{k} {1e3 * (proc_cpu(pid) - idle0[k]) / idle_s:.0f} ms/s"
            for k, pid in self.pids.items()), flush=True)
        print(fmt_row([c for c, _ in COLUMNS]), flush=True)
        rows = []
        for n, rate in enumerate(a.rates, 1):
            row, notes, warnings = self.step(n, rate)
            rows.append((row, notes))
            print(fmt_row(row), flush=True)
            if a.verbose:
                for line in notes:
                    print(f"      {line}", flush=True)
            for line in warnings:
                print(f"   !! {line}", flush=True)
            if any("nfreplay-" in w for w in warnings):
                self.failed = True
                print(f"   !! stopping: steps {', '.join(map(str, a.rates[n:])) or '-'} not run",
                      flush=True)
                break
        print("\n" + LEGEND)
        if not a.verbose:
            print("\ndetails per step:")
            for row, notes in rows:
                print(f"  step {row[0]} ({row[1]}/s)")
                for line in notes:
                    print(f"      {line}")
        for name, p in (("online", online), ("assist", assist)):
            rc = lab.stop(p)
            if rc:
                self.failed = True
                why = " (still running 15 s after SIGTERM: killed)" if rc == -signal.SIGKILL else ""
                print(f"nfreplay-{name} exited {rc}{why}; log tail:\n{lab.log(name)[-1500:]}")
        lab.nfreplay("target", "nfreplay", "target", "down", check=False)
        return 1 if self.failed else 0


def snapshot(rev: str, into: Path) -> str:
    """Export `rev`'s nfreplay package into `into` (git archive: git's state is not touched) and
    make every process started from now on import it (PYTHONPATH goes before the editable
    install's finder). Returns the commit id."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev],
                            capture_output=True, text=True, check=True).stdout.strip()
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "nfreplay"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    os.environ["PYTHONPATH"] = str(into) + (os.pathsep + os.environ["PYTHONPATH"]
                                            if os.environ.get("PYTHONPATH") else "")
    return commit


def git_state() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                                "nfreplay"], capture_output=True, text=True,
                               timeout=10).stdout.split("\n")
        dirty = [ln[3:] for ln in dirty if ln.strip()]
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (f" + uncommitted changes in {', '.join(dirty)}" if dirty else " (clean)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", default="500,1000,2000,4000",
                   help="comma list of offered request rates (default 500,1000,2000,4000)")
    p.add_argument("--duration", type=float, default=10.0, help="load seconds per step (10)")
    p.add_argument("--quick", action="store_true", help="2 steps (500, 2000 /s) of 5 s")
    p.add_argument("--max-requests", type=int, default=100_000, help="cap per step (100000)")
    p.add_argument("--ka-share", type=float, default=0.5,
                   help="share of requests on keep-alive connections (0.5)")
    p.add_argument("--per-conn", type=int, default=5, help="requests per keep-alive connection")
    p.add_argument("--gap-ms", type=float, default=5.0,
                   help="pause between requests of a keep-alive connection (5 ms)")
    p.add_argument("--max-open", type=int, default=3000, help="open connections cap (3000)")
    p.add_argument("--quiet", type=float, default=3.5,
                   help="drain ends when the target log has not grown for this long (3.5 s)")
    p.add_argument("--drain-timeout", type=float, default=20.0, help="longest drain wait (20 s)")
    p.add_argument("--rev", help="run the daemons from this commit (a git archive snapshot) "
                   "instead of the working tree, e.g. HEAD while others edit it")
    p.add_argument("--verbose", "-v", action="store_true", help="details under every row")
    p.add_argument("--gen", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.gen:
        json.dump(generate(json.loads(a.gen)), sys.stdout)
        return 0
    if a.quick:
        a.rates, a.duration = "500,2000", 5.0
    a.rates = [int(r) for r in str(a.rates).split(",") if r.strip()]
    if os.geteuid() != 0:
        print("replay_bench: needs root (network namespaces)", file=sys.stderr)
        return 1

    from tests.lab.topology import Lab

    def terminate(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    t0 = time.monotonic()
    lab = Lab(prefix=f"nfb{os.getpid() % 100000}")
    rc = 1
    try:
        code = git_state()
        if a.rev:
            code = f"{snapshot(a.rev, lab.dir / 'src')} (snapshot of {a.rev}; tree: {code})"
        where = subprocess.run([sys.executable, "-c", "import nfreplay; print(nfreplay.__file__)"],
                               capture_output=True, text=True, cwd="/").stdout.strip()
        print(f"nfreplay {code}, daemons import {where}; {os.cpu_count()} CPUs, load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} before the run", flush=True)
        lab.build()
        rc = Bench(lab, a).run()
    finally:
        lab.close()
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        ours = [ln for ln in left.splitlines() if ln.startswith(lab.prefix)]
        print(f"\nteardown: namespaces of this run left: {len(ours)}"
              f"{' ' + str(ours) if ours else ''}; `ip netns list` "
              f"{'empty' if not left.strip() else 'shows: ' + ', '.join(left.split())}; "
              f"run took {time.monotonic() - t0:.0f} s; load average now "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
