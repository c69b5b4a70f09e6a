"""``nfreplay compare``: did the target answer like production?

Pure and offline: ``reassembly`` (packets -> per-direction byte streams per connection),
``pairing`` (production connections <-> the copies sent to the target, through the session
map), ``http1`` / ``resp`` (framing), ``exchanges`` (a connection -> requests and their
responses, per protocol), ``diff`` (one response against another, with the noise filters),
``report`` (aggregates and renderers), ``comparison`` (the pipeline) and ``loader`` (the one
module that reads the recording's files). No sockets, no logging: the CLI
(``nfreplay.cli.compare``) prints.
"""
