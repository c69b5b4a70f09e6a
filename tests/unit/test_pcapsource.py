"""Offline replay's clock: pauses longer than max_gap (or a corrupt timestamp) are shortened
to max_gap and counted."""

from pathlib import Path

from nfreplay.adapters.pcapsource import FileSource
from nfreplay.proto import tcpip
from nfreplay.proto.pcapfile import LINKTYPE_RAW, PcapWriter
from nfreplay.proto.tcpip import SYN

CLIENT, ONLINE = tcpip.ip2int("198.18.1.10"), tcpip.ip2int("198.18.0.2")


def test_a_timestamp_jump_is_capped_by_max_gap_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "jump.pcap"
    with PcapWriter(path, linktype=LINKTYPE_RAW) as w:
        for i, ts in enumerate((1000.0, 1000.5, 1182.5)):  # +182 s: a corrupt timestamp
            w.write(ts, bytes(tcpip.build(CLIENT, ONLINE, 40000 + i, 80, 1, 0, SYN)))
    now = [0.0]
    src = FileSource(str(path), [(None, 80)], max_gap=5000, clock=lambda: now[0])
    got: list[bytes] = []
    src.dispatch(lambda ip, off: got.append(ip))
    assert len(got) == 1 and 0.49 < src.wait(0.0) <= 0.5
    now[0] = 0.5
    src.dispatch(lambda ip, off: got.append(ip))
    assert len(got) == 2 and src.gaps_capped == 1
    assert 4.99 < src.wait(0.5) <= 5.0  # not 182 s
    now[0] = 5.5
    src.dispatch(lambda ip, off: got.append(ip))
    assert len(got) == 3 and src.exhausted


def test_a_file_that_cannot_be_opened_is_one_config_error_line() -> None:
    import pytest

    from nfreplay.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^/nonexistent/nope.pcap: cannot open capture "
                                          r"file: No such file or directory$"):
        FileSource("/nonexistent/nope.pcap", [(None, 80)], clock=lambda: 0.0).start_loop()
