"""The iptables backends' command lines and error handling, with a scripted runner (no root).
The real thing is exercised in tests/lab/test_rules_backends.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Collection, Sequence

import pytest

from nfreplay.errors import HostError, RulesError
from nfreplay.rules import iptables
from nfreplay.rules.command import Completed
from nfreplay.rules.iptables import NftBackend, XtablesBackend, select_backend, sweep_backends
from nfreplay.rules.model import assist_plan

FIXTURES = Path(__file__).parent / "fixtures"
RULE = assist_plan("lab1", "198.18.0.3", 80, ["198.18.1.0/24"], "assistant", 0).rules[0]
BAD_RULE = "iptables: Bad rule (does a matching rule exist in that chain?).\n"


class Script:
    """A Runner that answers from a table of (argv prefix → (rc, stdout, stderr)) and
    enforces `ok` like the real one."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str, str]] | None = None) -> None:
        self.answers = answers or {}
        self.argvs: list[list[str]] = []

    def __call__(self, argv: Sequence[str], *, ok: Collection[int] = (0,)) -> Completed:
        self.argvs.append(list(argv))
        rc, out, err = next((v for k, v in self.answers.items() if tuple(argv[:len(k)]) == k),
                            (0, "", ""))
        if rc not in ok:
            raise RulesError(f"{' '.join(argv)} failed (exit {rc}): {err.strip()}")
        return Completed(tuple(argv), rc, out, err)


def test_nft_insert_delete_check_command_lines() -> None:
    run = Script()
    backend = NftBackend(run)
    backend.insert(RULE, 1)
    backend.delete(RULE)
    assert backend.exists(RULE)
    spec = RULE.spec()
    assert run.argvs == [
        ["iptables-nft", "-w", "-t", "raw", "-I", "PREROUTING", "1", *spec],
        ["iptables-nft", "-w", "-t", "raw", "-D", "PREROUTING", *spec],
        ["iptables-nft", "-w", "-t", "raw", "-C", "PREROUTING", *spec],
    ]


def test_nft_already_gone_is_success_other_failures_are_errors() -> None:
    backend = NftBackend(Script({("iptables-nft",): (1, "", BAD_RULE)}))
    backend.delete(RULE)
    assert not backend.exists(RULE)
    no_chain = "iptables: No chain/target/match by that name.\n"
    backend = NftBackend(Script({("iptables-nft",): (1, "", no_chain)}))
    backend.delete(RULE)
    backend = NftBackend(Script({("iptables-nft",): (1, "", "iptables: Resource busy\nmore\n")}))
    with pytest.raises(RulesError, match="delete failed: iptables: Resource busy$"):
        backend.delete(RULE)
    with pytest.raises(RulesError, match="check failed"):
        backend.exists(RULE)
    backend = NftBackend(Script({("iptables-nft",): (4, "", "Another app holds the lock\n")}))
    with pytest.raises(RulesError, match="exit 4"):
        backend.insert(RULE)


def test_nft_list_owned_parses_save_output() -> None:
    text = (FIXTURES / "iptables-nft-save.txt").read_text()
    backend = NftBackend(Script({("iptables-nft-save",): (0, text, "")}))
    assert backend.list_owned(RULE.owner) == [r for r in backend.list_owned("nfreplay:")
                                              if r.owner == RULE.owner]
    assert RULE in backend.list_owned("nfreplay:assist:lab1")
    assert backend.list_owned("nfreplay:nobody") == []


def test_nft_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nfreplay.rules.iptables.shutil.which", lambda name: f"/usr/sbin/{name}")
    NftBackend(Script({("iptables-nft", "-w"): (1, "", BAD_RULE)})).probe()
    with pytest.raises(HostError, match="unusable: Couldn't load target `NFQUEUE'"):
        NftBackend(Script({("iptables-nft", "-w"): (2, "", "Couldn't load target `NFQUEUE'\n")})
                   ).probe()
    with pytest.raises(HostError, match="Permission denied"):
        NftBackend(Script({("iptables-nft-save",): (4, "", "Permission denied (you must be root)\n")})
                   ).probe()
    monkeypatch.setattr("nfreplay.rules.iptables.shutil.which", lambda name: None)
    with pytest.raises(HostError, match="^iptables-nft not found: apt-get install iptables$"):
        NftBackend(Script()).probe()


@pytest.mark.parametrize("version, name", [
    ("iptables v1.8.9 (nf_tables)\n", "nft"),
    ("iptables v1.8.9 (legacy)\n", "legacy"),
])
def test_select_backend_auto_follows_iptables_V(monkeypatch: pytest.MonkeyPatch,
                                                version: str, name: str) -> None:
    monkeypatch.setattr("nfreplay.rules.iptables.shutil.which", lambda n: f"/usr/sbin/{n}")
    monkeypatch.setattr(iptables.NftBackend, "probe", lambda self: None)
    monkeypatch.setattr(iptables.XtablesBackend, "probe", lambda self: None)
    backend = select_backend("auto", Script({("iptables", "-V"): (0, version, "")}))
    assert backend.name == name
    assert [b.name for b in sweep_backends(backend, Script())] == [
        n for n in ("nft", "legacy") if n != name]


def test_select_backend_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nfreplay.rules.iptables.shutil.which", lambda n: None)
    with pytest.raises(HostError, match="^iptables not found: apt-get install iptables$"):
        select_backend("auto", Script())
    monkeypatch.setattr("nfreplay.rules.iptables.shutil.which", lambda n: f"/usr/sbin/{n}")
    with pytest.raises(HostError, match="cannot tell"):
        select_backend("auto", Script({("iptables", "-V"): (0, "iptables v0.1 (odd)\n", "")}))
    with pytest.raises(ValueError):
        select_backend("ebtables", Script())


def test_sweep_skips_unusable_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: object) -> None:
        raise HostError("python-iptables unusable")

    monkeypatch.setattr(iptables.XtablesBackend, "probe", broken)
    assert sweep_backends(NftBackend(Script()), Script()) == []


def test_xtables_without_python_iptables_is_a_host_error_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "iptc", None)  # makes `import iptc` raise ImportError
    backend = XtablesBackend(Script())
    with pytest.raises(HostError, match="^python-iptables unusable: "):
        backend.probe()
    with pytest.raises(HostError):
        backend.insert(RULE)


def test_xtables_lists_and_checks_through_legacy_save() -> None:
    text = (FIXTURES / "iptables-legacy-save.txt").read_text()
    run = Script({("iptables-legacy-save",): (0, text, "")})
    backend = XtablesBackend(run)
    assert backend.exists(RULE)  # deleting needs python-iptables and root: see the lab test
    assert run.argvs == [["iptables-legacy-save"]]
