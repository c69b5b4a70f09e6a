"""Packaging checks: the compiled hot path's build (setup.py), the systemd units, the Vagrant
lab and its scripts.

No root needed. `vagrant validate` and `systemd-analyze verify` run when those tools
are installed and are skipped (with the reason) when they are not.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from nfreplay.cli.reporting import compiled
from nfreplay.errors import ConfigError, HostError

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "systemd"
VAGRANT_DIR = ROOT / "vagrant"
VAGRANTFILE = ROOT / "Vagrantfile"

CONFIG = "/etc/nfreplay/nfreplay.toml"
BIN = "/usr/local/bin"
LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
DAEMONS = {"nfreplay-online.service": "nfreplay-online", "nfreplay-assist.service": "nfreplay-assist"}
TARGET_UNIT = "nfreplay-target.service"
ROLES = ("client", "online", "target", "assistant")
# The lab's addresses, as the brief for the lab fixes them.
LAB_HOSTS = {"client": "198.18.1.10", "online": "198.18.0.2", "target": "198.18.0.3", "assistant": "198.18.0.4"}
ROLE_UNIT = {"online": "nfreplay-online.service", "assistant": "nfreplay-assist.service",
             "target": "nfreplay-target.service"}


# --- a tiny systemd unit parser ------------------------------------------------------

def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections -> [(key, value), ...] in file order, repeated keys kept (configparser
    would merge them). Comments (# ;) and backslash continuations handled."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"key outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: dict, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}= expected once, found {found}"
    return found[0]


def command(value: str) -> tuple[str, list[str]]:
    """An Exec*= value -> (prefixes, argv)."""
    m = re.match(r"^([-@:+!]*)(.*)$", value)
    assert m
    return m.group(1), shlex.split(m.group(2))


def load_unit(name: str) -> dict:
    path = SYSTEMD / name
    assert path.is_file(), f"missing {path}"
    return parse_unit(path.read_text())


def console_scripts() -> set[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return set(tomllib.load(f)["project"]["scripts"])


def test_parser_keeps_repeats_and_continuations():
    unit = parse_unit("[A]\n# c\nX=1\nX=2\nY=a \\\n  b\n")
    assert values(unit, "A", "X") == ["1", "2"]
    assert one(unit, "A", "Y") == "a  b"


# --- the units -----------------------------------------------------------------------

TEMPLATES = {"nfreplay-online@.service": "nfreplay-online.service",
             "nfreplay-assist@.service": "nfreplay-assist.service"}


def test_exactly_the_three_units_and_two_templates():
    assert sorted(p.name for p in SYSTEMD.glob("*.service")) == sorted(
        [*DAEMONS, TARGET_UNIT, *TEMPLATES])


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_is_its_unit_per_instance(name):
    """nfreplay-<role>@NAME.service: every setting of nfreplay-<role>.service, but the
    instance's own config file and --instance in `up` and `down`."""
    template, plain = load_unit(name), load_unit(TEMPLATES[name])
    cmd = DAEMONS[TEMPLATES[name]]
    own = ["--config", "/etc/nfreplay/%i.toml", "--instance", "%i"]
    assert command(one(template, "Service", "ExecStart")) == ("", [f"{BIN}/{cmd}", "up", *own])
    assert [command(v) for v in values(template, "Service", "ExecStopPost")] == [
        ("", [f"{BIN}/{cmd}", "down", *own])]
    assert one(template, "Unit", "Description") == one(plain, "Unit", "Description") + \
        " - instance %i"
    differ = {"ExecStart", "ExecStopPost", "Description"}

    def rest(unit: dict) -> dict:
        return {section: sorted((k, v) for k, v in items if k not in differ)
                for section, items in unit.items()}

    assert rest(template) == rest(plain)


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_daemon_runs_up_in_the_foreground_and_down_after(name):
    unit = load_unit(name)
    cmd = DAEMONS[name]
    assert one(unit, "Service", "Type") == "notify"  # READY=1 once up
    assert one(unit, "Service", "NotifyAccess") == "main"
    prefix, argv = command(one(unit, "Service", "ExecStart"))
    assert prefix == ""
    assert argv == [f"{BIN}/{cmd}", "up", "--config", CONFIG]
    # `down` after stop and after a crash: ExecStopPost, not swallowed by "-".
    posts = [command(v) for v in values(unit, "Service", "ExecStopPost")]
    assert posts == [("", [f"{BIN}/{cmd}", "down", "--config", CONFIG])]
    assert values(unit, "Service", "ExecStop") == []


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_daemon_restart_policy(name):
    unit = load_unit(name)
    assert one(unit, "Service", "Restart") == "on-failure"
    m = re.fullmatch(r"(\d+)(s|sec)?", one(unit, "Service", "RestartSec"))
    assert m and 1 <= int(m.group(1)) <= 60
    # A config error is not fixed by restarting: its exit code stops the loop.
    permanent = one(unit, "Service", "RestartPreventExitStatus").split()
    assert str(ConfigError.exit_code) in permanent and str(HostError.exit_code) in permanent


