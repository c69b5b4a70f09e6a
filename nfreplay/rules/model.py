"""What a role wants from the host, as plain data: rules, routes and sysctl checks.

Nothing here touches the system. The backends turn these values into iptables commands,
netlink messages and /proc/sys writes; the manager decides the order.

Invariants kept by this module:
- A `Rule`'s match is stored in the canonical order `iptables-save` prints, so a rule read
  back from `iptables-nft-save` / `iptables-legacy-save` compares equal to the rule we built.
- Every rule carries its owner tag (`nfreplay:<role>:<instance>`) as an iptables comment;
  the tag is how a fresh process finds rules a killed one left behind.
- Every route carries the protocol id `RTPROT_NFREPLAY`, so `ip route` shows whose it is and a
  delete can never remove an operator's route to the same destination.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, field
from typing import Literal, Sequence

from nfreplay.config import INSTANCE_RE

__all__ = [
    "RTPROT_NFREPLAY",
    "OWNER_PREFIX",
    "Rule",
    "Route",
    "PolicyRule",
    "SysctlCheck",
    "Link",
    "Tunnel",
    "tunnel_device",
    "Plan",
    "owner_tag",
    "assist_plan",
    "target_plan",
    "canonical_match",
    "split_options",
    "save_quote",
]

#: Route protocol id stamped on every route nfreplay adds (`ip route ... proto 156`).
#: 156 (0x9c) is unassigned: the kernel's list (include/uapi/linux/rtnetlink.h) uses 0-4, 8-18,
#: 42, 99 and 186-192; FRR adds 190-198 (ripng, nhrp, ldp, sharp, pbr, zstatic, openfabric,
#: srte); Debian's /etc/iproute2/rt_protos lists nothing else. Values >= 4 (RTPROT_STATIC) are
#: not interpreted by the kernel, and the kernel matches the protocol on RTM_DELROUTE, so a
#: delete with proto 156 cannot remove an operator's static route to the same prefix.
RTPROT_NFREPLAY = 156

#: Every owner tag starts with this; `list_owned(OWNER_PREFIX)` finds all instances.
OWNER_PREFIX = "nfreplay:"

TABLES = ("filter", "raw", "mangle", "nat", "security")
MAIN_TABLE = 254
#: The target's routing table for the client networks (`ip route show table 156`), and the
#: priority of the policy rules that select it: ahead of the main table (32766) and of
#: operators' usual rule numbers.
TARGET_TABLE = 156
TARGET_RULE_PRIORITY = 156
#: Right after it, a rule that drops what the table did not route (a flushed table 156).
TARGET_BLACKHOLE_PRIORITY = 157
#: The blackhole behind each route via the assistant: any worse metric will do.
BLACKHOLE_METRIC = 0xFFFFFFFF


_ROLE_RE = re.compile(r"[a-z][a-z0-9-]{0,15}")
_CHAIN_RE = re.compile(r"[A-Za-z0-9_.-]{1,28}")  # XT_EXTENSION_MAXNAMELEN - 1, no spaces
_SYSCTL_RE = re.compile(r"[A-Za-z0-9_.:/-]+")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")  # IFNAMSIZ - 1

# --- canonical match form -------------------------------------------------------------------
# iptables-save prints the generic part of a rule in this fixed order (print_rule4 in legacy,
# nft_ipv4_save_rule in nft), then each match module in the order it was given, then -j.
_GENERIC_ORDER = ("-s", "-d", "-i", "-o", "-p", "-f")
_GENERIC_ALIASES = {
    "--source": "-s",
    "--src": "-s",
    "--destination": "-d",
    "--dst": "-d",
    "--in-interface": "-i",
    "--out-interface": "-o",
    "--protocol": "-p",
    "--fragment": "-f",
}
_FLAG_ONLY = {"-f"}
_PROTO_NAMES = {"1": "icmp", "6": "tcp", "17": "udp", "132": "sctp"}
# Options that make iptables load the protocol's match module implicitly (`-p tcp --sport 80`
# is saved as `-p tcp -m tcp --sport 80`), and the order the module saves them in.
_PORT_MODULES = ("tcp", "udp", "sctp")
_PORT_ALIASES = {"--source-port": "--sport", "--destination-port": "--dport"}
_PORT_ORDER = ("--sport", "--dport")

Option = tuple[bool, str, tuple[str, ...]]  # (negated, option, values)


def split_options(tokens: Sequence[str]) -> list[Option]:
    """Group tokens into options: an option takes the following tokens up to the next one
    that starts with '-' or is '!' (covers `--sport 80`, `--tcp-flags SYN,ACK SYN`, `--syn`)."""
    out: list[Option] = []
    i = 0
    while i < len(tokens):
        neg = False
        if tokens[i] == "!":
            neg = True
            i += 1
            if i >= len(tokens):
                raise ValueError("'!' at the end of a match")
        opt = tokens[i]
        if not opt.startswith("-") or opt == "-":
            raise ValueError(f"expected an option, got {opt!r}")
        i += 1
        vals: list[str] = []
        while i < len(tokens) and tokens[i] != "!" and not tokens[i].startswith("-"):
            vals.append(tokens[i])
            i += 1
        out.append((neg, opt, tuple(vals)))
    return out


def _address(value: str) -> str:
    if "," in value:
        # iptables expands "a,b" into several rules; one Rule must be one kernel rule.
        raise ValueError(f"one address per rule, got {value!r}")
    try:
        return str(ipaddress.IPv4Network(value, strict=False))
    except ValueError as exc:
        raise ValueError(f"not an IPv4 address or CIDR: {value!r}") from exc


def _port(value: str) -> str:
    lo_s, sep, hi_s = value.partition(":")
    try:
        lo = int(lo_s) if lo_s else 0
        hi = int(hi_s) if hi_s else 65535
        if not sep:
            hi = lo
    except ValueError as exc:
        raise ValueError(f"ports must be numeric, got {value!r}") from exc
    if not (0 <= lo <= hi <= 65535):
        raise ValueError(f"bad port or range {value!r}")
    return str(lo) if lo == hi else f"{lo}:{hi}"


def canonical_match(match: Sequence[str]) -> tuple[str, ...]:
    """Return `match` (iptables match arguments) in the order and spelling iptables-save
    prints: addresses as a.b.c.d/len, generic options first (-s -d -i -o -p -f), the protocol
    module that `--sport/--dport` load implicitly made explicit (`-m tcp`), module options of
    tcp/udp/sctp in save order. Other modules are kept verbatim, so give them as saved.
    Idempotent; raises ValueError on a malformed match."""
    generic: dict[str, Option] = {}
    modules: list[tuple[str, list[Option]]] = []
    current: list[Option] | None = None
    current_name = ""
    for neg, opt, vals in split_options(match):
        opt = _GENERIC_ALIASES.get(opt, opt)
        if opt in ("-m", "--match"):
            if neg or len(vals) != 1:
                raise ValueError("'-m' takes exactly one module name")
            current_name, current = vals[0], []
            modules.append((current_name, current))
            continue
        if opt in _GENERIC_ORDER:
            if opt in generic:
                raise ValueError(f"{opt} given twice")
            want = 0 if opt in _FLAG_ONLY else 1
            if len(vals) != want:
                raise ValueError(f"{opt} takes {want} value(s)")
            if opt in ("-s", "-d"):
                vals = (_address(vals[0]),)
            elif opt == "-p":
                proto = _PROTO_NAMES.get(vals[0], vals[0].lower())
                if proto == "all" or proto == "0":
                    continue  # iptables-save omits "-p all"
                vals = (proto,)
            generic[opt] = (neg, opt, vals)
            current, current_name = None, ""  # a generic option ends the module block
            continue
        opt = _PORT_ALIASES.get(opt, opt)
        if opt in _PORT_ORDER and current_name not in _PORT_MODULES:
            current = None  # --sport after e.g. `-m comment ...` still belongs to tcp/udp
        if current is None:
            if opt not in _PORT_ORDER:
                raise ValueError(f"option {opt} outside a '-m' module")
            # Implicit protocol match, exactly like iptables: `-p tcp --sport 80`.
            proto = generic.get("-p", (False, "-p", ("",)))[2][0]
            if proto not in _PORT_MODULES:
                raise ValueError(f"{opt} needs -p tcp, udp or sctp")
            current_name = proto
            found = [m for name, m in modules if name == proto]
            if found:
                current = found[0]
            else:
                current = []
                modules.append((proto, current))
        if current_name in _PORT_MODULES and opt in _PORT_ORDER:
            if len(vals) != 1:
                raise ValueError(f"{opt} takes one port or range")
            vals = (_port(vals[0]),)
        current.append((neg, opt, vals))

    out: list[str] = []
    for opt in _GENERIC_ORDER:
        if opt in generic:
            neg, _, vals = generic[opt]
            out += [*(["!"] if neg else []), opt, *vals]
    for name, opts in modules:
        if name in _PORT_MODULES:
            rank = {o: i for i, o in enumerate(_PORT_ORDER)}
            opts = sorted(opts, key=lambda o: rank.get(o[1], len(rank)))  # stable for the rest
        out += ["-m", name]
        for neg, opt, vals in opts:
            out += [*(["!"] if neg else []), opt, *vals]
    return tuple(out)


_NO_QUOTE = set("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def save_quote(value: str) -> str:
    """Quote a string option the way iptables-save does (xtables_save_string): bare when it
    only has [A-Za-z0-9_-], else in double quotes with \\ " ' escaped."""
    if value and set(value) <= _NO_QUOTE:
        return value
    escaped = "".join("\\" + c if c in "\"\\'" else c for c in value)
    return f'"{escaped}"'


