"""The compiled hot path, built by default: mypyc compiles the per-packet modules (COMPILED)
into C extensions whenever a C compiler and the Python headers are there; without them nfreplay
installs as pure Python and says why in one line. Every test passes either way (tests/run.sh
runs both).

    pip install /path/to/nfreplay                       # compiled if it can be, else pure
    NFREPLAY_PURE=1 pip install /path/to/nfreplay       # pure Python, no compiler used
    NFREPLAY_COMPILE=1 pip install /path/to/nfreplay    # compiled, or the install fails

mypyc ships with mypy, a build requirement (pyproject.toml [build-system]): pip puts it in the
isolated build environment only. With `--no-build-isolation` and no mypy, the install is pure.
The fallback's line starts with "nfreplay:" on stderr (pip shows it with -v); after the install
`nfreplay --version`, `nfreplay status` (`compiled`) and nfreplay-online's `up:` line say which
one runs. `pip install -e` builds the extensions into the tree, next to their .py files: re-run
it after changing one of COMPILED (tests/unit/test_packaging.py fails on a stale one).

Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.editable_wheel import editable_wheel

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
GROUP = "nfreplay._hot"  # one shared library (nfreplay/_hot__mypyc*.so) under a stub per module

PURE = os.environ.get("NFREPLAY_PURE") == "1"
#: Compiled or nothing, no fallback: for a build host that must ship the compiled path.
STRICT = os.environ.get("NFREPLAY_COMPILE") == "1"

#: Commands that only write metadata or a source archive: no C for them.
METADATA_ONLY = {"egg_info", "dist_info", "sdist"}
#: Stands for the hot path until build_ext is prepared for a build; it also makes the wheel a
#: platform wheel.
PLACEHOLDER = Extension(GROUP, sources=[])


class BuildError(Exception):
    """The compiled hot path cannot be built here; the message says why, in a few words."""


def say_pure(why: str) -> None:
    """The one line a fallback prints."""
    print(f"nfreplay: installing pure Python, without the compiled hot path: {why}",
          file=sys.stderr, flush=True)


def missing_toolchain() -> str | None:
    """What the build lacks, checked before mypyc spends its quarter of a minute: a C compiler
    (CC, else the one Python was built with) and Python.h. None: both are there."""
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    if not cc or shutil.which(cc[0]) is None:
        return f"no C compiler ({cc[0] if cc else 'CC is empty'}; apt-get install gcc libc6-dev)"
    include = sysconfig.get_path("include")
    if not (Path(include) / "Python.h").is_file():
        return f"no Python headers ({include}/Python.h; apt-get install python3-dev)"
    return None


def mypyc_extensions() -> list[Extension]:
    """mypycify(COMPILED): type-checks them and writes their C into build/."""
    try:
        from mypyc.build import mypycify
    except ImportError:
        raise BuildError("mypyc is not installed (pip install mypy, or build with isolation)") from None
    try:
        return mypycify(COMPILED, opt_level="3", group_name=GROUP)
    except SystemExit:  # mypy's errors, printed above
        raise BuildError("mypyc found errors (above)") from None
    except Exception as exc:
        raise BuildError(f"mypyc failed ({exc!r})") from None


def hot_path() -> list[Extension]:
    """The extensions to build, or [] after the one line that says why there are none."""
    try:
        missing = missing_toolchain()
        if missing:
            raise BuildError(missing)
        return mypyc_extensions()
    except BuildError as exc:
        if STRICT:
            sys.exit(f"nfreplay: NFREPLAY_COMPILE=1, but the compiled hot path cannot be built: {exc}")
        say_pure(str(exc))
        return []


def in_tree_outputs() -> list[Path]:
    """The modules an in-place build (`pip install -e`) leaves next to their .py files."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    return [Path(p).with_suffix(suffix) for p in COMPILED] + \
        [Path(GROUP.replace(".", "/") + "__mypyc" + suffix)]


class OptionalBuildExt(build_ext):
    """build_ext that builds the hot path and, when the C build fails, leaves the package pure
    Python: the .py files are installed either way, a .so only shadows its .py. Under
    NFREPLAY_COMPILE=1 the failure stands."""

    def finalize_options(self) -> None:
        # mypycify for a build only: pip runs setup.py once per build hook, and the metadata
        # hooks prepare build_ext too (for its list of sources).
        dist = self.distribution
        if dist.ext_modules and dist.ext_modules[0] is PLACEHOLDER and \
                not set(dist.commands) <= METADATA_ONLY:
            dist.ext_modules = hot_path()
        super().finalize_options()

    def run(self) -> None:
        if not self.extensions:
            return
        assert self.extensions[0] is not PLACEHOLDER, f"build_ext under {self.distribution.commands}"
        try:
            super().run()
        except Exception as exc:
            if STRICT:
                raise
            self._remove_outputs()
            say_pure(f"the C build failed ({type(exc).__name__}; the compiler's messages are above)")
            self.extensions = []
            self.distribution.ext_modules = []

    def _remove_outputs(self) -> None:
        """What a failed build left (in build/, or in the tree in place): one module's .so
        alone would import a group library that is not there."""
        inplace = self.inplace
        try:
            for ext in self.extensions:
                for self.inplace in (False, True):
                    Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
        finally:
            self.inplace = inplace


class EditableWheel(editable_wheel):
    """`pip install -e` builds the extensions into the tree. One that ends pure (NFREPLAY_PURE=1,
    or the fallback) removes those an earlier compiled one left: they would shadow the .py."""

    def run(self) -> None:
        super().run()
        if not any(ext is not PLACEHOLDER for ext in self.distribution.ext_modules or ()):
            for path in in_tree_outputs():
                path.unlink(missing_ok=True)


if PURE and STRICT:
    sys.exit("nfreplay: NFREPLAY_PURE=1 and NFREPLAY_COMPILE=1 contradict each other")
setup(ext_modules=[] if PURE else [PLACEHOLDER],
      cmdclass={"build_ext": OptionalBuildExt, "editable_wheel": EditableWheel})