@pytest.mark.parametrize("name", sorted([*DAEMONS, TARGET_UNIT]))
def test_unit_common_settings(name):
    unit = load_unit(name)
    for key in ("After", "Wants"):
        assert "network-online.target" in " ".join(values(unit, "Unit", key)).split()
    caps = " ".join(values(unit, "Service", "CapabilityBoundingSet")).split()
    assert sorted(caps) == ["CAP_NET_ADMIN", "CAP_NET_RAW"]
    assert one(unit, "Service", "RuntimeDirectory") == "nfreplay"
    assert one(unit, "Service", "RuntimeDirectoryPreserve") == "yes"
    # /proc/sys must stay writable (ip_forward, rp_filter), /run writable (xtables lock).
    assert values(unit, "Service", "ProtectKernelTunables") in ([], ["no"], ["false"])
    assert "strict" not in values(unit, "Service", "ProtectSystem")
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    # `up --daemon` would fork away from systemd.
    for key in ("ExecStart", "ExecStop", "ExecStopPost"):
        for v in values(unit, "Service", key):
            assert "--daemon" not in v


def test_target_unit_keeps_the_route_with_a_resident_watcher():
    unit = load_unit(TARGET_UNIT)
    assert one(unit, "Service", "Type") == "notify"  # READY=1 once up
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert command(one(unit, "Service", "ExecStart")) == (
        "", [f"{BIN}/nfreplay", "target", "up", "--resident", "--config", CONFIG])
    # The watcher removes its routes at SIGTERM; `down` after it also cleans after a crash.
    assert [command(v) for v in values(unit, "Service", "ExecStopPost")] == [
        ("", [f"{BIN}/nfreplay", "target", "down", "--config", CONFIG])]
    assert values(unit, "Service", "ExecStop") == []
    assert one(unit, "Service", "Restart") == "on-failure"
    permanent = one(unit, "Service", "RestartPreventExitStatus").split()
    assert str(ConfigError.exit_code) in permanent and str(HostError.exit_code) in permanent


def test_unit_commands_are_console_scripts():
    """Every nfreplay command a unit runs is one pyproject.toml installs."""
    scripts = console_scripts()
    used = set()
    for path in SYSTEMD.glob("*.service"):
        used |= set(re.findall(rf"{re.escape(BIN)}/(nfreplay[\w-]*)", path.read_text()))
    assert used == {"nfreplay", "nfreplay-online", "nfreplay-assist"}
    assert used <= scripts, f"not in [project.scripts]: {used - scripts}"


def test_install_links_every_console_script():
    text = (VAGRANT_DIR / "install.sh").read_text()
    m = re.search(r"^for cmd in ([\w -]+); do$", text, re.M)
    assert m, "install.sh: no `for cmd in ...; do` loop linking the commands"
    assert set(m.group(1).split()) == console_scripts()
    assert '/opt/nfreplay' in text and 'ln -sf "$prefix/bin/$cmd" "/usr/local/bin/$cmd"' in text


# --- the compiled hot path (setup.py) -------------------------------------------------

def compiled_modules() -> list[str]:
    """setup.py's COMPILED, read without running setup.py."""
    import ast

    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "COMPILED" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no COMPILED list")


