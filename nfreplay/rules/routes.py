"""Routes through rtnetlink (pyroute2 `IPRoute`), in the calling process's network namespace.

Every route carries `Route.proto`; deletes pass it too, and the kernel matches it on
RTM_DELROUTE, so deleting our route to 198.18.1.0/24 can never take an operator's static route
to the same prefix with it.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from nfreplay.errors import RulesError
from nfreplay.rules.model import PolicyRule, Route

__all__ = ["RtnetlinkRouteBackend"]


def _pyroute2() -> tuple[Any, type[Exception]]:
    """pyroute2's IPRoute and NetlinkError, imported when first needed: the import alone
    costs a process 17 MB, and only the commands that install routes need it."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    return IPRoute, NetlinkError

# ESRCH is what the kernel answers for "no such route"; ENOENT for a table that is not there.
_GONE = {errno.ESRCH, errno.ENOENT}
_RTN_UNICAST, _RTN_BLACKHOLE = 1, 6
_FR_ACT_TO_TBL, _FR_ACT_BLACKHOLE = 1, 6


def _reason(exc: Exception) -> str:
    return exc.args[1] if len(exc.args) > 1 else str(exc)


def _change(what: str, kind: str, command: str, spec: dict[str, Any]) -> None:
    """`ipr.<kind>(command, **spec)` on a fresh netlink socket; failures are one RulesError
    line naming `what`, and deleting something already gone is success."""
    IPRoute, NetlinkError = _pyroute2()
    delete = command == "del"
    try:
        with IPRoute() as ipr:
            getattr(ipr, kind)(command, **spec)
    except NetlinkError as exc:
        if delete and getattr(exc, "code", None) in _GONE:
            return
        raise RulesError(f"{what}: {'delete failed: ' if delete else ''}{_reason(exc)}") from exc
    except OSError as exc:
        raise RulesError(f"{what}: {'delete failed: ' if delete else ''}"
                         f"{exc.strerror or exc}") from exc


class RtnetlinkRouteBackend:
    """IPv4 routes via pyroute2. One short-lived netlink socket per call: the manager runs a
    handful of operations, and a socket opened once would pin the namespace it was opened in."""

    def _dump(self, ipr: Any, **filters: Any) -> list[Route]:
        out = []
        names: dict[int, str] | None = None
        for msg in ipr.route("dump", family=socket.AF_INET, **filters):
            gateway = msg.get("gateway")
            dev = ""
            if msg.get("dst") is None:
                continue
            if msg["type"] == _RTN_BLACKHOLE:
                gateway = ""
            elif msg["type"] != _RTN_UNICAST:
                continue  # not a plain "dst via gw", "dst dev D" or blackhole route
            elif gateway is None:
                if names is None:
                    names = {link["index"]: link.get("ifname") for link in ipr.get_links()}
                dev, gateway = names.get(msg.get("oif"), "") or "", ""
                if not dev:
                    continue
            out.append(Route(dst=f"{msg.get('dst')}/{msg['dst_len']}", via=gateway,
                             proto=msg["proto"], table=msg.get("table") or msg["table"],
                             metric=msg.get("priority") or 0, dev=dev))
        return out

    @staticmethod
    def _spec(route: Route) -> dict[str, Any]:
        spec: dict[str, Any] = {"dst": route.dst, "proto": route.proto, "table": route.table,
                                "priority": route.metric}
        if route.via:
            spec["gateway"] = route.via
        elif route.dev:
            try:
                spec["oif"] = socket.if_nametoindex(route.dev)
            except OSError:
                raise RulesError(f"{route.describe()}: no device {route.dev}") from None
        else:
            spec["type"] = "blackhole"
        return spec

    def add(self, route: Route) -> None:
        """`ip route add {dst via gw | dst dev D | blackhole dst} metric M proto P table T`."""
        _change(route.describe(), "route", "add", self._spec(route))

    def delete(self, route: Route) -> None:
        """`ip route del ...` of exactly this route; already gone = success (a route out of a
        device goes with the device)."""
        try:
            spec = self._spec(route)
        except RulesError:
            return  # its device is gone, and the route with it
        _change(route.describe(), "route", "del", spec)

    def exists(self, route: Route) -> bool:
        """True if exactly this route (dst, gateway, proto, table, metric) is installed."""
        IPRoute, NetlinkError = _pyroute2()
        try:
            with IPRoute() as ipr:
                return route in self._dump(ipr, table=route.table, proto=route.proto)
        except (NetlinkError, OSError) as exc:
            raise RulesError(f"cannot list routes: {exc}") from exc

    def list_owned(self, proto: int) -> list[Route]:
        """Every IPv4 'dst via gw' route with protocol `proto`, in any table."""
        IPRoute, NetlinkError = _pyroute2()
        try:
            with IPRoute() as ipr:
                return [r for r in self._dump(ipr, proto=proto) if r.proto == proto]
        except (NetlinkError, OSError) as exc:
            raise RulesError(f"cannot list routes: {exc}") from exc

    @staticmethod
    def _rule_spec(rule: PolicyRule) -> dict[str, Any]:
        addr, length = rule.dst.split("/")
        spec: dict[str, Any] = {"dst": addr, "dst_len": int(length), "priority": rule.priority,
                                "protocol": rule.proto}
        if rule.blackhole:
            spec["action"] = _FR_ACT_BLACKHOLE
        else:
            spec.update(table=rule.table, action=_FR_ACT_TO_TBL)
        return spec

    def add_policy(self, rule: PolicyRule) -> None:
        """`ip rule add to dst lookup T pref P proto 156`."""
        _change(rule.describe(), "rule", "add", self._rule_spec(rule))

    def delete_policy(self, rule: PolicyRule) -> None:
        """`ip rule del` of exactly this rule; already gone = success."""
        _change(rule.describe(), "rule", "del", self._rule_spec(rule))

    def policy_exists(self, rule: PolicyRule) -> bool:
        """True if exactly this rule (dst, table, priority, proto) is installed."""
        IPRoute, NetlinkError = _pyroute2()
        try:
            with IPRoute() as ipr:
                for msg in ipr.rule("dump", family=socket.AF_INET):
                    if msg.get("dst") is None or msg["action"] not in (_FR_ACT_TO_TBL,
                                                                       _FR_ACT_BLACKHOLE):
                        continue
                    blackhole = msg["action"] == _FR_ACT_BLACKHOLE
                    found = PolicyRule(dst=f"{msg.get('dst')}/{msg['dst_len']}",
                                       table=0 if blackhole else (msg.get("table")
                                                                  or msg["table"]),
                                       priority=msg.get("priority") or 1,
                                       proto=max(msg.get("protocol") or 0, 4))
                    if found == rule:
                        return True
        except (NetlinkError, OSError) as exc:
            raise RulesError(f"cannot list routing rules: {exc}") from exc
        except ValueError:
            return False
        return False
