"""Podman for the container lab tests (tests/lab/test_containers.py): a containers.conf of the
suite's own, the base image made from Debian's packages, nfreplay's image built from the
Containerfile.

No image registry is reachable here, so the image the Containerfile's FROM names
(`debian:12-slim`) is made with mmdebstrap (minbase, merged /usr, no documentation: what the
official slim image holds) and tagged locally under that name, once: podman keeps it, and
the layers of every build, between runs. This kind of machine needs two settings the host's
podman configuration is not asked to carry: runc (crun is not installed, and cgroup v1), and
ulimits within the hard limits (podman's defaults ask for more than the sandbox allows, and
runc then fails to start any container). They go into a containers.conf of the suite's own,
passed in CONTAINERS_CONF to every podman command.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"
SERVICE_DIR = Path(__file__).with_name("containers")  # the lab's service under test

_DPKG_SLIM = ("path-exclude=/usr/share/man/*", "path-exclude=/usr/share/doc/*",
              "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/locale/*",
              "path-exclude=/usr/share/info/*")


def base_image() -> str:
    """The image the Containerfile's first FROM names, fully qualified as podman stores it."""
    match = re.search(r"^FROM\s+(\S+)", CONTAINERFILE.read_text(), re.M)
    assert match, "Containerfile: no FROM"
    name = match.group(1)
    return name if "/" in name else f"docker.io/library/{name}"


def containers_conf() -> str:
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    # conmon runs its containers with at most 32768 processes here: ask for less.
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
    return ("[containers]\n"
            f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
            "[engine]\n"
            'runtime = "runc"\n')


class Podman:
    """`podman` with the suite's containers.conf (in `conf_dir`)."""

    def __init__(self, conf_dir: Path) -> None:
        conf = conf_dir / "containers.conf"
        conf.write_text(containers_conf())
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.timings: dict[str, float] = {}
        self.image = ""  # nfreplay's, once built

    def __call__(self, *args: str, check: bool = True, netns: str | None = None,
                 timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run podman; `netns`: in that network namespace (nsenter, not `ip netns exec`,
        which would hide the cgroup mounts podman needs under its own /sys)."""
        argv = ["podman", *args]
        if netns is not None:
            argv = ["nsenter", f"--net=/run/netns/{netns}", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: "
                               f"{done.stderr.strip()[-2000:]}")
        return done

    def exists(self, image: str) -> bool:
        return self("image", "exists", image, check=False).returncode == 0

    def ensure_base(self) -> None:
        """The Containerfile's base image from Debian's packages, unless podman has it."""
        name = base_image()
        if self.exists(name):
            return
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="nfreplay-base-") as tmp:
            tar = Path(tmp) / "base.tar"
            argv = ["mmdebstrap", "--variant=minbase", "--format=tar", "--quiet",
                    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
                    *(f"--dpkgopt={opt}" for opt in _DPKG_SLIM), "bookworm", str(tar)]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                raise RuntimeError(f"mmdebstrap exited {done.returncode}: {done.stderr[-2000:]}")
            self("import", "--change", 'CMD ["bash"]', str(tar), name, timeout=300)
        self.timings["base image (mmdebstrap)"] = time.monotonic() - started

    def build(self, tag: str, containerfile: Path, context: Path) -> None:
        """`podman build` on the host's network (no bridge, no NAT rule on the host), with
        pip's CA bundle mounted when the host's pip names one (a TLS-inspecting proxy)."""
        argv = ["build", "--network", "host", "--layers", "-t", tag, "-f", str(containerfile)]
        cert = os.environ.get("PIP_CERT") or _pip_config("global.cert")
        if cert and os.path.isfile(cert):
            argv += ["--volume", f"{cert}:/run/build-ca.crt:ro",
                     "--build-arg", "PIP_CERT=/run/build-ca.crt"]
        started = time.monotonic()
        self(*argv, str(context), timeout=1500)
        self.timings[f"build {tag}"] = time.monotonic() - started

    def image_size(self, image: str) -> int:
        return int(self("image", "inspect", "--format", "{{.Size}}", image).stdout)


def _pip_config(key: str) -> str:
    pip = shutil.which("pip3") or shutil.which("pip")
    if pip is None:
        return ""
    done = subprocess.run([pip, "config", "get", key], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def manifest_images(path: Path) -> list[str]:
    """The `image:` values of a manifest, in order."""
    return re.findall(r"^\s*image:\s*(\S+)", path.read_text(), re.M)


def qualified(name: str) -> str:
    """A short image name (`nfreplay:0.1.0`) as podman stores an image built or tagged under
    it (`localhost/nfreplay:0.1.0`)."""
    first = name.split("/", 1)[0]
    return name if "/" in name and ("." in first or ":" in first or first == "localhost") \
        else f"localhost/{name}"
