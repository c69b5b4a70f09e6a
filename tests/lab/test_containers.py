"""nfreplay as containers (issue 18): the image built from the Containerfile with podman,
nfreplay-online in a container on the online namespace's network, and the target pod of
deploy/kubernetes/ (the service under test, the tunnel end and the colocated nfreplay-assist)
played with `podman kube play` on the target namespace's network, configured only through
the values of its ConfigMap. The lab checks source addresses like a cloud network (as
test_cloud.py does): only the tunnel gets replayed packets to the target.

Podman 4.3 (Debian 12) cannot put a pod on a named network namespace (`--network ns:` is
refused for pods), so the pod is played with `--network host` from inside the target
namespace (nsenter): its containers share that namespace, as a pod's containers share the
pod's. Its `kube down` kills the containers at once (podman issue 22397, fixed in 5.1), so
the pod is stopped with `podman pod stop` first, as the README says.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nfreplay import __version__
from tests.lab.podman import CONTAINERFILE, ROOT, SERVICE_DIR, Podman, manifest_images, qualified
from tests.lab.helpers import (
    count_captured, fidelity, host_state, nonzero, run_load, settled_counters, start_capture,
    vpc_source_check, wait_until,
)  # fmt: skip
from tests.lab.topology import ADDR, CLIENT_NET, Lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (network namespaces)"),
]

MANIFESTS = ROOT / "deploy" / "kubernetes"
TARGET_MANIFEST = MANIFESTS / "target-deployment.yaml"
POD = "nfreplay-target-pod-0"  # podman's name for the Deployment's pod
SERVICE_IMAGE = "localhost/nfreplay-lab-service:1"
ROLES = {"tunnel": "target", "assist": "assist"}  # the pod's nfreplay containers


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """The images: the base (once), nfreplay's (built every run: the layer cache makes an
    unchanged tree cost seconds) and the lab's service, tagged as the manifest names them."""
    podman = Podman(tmp_path_factory.mktemp("podman"))
    nfreplay_image, service_alias = manifest_images(TARGET_MANIFEST)[1], \
        manifest_images(TARGET_MANIFEST)[0]
    assert nfreplay_image == f"nfreplay:{__version__}", nfreplay_image
    podman.ensure_base()
    podman.build(qualified(nfreplay_image), CONTAINERFILE, ROOT)
    podman.build(SERVICE_IMAGE, SERVICE_DIR / "service.Containerfile", SERVICE_DIR)
    alias = qualified(service_alias)
    podman("tag", SERVICE_IMAGE, alias)
    podman.image = qualified(nfreplay_image)
    size = podman.image_size(podman.image)
    print(f"image {podman.image}: {size / 1e6:.1f} MB; " +
          ", ".join(f"{k} {v:.1f} s" for k, v in podman.timings.items()))
    try:
        yield podman
    finally:
        podman("untag", SERVICE_IMAGE, alias, check=False)


def lab_toml(lab: Lab) -> str:
    """The lab's values for the ConfigMap's nfreplay.toml (deploy/kubernetes/configmap.yaml)."""
    return f"""\
[general]
instance = "{lab.prefix}"

[online]
service = "{ADDR['online']}:80"
target = "{ADDR['target']}:80"
assistants = ["{ADDR['target']}"]
interface = "eth0"
deliver = "tunnel"
tunnel = "vxlan"
metrics_listen = "{ADDR['online']}:9187"

[assist]
mode = "colocated"
target = "{ADDR['target']}:80"
clients = ["{CLIENT_NET}"]
online = ["{ADDR['online']}"]
metrics_listen = "{ADDR['target']}:9188"

[target]
clients = ["{CLIENT_NET}"]
tunnel = "vxlan"
tunnel_peers = ["{ADDR['online']}"]
"""


