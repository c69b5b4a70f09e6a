"""Routes through rtnetlink (pyroute2 `IPRoute`), in the calling process's network namespace.

Every route carries `Route.proto`; deletes pass it too, and the kernel matches it on
RTM_DELROUTE, so deleting our route to 198.18.1.0/24 can never take an operator's static route
to the same prefix with it.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from nfreplay.errors import RulesError
from nfreplay.rules.model import Route

__all__ = ["RtnetlinkRouteBackend"]

# ESRCH is what the kernel answers for "no such route"; ENOENT for a table that is not there.
_GONE = {errno.ESRCH, errno.ENOENT}


def _reason(exc: NetlinkError) -> str:
    return exc.args[1] if len(exc.args) > 1 else str(exc)


class RtnetlinkRouteBackend:
    """IPv4 routes via pyroute2. One short-lived netlink socket per call: the manager runs a
    handful of operations, and a socket opened once would pin the namespace it was opened in."""

    def _dump(self, ipr: Any, **filters: Any) -> list[Route]:
        out = []
        for msg in ipr.route("dump", family=socket.AF_INET, **filters):
            gateway = msg.get("gateway")
            if gateway is None or msg.get("dst") is None:
                continue  # not a plain "dst via gw" route: never one of ours
            out.append(Route(dst=f"{msg.get('dst')}/{msg['dst_len']}", via=gateway,
                             proto=msg["proto"], table=msg.get("table") or msg["table"]))
        return out

    def add(self, route: Route) -> None:
        """`ip route add dst via gw proto P table T`."""
        try:
            with IPRoute() as ipr:
                ipr.route("add", dst=route.dst, gateway=route.via, proto=route.proto,
                          table=route.table)
        except NetlinkError as exc:
            raise RulesError(f"{route.describe()}: {_reason(exc)}") from exc
        except OSError as exc:
            raise RulesError(f"{route.describe()}: {exc.strerror or exc}") from exc

    def delete(self, route: Route) -> None:
        """`ip route del dst via gw proto P table T`; already gone = success."""
        try:
            with IPRoute() as ipr:
                ipr.route("del", dst=route.dst, gateway=route.via, proto=route.proto,
                          table=route.table)
        except NetlinkError as exc:
            if exc.code in _GONE:
                return
            raise RulesError(f"{route.describe()}: delete failed: {_reason(exc)}") from exc
        except OSError as exc:
            raise RulesError(f"{route.describe()}: delete failed: {exc.strerror or exc}") from exc

    def exists(self, route: Route) -> bool:
        """True if exactly this route (dst, gateway, proto, table) is installed."""
        try:
            with IPRoute() as ipr:
                return route in self._dump(ipr, table=route.table, proto=route.proto)
        except (NetlinkError, OSError) as exc:
            raise RulesError(f"cannot list routes: {exc}") from exc

    def list_owned(self, proto: int) -> list[Route]:
        """Every IPv4 'dst via gw' route with protocol `proto`, in any table."""
        try:
            with IPRoute() as ipr:
                return [r for r in self._dump(ipr, proto=proto) if r.proto == proto]
        except (NetlinkError, OSError) as exc:
            raise RulesError(f"cannot list routes: {exc}") from exc
