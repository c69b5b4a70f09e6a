"""nfreplay: copy live TCP sessions from an online host to a target host.

Package map (one duty per package):
    proto/     pure wire formats (IPv4/TCP, checksums, sequence numbers, control channel)
    session/   the sans-I/O TCP session machine of the online side
    engine/    the hot loops of the online and assist roles; the only place commands become I/O
    adapters/  libpcap, raw sockets, NFQUEUE (and in-memory fakes)
    rules/     the rule manager: wanted rules/routes/sysctls, backends, journal
    config.py  TOML into frozen dataclasses;  stats.py, status.py  counters and `status`
    cli/       entry points
"""

__version__ = "0.1.0"
