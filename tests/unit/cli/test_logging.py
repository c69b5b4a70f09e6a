"""Log lines for a terminal or file (own timestamp) and for journald (priority prefix)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from nfreplay.cli import lifecycle, logs, options, reporting


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.delenv("container", raising=False)  # these tests may run in a container
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(path: Path) -> list[str]:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return path.read_text().splitlines()


def test_lines_to_journald_carry_the_priority_and_no_timestamp(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "journal-stream"
    with open(path, "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        logs.setup_logging("info", stream)
        log = logging.getLogger("nfreplay")
        log.info("up")
        log.warning("only 3 of 40 sessions")
        log.error("two\nlines")
        log.debug("not shown at info")
        assert lines(path) == ["<6>INFO nfreplay: up",
                               "<4>WARNING nfreplay: only 3 of 40 sessions",
                               "<3>ERROR nfreplay: two", "<3>lines"]


def test_other_streams_get_a_timestamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # another file: not journald's stream
    path = tmp_path / "plain.log"
    with open(path, "w") as stream:
        logs.setup_logging("info", stream)
        logging.getLogger("nfreplay").warning("hello")
        (line,) = lines(path)
    assert line.endswith(" WARNING nfreplay: hello") and line[:4].isdigit()


def test_stats_line_every_interval_with_rates_and_one_at_stop(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="nfreplay")
    fields = (("sessions", "opened", True), ("live", "live", False))
    line = reporting.StatsLine(fields, 30.0, now=100.0)
    line.feed({"opened": 10, "live": 3}, 101.0)
    line.feed({"opened": 300, "live": 5}, 129.0)  # 29 s: not yet
    line.feed({"opened": 600, "live": 7}, 130.0)
    line.feed({"opened": 900, "live": 2}, 150.0)
    line.final(160.0)
    assert [r.getMessage() for r in caplog.records] == [
        "stats (last 30 s): sessions 600 (20.0/s), live 7",
        "stats at stop (over 60 s): sessions 900 (15.0/s), live 2",
    ]
    quiet = reporting.StatsLine(fields, 0.0, now=0.0)  # 0: no periodic lines
    quiet.feed({"opened": 1, "live": 1}, 1000.0)
    assert len(caplog.records) == 2


def test_notify_sends_the_state_to_notify_socket(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        lifecycle.notify("READY=1")
        systemd.settimeout(2)
        assert systemd.recv(100) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    lifecycle.notify("READY=1")  # not under systemd: nothing, no error


def test_a_fatal_error_reaches_journald_at_error_priority(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nfreplay.errors import ConfigError

    def main(argv: object) -> int:
        raise ConfigError("assist.bogus_key: unknown key")

    path = tmp_path / "journal-stream"
    with open(path, "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setattr(options.sys, "stderr", stream)
        monkeypatch.setattr(options.sys, "argv", ["nfreplay-assist"])
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert options.run_main(main, []) == 2
        monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # a terminal or a file: no prefix
        assert options.run_main(main, []) == 2
    assert path.read_text().splitlines() == ["<3>nfreplay-assist: assist.bogus_key: unknown key",
                                             "nfreplay-assist: assist.bogus_key: unknown key"]


def test_down_works_with_a_configuration_that_no_longer_loads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    bad = tmp_path / "nfreplay.toml"
    bad.write_text("[assist]\nbogus_key = 1\n")
    args = argparse.Namespace(config=str(bad), instance="lab2", state_dir=str(tmp_path),
                              backend=None, log_level=None)
    cfg = options.config_for_down(args, "nfreplay-assist down")
    assert (cfg.general.instance, cfg.general.state_dir) == ("lab2", str(tmp_path))
    (line,) = capsys.readouterr().err.splitlines()
    assert "WARNING" in line and "assist.bogus_key: unknown key" in line and "journal" in line
    # The default file, broken: not read again; its [general] still names the instance.
    bad.write_text('[general]\ninstance = "lab7"\nstate_dir = "%s"\n[assist]\nbogus_key = 1\n'
                   % tmp_path)
    args.config, args.instance, args.state_dir = None, None, None
    monkeypatch.setattr(options.config_mod, "DEFAULT_PATH", str(bad))
    cfg = options.config_for_down(args, "nfreplay-assist down")
    assert (cfg.general.instance, cfg.general.state_dir) == ("lab7", str(tmp_path))
    capsys.readouterr()
    good = tmp_path / "good.toml"
    good.write_text('[general]\ninstance = "lab3"\n')
    args.config, args.instance = str(good), None
    assert options.config_for_down(args, "x").general.instance == "lab3"


def test_in_a_container_lines_go_to_stdout_without_a_timestamp(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container's output is stamped by its runtime (podman logs -t, kubectl logs
    --timestamps): no second timestamp, and stdout. A log file still gets timestamps."""
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.setenv("container", "oci")
    with open(out, "w") as stdout, open(err, "w") as stderr:
        monkeypatch.setattr(logs.sys, "stdout", stdout)
        monkeypatch.setattr(logs.sys, "stderr", stderr)
        logs.setup_logging("info")
        logging.getLogger("nfreplay").warning("hello")
        assert lines(out) == ["WARNING nfreplay: hello"] and lines(err) == []
        logs._log_to_file()  # what --log-file and --daemon do once fds 1 and 2 are the file
        logging.getLogger("nfreplay").warning("again")
        last = lines(out)[-1]
        assert last.endswith(" WARNING nfreplay: again") and last[:4].isdigit()
        # Under systemd inside a container (nspawn), the journal still wins.
        st = os.fstat(stderr.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        logs.setup_logging("info")
        logging.getLogger("nfreplay").warning("journal")
        assert lines(err) == ["<4>WARNING nfreplay: journal"]
    monkeypatch.delenv("container")
    monkeypatch.delenv("JOURNAL_STREAM")
    with open(err, "w") as stderr:
        monkeypatch.setattr(logs.sys, "stderr", stderr)
        logs.setup_logging("info")  # no container, no journal: stderr with a timestamp
        logging.getLogger("nfreplay").warning("plain")
        assert lines(err)[0].endswith(" WARNING nfreplay: plain")
