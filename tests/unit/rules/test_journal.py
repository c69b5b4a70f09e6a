"""The journal file: round trip, atomic writes, missing and corrupt files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nfreplay.errors import RulesError
from nfreplay.rules.journal import (
    Entry, Journal, LinkEntry, PolicyEntry, RouteEntry, RuleEntry, SysctlEntry,
)  # fmt: skip
from nfreplay.rules.model import Link, PolicyRule, Route, assist_plan

RULE = assist_plan("lab1", "198.18.0.3", 80, ["198.18.1.0/24"], "assistant", 0).rules[0]


def test_missing_file_is_empty_and_clear_is_idempotent(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "none.json")
    assert journal.load() == []
    journal.clear()
    journal.clear()


def test_round_trip_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "deep" / "dir" / "j.json")  # parents are created
    entries: list[Entry] = [SysctlEntry("net.ipv4.ip_forward", "1", "0"), RuleEntry("legacy", RULE),
               RouteEntry(Route("198.18.1.0/24", "198.18.0.2", table=1000)),
               RouteEntry(Route("198.18.1.0/24", "", table=156, metric=0xFFFFFFFF)),
               PolicyEntry(PolicyRule("198.18.1.0/24", 156, 156)),
               LinkEntry(Link("nfr0t", "vxlan", ("id", "1", "nolearning"), "nfreplay:target:x",
                              address="02:6e:66:72:00:01")),
               RouteEntry(Route("198.18.1.0/24", "", table=156, dev="nfr0t"))]
    for entry in entries:
        journal.append(entry)
    assert Journal(journal.path).load() == entries
    doc = json.loads(journal.path.read_text())
    assert doc["version"] == 1 and doc["entries"][1]["backend"] == "legacy"
    assert sorted(p.name for p in journal.path.parent.iterdir()) == ["j.json"]  # no temp left
    journal.save(entries[:1])
    assert journal.load() == entries[:1]
    journal.clear()
    assert not journal.path.exists()


@pytest.mark.parametrize("text", ["", "{", "[]", '{"version": 2, "entries": []}',
                                  '{"version": 1, "entries": [{"kind": "rule"}]}',
                                  '{"version": 1, "entries": [{"kind": "disk"}]}',
                                  '{"version": 1, "entries": [{"kind": "route", "dst": "x",'
                                  ' "via": "198.18.0.2", "proto": 156, "table": 254}]}'])
def test_corrupt_file_names_the_path(tmp_path: Path, text: str) -> None:
    path = tmp_path / "j.json"
    path.write_text(text)
    with pytest.raises(RulesError, match=f"corrupt journal {path}"):
        Journal(path).load()


def test_failed_write_keeps_the_previous_version(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path / "j.json")
    journal.append(RuleEntry("nft", RULE))

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("nfreplay.rules.journal.os.replace", broken_replace)
    with pytest.raises(RulesError, match="cannot write journal .*No space left"):
        journal.append(RouteEntry(Route("198.18.1.0/24", "198.18.0.2")))
    monkeypatch.undo()
    assert journal.load() == [RuleEntry("nft", RULE)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.json"]
