"""The journal: what an owner has installed, kept on disk so a fresh process can undo it.

The manager records each item *before* installing it. A crash between the two leaves an entry
for something that may not exist, which teardown handles (already gone = success); the other
order could leave something installed that nobody knows about.

Format (JSON, one object): `{"version": 1, "entries": [...]}`, entries in install order, each
`{"kind": "rule", "backend": "nft", "table", "chain", "match", "target", "owner"}`,
`{"kind": "route", "dst", "via", "proto", "table", "metric", "dev"}` (via and dev "" =
blackhole), `{"kind": "link", "name", "link_kind", "args", "owner", "address"}`,
`{"kind": "policy", "dst", "table", "priority", "proto"}` or
`{"kind": "sysctl", "key", "old", "new"}`. Writes are atomic (temp file, fsync, rename, fsync
of the directory), so a crash mid-write leaves the previous version, never half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

from nfreplay.errors import RulesError
from nfreplay.rules.model import Link, PolicyRule, Route, Rule

__all__ = ["Journal", "RuleEntry", "RouteEntry", "PolicyEntry", "SysctlEntry", "TableEntry",
           "LinkEntry", "Entry"]

VERSION = 1


@dataclass(frozen=True)
class RuleEntry:
    """A rule installed through the backend called `backend`."""

    backend: str
    rule: Rule

    def describe(self) -> str:
        """One line, naming the backend."""
        return f"[{self.backend}] {self.rule.describe()}"


@dataclass(frozen=True)
class LinkEntry:
    """A device created."""

    link: Link

    def describe(self) -> str:
        """One line."""
        return self.link.describe()


@dataclass(frozen=True)
class RouteEntry:
    """A route added."""

    route: Route

    def describe(self) -> str:
        """One line."""
        return self.route.describe()


@dataclass(frozen=True)
class PolicyEntry:
    """A routing policy rule added."""

    rule: PolicyRule

    def describe(self) -> str:
        """One line."""
        return self.rule.describe()


@dataclass(frozen=True)
class SysctlEntry:
    """A sysctl changed from `old` to `new`; teardown writes `old` back."""

    key: str
    old: str
    new: str

    def describe(self) -> str:
        """One line."""
        return f"sysctl {self.key}={self.new} (was {self.old})"


@dataclass(frozen=True)
class TableEntry:
    """A table that did not exist before `up` created it in backend `backend`; teardown
    removes it again once it is empty."""

    backend: str
    table: str

    def describe(self) -> str:
        """One line."""
        return f"[{self.backend}] table {self.table} (created by nfreplay)"


Entry = Union[RuleEntry, RouteEntry, PolicyEntry, SysctlEntry, TableEntry, LinkEntry]


def _encode(entry: Entry) -> dict[str, Any]:
    if isinstance(entry, RuleEntry):
        r = entry.rule
        return {"kind": "rule", "backend": entry.backend, "table": r.table, "chain": r.chain,
                "match": list(r.match), "target": list(r.target), "owner": r.owner}
    if isinstance(entry, RouteEntry):
        t = entry.route
        return {"kind": "route", "dst": t.dst, "via": t.via, "proto": t.proto, "table": t.table,
                "metric": t.metric, "dev": t.dev}
    if isinstance(entry, LinkEntry):
        k = entry.link
        return {"kind": "link", "name": k.name, "link_kind": k.kind, "args": list(k.args),
                "owner": k.owner, "address": k.address}
    if isinstance(entry, PolicyEntry):
        q = entry.rule
        return {"kind": "policy", "dst": q.dst, "table": q.table, "priority": q.priority,
                "proto": q.proto}
    if isinstance(entry, TableEntry):
        return {"kind": "table", "backend": entry.backend, "table": entry.table}
    return {"kind": "sysctl", "key": entry.key, "old": entry.old, "new": entry.new}


def _decode(obj: Any) -> Entry:
    kind = obj["kind"]
    if kind == "rule":
        rule = Rule(table=obj["table"], chain=obj["chain"], match=tuple(obj["match"]),
                    target=tuple(obj["target"]), owner=obj["owner"])
        return RuleEntry(backend=str(obj["backend"]), rule=rule)
    if kind == "route":
        return RouteEntry(Route(dst=obj["dst"], via=obj["via"], proto=int(obj["proto"]),
                                table=int(obj["table"]), metric=int(obj.get("metric", 0)),
                                dev=str(obj.get("dev", ""))))
    if kind == "link":
        return LinkEntry(Link(name=str(obj["name"]), kind=str(obj["link_kind"]),
                              args=tuple(str(a) for a in obj["args"]), owner=str(obj["owner"]),
                              address=str(obj.get("address", ""))))
    if kind == "policy":
        return PolicyEntry(PolicyRule(dst=obj["dst"], table=int(obj["table"]),
                                      priority=int(obj["priority"]), proto=int(obj["proto"])))
    if kind == "table":
        return TableEntry(backend=str(obj["backend"]), table=str(obj["table"]))
    if kind == "sysctl":
        return SysctlEntry(key=str(obj["key"]), old=str(obj["old"]), new=str(obj["new"]))
    raise ValueError(f"unknown entry kind {kind!r}")


class Journal:
    """The record of one owner's installed items, at `path` (e.g.
    /run/nfreplay/assist-lab1.json; /run so that a reboot, which also clears rules and
    routes, clears the journal too)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> list[Entry]:
        """The entries in install order. Missing file = no entries; a file that does not
        parse raises RulesError naming the path (it is kept for an operator to look at)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise RulesError(f"cannot read journal {self.path}: {exc.strerror or exc}") from exc
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("version") != VERSION:
                raise ValueError(f"not a version-{VERSION} journal")
            return [_decode(e) for e in doc["entries"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise RulesError(f"corrupt journal {self.path}: {exc}; inspect it, remove what it "
                             "lists by hand, then delete it") from exc

    def append(self, entry: Entry) -> None:
        """Add `entry` at the end, durably."""
        self.save([*self.load(), entry])

    def save(self, entries: Sequence[Entry]) -> None:
        """Replace the whole journal with `entries`, atomically and durably."""
        data = json.dumps({"version": VERSION, "entries": [_encode(e) for e in entries]},
                          indent=1) + "\n"
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                       dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            _fsync_dir(directory)
        except OSError as exc:
            raise RulesError(f"cannot write journal {self.path}: {exc.strerror or exc}") from exc

    def clear(self) -> None:
        """Delete the journal file; missing = success."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise RulesError(f"cannot remove journal {self.path}: {exc.strerror or exc}") from exc
        _fsync_dir(self.path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename or unlink durable (the directory entry lives in the directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename itself is atomic
    finally:
        os.close(fd)
