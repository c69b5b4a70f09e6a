"""Real Debian servers inside a lab namespace: Redis, PostgreSQL 15 and vsftpd.

Each server gets its own temporary directory (data, config, sockets, logs), binds the
namespace's own address only (online 198.18.0.2, target 198.18.0.3) and runs in the
foreground under `Lab.spawn`, so `Lab.close()` stops it even if the test forgot to. Nothing
system-wide is touched: no systemd unit, no /etc file, no /var/lib/postgresql cluster, no
/var/run directory. `stop()` ends the server (by its process group) and removes its directory;
it is idempotent.

    with Lab() as lab:
        online, target = Redis(lab, "online").start(), Redis(lab, "target").start()
        try:
            ...
            assert target.cli("GET", "k") == "v"
        finally:
            target.stop(); online.stop()

Why vsftpd for the server-first protocol: the server speaks first ("220 (vsFTPd 3.0.3)"), it
is one small package, it runs in the foreground from a private config file given on its
command line (`listen=YES`, `background=NO`), it needs no spool or queue directory of the
system (unlike exim4 or OpenSMTPD), and with `log_ftp_protocol=YES` it logs every command a
client sent to a file of our choosing: the target's own view of each session.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.lab import netns
from tests.lab.topology import ADDR, Lab

PG_BIN = Path("/usr/lib/postgresql/15/bin")
REDIS_PORT = 6379
PG_PORT = 5432
FTP_PORT = 21

__all__ = ["Redis", "Postgres", "Vsftpd", "REDIS_PORT", "PG_PORT", "FTP_PORT", "PG_BIN"]


class _Server:
    """One server process in `role`'s namespace, with its own temporary directory."""

    kind = "server"

    def __init__(self, lab: Lab, role: str) -> None:
        self.lab = lab
        self.role = role
        self.ip = ADDR[role]
        self.dir = Path(tempfile.mkdtemp(prefix=f"{lab.prefix}-{self.kind}-{role}-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def logname(self) -> str:
        return f"{self.kind}-{self.role}"

    def log(self) -> str:
        """What the server wrote on stdout/stderr (`Lab.spawn`'s log)."""
        return self.lab.log(self.logname)

    def _spawn(self, argv: list[str], port: int, timeout: float = 20.0) -> None:
        self.proc = self.lab.spawn(self.role, argv, f"{self.logname}.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.logname} exited {self.proc.returncode}:\n{self.log()}")
            done = self.lab.sh(self.role, "ss", "-Hltn", f"src {self.ip}:{port}", check=False)
            if done.stdout.strip():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.logname}: nothing listens on {self.ip}:{port} after "
                           f"{timeout} s:\n{self.log()}")

    def _stop_signal(self) -> int:
        return signal.SIGTERM

    def stop(self) -> None:
        """End the server (its whole process group) and remove its directory."""
        try:
            if self.proc is not None:
                try:
                    self.lab.stop(self.proc, self._stop_signal(), timeout=10.0)
                except ProcessLookupError:
                    pass
                self._wait_gone()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _wait_gone(self) -> None:
        """Hook: after the spawned process ended, wait for anything it left running."""

    def __enter__(self) -> "_Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------- Redis


class Redis(_Server):
    """redis-server on ADDR[role]:6379: no persistence, no daemonizing, data in its own dir."""

    kind = "redis"

    def start(self) -> "Redis":
        self._spawn(["redis-server", "--port", str(REDIS_PORT), "--bind", self.ip,
                     "--save", "", "--appendonly", "no", "--daemonize", "no",
                     "--dir", str(self.dir), "--protected-mode", "no", "--logfile", "",
                     "--databases", "1"], REDIS_PORT)
        return self

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """`redis-cli -h IP --raw ARGS` inside the server's own namespace (the target's own
        view when role is "target"); its stdout."""
        done = netns.run_in(self.lab.ns[self.role], ["redis-cli", "-h", self.ip, "-p",
                                                     str(REDIS_PORT), "--raw", *args],
                            input=stdin, timeout=60)
        return done.stdout

    def mget(self, keys: list[str], batch: int = 200) -> dict[str, str | None]:
        """Values of `keys` on this server (None for a missing key)."""
        out: dict[str, str | None] = {}
        for i in range(0, len(keys), batch):
            part = keys[i:i + batch]
            # RESP3-less --raw prints one line per value, an empty line for a missing key.
            lines = self.cli("MGET", *part).split("\n")
            for key, val in zip(part, lines):
                out[key] = val if val != "" else None
        return out


# ---------------------------------------------------------------------------------- PostgreSQL


