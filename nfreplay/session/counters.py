"""The online side's counters: plain ints shared by every session and the loop, read off
the hot path (``snapshot()``, once a second). Each is declared here, once; `sessions_<reason>`
exists for every reason a session can end (``machine.REASONS``), and `unestablished_<reason>`
for every reason a session can end before its handshake with the target completed, so that

    sessions_opened = sessions_established + sum(unestablished_*) + those still handshaking

(``machine.UNESTABLISHED``)."""

from __future__ import annotations

from nfreplay.counters import Counters as BaseCounters


class Counters(BaseCounters):
    """Everything nfreplay-online counts (the order is the order `status` shows)."""

    levels = frozenset({"sessions_live", "bytes_buffered"})

    packets_captured: int
    # The mirror input (online.input = "vxlan"): datagrams and their bytes received, and
    # those not handed on as captured packets, by why (adapters.mirror).
    mirror_packets: int
    mirror_bytes: int
    mirror_bad: int  # undecodable (not VXLAN, cut short) or another VNI than online.vxlan_vni
    mirror_replies: int  # production's answers (the mirror copies both directions)
    mirror_other: int  # other traffic of the mirrored host (ports, protocols, ARP, IPv6)
    mirror_duplicates: int  # the same packet mirrored again: replayed once
    packets_bad: int
    packets_no_session: int
    held_overflow: int  # a reused port's next connection: packets past MAX_HELD_PACKETS, dropped
    packets_sent: int
    client_acks_absorbed: int
    client_duplicates: int
    client_trimmed: int
    sessions_opened: int
    sessions_established: int
    sessions_live: int
    bytes_buffered: int  # client bytes all live sessions hold, not yet sent (a level)
    requests_sent: int
    responses_complete: int
    responses_timed_out: int
    retransmits: int
    syn_retransmits: int
    records_received: int
    records_no_session: int
    records_bad: int
    acks_sent: int
    resets_sent: int
    stale_resets: int
    sessions_skipped_no_channel: int
    sessions_midstream: int
    reconnects: int
    resends_withheld: int  # sent, unacknowledged data not resent after a target reset/close
    fast_retransmits: int
    window_probes: int
    greetings: int
    midstream_refused: int
    midstream_unconfirmed: int  # seen without a SYN, never proved real: not replayed
    sessions_rejected_limit: int
    sessions_rejected_memory: int  # refused while bytes_buffered >= max_buffered_bytes
    packets_split: int
    checksums_fixed: int  # captured with an unfinished checksum (offload): sent recomputed
    mss_clamped: int  # replayed SYNs whose MSS was lowered to fit the tunnel (max_mss)
    sack_stripped: int  # client packets whose SACK blocks were taken out (NOPs) before replay
    client_syns: int
    client_data_packets: int
    records_data: int
    records_fin: int
    records_rst: int
    syns_sent: int
    data_packets_sent: int
    fins_sent: int
    sessions_sampled_out: int
    sessions_rate_limited: int
    packets_not_selected: int
    copies_unallocated: int
    sessions_shed: int
    internal_errors: int
    syns_unannounced: int
    sessions_completed: int
    sessions_client_reset: int
    sessions_target_reset: int
    sessions_handshake_failed: int
    sessions_timed_out: int
    sessions_superseded: int
    sessions_capture_gap: int
    sessions_overflow: int
    sessions_shutdown: int
    sessions_filtered: int
    sessions_collided: int  # another online host held its client ip:port on the target
    sessions_moved: int  # replayed from another client port: its own was another host's
    collision_notices: int  # the assistant refused an announcement: another host had it
    unestablished_handshake_failed: int
    unestablished_collided: int
    unestablished_filtered: int
    unestablished_superseded: int
    unestablished_timed_out: int
    unestablished_overflow: int
    unestablished_shutdown: int
    unestablished_client_reset: int
    unestablished_target_reset: int
    unestablished_capture_gap: int
