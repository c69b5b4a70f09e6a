"""What every command's arguments share: the common options, the configuration they load
(also for `down` when the file no longer loads), and our errors turned into one line and an
exit code at the boundary."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nfreplay import config as config_mod
from nfreplay.cli.logs import setup_logging, to_journal
from nfreplay.errors import ConfigError, NfreplayError

log = logging.getLogger("nfreplay")

EPILOG_CONFIG = (
    "Settings come from the TOML file (--config, default /etc/nfreplay/nfreplay.toml); "
    "command-line flags override it."
)


def run_main(main: Callable[[Sequence[str]], int], argv: Sequence[str] | None = None) -> int:
    """Call `main`, turning our errors into one line on stderr and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        return main(args)
    except NfreplayError as exc:
        if debug:
            raise
        prog = os.path.basename(sys.argv[0]) or "nfreplay"
        # Under systemd, the journal stores the reason a unit failed at error priority.
        err = "<3>" if to_journal(sys.stderr) else ""
        print(f"{err}{prog}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def add_common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("common options")
    g.add_argument("--config", metavar="FILE", help="TOML configuration file "
                   "(default /etc/nfreplay/nfreplay.toml if it exists)")
    g.add_argument("--instance", metavar="NAME", help="instance name: tags rules "
                   "nfreplay:<role>:NAME and names state files (default: default)")
    g.add_argument("--state-dir", metavar="DIR", help="pid, journal and stats files (default /run/nfreplay)")
    g.add_argument("--backend", choices=("auto", "nft", "legacy"),
                   help="iptables backend (auto = whatever the host's iptables uses)")
    g.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    g.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    add_version(g)


def add_version(parser: Any) -> None:
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="show the version, and whether the hot path runs compiled, and exit")


class _Version(argparse.Action):
    """`--version`: "nfreplay 0.1.0 (compiled hot path)" or "(pure Python)"; the import
    that tells which happens only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from nfreplay import __version__
        from nfreplay.cli.reporting import compiled

        how = "compiled hot path" if compiled() else "pure Python"
        print(f"{parser.prog} {__version__} ({how})")
        parser.exit()


def load_config(args: argparse.Namespace, role: str, mapping: Mapping[str, str]) -> config_mod.Config:
    """Load the file named by --config with the flags in `mapping` (dest -> dotted key) on top."""
    overrides: dict[str, object] = {
        "general.instance": args.instance,
        "general.state_dir": args.state_dir,
        "general.backend": args.backend,
        "general.log_level": args.log_level,
    }
    for dest, key in mapping.items():
        overrides[key] = getattr(args, dest, None)
    return config_mod.load(args.config, overrides, role=role)


def config_for_down(args: argparse.Namespace, what: str) -> config_mod.Config:
    """The settings `down` needs ([general]: instance, state dir, backend), also when the file
    no longer loads (edited while the daemon ran): `down` must still remove what the journal
    says was installed, so the flags and defaults stand in, with a warning. Sets up logging."""
    try:
        cfg = load_config(args, "status", {})
        setup_logging(cfg.general.log_level)
        return cfg
    except ConfigError as exc:
        # Not load(None): that reads the default file again, the one that failed. What the
        # file's [general] says still counts, as far as it reads.
        general = _general_table(args.config or config_mod.DEFAULT_PATH)
        overrides = {f"general.{key}": getattr(args, key) or general.get(key)
                     for key in ("instance", "state_dir", "backend")}
        try:
            cfg = config_mod.load(os.devnull, overrides, role="status")
        except ConfigError:
            cfg = config_mod.load(os.devnull, {f"general.{key}": getattr(args, key) for key
                                               in ("instance", "state_dir", "backend")},
                                  role="status")
        setup_logging(cfg.general.log_level)
        log.warning("%s: the configuration does not load (%s): removing what instance %r "
                    "installed, per its journal in %s", what, exc, cfg.general.instance,
                    cfg.general.state_dir)
        return cfg


def _general_table(path: str) -> dict[str, str]:
    """The text values of a TOML file's [general] table, or {} if it does not read."""
    import tomllib

    try:
        with open(path, "rb") as fh:
            general = tomllib.load(fh).get("general")
    except (OSError, ValueError):
        return {}
    if not isinstance(general, dict):
        return {}
    return {k: v for k, v in general.items() if isinstance(v, str)}