class Postgres(_Server):
    """PostgreSQL 15 on ADDR[role]:5432: a private cluster (`initdb` as user postgres in our own
    temp dir), socket in that dir, trust authentication for 198.18.0.0/15, every statement
    logged (the server's own view), durability off (a test cluster)."""

    kind = "pg"

    def __init__(self, lab: Lab, role: str) -> None:
        super().__init__(lab, role)
        pw = pwd.getpwnam("postgres")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.data = self.dir / "data"
        self.sock = self.dir  # unix socket directory (the setup uses it, not the network)
        self.statement_log = self.data / "log" / "postgresql.log"

    def _as_postgres(self, argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True,
                              text=True, timeout=60, **kw)  # type: ignore[call-overload]
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr}")
        return done

    def start(self) -> "Postgres":
        self._as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                           "--auth-local=trust", "--auth-host=reject", "--no-sync",
                           "--no-instructions", "-E", "UTF8", "--locale=C"])
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write("host all all 198.18.0.0/15 trust\n")
        self._spawn(["runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"),
                     "-D", str(self.data), "-k", str(self.sock), "-p", str(PG_PORT),
                     "-c", f"listen_addresses={self.ip}",
                     "-c", "fsync=off", "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off", "-c", "max_connections=40",
                     "-c", "shared_buffers=16MB", "-c", "logging_collector=on",
                     "-c", "log_directory=log", "-c", "log_filename=postgresql.log",
                     "-c", "log_statement=all", "-c", "log_connections=on",
                     "-c", "log_disconnections=on",
                     "-c", "log_line_prefix=%m [%p] %h ",
                     ], PG_PORT)
        return self

    def _stop_signal(self) -> int:
        return signal.SIGINT  # "fast" shutdown: SIGTERM would wait for clients to leave

    def postmaster_pid(self) -> int | None:
        """The postmaster's pid (first line of postmaster.pid), while it runs."""
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        self._postmaster = self.postmaster_pid()
        super().stop()

    def _wait_gone(self) -> None:
        # runuser usually outlives the postmaster it started, but make sure: the directory
        # is removed next, and a postmaster must not be left writing into it.
        pid = getattr(self, "_postmaster", None)
        if pid is None:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def psql_local(self, sql: str, db: str = "postgres") -> str:
        """Run `sql` over the unix socket (never on the wire, so never replayed)."""
        return self._as_postgres([str(PG_BIN / "psql"), "-h", str(self.sock), "-p",
                                  str(PG_PORT), "-U", "postgres", "-d", db, "-X", "-q",
                                  "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]).stdout

    def create_schema(self, db: str, ddl: str) -> None:
        """CREATE DATABASE `db` and run `ddl` in it (identically on every server)."""
        self.psql_local(f"CREATE DATABASE {db}")
        self.psql_local(ddl, db)

    def query(self, sql: str, db: str) -> list[list[str]]:
        """`psql -h IP` from inside the server's own namespace over TCP: the server's view."""
        done = self.lab.sh(self.role, str(PG_BIN / "psql"), "-h", self.ip, "-p", str(PG_PORT),
                           "-U", "postgres", "-d", db, "-X", "-At", "-F", "\t",
                           "-v", "ON_ERROR_STOP=1", "-c", sql)
        return [line.split("\t") for line in done.stdout.splitlines() if line]

    def statements(self) -> str:
        """The server's statement log (log_statement=all) so far."""
        try:
            return self.statement_log.read_text(errors="replace")
        except OSError:
            return ""


# ---------------------------------------------------------------------------------- vsftpd

VSFTPD_CONF = """\
listen=YES
listen_ipv6=NO
listen_address={ip}
listen_port={port}
background=NO
run_as_launching_user=NO
anonymous_enable=YES
no_anon_password=NO
anon_root={dir}/root
local_enable=NO
write_enable=NO
dirlist_enable=YES
connect_from_port_20=NO
pasv_enable=YES
xferlog_enable=YES
xferlog_std_format=NO
log_ftp_protocol=YES
vsftpd_log_file={dir}/vsftpd.log
syslog_enable=NO
secure_chroot_dir={dir}/empty
seccomp_sandbox=NO
use_localtime=NO
max_clients=100
max_per_ip=100
idle_session_timeout=60
data_connection_timeout=60
"""


class Vsftpd(_Server):
    """vsftpd on ADDR[role]:21, anonymous and read-only, every command logged to its own file
    (`log_ftp_protocol`): the server-first protocol of the lab ("220" greeting)."""

    kind = "ftp"

    def start(self) -> "Vsftpd":
        os.chmod(self.dir, 0o755)
        for sub in ("root", "empty"):
            (self.dir / sub).mkdir(mode=0o755)
        (self.dir / "root" / "hello.txt").write_text("hello from the lab\n")
        conf = self.dir / "vsftpd.conf"
        conf.write_text(VSFTPD_CONF.format(ip=self.ip, port=FTP_PORT, dir=self.dir))
        conf.chmod(0o600)
        self._spawn(["/usr/sbin/vsftpd", str(conf)], FTP_PORT)
        return self

    def commands(self) -> list[tuple[str, str]]:
        """(client address, command line) of every FTP command the server logged."""
        try:
            text = (self.dir / "vsftpd.log").read_text(errors="replace")
        except OSError:
            return []
        return [(m.group(1), m.group(2)) for m in
                re.finditer(r'FTP command: Client "([^"]+)", "([^"]*)"', text)]

    def logtext(self) -> str:
        try:
            return (self.dir / "vsftpd.log").read_text(errors="replace")
        except OSError:
            return ""
