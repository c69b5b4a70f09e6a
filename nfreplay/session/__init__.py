"""The online side's pure, sans-I/O session logic: events in (a captured packet, a response
record, the clock), commands out (packets to send, announcements). No sockets, no logging per
packet.

Modules:
    machine     one replayed TCP session (compiled, setup.py)
    table       every session by client address and port, timers in slots, fan-in moves
    selection   which sessions are replayed, as whom: filters, sampling, rate, copies, pool
    filters     client networks and the first request's pattern; the LVS TOA option
    sampling    a sticky, uniform share of the sessions
    clientpool  the client pool's allocator (pairs never reused while in use on the target)
    counters    the counters every session and the loop update
"""
