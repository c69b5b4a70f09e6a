"""The recording options both daemons share (`--record-responses` and its companions), and
the recording directory and sampler they open."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nfreplay.errors import ConfigError

RECORD_FLAGS = ("record_responses", "record_percent", "record_file_bytes", "record_max_bytes")


def add_record_options(parser: Any, defaults: Any, what: str) -> None:
    """`--record-responses DIR` and its companions (online/assist.record_*)."""
    parser.add_argument("--record-responses", metavar="DIR",
                        help=f"record {what} in DIR for `nfreplay compare` (pcapng, rotated by "
                             "size; default: no recording)")
    parser.add_argument("--record-percent", metavar="P",
                        help="record P %% of the replayed sessions, chosen by the client "
                             "address the target sees (give the online host and the "
                             f"assistant the same P; default {defaults.record_percent:g})")
    parser.add_argument("--record-file-bytes", metavar="N",
                        help=f"rotate recording files past N bytes (default "
                             f"{defaults.record_file_bytes})")
    parser.add_argument("--record-max-bytes", metavar="N",
                        help="keep the recording directory under N bytes, deleting the oldest "
                             f"files (default {defaults.record_max_bytes})")


def check_recording(section: Any, role: str) -> None:
    """Refuse bad recording settings, and make the directory, before `--daemon` detaches (so
    the operator sees it: exit 2 or 3)."""
    if not section.record_responses:
        return
    if section.record_max_bytes < 2 * section.record_file_bytes:
        raise ConfigError(f"{role}.record_max_bytes: must be at least twice "
                          f"{role}.record_file_bytes ({section.record_file_bytes})")
    from nfreplay.adapters.recordfiles import prepare

    prepare(section.record_responses, f"{role}.record_responses")


def recording_directory(section: Any, role: str, kinds: Sequence[str]) -> Any:
    """The recording directory of `role`'s settings, writing, or None when it does not
    record (`check_recording` first)."""
    if not section.record_responses:
        return None
    check_recording(section, role)
    from nfreplay.adapters.recordfiles import RecordingDirectory

    return RecordingDirectory(section.record_responses, kinds, section.record_file_bytes,
                              section.record_max_bytes, key=f"{role}.record_responses")


def recording_sampler(percent: float) -> Any:
    """Which copies are recorded: the same choice on both sides (see engine.recorder)."""
    if percent >= 100:
        return None
    from nfreplay.engine.recorder import RECORD_SEED
    from nfreplay.session.sampling import Sampler

    return Sampler(percent, seed=RECORD_SEED)
