"""`nfreplay compare ONLINE_DIR TARGET_DIR`: did the target answer like production?"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from nfreplay.cli import options
from nfreplay.compare.comparison import compare_captures
from nfreplay.compare.diff import DEFAULT_IGNORED_HEADERS, Options
from nfreplay.compare.loader import open_recording
from nfreplay.compare.report import render_html, render_json, render_table
from nfreplay.errors import ConfigError

DESCRIPTION = f"""\
Compare what the target answered with what production answered, from the recordings of
nfreplay-online --record-responses (ONLINE_DIR: production-*.pcapng, to-target-*.pcapng,
sessions-*.jsonl) and nfreplay-assist --record-responses (TARGET_DIR: target-*.pcapng).
Sessions are reassembled (retransmissions and reordering undone, missing bytes reported as
gaps, never guessed), paired through the session map (each --copies copy and client-pool
address against the same production session), split into exchanges and compared per
endpoint:
  HTTP/1.x  status, headers, body (chunked and gzip/deflate decoded, JSON compared as
            values); endpoint = method + path without the query string
  Redis     each command's reply; endpoint = the command's name
  other     the bytes of each turn; endpoint = the service port

Headers never compared: {", ".join(DEFAULT_IGNORED_HEADERS)} (per-response noise), and
Content-Length / Transfer-Encoding (framing: the decoded body is compared instead).

Latency (ms, p50/p99 per endpoint): production = first response byte minus last request
byte, both captured on the online host; target = first reply byte captured at the assistant
(the assistant's clock) minus last request byte sent to the target (the online host's clock).
The target's figure spans two clocks: keep them synchronised (NTP).

exit status (like diff): 0 no differences, 1 differences or unpaired exchanges, 2 bad input
(a directory missing or without recording files, a file that is not a capture, a bad flag)."""

EXAMPLES = """\
examples:
  nfreplay compare /var/lib/nfreplay/online /var/lib/nfreplay/target
  nfreplay compare ONLINE TARGET --json > report.json
  nfreplay compare ONLINE TARGET --html report.html --examples 5 \\
      --ignore-header X-Trace-Id --ignore-json-path '$.meta.time' \\
      --ignore-json-path '$.items[*].id' --ignore-regex '[0-9a-f]{32}'
"""


def compare_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="nfreplay compare", description=DESCRIPTION,
                                epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument(
        "online_dir", metavar="ONLINE_DIR", help="nfreplay-online's recording"
    )
    p.add_argument(
        "target_dir", metavar="TARGET_DIR", help="nfreplay-assist's recording"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--html", metavar="FILE",
                   help="also write the report as one self-contained HTML file")  # fmt: skip
    p.add_argument("--ignore-header", metavar="NAME", action="append", default=[],
                   help="a header not to compare (repeatable; case-insensitive)")  # fmt: skip
    p.add_argument("--ignore-json-path", metavar="PATH", action="append", default=[],
                   help="a JSON path not to compare, e.g. '$.meta.time', '$.items[*].id', "
                        "'$..id' (repeatable)")  # fmt: skip
    p.add_argument("--ignore-regex", metavar="RE", action="append", default=[],
                   help="replace matches of RE in bodies, header values and Redis/raw bytes "
                        "before comparing (repeatable; Python syntax)")  # fmt: skip
    p.add_argument("--examples", metavar="N", type=int, default=3,
                   help="differences kept per endpoint in --json and --html (default 3)")  # fmt: skip
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    options.add_version(p)
    args = p.parse_args(argv)
    if args.examples < 0:
        raise ConfigError("--examples: must be 0 or more")
    try:
        opts = Options.build(
            args.ignore_header, args.ignore_json_path, args.ignore_regex
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    recording = open_recording(args.online_dir, args.target_dir)
    report = compare_captures(
        recording.frames("production"),
        recording.frames("to-target"),
        recording.frames("target"),
        recording.lines,
        opts,
        examples=args.examples,
    )
    report.inputs = recording.inputs.as_dict()
    if args.html:
        try:
            with open(args.html, "w", encoding="utf-8") as f:
                f.write(render_html(report))
        except OSError as exc:
            raise ConfigError(f"--html {args.html}: {exc.strerror or exc}") from None
    out = render_json(report) if args.json else render_table(report)
    sys.stdout.write(out)
    if not args.json and recording.inputs.truncated_files:
        names = ", ".join(recording.inputs.truncated_files[:5])
        print(f"cut short (read up to the cut): {names}", file=sys.stderr)
    if args.html and not args.json:
        print(f"HTML report: {os.path.abspath(args.html)}")
    return 1 if report.has_differences() else 0
