"""The commands: argument parsing and the wiring of adapters, engines and rules.

Modules:
    main               `nfreplay` (status, target, doctor, compare)
    online, assist     `nfreplay-online`, `nfreplay-assist`: flags, then the adapters wired
                       to their engine's run
    target             `nfreplay target up|down` (routes, the tunnel end, --resident)
    doctor             `nfreplay doctor online|assist|target`
    status, compare    `nfreplay status`, `nfreplay compare`
    options            the common flags, configuration loading, errors at the boundary
    logs               where log lines go, how they look (journald, files, SIGHUP)
    lifecycle          root, signals, --daemon, the pid file, up/down of a daemon role
    workers            nfreplay-online --workers: the worker processes and their merged stats
    reporting          the stats file, the metrics endpoint, the periodic stats line
    recording_options  --record-responses and its companions
    teardown           removing what an instance installed, from its journal
"""
