"""Optional compiled hot path: `NFREPLAY_COMPILE=1` compiles the per-packet modules with mypyc
(it ships with mypy; gcc and the Python headers build them). Without it, nfreplay installs as
pure Python, and every test passes either way (tests/run.sh runs both).

    NFREPLAY_COMPILE=1 pip install --no-build-isolation /path/to/nfreplay   # needs mypy
    NFREPLAY_COMPILE=1 python setup.py build_ext --inplace                   # in a checkout

Everything else about the package is in pyproject.toml.
"""

import os

from setuptools import setup

#: The modules every captured packet and every response record goes through: the wire formats,
#: the session machine and table, and the online engine's loop around them (compiled, it cuts
#: the engine's instructions per short session by 7.6 %, callgrind). Not the adapters: the
#: capture's per-packet callback gains 0.13 µs per packet compiled.
COMPILED = [
    "nfreplay/proto/seq.py",
    "nfreplay/proto/checksum.py",
    "nfreplay/proto/tcpip.py",
    "nfreplay/proto/channel.py",
    "nfreplay/proto/link.py",
    "nfreplay/session/machine.py",
    "nfreplay/session/table.py",
    "nfreplay/engine/online.py",
]

ext_modules = []
if os.environ.get("NFREPLAY_COMPILE") == "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(COMPILED, opt_level="3", group_name="nfreplay._hot")

setup(ext_modules=ext_modules)
