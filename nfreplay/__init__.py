"""nfreplay: copy live TCP sessions from an online host to a target host.

Package map (one duty per package):
    proto/     pure wire formats (IPv4/TCP, checksums, sequence numbers, control channel)
    session/   the sans-I/O TCP session machine of the online side, and which sessions it
               replays (selection: sampling, client filters, client pool)
    engine/    the hot loops of the online and assist roles (and the assist's router); the
               only place commands become I/O
    adapters/  libpcap, capture files, raw sockets, NFQUEUE, control-channel sockets,
               rtnetlink notifications
    rules/     the rule manager: wanted rules/routes/sysctls, backends, journal
    config.py  TOML into frozen dataclasses;  counters.py  the hot loops' counters;
    stats.py, status.py  the stats files and `status`
    cli/       entry points
"""

__version__ = "0.1.0"