def project_copy(tmp_path: Path) -> Path:
    """What setup.py builds from, in tmp_path (a build writes build/ and *.egg-info)."""
    copy = tmp_path / "src"
    copy.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    shutil.copytree(ROOT / "nfreplay", copy / "nfreplay",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return copy


def run_setup(copy: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("NFREPLAY_PURE", "NFREPLAY_COMPILE", "CC", "LDSHARED", "PYTHONPATH")}
    return subprocess.run([sys.executable, "setup.py", *args], cwd=copy, env={**clean, **env},
                          capture_output=True, text=True, timeout=600)


def built(copy: Path) -> tuple[list[str], bool]:
    """The .so files anywhere in the copy, and whether build/ holds the package's .py."""
    so = sorted(str(p.relative_to(copy)) for p in copy.rglob("*.so"))
    return so, any(copy.glob("build/lib*/nfreplay/session/machine.py"))


def said(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("nfreplay:")]


def test_compiled_modules_exist():
    modules = compiled_modules()
    assert "nfreplay/session/machine.py" in modules and len(modules) >= 5
    for path in modules:
        assert (ROOT / path).is_file(), path


def test_build_requires_mypy_the_tests_use():
    """mypyc comes with mypy: a build requirement pinned to a range, the same range as the test
    extra's mypy, and the venv's mypy in it (the compiler the suite's compiled pass saw)."""
    from importlib.metadata import version

    from packaging.requirements import Requirement

    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)

    def mypy(requires: list[str]) -> Requirement:
        found = [r for r in map(Requirement, requires) if r.name == "mypy"]
        assert len(found) == 1, requires
        return found[0]

    build = mypy(project["build-system"]["requires"])
    assert build.specifier, "mypy is not pinned to a range"
    assert mypy(project["project"]["optional-dependencies"]["test"]).specifier == build.specifier
    assert build.specifier.contains(version("mypy")), f"the venv's mypy {version('mypy')} is outside {build}"


