"""Transcripts of fan-in collisions in the session table: another online host holds the client
address and port on the target, the assistant says so (`SessionTable.collided`), and the
session moves to another client port, or ends counted as `collided`. And the accounting every
opened session passes through: established, or `unestablished_<reason>`."""

from __future__ import annotations

import dataclasses

from nfreplay.proto import tcpip
from nfreplay.proto.tcpip import ACK, FIN, PSH, SYN
from nfreplay.session.machine import UNESTABLISHED, Announce, Counters, REASONS
from nfreplay.session.selection import Selection
from nfreplay.session.table import MAX_MOVES, MOVE_PORTS, SessionTable
from tests.unit.session.transcript import (
    CLIENT, CPORT, ISN, OSEQ, PARAMS, T1, TARGET, TISN, TPORT, Lab, view,
)


def unaccounted(c: Counters) -> int:
    return (c.sessions_opened - c.sessions_established - c.sessions_live
            - sum(getattr(c, f"unestablished_{r}") for r in UNESTABLISHED))


def moved(lab: Lab) -> tuple[list, int]:
    """The assistant's collision notice for CLIENT:CPORT: what the table emits, and the port
    the session moved to."""
    out: list = []
    lab.t.collided(CLIENT, CPORT, TARGET, TPORT, lab.now, out)
    assert type(out[0]) is Announce and out[0].client_port != CPORT
    return out, out[0].client_port


def test_a_collided_session_moves_to_another_port_and_replays_from_there() -> None:
    lab = Lab()
    lab.t = SessionTable(PARAMS, lab.c, seed=7)
    out = lab.cl(SYN, ISN)
    assert out[0] == Announce(CLIENT, CPORT) and view(out[1])[2:4] == (SYN, ISN)
    out, port = moved(lab)
    assert MOVE_PORTS[0] <= port < MOVE_PORTS[1]
    # The same SYN (the client's ISN), announced and sent from the new port.
    assert out[0] == Announce(CLIENT, port) and view(out[1])[2:4] + view(out[1])[6:] == (
        SYN, ISN, port)
    assert lab.c.sessions_moved == 1 and lab.c.syns_sent == 2
    # The target answers the new port; the client's packets (old port) follow the session.
    out = lab.rec(SYN | ACK, TISN, ISN + 1, port=port)
    assert [view(p)[2:5] + view(p)[6:] for p in out] == [(ACK, ISN + 1, T1, port)]
    assert lab.cl(ACK, ISN + 1, OSEQ + 1) == []
    out = lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"GET / HTTP/1.1\r\n\r\n")
    assert [view(p)[2:] for p in out] == [(ACK | PSH, ISN + 1, T1, 18, port)]
    lab.rec(ACK | PSH, T1, ISN + 19, plen=10, port=port)
    out = lab.cl(ACK | FIN, ISN + 19, OSEQ + 11)
    lab.advance(0.2)
    lab.rec(ACK | FIN, (T1 + 10) % 2**32, ISN + 20, port=port)
    c = lab.c
    assert (c.sessions_completed, c.sessions_established, c.sessions_collided) == (1, 1, 0)
    # Over: withdrawn from the assistant under the port it used, once.
    assert lab.t.withdrawn == [(CLIENT, port, TARGET, TPORT)]
    lab.advance(PARAMS.linger + 1)
    assert len(lab.t) == 0 and not lab.t._moved  # forgotten, alias included
    assert unaccounted(c) == 0


def test_a_late_notice_changes_nothing() -> None:
    """The session established (its route was free after all), or is gone: not moved."""
    lab = Lab()
    lab.established()
    out: list = []
    lab.t.collided(CLIENT, CPORT, TARGET, TPORT, lab.now, out)
    lab.t.collided(CLIENT, CPORT + 1, TARGET, TPORT, lab.now, out)  # no such session
    lab.t.collided(CLIENT, CPORT, TARGET, TPORT + 1, lab.now, out)  # another target
    assert out == [] and lab.c.sessions_moved == 0 and lab.c.sessions_collided == 0