class Deployment:
    """nfreplay-online's container and the target pod in one lab; `close` removes both."""

    def __init__(self, lab: Lab, podman: Podman) -> None:
        self.lab, self.podman = lab, podman
        self.online = f"{lab.prefix}-online"
        self.dir = lab.dir / "containers"
        self.dir.mkdir()
        configmap = re.search(r"^  name: (\S+)", (MANIFESTS / "configmap.yaml").read_text(),
                              re.M)
        assert configmap
        self.configmap_name = configmap.group(1)
        self.had_volume = podman("volume", "exists", self.configmap_name,
                                 check=False).returncode == 0
        # The ConfigMap: deploy/kubernetes/configmap.yaml's, with the lab's values.
        self.toml = self.dir / "nfreplay.toml"
        self.toml.write_text(lab_toml(lab))
        self.configmap = self.dir / "configmap.json"  # JSON is YAML
        self.configmap.write_text(json.dumps({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": self.configmap_name, "namespace": "nfreplay"},
            "data": {"nfreplay.toml": self.toml.read_text()}}))
        self.state = Path(lab.state_dir("online"))
        self.state.mkdir()

    # -- the target pod
    def play(self) -> float:
        started = time.monotonic()
        self.podman("kube", "play", "--network", "host", "--configmap", str(self.configmap),
                    str(TARGET_MANIFEST), netns=self.lab.ns["target"])
        return time.monotonic() - started

    def pod_stop(self) -> float:
        started = time.monotonic()
        self.podman("pod", "stop", "--time", "30", POD)
        return time.monotonic() - started

    def kube_down(self) -> None:
        self.podman("kube", "down", str(TARGET_MANIFEST))

    def probe(self, container: str, role: str) -> tuple[int, str]:
        """The manifests' probe command, run in the container (exec joins the target
        namespace only when it starts there: the pod has no namespace of its own here):
        its exit code and output."""
        netns = self.lab.ns["online" if container == self.online else "target"]
        argv = ["nfreplay", "status", "--probe", "--role", role]
        if role == "online":
            argv.append("--no-rules")
        done = self.podman("exec", container, *argv, check=False, netns=netns)
        return done.returncode, f"{container}: {done.stdout.strip()} {done.stderr.strip()}"

    # -- nfreplay-online
    def run_online(self) -> float:
        started = time.monotonic()
        self.podman("run", "-d", "--name", self.online,
                    "--network", f"ns:/run/netns/{self.lab.ns['online']}",
                    "--cap-drop", "all", "--cap-add", "NET_ADMIN,NET_RAW", "--stop-timeout", "30",
                    "-v", f"{self.toml}:/etc/nfreplay/nfreplay.toml:ro",
                    "-v", f"{self.state}:/run/nfreplay",
                    self.podman.image, "nfreplay-online", "up")
        return time.monotonic() - started

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Until every nfreplay container's probe passes and nfreplay-online's two control
        connections to the colocated assist are up; seconds it took."""
        started = time.monotonic()
        checks = [(f"{POD}-{name}", role) for name, role in ROLES.items()]
        checks.append((self.online, "online"))

        last: list[str] = []

        def ready() -> bool:
            for container, role in checks:
                code, out = self.probe(container, role)
                if code != 0:
                    last[:] = [out]
                    return False
            status = self.lab.online_status()
            last[:] = [f"online status: {status}"]
            return bool(status.get("extra", {}).get("channel", {}).get("up") == 2)

        assert wait_until(ready, timeout, step=0.5), f"{last}\n{self.logs()}"
        return time.monotonic() - started

    def startup(self, container: str) -> float:
        """Seconds from the container's start to its daemon's `up:` log line (the runtime's
        timestamps of both)."""
        from datetime import datetime

        def when(stamp: str) -> float:
            # podman: "2026-12-04 16:47:19.123456789 +0000 UTC" and RFC 3339 in logs -t
            stamp = stamp.strip().replace(" +0000 UTC", "Z").replace(" ", "T")
            head, _, frac = stamp.rstrip("Z").partition(".")
            return datetime.fromisoformat(head + "+00:00").timestamp() + float(f"0.{frac or 0}")

        started = self.podman("inspect", "--format", "{{.State.StartedAt}}", container).stdout
        for line in self.podman("logs", "-t", container).stdout.splitlines():
            stamp, _, text = line.partition(" ")
            if re.match(r"INFO nfreplay(\.\w+)?: up", text):
                return when(stamp) - when(started)
        raise AssertionError(f"{container}: no `up:` line\n{self.logs()}")

    def exit_code(self, container: str) -> int:
        return int(self.podman("inspect", "--format", "{{.State.ExitCode}}", container).stdout)

    def logs(self) -> str:
        out = []
        for name in (self.online, *(f"{POD}-{c}" for c in ROLES)):
            done = self.podman("logs", name, check=False)
            out.append(f"--- {name}\n{done.stdout}{done.stderr}")
        return "\n".join(out)

    def service_paths(self, tag: str) -> set[str]:
        """The URIs the pod's service logged (one per line, on its stdout)."""
        done = self.podman("logs", f"{POD}-service", check=False)
        return {line.strip() for line in done.stdout.splitlines() if f"/{tag}/" in line}

    def close(self) -> None:
        self.podman("rm", "-f", "-t", "30", self.online, check=False)
        self.podman("pod", "stop", "--time", "30", POD, check=False)
        self.podman("kube", "down", str(TARGET_MANIFEST), check=False)
        if not self.had_volume:  # the ConfigMap's volume, left by `kube down`
            self.podman("volume", "rm", "-f", self.configmap_name, check=False)


@pytest.fixture
def deployment(podman: Podman) -> Iterator[Deployment]:
    with Lab() as lab:
        vpc_source_check(lab)
        d = Deployment(lab, podman)
        try:
            yield d
        finally:
            d.close()


