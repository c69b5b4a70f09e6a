"""The only modules that touch the kernel's packet interfaces and the network.

Modules:
    capture      libpcap live capture (pcapy-ng), batches per wake-up
    pcapsource   a capture file played on its own clock (offline replay)
    mirror       the mirror input: a UDP socket of VXLAN datagrams behind the capture's contract
    rawsock      how replayed packets leave: raw socket (ip), packet socket to the next hop
                 (link), or inside a tunnel (TunnelSender); the rtnetlink look-up of the path
    nfqueue      NetfilterQueue: the assist's queue, one verdict per packet
    channel      the control channel's sockets: the online side's connections, the listener
    rtwatch      rtnetlink notifications (the target's resident route watcher)
    recordfiles  the recording directory: rotated pcapng files, a writer thread
    metrics      the Prometheus endpoint's HTTP server thread
    probes       doctor's read-only looks through external programs (ethtool, modinfo)
"""
