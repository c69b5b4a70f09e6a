"""Network devices through iproute2's `ip` (`command.run`, the one choke point): created with
their alias set to the owner tag, found again by it, deleted by name.

iproute2 rather than pyroute2 here: the devices' options are written the way an operator
types them (`Link.describe` is the command line), and `ip -j` reads them back as JSON.
"""

from __future__ import annotations

import json
from typing import Any

from nfreplay.errors import RulesError
from nfreplay.rules import command
from nfreplay.rules.command import Runner
from nfreplay.rules.model import Link

__all__ = ["IpLinkBackend"]

_GONE = ("Cannot find device", "does not exist")


class IpLinkBackend:
    """`LinkBackend` with `ip link`, in the calling process's network namespace."""

    def __init__(self, run: Runner = command.run) -> None:
        self._run = run

    def add(self, link: Link) -> None:
        address = ["address", link.address] if link.address else []
        self._run(["ip", "link", "add", link.name, *address, "type", link.kind, *link.args])
        self._run(["ip", "link", "set", link.name, "alias", link.owner, "up"])

    def delete(self, link: Link) -> None:
        done = self._run(["ip", "link", "del", link.name], ok=(0, 1))
        if done.returncode and not any(g in done.stderr for g in _GONE):
            raise RulesError(f"ip link del {link.name}: "
                             f"{command.first_line(done.stderr) or 'failed'}")

    def _show(self, *args: str) -> list[dict[str, Any]]:
        done = self._run(["ip", "-j", "-d", "link", "show", *args], ok=(0, 1))
        if done.returncode:
            if any(g in done.stderr for g in _GONE):
                return []
            raise RulesError(f"ip link show: {command.first_line(done.stderr) or 'failed'}")
        try:
            found = json.loads(done.stdout or "[]")
        except ValueError as exc:
            raise RulesError(f"ip -j link show: not JSON: {exc}") from None
        return [d for d in found if isinstance(d, dict)]

    def exists(self, link: Link) -> bool:
        for dev in self._show("dev", link.name):
            kind = (dev.get("linkinfo") or {}).get("info_kind")
            if dev.get("ifname") == link.name and kind == link.kind \
                    and dev.get("ifalias") == link.owner:
                return True
        return False

    def list_owned(self, owner: str) -> list[str]:
        return [str(d["ifname"]) for d in self._show() if d.get("ifalias") == owner]
