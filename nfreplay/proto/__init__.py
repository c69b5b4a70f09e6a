"""Pure wire formats: no I/O, no logging, no clocks, standard library only.

Modules:
    seq       TCP sequence arithmetic modulo 2**32
    checksum  the Internet checksum: full computation, verification, incremental update (RFC 1624)
    tcpip     IPv4/TCP header views over one buffer (``Segment``), TCP options, ``build``,
              in-place ``rewrite`` (the per-packet hot path), timestamp rewrites, ``trim_front``
    channel   the tcpcopy 1.3 / intercept 1.0 control channel (default build profile):
              version and CLIENT_ADD messages, 64-byte response records, count-prefixed frames;
              nfreplay's negotiated extension (hello and collision notices, CLIENT_DEL)
    link      link-layer headers (Ethernet and VLAN tags, Linux cooked, raw IP, loopback):
              where the IPv4 packet starts, for captures, capture files and mirrors alike
    resegment splitting an oversized (GRO/TSO) segment to the path's MTU
    nexthop   rtnetlink route, link and neighbour requests and their answers (link delivery)
    tunnel    tunnelled delivery's encapsulations (VXLAN, FOU, GRE, IPIP): prefix, overhead
    vxlan     the mirror input: VXLAN datagrams, the capture filter's verdict, duplicates
    pcapfile  pcap and pcapng reading, and the pcapng writer of recordings
    recording the recording's file names and session lines (`nfreplay compare`)

Invariants shared by all of them:
    * Fields are host-order Python ints (IPv4 addresses too); the wire is network byte order.
    * Bytes a peer or a capture got wrong raise ``nfreplay.errors.WireError`` with a one-line
      message; calling the API wrongly raises ``ValueError`` / ``TypeError``.
    * Lengths come from the headers, not from the size of the buffer they are read from.
    * Computed checksums equal a full RFC 1071 recompute (and scapy's), whether computed in full
      or updated incrementally from a correct old checksum.
"""