# --- the wanted things --------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """One iptables rule owned by nfreplay.

    `match` may be given in any order iptables accepts (e.g. `("-p","tcp","-s","198.18.0.3",
    "--sport","80")`); it is stored canonicalised (see `canonical_match`), so equality means
    "the same kernel rule". `target` is the `-j` part in iptables-save spelling, e.g.
    `("NFQUEUE", "--queue-num", "0")`. `owner` becomes `-m comment --comment <owner>`.
    """

    table: str
    chain: str
    match: tuple[str, ...]
    target: tuple[str, ...]
    owner: str

    def __post_init__(self) -> None:
        if self.table not in TABLES:
            raise ValueError(f"unknown table {self.table!r}")
        if not _CHAIN_RE.fullmatch(self.chain):
            raise ValueError(f"bad chain name {self.chain!r}")
        if not self.owner or "\n" in self.owner or len(self.owner) > 255:
            raise ValueError(f"bad owner tag {self.owner!r}")
        if not self.target or not self.target[0] or self.target[0].startswith("-"):
            raise ValueError(f"bad target {self.target!r}")
        object.__setattr__(self, "match", canonical_match(self.match))
        object.__setattr__(self, "target", tuple(self.target))

    def spec(self) -> list[str]:
        """The argv after `-A <chain>` (or `-I <chain> <n>`, `-D <chain>`, `-C <chain>`), in
        iptables-save order: match, owner comment, target."""
        return [*self.match, "-m", "comment", "--comment", self.owner, "-j", *self.target]

    def save_line(self) -> str:
        """The exact line `iptables-save` prints for this rule (without table context)."""
        parts = ["-A", self.chain, *self.match, "-m", "comment", "--comment",
                 save_quote(self.owner), "-j", *self.target]
        return " ".join(parts)

    def describe(self) -> str:
        """One line an operator can paste: `iptables -t raw -A PREROUTING ...`."""
        return f"iptables -t {self.table} -A {self.chain} {shlex.join(self.spec())}"


def _check_table(table: int) -> None:
    if not 1 <= table <= 0xFFFFFFFF or table == 255:
        raise ValueError(f"bad route table {table}")


def _check_proto(proto: int) -> None:
    # Below RTPROT_STATIC the kernel gives the id a meaning (redirect, kernel, boot).
    if not 4 <= proto <= 255:
        raise ValueError(f"route protocol must be 4-255, got {proto}")


@dataclass(frozen=True)
class Route:
    """A route for `dst` (CIDR) via the gateway `via`, or out of the device `dev` (no
    gateway), tagged with protocol `proto`; with neither a blackhole route (packets to `dst`
    are dropped, whatever interface is up)."""

    dst: str
    via: str
    proto: int = RTPROT_NFREPLAY
    table: int = MAIN_TABLE
    metric: int = 0
    dev: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "dst", _address(self.dst))
        if self.via:
            try:
                object.__setattr__(self, "via", str(ipaddress.IPv4Address(self.via)))
            except ValueError as exc:
                raise ValueError(f"route gateway is not an IPv4 address: {self.via!r}") from exc
        _check_proto(self.proto)
        _check_table(self.table)
        if not 0 <= self.metric <= 0xFFFFFFFF:
            raise ValueError(f"bad route metric {self.metric}")
        if self.dev and (self.via or not _IFNAME_RE.fullmatch(self.dev)):
            raise ValueError(f"a route has a gateway or a device name, got {self.via!r} and "
                             f"{self.dev!r}")

    @property
    def blackhole(self) -> bool:
        return not self.via and not self.dev

    def describe(self) -> str:
        """One line an operator can paste: `ip route add ... proto 156 table 254`."""
        what = (f"{self.dst} via {self.via}" if self.via else f"{self.dst} dev {self.dev}"
                if self.dev else f"blackhole {self.dst}")
        metric = f" metric {self.metric}" if self.metric else ""
        return f"ip route add {what}{metric} proto {self.proto} table {self.table}"


@dataclass(frozen=True)
class PolicyRule:
    """A routing policy rule: packets to `dst` (CIDR) look up `table` (`ip rule add to dst
    lookup table pref priority proto P`), or with `table` 0 are dropped (`ip rule add to dst
    blackhole ...`), tagged with protocol `proto` like our routes."""

    dst: str
    table: int  # 0: a blackhole rule
    priority: int
    proto: int = RTPROT_NFREPLAY

    def __post_init__(self) -> None:
        object.__setattr__(self, "dst", _address(self.dst))
        _check_proto(self.proto)
        if self.table:
            _check_table(self.table)
        if not 1 <= self.priority <= 32765:  # 0 is the local table's, 32766 main's
            raise ValueError(f"rule priority must be 1-32765, got {self.priority}")

    @property
    def blackhole(self) -> bool:
        return not self.table

    def describe(self) -> str:
        """One line an operator can paste."""
        action = "blackhole" if self.blackhole else f"lookup {self.table}"
        return f"ip rule add to {self.dst} {action} pref {self.priority} proto {self.proto}"


@dataclass(frozen=True)
class SysctlCheck:
    """`key` must read `want`. If it does not: with `fix`, nfreplay sets it and restores the old
    value on down; without, `up` fails with a line that ends with `hint` (the option that lets
    nfreplay change it)."""

    key: str
    want: str
    fix: bool = False
    hint: str = ""

    def __post_init__(self) -> None:
        if not _SYSCTL_RE.fullmatch(self.key) or ".." in self.key:
            raise ValueError(f"bad sysctl key {self.key!r}")

    def describe(self) -> str:
        """One line: `sysctl net.ipv4.ip_forward=0`."""
        return f"sysctl {self.key}={self.want}"


@dataclass(frozen=True)
class Link:
    """A network device nfreplay creates (`ip link add NAME address MAC type KIND ARGS...`),
    its alias set to the owner tag (how a fresh process finds a device a killed one left),
    up."""

    name: str
    kind: str
    args: tuple[str, ...]
    owner: str
    address: str = ""

    def __post_init__(self) -> None:
        if not _IFNAME_RE.fullmatch(self.name):
            raise ValueError(f"bad device name {self.name!r}")
        if self.kind not in ("vxlan",):
            raise ValueError(f"unsupported device kind {self.kind!r}")

    def describe(self) -> str:
        """One line an operator can paste."""
        address = f" address {self.address}" if self.address else ""
        return f"ip link add {self.name}{address} type {self.kind} {' '.join(self.args)}"


@dataclass(frozen=True)
class Plan:
    """Everything one owner wants. Rules are listed in the order they must appear in their
    chain; routes and sysctls in install order."""

    owner: str
    rules: tuple[Rule, ...] = ()
    routes: tuple[Route, ...] = ()
    sysctls: tuple[SysctlCheck, ...] = field(default=())
    #: Installed after the routes (the table they select is complete when they go live).
    policy: tuple[PolicyRule, ...] = ()
    #: Devices, installed first (rules, routes and sysctls may name them), removed last.
    links: tuple[Link, ...] = ()

    def __post_init__(self) -> None:
        for rule in self.rules:
            if rule.owner != self.owner:
                raise ValueError(f"rule owned by {rule.owner!r} in the plan of {self.owner!r}")


# --- plan builders (pure) -----------------------------------------------------------------
def owner_tag(role: str, instance: str) -> str:
    """`nfreplay:<role>:<instance>`; instance must match [A-Za-z0-9_.-]{1,32}."""
    if not _ROLE_RE.fullmatch(role):
        raise ValueError(f"bad role {role!r}")
    if not INSTANCE_RE.fullmatch(instance):
        raise ValueError(f"instance name must match [A-Za-z0-9_.-]{{1,32}}, got {instance!r}")
    return f"{OWNER_PREFIX}{role}:{instance}"


def _ipv4(value: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError as exc:
        raise ValueError(f"{what} is not an IPv4 address: {value!r}") from exc


def _networks(values: Sequence[str], what: str) -> list[str]:
    if isinstance(values, str):
        raise ValueError(f"{what} must be a list of CIDRs, not one string")
    out = []
    for value in values:
        try:
            net = str(ipaddress.IPv4Network(value, strict=False))
        except ValueError as exc:
            raise ValueError(f"{what}: not an IPv4 address or CIDR: {value!r}") from exc
        if net not in out:
            out.append(net)
    return out


def _int_in(value: object, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


IP_FORWARD_HINT = "set assist.fix_ip_forward = true to let nfreplay change it"


#: Queues one assist instance may spread the replies over (`--queue-balance`).
MAX_QUEUES = 64


def assist_plan(
    instance: str,
    target_ip: str,
    target_port: int,
    clients: Sequence[str],
    mode: Literal["assistant", "colocated"],
    queue: int,
    passlist: Sequence[str] = (),
    fix_ip_forward: bool = False,
    ip_forward_hint: str = IP_FORWARD_HINT,
    queues: int = 1,
) -> Plan:
    """The assist role: queue the target's replies to the client networks.

    One queue: `NFQUEUE --queue-num Q`. `queues` N > 1: `--queue-balance Q:Q+N-1`, the kernel
    spreading the replies over N queues by a hash of their addresses (one process each,
    `assist.queues`).

    assistant: `raw PREROUTING` (replies arrive routed from the target; raw sees them before
    conntrack, so no state is created for them) and `net.ipv4.ip_forward` must be 0, so that
    anything not queued is black-holed, never forwarded to a real client.
    colocated: `raw OUTPUT` on the target itself; no forwarding involved.
    Passlisted addresses get an ACCEPT rule that comes before every NFQUEUE rule.
    """
    if mode not in ("assistant", "colocated"):
        raise ValueError(f"mode must be 'assistant' or 'colocated', got {mode!r}")
    owner = owner_tag("assist", instance)
    src = _ipv4(target_ip, "target ip") + "/32"
    if not _int_in(target_port, 1, 65535):
        raise ValueError(f"target port must be 1-65535, got {target_port!r}")
    if not _int_in(queue, 0, 65535):
        raise ValueError(f"queue must be 0-65535, got {queue!r}")
    if not _int_in(queues, 1, MAX_QUEUES):
        raise ValueError(f"queues must be 1-{MAX_QUEUES}, got {queues!r}")
    if queue + queues - 1 > 65535:
        raise ValueError(f"queues {queue}-{queue + queues - 1}: the last must be at most 65535")
    nets = _networks(clients, "clients")
    if not nets:
        raise ValueError("clients: at least one client network is needed")
    chain = "PREROUTING" if mode == "assistant" else "OUTPUT"

    def reply_match(dst: str) -> tuple[str, ...]:
        return ("-p", "tcp", "-s", src, "--sport", str(target_port), "-d", dst)

    rules = [Rule("raw", chain, reply_match(net), ("ACCEPT",), owner)
             for net in _networks(passlist, "passlist")]
    # No --queue-bypass: with no process bound to the queue the kernel then drops the reply,
    # which is what a black hole wants; bypass would let replies reach real clients.
    nfqueue = (("NFQUEUE", "--queue-num", str(queue)) if queues == 1 else
               ("NFQUEUE", "--queue-balance", f"{queue}:{queue + queues - 1}"))
    rules += [Rule("raw", chain, reply_match(net), nfqueue, owner) for net in nets]
    sysctls: tuple[SysctlCheck, ...] = ()
    if mode == "assistant":
        sysctls = (SysctlCheck("net.ipv4.ip_forward", "0", fix=fix_ip_forward,
                               hint=ip_forward_hint),)
    return Plan(owner=owner, rules=tuple(rules), sysctls=sysctls)


@dataclass(frozen=True)
class Tunnel:
    """The target's end of tunnelled delivery (`nfreplay target up --tunnel`): a kernel device
    of `kind` that takes in, on UDP `port`, what the online hosts `peers` (IPv4 addresses)
    send; everything else sent to that port is dropped by a firewall rule."""

    kind: str
    peers: tuple[str, ...]
    port: int


#: The encapsulations whose device the rule manager builds (the online side sends all four
#: of `proto.tunnel`; a fou, gre or ipip device is the operator's to make for now).
TUNNEL_DEVICES = ("vxlan",)


def tunnel_device(instance: str) -> str:
    """The tunnel device's name: `nfr` + 8 hex digits of the instance + `t` (15 bytes at
    most, stable, one per instance)."""
    import hashlib

    return "nfr" + hashlib.sha256(instance.encode()).hexdigest()[:8] + "t"


def _tunnel_items(owner: str, instance: str, tunnel: Tunnel, nets: Sequence[str]
                  ) -> tuple[Link, list[Rule]]:
    from nfreplay.proto import tunnel as encap

    if tunnel.kind not in TUNNEL_DEVICES:
        raise ValueError(f"tunnel: nfreplay builds a {' or '.join(TUNNEL_DEVICES)} device; a "
                         f"{tunnel.kind!r} device is yours to create (ip link / ip fou), or "
                         "use vxlan on both sides")
    if not _int_in(tunnel.port, 1, 65535):
        raise ValueError(f"tunnel port must be 1-65535, got {tunnel.port!r}")
    peers = [_ipv4(p, "tunnel peer") for p in tunnel.peers]
    if not peers:
        raise ValueError("tunnel_peers: at least one online host is needed (--tunnel-peers)")
    for peer in peers:
        inside = [n for n in nets if ipaddress.IPv4Address(peer) in ipaddress.IPv4Network(n)]
        if inside:
            # Its route would point into the tunnel too: the colocated assist's answers on the
            # control channel would never reach the online host.
            raise ValueError(f"clients: {inside[0]} holds the tunnel peer {peer}, whose "
                             "traffic would be routed into the tunnel and lost: list only the "
                             "addresses the target answers as clients (an online.client_pool "
                             "of addresses nothing else uses is the simplest)")
    mac = ":".join(f"{b:02x}" for b in encap.TARGET_MAC)
    # nolearning: the device never learns where the online host is, so what is routed into
    # it (the replies, when no assist queues them) has no way out and is discarded.
    link = Link(tunnel_device(instance), "vxlan",
                ("id", str(encap.VNI), "dstport", str(tunnel.port), "nolearning"), owner,
                address=mac)
    port = ("-p", "udp")
    # raw PREROUTING, before anything else sees them: the listed peers' packets to the
    # tunnel port are accepted, the others dropped (a VXLAN device takes them from anyone).
    rules = [Rule("raw", "PREROUTING", (*port, "-s", f"{p}/32", "--dport", str(tunnel.port)),
                  ("ACCEPT",), owner) for p in dict.fromkeys(peers)]
    rules.append(Rule("raw", "PREROUTING", (*port, "--dport", str(tunnel.port)), ("DROP",),
                      owner))
    return link, rules


def target_plan(instance: str, clients: Sequence[str], via: str,
                tunnel: Tunnel | None = None) -> Plan:
    """The target role: send replies for each client network to the assistant at `via`, and
    fail closed when that route disappears; with `tunnel`, also the device that takes
    replayed packets in, and without `via` the replies go into that device instead (a
    colocated nfreplay-assist queues them in OUTPUT, before the device discards them).

    The routes live in their own table (`TARGET_TABLE`), selected by a policy rule per client
    network ahead of the main table: in it, the route via the assistant, and behind it (a
    worse metric) a blackhole route for the same network. The kernel deletes a route whose
    interface goes down (link flap, DHCP renew, `ip route flush dev X`) but never a blackhole
    route, so the target's replies to real clients are then dropped, never sent out by its
    default route; `ip route flush` of the main table does not touch this table at all. And
    should table 156 be flushed too, a blackhole rule right after the lookup drops what it
    no longer routes: only deleting our rules opens the way to the main table.
    """
    owner = owner_tag("target", instance)
    gateway = _ipv4(via, "assistant address (via)") if via or tunnel is None else ""
    nets = _networks(clients, "clients")
    if not nets:
        raise ValueError("clients: at least one client network is needed")
    links: tuple[Link, ...] = ()
    rules: list[Rule] = []
    sysctls: tuple[SysctlCheck, ...] = ()
    if tunnel is not None:
        link, rules = _tunnel_items(owner, instance, tunnel, nets)
        links = (link,)
        if gateway:
            # Replies routed via an assistant leave by another interface than the tunnel:
            # strict reverse-path filtering would drop every replayed packet (loose keeps
            # the check that some route to the client exists). Without a gateway the route
            # back is the tunnel itself, which strict filtering accepts.
            sysctls = (SysctlCheck(f"net.ipv4.conf.{link.name}.rp_filter", "2", fix=True),)
    routes = []
    for net in nets:
        # The blackhole first: at no moment does the table hold the via route alone.
        routes.append(Route(net, "", table=TARGET_TABLE, metric=BLACKHOLE_METRIC))
        routes.append(Route(net, gateway, table=TARGET_TABLE, dev="" if gateway
                            else links[0].name))
    return Plan(owner=owner, rules=tuple(rules), routes=tuple(routes), links=links,
                sysctls=sysctls,
                policy=tuple(rule for net in nets for rule in (
                    PolicyRule(net, TARGET_TABLE, TARGET_RULE_PRIORITY),
                    PolicyRule(net, 0, TARGET_BLACKHOLE_PRIORITY))))