def test_pure_build_has_no_extension(tmp_path):
    copy = project_copy(tmp_path)
    r = run_setup(copy, "build", NFREPLAY_PURE="1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert built(copy) == ([], True)
    assert "mypyc" not in r.stdout + r.stderr


def test_no_compiler_falls_back_to_pure_in_one_line(tmp_path):
    copy = project_copy(tmp_path)
    r = run_setup(copy, "build", CC=str(tmp_path / "no-such-cc"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert built(copy) == ([], True)
    assert said(r.stderr) == [f"nfreplay: installing pure Python, without the compiled hot path: "
                              f"no C compiler ({tmp_path / 'no-such-cc'}; apt-get install gcc libc6-dev)"]


def test_no_python_headers_falls_back_to_pure_in_one_line(tmp_path):
    """python3-dev missing: sysconfig's include directory, made empty here, has no Python.h."""
    copy = project_copy(tmp_path)
    include = tmp_path / "include"
    include.mkdir()
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sysconfig\n_get_path = sysconfig.get_path\n"
        f"sysconfig.get_path = lambda name, *a, **k: {str(include)!r} if name == 'include' "
        "else _get_path(name, *a, **k)\n")
    r = run_setup(copy, "build", PYTHONPATH=str(site))
    assert r.returncode == 0, r.stdout + r.stderr
    assert built(copy) == ([], True)
    assert said(r.stderr) == ["nfreplay: installing pure Python, without the compiled hot path: "
                              f"no Python headers ({include}/Python.h; apt-get install python3-dev)"]


def test_compile_requested_fails_instead_of_falling_back(tmp_path):
    copy = project_copy(tmp_path)
    r = run_setup(copy, "build", CC=str(tmp_path / "no-such-cc"), NFREPLAY_COMPILE="1")
    assert r.returncode != 0
    assert "NFREPLAY_COMPILE=1, but the compiled hot path cannot be built: no C compiler" in r.stderr
    r = run_setup(copy, "build", NFREPLAY_PURE="1", NFREPLAY_COMPILE="1")
    assert r.returncode != 0 and "contradict" in r.stderr


# A stand-in for mypyc: extensions from one-line C modules, so that the C build and its failure
# take a second, not mypyc's quarter of a minute.
STUB_BUILD = """
import os
from setuptools import Extension

C = '''#include <Python.h>
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "%s", NULL, -1, NULL};
PyMODINIT_FUNC PyInit_%s(void) { return PyModule_Create(&def); }
'''

def mypycify(paths, opt_level, group_name):  # writes its C into build/, as mypyc does
    os.makedirs("build/stub", exist_ok=True)
    names = os.environ["STUB_MODULES"].split(",")
    for name in names:
        with open(f"build/stub/{name}.c", "w") as f:
            f.write(C % (name, name))
    return [Extension("nfreplay." + name, [f"build/stub/{name}.c"]) for name in names]
"""


@pytest.fixture
def stub_mypyc(tmp_path) -> dict[str, str]:
    """PYTHONPATH with the stand-in mypyc, and CC: gcc, failing on any file named bad*."""
    gcc = shutil.which("gcc")
    if gcc is None or not (Path(sysconfig.get_path("include")) / "Python.h").is_file():
        pytest.skip("needs gcc and the Python headers")
    stub = tmp_path / "stub" / "mypyc"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("")
    (stub / "build.py").write_text(STUB_BUILD)
    cc = tmp_path / "cc"
    cc.write_text(f'#!/bin/sh\ncase " $* " in *bad.c*) echo "bad.c:1: error: no" >&2; exit 1;; esac\n'
                  f'exec {gcc} "$@"\n')
    cc.chmod(0o755)
    return {"PYTHONPATH": str(stub.parent), "CC": str(cc)}


def test_stub_build_makes_an_extension(tmp_path, stub_mypyc):
    """The control for the next test: with a compiler that works, the build has the .so."""
    copy = project_copy(tmp_path)
    r = run_setup(copy, "build", STUB_MODULES="good", **stub_mypyc)
    assert r.returncode == 0, r.stdout + r.stderr
    so, py = built(copy)
    assert py and len(so) == 1 and so[0].startswith("build/lib") and "/nfreplay/good." in so[0], so
    assert said(r.stderr) == []


def test_failing_compiler_falls_back_to_pure_in_one_line(tmp_path, stub_mypyc):
    """The first module compiles, the second does not: nothing compiled is left (a module's
    .so alone would import a group library that is not there), one line says why."""
    copy = project_copy(tmp_path)
    r = run_setup(copy, "build", STUB_MODULES="good,bad", **stub_mypyc)
    assert r.returncode == 0, r.stdout + r.stderr
    assert built(copy) == ([], True)
    assert said(r.stderr) == ["nfreplay: installing pure Python, without the compiled hot path: "
                              "the C build failed (CompileError; the compiler's messages are above)"]
    # In place (what `pip install -e` does): the tree keeps no .so either.
    r = run_setup(copy, "build_ext", "--inplace", STUB_MODULES="good,bad", **stub_mypyc)
    assert r.returncode == 0 and len(said(r.stderr)) == 1, r.stdout + r.stderr
    assert built(copy)[0] == []
    r = run_setup(copy, "build", STUB_MODULES="good,bad", NFREPLAY_COMPILE="1", **stub_mypyc)
    assert r.returncode != 0 and said(r.stderr) == []


@pytest.mark.parametrize("argv", [["--version"], ["status", "--version"], ["target", "--version"]])
def test_version_says_whether_compiled(argv, capsys):
    """After an install, `nfreplay --version` tells the operator which path runs."""
    from nfreplay import __version__
    from nfreplay.cli.main import main

    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 0
    how = "compiled hot path" if compiled() else "pure Python"
    prog = "nfreplay" if argv[0] == "--version" else f"nfreplay {argv[0]}"
    assert capsys.readouterr().out == f"{prog} {__version__} ({how})\n"


def test_in_tree_compiled_modules_are_not_stale():
    """`pip install -e` (tests/setup.sh) compiles the hot path into the tree; a .py changed
    since would run as its old compiled self. Re-running tests/setup.sh rebuilds them."""
    so = sorted((ROOT / "nfreplay").rglob("*.so"))
    if not so:
        assert not compiled()
        pytest.skip("no compiled modules in the tree (a pure install)")
    assert compiled()
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    stale = [p for p in map(Path, compiled_modules())
             if (ROOT / p).stat().st_mtime > (ROOT / p.with_suffix(suffix)).stat().st_mtime]
    assert stale == [], f"changed since compiled: {stale}; re-run tests/setup.sh"


# --- addresses -----------------------------------------------------------------------

IPV4 = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d{1,3}){3})(/\d{1,2})?(?![\w.])")