def test_a_session_that_cannot_move_ends_collided_without_a_packet() -> None:
    """Moved MAX_MOVES times already: it ends `collided`, counted as not established. No RST:
    the four-tuple on the target is the other host's."""
    lab = Lab()
    lab.cl(SYN, ISN)
    port = CPORT
    for _ in range(MAX_MOVES):
        out: list = []
        lab.t.collided(CLIENT, port, TARGET, TPORT, lab.now, out)
        port = out[0].client_port
    out = []
    lab.t.collided(CLIENT, port, TARGET, TPORT, lab.now, out)
    assert out == []
    c = lab.c
    assert (c.sessions_collided, c.unestablished_collided, c.sessions_moved) == (1, 1, 1)
    assert c.sessions_live == 0 and unaccounted(c) == 0
    # The captured connection goes on: its packets reach no target.
    assert lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"x") == []


def test_with_a_client_pool_a_collided_session_is_not_moved_but_counted() -> None:
    c = Counters()
    pool = tcpip.ip2int("198.18.1.200")
    t = SessionTable(PARAMS, c, Selection(pool=(pool,)))
    out: list = []
    pkt = tcpip.build(CLIENT, TARGET, CPORT, 80, ISN, 0, SYN)
    t.client_packet(tcpip.parse(pkt), pkt, 0.0, out)
    ann = out[0]
    assert type(ann) is Announce and ann.client_ip == pool
    out = []
    t.collided(pool, ann.client_port, TARGET, TPORT, 0.0, out)
    assert out == [] and c.sessions_collided == 1 and c.unestablished_collided == 1
    assert c.sessions_moved == 0 and unaccounted(c) == 0


def test_the_captured_port_reused_for_a_new_connection_gets_its_own_session() -> None:
    """A moved session keeps its alias only for its own connection: the client's next SYN on
    that port (another ISN) opens a new session there."""
    lab = Lab()
    lab.cl(SYN, ISN)
    _, port = moved(lab)
    out = lab.cl(SYN, ISN + 500_000)
    assert out[0] == Announce(CLIENT, CPORT) and view(out[1])[2:4] == (SYN, ISN + 500_000)
    assert len(lab.t) == 2 and lab.c.sessions_opened == 2


def test_every_opened_session_is_established_or_counted_under_a_reason() -> None:
    """A handshake that fails, a session reset at shutdown before its SYN-ACK, one collided,
    one established and completed: opened = established + unestablished_*."""
    lab = Lab(dataclasses.replace(PARAMS, syn_retries=0))
    lab.cl(SYN, ISN, port=CPORT + 1)  # never answered
    lab.advance(PARAMS.syn_rto + 0.1)
    assert lab.c.unestablished_handshake_failed == 1
    lab.cl(SYN, ISN, port=CPORT + 2)
    for _ in range(MAX_MOVES + 1):
        out: list = []
        key = next(k for k, s in lab.t.sessions.items() if not s.done)
        lab.t.collided(CLIENT, key & 0xFFFF, TARGET, TPORT, lab.now, out)
    assert lab.c.unestablished_collided == 1
    lab.established()
    lab.cl(SYN, ISN, port=CPORT + 3)
    out = []
    lab.t.shutdown(lab.now, out)
    c = lab.c
    assert c.sessions_opened == 4 and c.sessions_established == 1
    assert c.unestablished_shutdown == 1 and c.sessions_shutdown == 2  # one established
    assert unaccounted(c) == 0


def test_every_reason_but_completed_has_its_unestablished_counter() -> None:
    assert set(UNESTABLISHED) == set(REASONS) - {"completed"}
    assert all(f"unestablished_{r}" in Counters.names for r in UNESTABLISHED)
    assert "sessions_collided" in Counters.names
