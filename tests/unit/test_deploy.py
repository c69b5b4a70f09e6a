"""The Containerfile and deploy/kubernetes/ stay consistent with the package (no root, no
container runtime: tests/lab/test_containers.py builds and runs them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nfreplay import __version__, config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"


def configmap_toml() -> str:
    """The block scalar `nfreplay.toml: |` of configmap.yaml (4 spaces deep)."""
    text = (DEPLOY / "configmap.yaml").read_text()
    block = text.split("  nfreplay.toml: |\n", 1)[1]
    return "".join(line[4:] + "\n" for line in block.splitlines())


@pytest.mark.parametrize("role", ["online", "assist", "target"])
def test_the_configmap_loads_for_every_role(tmp_path: Path, role: str) -> None:
    path = tmp_path / "nfreplay.toml"
    path.write_text(configmap_toml())
    cfg = config.load(str(path), {}, role=role)
    assert cfg.general.state_dir == "/run/nfreplay"  # where the manifests mount the state


def test_the_nfreplay_containers_run_the_daemons_with_two_capabilities_and_probes() -> None:
    for name, commands in (("online-daemonset.yaml", [["nfreplay-online", "up"]]),
                           ("target-deployment.yaml", [["nfreplay", "target", "up",
                                                        "--resident"],
                                                       ["nfreplay-assist", "up"]])):
        text = (DEPLOY / name).read_text()
        images = re.findall(r"^\s+image: (\S+)", text, re.M)
        assert images.count(f"nfreplay:{__version__}") == len(commands), images
        found = [json.loads(c) for c in re.findall(r"^\s+command: (\[.*\])", text, re.M)]
        assert found == commands
        assert text.count('add: ["NET_ADMIN", "NET_RAW"]') == 1  # the target reuses it (&nfreplay)
        assert 'drop: ["ALL"]' in text and "allowPrivilegeEscalation: false" in text
        probes = re.findall(r"exec: \{command: (\[.*\])\}", text)
        assert len(probes) == 3 * len(commands)
        assert all(json.loads(p)[:3] == ["nfreplay", "status", "--probe"] for p in probes)
        port = re.search(r'prometheus.io/port: "(\d+)"', text)
        assert port and f':{port.group(1)}"' in configmap_toml()


def test_the_containerfile_has_a_standard_base_and_no_shell_in_its_command() -> None:
    text = (ROOT / "Containerfile").read_text()
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["debian:12-slim", "debian:12-slim"]
    for line in re.findall(r"^(?:ENTRYPOINT|CMD) (.*)$", text, re.M):
        assert isinstance(json.loads(line), list), line  # exec form
    assert "ENTRYPOINT" not in text  # the command is the daemon itself