def foreign_addresses(text: str) -> list[str]:
    """IPv4 literals (and CIDRs) outside 198.18.0.0/15. A netmask on a line that says
    "netmask" is not an address."""
    bad = []
    for line in text.splitlines():
        for m in IPV4.finditer(line):
            literal = m.group(0)
            try:
                if m.group(2):
                    net = ipaddress.ip_network(literal, strict=False)
                    ok = net.subnet_of(LAB_RANGE)
                else:
                    addr = ipaddress.ip_address(literal)
                    ok = addr in LAB_RANGE
                    if not ok and "netmask" in line.lower():
                        ok = ipaddress.ip_network(f"0.0.0.0/{literal}").prefixlen > 0
            except ValueError:
                ok = False
            if not ok:
                bad.append(literal)
    return bad


def test_address_checker_can_fail():
    assert foreign_addresses('a = "10.0.0.1"\nb = "198.18.0.2"') == ["10.0.0.1"]
    assert foreign_addresses("listen 0.0.0.0:36524") == ["0.0.0.0"]
    assert foreign_addresses("route 198.16.0.0/12") == ["198.16.0.0/12"]
    assert foreign_addresses("x 198.19.255.255 y 198.18.0.0/15") == []
    assert foreign_addresses('netmask: "255.255.254.0"') == []
    assert foreign_addresses('ip: "255.255.254.0"') == ["255.255.254.0"]
    assert foreign_addresses("version 2.3.4 and 999.1.1.1") == ["999.1.1.1"]


def packaging_files() -> list[Path]:
    files = [VAGRANTFILE, *sorted(VAGRANT_DIR.glob("*")), *sorted(SYSTEMD.glob("*"))]
    return [f for f in files if f.is_file()]


def test_every_address_is_in_the_benchmarking_range():
    files = packaging_files()
    assert VAGRANTFILE in files and len(files) >= 10
    seen = 0
    for path in files:
        text = path.read_text()
        seen += len(IPV4.findall(text))
        assert foreign_addresses(text) == [], f"{path.relative_to(ROOT)}"
    assert seen >= 8  # the check looked at something


def test_lab_addresses_live_in_the_vagrantfile_only():
    text = VAGRANTFILE.read_text()
    for role, ip in LAB_HOSTS.items():
        assert re.search(rf'"{role}"\s*=>\s*\{{\s*ip:\s*"{re.escape(ip)}"', text), role
    for script in sorted(VAGRANT_DIR.glob("*.sh")):
        assert IPV4.findall(script.read_text()) == [], f"{script.name} has its own addresses"


# --- the Vagrant lab's scripts -------------------------------------------------------

def test_lab_scripts_exist():
    names = {p.name for p in VAGRANT_DIR.glob("*.sh")}
    assert {"install.sh", "network.sh", *(f"provision-{r}.sh" for r in ROLES)} <= names
    text = VAGRANTFILE.read_text()
    for path in re.findall(r'path:\s*"(vagrant/[^"#]+)"', text):
        assert (ROOT / path).is_file(), path
    assert 'path: "vagrant/provision-#{role}.sh"' in text
    assert 'config.vm.box = LAB[:box]' in text and 'box: "debian/bookworm64"' in text


