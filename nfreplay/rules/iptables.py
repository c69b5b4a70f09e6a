"""The two iptables backends and how to pick one.

- `NftBackend`: the host's `iptables` nf_tables front end (`iptables-nft`), driven through the
  `command.run` choke point. Its rules show in `iptables -S` and `nft list ruleset`.
- `XtablesBackend`: python-iptables (libiptc), i.e. the legacy x_tables backend. Its rules show
  only in `iptables-legacy -S`; `iptables`(nft) merely warns that legacy tables exist.

Both backends list rules by parsing `*-save` output with one parser (`savefile`), so a rule
reads back identically whichever backend holds it. Both rule sets are active at the same time
when both exist, which is why leftovers are swept in both (see `sweep_backends`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import time
from typing import Any, Iterator, Literal

from nfreplay.errors import HostError, RulesError
from nfreplay.rules.backend import RuleBackend
from nfreplay.rules.command import Runner, first_line, run
from nfreplay.rules.model import Rule, split_options
from nfreplay.rules.savefile import parse_save

__all__ = ["NftBackend", "XtablesBackend", "select_backend", "sweep_backends", "host_default",
           "BACKEND_NAMES"]

BACKEND_NAMES = ("nft", "legacy")

# iptables prints this (exit 1) for -C/-D of a rule that is not there, and "No chain/target/
# match by that name" when the chain or table does not exist: both mean "not present".
_MISSING = ("does a matching rule exist", "No chain/target/match by that name")


def _missing(stderr: str) -> bool:
    return any(m in stderr for m in _MISSING)


def _listing(rules_text: str, owner_prefix: str, source: str) -> list[Rule]:
    try:
        return parse_save(rules_text, owner_prefix)
    except ValueError as exc:
        raise RulesError(f"{source}: {exc}") from exc


class NftBackend:
    """Rules through `iptables-nft` (argv via the `command.run` choke point)."""

    name = "nft"

    def __init__(self, runner: Runner = run, binary: str = "iptables-nft",
                 save_binary: str = "iptables-nft-save") -> None:
        self._run = runner
        self._bin = binary
        self._save = save_binary

    def probe(self) -> None:
        """Binaries present, nf_tables readable, the NFQUEUE target loadable. A `-C` of a
        rule that is not there creates no table, so this leaves the host unchanged."""
        for binary in (self._bin, self._save):
            if shutil.which(binary) is None:
                raise HostError(f"{binary} not found: apt-get install iptables")
        try:
            self._run([self._save, "-t", "raw"])
            done = self._run([self._bin, "-w", "-t", "raw", "-C", "OUTPUT", "-p", "tcp",
                              "-m", "comment", "--comment", "nfreplay:probe",
                              "-j", "NFQUEUE", "--queue-num", "0"], ok=(0, 1, 2))
        except RulesError as exc:
            raise HostError(f"iptables nf_tables backend unusable: {exc}") from exc
        if done.returncode != 0 and not _missing(done.stderr):
            raise HostError(f"iptables nf_tables backend unusable: {first_line(done.stderr)}")

    def list_owned(self, owner_prefix: str) -> list[Rule]:
        """Rules in every nft-backed iptables table whose comment starts with the prefix."""
        return _listing(self._run([self._save]).stdout, owner_prefix, self._save)

    def insert(self, rule: Rule, position: int = 1) -> None:
        """`iptables-nft -w -t T -I CHAIN position spec`."""
        if position < 1:
            raise ValueError("positions start at 1")
        self._run([self._bin, "-w", "-t", rule.table, "-I", rule.chain, str(position),
                   *rule.spec()])

    def delete(self, rule: Rule) -> None:
        """`iptables-nft -w -t T -D CHAIN spec`; not there = success."""
        done = self._run([self._bin, "-w", "-t", rule.table, "-D", rule.chain, *rule.spec()],
                         ok=(0, 1))
        if done.returncode == 1 and not _missing(done.stderr):
            raise RulesError(f"{rule.describe()}: delete failed: {first_line(done.stderr)}")

    def has_table(self, table: str) -> bool:
        """From the full save (`-t T` would print an empty table even when there is none)."""
        return f"*{table}" in self._run([self._save]).stdout.splitlines()

    def drop_table_if_empty(self, table: str) -> bool:
        """`nft delete table ip T` when the table holds only empty built-in chains: iptables-nft
        creates a table on first use but never removes it, and `down` must leave
        `iptables-save` as it found it. Without the `nft` binary the empty table stays."""
        if not self.has_table(table):
            return True
        lines = self._run([self._save, "-t", table]).stdout.splitlines()
        busy = [line for line in lines if line.startswith("-") or
                (line.startswith(":") and line.split()[1] == "-")]  # a rule or a user chain
        if busy or shutil.which("nft") is None:
            return False
        self._run(["nft", "delete", "table", "ip", table])
        return True

    def exists(self, rule: Rule) -> bool:
        """`iptables-nft -w -t T -C CHAIN spec`."""
        done = self._run([self._bin, "-w", "-t", rule.table, "-C", rule.chain, *rule.spec()],
                         ok=(0, 1))
        if done.returncode == 1 and not _missing(done.stderr):
            raise RulesError(f"{rule.describe()}: check failed: {first_line(done.stderr)}")
        return done.returncode == 0


_GENERIC_ATTR = {"-s": "src", "-d": "dst", "-i": "in_interface", "-o": "out_interface",
                 "-p": "protocol"}


class XtablesBackend:
    """Rules through python-iptables (libiptc, the legacy x_tables backend).

    python-iptables is imported on first use, so a host without libxtables or without the
    `iptables` package's extension modules gets a HostError line from `probe`, not an
    ImportError at import time. Listing uses `iptables-legacy-save`: it only reads tables that
    already exist, whereas opening a table through libiptc creates it (and then every
    `iptables`(nft) command on the host starts warning about legacy tables).
    """

    name = "legacy"
    #: The lock `iptables-legacy -w` takes; python-iptables takes none, so we do, to not
    #: interleave our read-modify-commit of a whole table with another iptables process.
    LOCK_PATH = os.environ.get("XTABLES_LOCKFILE", "/run/xtables.lock")
    LOCK_WAIT_S = 10.0

    def __init__(self, runner: Runner = run, save_binary: str = "iptables-legacy-save") -> None:
        self._run = runner
        self._save = save_binary
        self._iptc: Any = None

    # -- python-iptables plumbing ----------------------------------------------------------
    def _module(self) -> Any:
        if self._iptc is None:
            try:
                import iptc  # noqa: PLC0415 - lazy on purpose, see class docstring
            except Exception as exc:  # ImportError, OSError (missing .so), XTablesError
                why = first_line(str(exc)) or type(exc).__name__
                raise HostError(f"python-iptables unusable: {why}") from exc
            self._iptc = iptc
        return self._iptc

    def _build(self, rule: Rule) -> Any:
        """Translate a canonical Rule into an iptc.Rule with the same meaning."""
        iptc = self._module()
        r = iptc.Rule()
        current: Any = None
        for neg, opt, vals in split_options(rule.match):
            # The canonical match has the generic options first, then "-m name --opt ..."
            # blocks; each --opt belongs to the latest module.
            if opt in _GENERIC_ATTR:
                setattr(r, _GENERIC_ATTR[opt], ("!" if neg else "") + vals[0])
            elif opt == "-m":
                current = r.create_match(vals[0])
            elif current is not None and opt.startswith("--"):
                _set(current, opt, neg, vals)
            else:
                raise RulesError(f"{rule.describe()}: legacy backend cannot express {opt}")
        comment = r.create_match("comment")
        comment.comment = rule.owner
        target = r.create_target(rule.target[0])
        for neg, opt, vals in split_options(rule.target[1:]):
            _set(target, opt, neg, vals)
        return r

    @contextlib.contextmanager
    def _table(self, name: str) -> Iterator[Any]:
        """A fresh libiptc handle on table `name` under the xtables lock, committed on a clean
        exit. Fresh: python-iptables caches one handle per table name, and committing a stale
        one would replace the whole table with an old copy, undoing other tools' changes.
        The handle is never closed: python-iptables reuses cached tables internally (to tell
        a target from a user chain) and crashes on a closed one. An uncommitted handle left
        by an exception is discarded by the next refresh (autocommit off)."""
        iptc = self._module()
        with _xtables_lock(self.LOCK_PATH, self.LOCK_WAIT_S):
            table = iptc.Table(name, autocommit=False)
            table.refresh()
            yield table
            table.commit()

    def _iptc_errors(self) -> tuple[type[BaseException], ...]:
        iptc = self._module()
        return (iptc.IPTCError, iptc.xtables.XTablesError, ValueError)

    # -- the contract ------------------------------------------------------------------------
    def probe(self) -> None:
        """python-iptables importable, its extension modules found, the kernel has legacy
        x_tables, `iptables-legacy-save` works. Creates no table: NFQUEUE is checked by file,
        because loading that target asks the kernel for its revision, which instantiates every
        legacy table in the namespace."""
        iptc = self._module()
        if not os.path.exists("/proc/net/ip_tables_names"):
            raise HostError("kernel has no legacy iptables (x_tables): use the nft backend")
        if shutil.which(self._save) is None:
            raise HostError(f"{self._save} not found: apt-get install iptables")
        try:
            r = iptc.Rule()
            r.create_match("tcp")
            r.create_match("comment")
            r.create_target("ACCEPT")
        except Exception as exc:
            raise HostError(f"python-iptables: {first_line(str(exc))}: the iptables package's "
                            "xtables modules are missing (apt-get install iptables)") from exc
        libdir = getattr(getattr(iptc, "xtables", None), "_xtables_libdir", None)
        if isinstance(libdir, str) and not os.path.exists(os.path.join(libdir, "libxt_NFQUEUE.so")):
            raise HostError(f"python-iptables: can't find target NFQUEUE in {libdir} "
                            "(apt-get install iptables)")
        try:
            self._run([self._save])
        except RulesError as exc:
            raise HostError(f"iptables legacy backend unusable: {exc}") from exc

    def list_owned(self, owner_prefix: str) -> list[Rule]:
        """Rules in every existing legacy table whose comment starts with the prefix."""
        return _listing(self._run([self._save]).stdout, owner_prefix, self._save)

    def insert(self, rule: Rule, position: int = 1) -> None:
        """libiptc insert at `position` (1-based, like `iptables -I`)."""
        if position < 1:
            raise ValueError("positions start at 1")
        errors = self._iptc_errors()
        try:
            built = self._build(rule)
            with self._table(rule.table) as table:
                self._module().Chain(table, rule.chain).insert_rule(built, position - 1)
        except errors as exc:
            raise RulesError(f"{rule.describe()} (legacy): {_iptc_message(exc)}") from exc

    def delete(self, rule: Rule) -> None:
        """libiptc delete of one copy; not there = success."""
        if not self.exists(rule):
            return  # also avoids opening (= creating) a table that does not exist
        errors = self._iptc_errors()
        try:
            built = self._build(rule)
            with self._table(rule.table) as table:
                self._module().Chain(table, rule.chain).delete_rule(built)
        except errors as exc:
            if not self.exists(rule):
                return  # someone else removed it meanwhile
            raise RulesError(f"{rule.describe()} (legacy): delete failed: {_iptc_message(exc)}"
                             ) from exc

    def has_table(self, table: str) -> bool:
        """Legacy tables cannot be removed from userspace, so they are never ours to remove:
        report them as present and `up` journals nothing for them."""
        return True

    def drop_table_if_empty(self, table: str) -> bool:
        return False

    def exists(self, rule: Rule) -> bool:
        """True if iptables-legacy-save shows the rule."""
        return rule in self.list_owned(rule.owner)


def _iptc_message(exc: BaseException) -> str:
    text = str(exc)
    # python-iptables renders libiptc's message as b'...'
    text = re.sub(r"b'([^']*)'", r"\1", text)
    return first_line(text) or type(exc).__name__


def _set(module: Any, opt: str, neg: bool, vals: tuple[str, ...]) -> None:
    """Set one `--opt values` on a python-iptables match or target, with `!` negation."""
    name = opt.lstrip("-")
    if not vals:
        module.set_parameter(name)  # a flag such as --queue-bypass
    elif len(vals) == 1:
        module.set_parameter(name, ("!" if neg else "") + vals[0])
    else:
        module.set_parameter(name, (["!"] if neg else []) + list(vals))


@contextlib.contextmanager
def _xtables_lock(path: str, wait_s: float) -> Iterator[None]:
    """flock(LOCK_EX) on the xtables lock file, like `iptables-legacy -w`."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as exc:
        raise RulesError(f"cannot open the xtables lock {path}: {exc.strerror}") from exc
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RulesError(f"another iptables process holds {path} "
                                     f"for more than {wait_s:.0f}s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # also releases the lock


def _make(name: str, runner: Runner) -> RuleBackend:
    if name == "nft":
        return NftBackend(runner)
    if name == "legacy":
        return XtablesBackend(runner)
    raise ValueError(f"backend must be auto, nft or legacy, got {name!r}")


def host_default(runner: Runner = run) -> Literal["nft", "legacy"]:
    """The backend the host's `iptables` command uses, from `iptables -V`."""
    if shutil.which("iptables") is None:
        raise HostError("iptables not found: apt-get install iptables")
    version = runner(["iptables", "-V"]).stdout
    if "(nf_tables)" in version:
        return "nft"
    if "(legacy)" in version:
        return "legacy"
    raise HostError(f"cannot tell which backend iptables uses from {first_line(version)!r}")


def select_backend(name: str = "auto", runner: Runner = run) -> RuleBackend:
    """The backend to install rules with, probed.

    "auto" follows the host's `iptables` (so an operator's `iptables -S` shows our rules);
    "nft" / "legacy" force one. Raises HostError (one line) if it cannot work here.
    """
    chosen = host_default(runner) if name == "auto" else name
    backend = _make(chosen, runner)
    backend.probe()
    return backend


def sweep_backends(chosen: RuleBackend, runner: Runner = run) -> list[RuleBackend]:
    """The other backends that work on this host, for the leftover sweep: a previous run may
    have used another backend, and its rules stay active next to ours. Unusable ones are
    skipped silently (nothing can be installed there either)."""
    others: list[RuleBackend] = []
    for name in BACKEND_NAMES:
        if name == chosen.name:
            continue
        backend = _make(name, runner)
        try:
            backend.probe()
        except HostError:
            continue
        others.append(backend)
    return others