def namespace_state(lab: Lab) -> dict[str, object]:
    """What a stopped deployment must leave as it found it: iptables (nft and legacy), the
    routes and routing rules, nfreplay's devices, and the target's whole nft ruleset."""
    return {**host_state(lab), "nft": lab.sh("target", "nft", "list", "ruleset").stdout}


def replay(d: Deployment, tag: str, short: int, keepalive: int) -> None:
    """Load through the production nginx: every request reaches the pod's service, and no
    reply of the target reaches the client namespace."""
    online_log = d.lab.dir / "nginx-online" / "access.log"
    sniffer = start_capture(d.lab)
    run_load(d.lab, tag, short=short, keepalive=keepalive, per_conn=5)
    want = {p for p in online_log.read_text().split() if f"/{tag}/" in p}
    assert wait_until(lambda: want <= d.service_paths(tag), 30), \
        (len(want - d.service_paths(tag)), nonzero(settled_counters(d.lab)))
    share = fidelity(f"containers, {tag}", len(want & d.service_paths(tag)), len(want))
    assert len(want) == short + keepalive * 5 and share >= 99.9
    seen = count_captured(d.lab, sniffer)
    assert seen["target"] == 0 and seen["online"] > 0, seen


def test_online_container_and_target_pod_replay_and_stop_leaves_nothing(
        deployment: Deployment) -> None:
    d, lab = deployment, deployment.lab
    before = namespace_state(lab)
    lab.start_nginx("online")
    played = d.play()
    started = d.run_online()
    ready = d.wait_ready()
    print(f"kube play {played:.1f} s, podman run {started:.1f} s, ready after {ready:.1f} s")
    startup = {name: d.startup(f"{POD}-{name}") for name in ROLES}
    startup["online"] = d.startup(d.online)
    print("from the container's start to `up:` " +
          ", ".join(f"{k} {v:.2f} s" for k, v in startup.items()))
    assert all(0 < v < 10 for v in startup.values()), startup
    replay(d, "ctr", short=400, keepalive=60)
    c = settled_counters(lab)
    assert c["sessions_established"] == c["sessions_opened"] == 460, nonzero(c)

    # Logs: on stdout, without a timestamp of nfreplay's own (the runtime keeps one).
    online_log = d.podman("logs", d.online)
    assert re.search(r"^INFO nfreplay(\.\w+)?: up", online_log.stdout, re.M), online_log.stdout
    assert online_log.stderr == "" and not re.search(r"^\d", online_log.stdout, re.M)
    # The port the pod's Prometheus annotation names serves the assist's metrics.
    annotation = re.search(r'prometheus.io/port: "(\d+)"', TARGET_MANIFEST.read_text())
    assert annotation
    scrape = lab.sh("online", "python3", "-c", "import sys, urllib.request; sys.stdout.write("
                    "urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())",
                    f"http://{ADDR['target']}:{annotation.group(1)}/metrics")
    assert re.search(r"^nfreplay_assist_packets_queued_total \d*[1-9]", scrape.stdout, re.M)

    # podman stop (SIGTERM): nfreplay-online exits 0 well within the grace period.
    started = time.monotonic()
    d.podman("stop", "-t", "30", d.online)
    online_stopped = time.monotonic() - started
    assert d.exit_code(d.online) == 0, d.logs()
    stopped = d.pod_stop()
    print(f"podman stop (online) {online_stopped:.1f} s, podman pod stop {stopped:.1f} s")
    assert online_stopped < 10 and stopped < 10
    for name in ROLES:
        assert d.exit_code(f"{POD}-{name}") == 0, d.logs()
    assert "down: complete" in d.podman("logs", f"{POD}-assist").stdout
    d.kube_down()
    assert namespace_state(lab) == before


def test_sigkill_then_the_next_start_cleans_up_and_replays(deployment: Deployment) -> None:
    d, lab = deployment, deployment.lab
    before = namespace_state(lab)
    lab.start_nginx("online")
    d.play()
    d.run_online()
    d.wait_ready()
    running = namespace_state(lab)
    assert running != before  # the tunnel device, the raw rules, the routes

    d.podman("kill", "-s", "KILL", d.online)
    d.podman("pod", "kill", "-s", "KILL", POD)
    d.podman("wait", d.online, *(f"{POD}-{name}" for name in ROLES))
    assert d.exit_code(d.online) == 137
    assert namespace_state(lab) == running  # nothing removed them

    # The next start: each daemon removes what its killed predecessor left (from the journal
    # in its state volume, and by owner tag), then installs it once.
    d.podman("start", d.online)
    d.podman("pod", "start", POD, netns=lab.ns["target"])
    d.wait_ready()
    assert namespace_state(lab) == running
    replay(d, "again", short=100, keepalive=20)

    d.podman("stop", "-t", "30", d.online)
    d.pod_stop()
    d.kube_down()
    assert namespace_state(lab) == before