@pytest.mark.parametrize("script", sorted(p.name for p in VAGRANT_DIR.glob("*.sh")))
def test_script_syntax(script):
    path = VAGRANT_DIR / script
    assert path.read_text().startswith("#!/usr/bin/env bash\n")
    assert path.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
    assert "set -euo pipefail" in path.read_text()
    r = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_bash_n_can_fail(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text("if true; then\n")
    assert subprocess.run(["bash", "-n", str(bad)], capture_output=True).returncode != 0


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck():
    scripts = [str(p) for p in sorted(VAGRANT_DIR.glob("*.sh"))]
    r = subprocess.run(["shellcheck", "-x", *scripts], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("role", sorted(ROLE_UNIT))
def test_role_script_enables_its_unit_and_writes_config(role):
    text = (VAGRANT_DIR / f"provision-{role}.sh").read_text()
    assert f"systemctl enable {ROLE_UNIT[role]}" in text
    for other in set(ROLE_UNIT.values()) - {ROLE_UNIT[role]}:
        assert other not in text
    assert f"cat >{CONFIG} <<CONF" in text
    section = {"online": "[online]", "assistant": "[assist]", "target": "[target]"}[role]
    assert section in text and "[general]" in text


def test_lab_sysctls():
    assert "net.ipv4.conf.all.rp_filter = 2" in (VAGRANT_DIR / "provision-target.sh").read_text()
    assert "net.ipv4.ip_forward = 0" in (VAGRANT_DIR / "provision-assistant.sh").read_text()


def test_client_load_is_bounded():
    text = (VAGRANT_DIR / "provision-client.sh").read_text()
    assert "-gt 10000" in text and "--max-time" in text and "sleep 0.1" in text
    assert "systemctl" not in text  # the client runs no nfreplay unit


# --- the tools themselves ------------------------------------------------------------

def vagrant_env(tmp_path: Path) -> dict[str, str]:
    # A private home and dotfile dir: validate then leaves no .vagrant/ in the repo
    # and no ~/.vagrant.d; no version check over the network.
    env = dict(os.environ)
    env.update(VAGRANT_HOME=str(tmp_path / "home"), VAGRANT_DOTFILE_PATH=str(tmp_path / "dot"),
               VAGRANT_CHECKPOINT_DISABLE="1", VAGRANT_NO_COLOR="1")
    return env


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant not installed (apt-get install vagrant)")
def test_vagrant_validate(tmp_path):
    # --ignore-provider: validates everything but the provider blocks, and needs no
    # usable provider (plain `vagrant validate` fails with "No usable default
    # provider" when neither VirtualBox nor vagrant-libvirt is installed).
    had_dotdir = (ROOT / ".vagrant").exists()
    r = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=ROOT, env=vagrant_env(tmp_path),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "validated successfully" in r.stdout
    assert (ROOT / ".vagrant").exists() == had_dotdir


def _vagrant_plugins() -> str:
    if shutil.which("vagrant") is None:
        return ""
    r = subprocess.run(["vagrant", "plugin", "list"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1"})
    return r.stdout


@pytest.mark.parametrize("provider", ["libvirt", "virtualbox"])
def test_vagrant_validate_provider(tmp_path, provider):
    if shutil.which("vagrant") is None:
        pytest.skip("vagrant not installed (apt-get install vagrant)")
    if provider == "libvirt" and "vagrant-libvirt" not in _vagrant_plugins():
        pytest.skip("vagrant-libvirt plugin not installed")
    if provider == "virtualbox" and shutil.which("VBoxManage") is None:
        pytest.skip("VirtualBox not installed")
    env = vagrant_env(tmp_path)
    env["VAGRANT_DEFAULT_PROVIDER"] = provider
    r = subprocess.run(["vagrant", "validate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def _exec_paths(unit: dict) -> set[str]:
    paths = set()
    for key in ("ExecStartPre", "ExecStart", "ExecReload", "ExecStop", "ExecStopPost"):
        for v in values(unit, "Service", key):
            paths.add(command(v)[1][0])
    return paths


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path):
    # Offline, against a root that has the host's system units (for
    # network-online.target, multi-user.target, ...) and a stub for every command the
    # units run: verify checks that each ExecX= path is executable.
    system_units = next((p for p in (Path("/lib/systemd/system"), Path("/usr/lib/systemd/system"))
                         if (p / "multi-user.target").exists()), None)
    if system_units is None:
        pytest.skip("no systemd system units on this host")
    root = tmp_path / "root"
    shutil.copytree(system_units, root / "lib/systemd/system", symlinks=True)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    names = sorted(p.name for p in SYSTEMD.glob("*.service"))
    for name in names:
        shutil.copy(SYSTEMD / name, etc / name)
        for exe in _exec_paths(load_unit(name)):
            stub = root / exe.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    # A template is verified as an instance of it (%i expanded).
    r = subprocess.run(["systemd-analyze", "verify", f"--root={root}",
                        *(f"/etc/systemd/system/{n.replace('@.', '@lab1.')}" for n in names)],
                       capture_output=True, text=True, timeout=120)
    # Unknown keys and bad values only warn (exit 0): any output is a failure.
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr
