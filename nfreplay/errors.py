"""The exception tree. Every error meant for an operator derives from NfreplayError;
the CLI turns it into one line on stderr and a non-zero exit code."""


class NfreplayError(Exception):
    """Root of every error nfreplay reports to an operator (exit code 1 unless noted)."""

    exit_code = 1


class ConfigError(NfreplayError):
    """Bad configuration or command-line value; the message names the key."""

    exit_code = 2


class WireError(NfreplayError):
    """A peer or a capture handed us bytes that do not parse (the peer's fault, not ours)."""


class RulesError(NfreplayError):
    """A rule, route or sysctl could not be installed, verified or removed."""


class HostError(NfreplayError):
    """The host lacks something nfreplay needs (a binary, a kernel feature, privileges, an
    interface, a sysctl value it may not change). Exit code 3: like a configuration error,
    restarting does not fix it (the units' RestartPreventExitStatus)."""

    exit_code = 3
