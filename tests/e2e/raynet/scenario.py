"""One end-to-end run: firewalled namespaces, each node started from its Pod as the API server
holds it (the KubeRay operator's container command, args and env), the workload, the
listening-port audit and teardown. Every step is named; the first fatal failure ends the run
(later steps would only time out against a wedged cluster), teardown always runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import capture
from .live import LiveCluster, LivePod
from .netns import HEAD_IP, WORKER_IP, Node, NodePair, Sampler, sweep_stale

WORKLOAD_DIR = Path(__file__).resolve().parents[1] / "workload"


@dataclass
class RunConfig:
    cluster: LiveCluster
    venv: Path
    label: str
    profile: str = "full"  # full | smoke | sizing
    actors: int = 8
    tasks: int = 5000
    object_mib: int = 64
    step_timeout: float = 120.0
    job: bool = True
    drop_both: frozenset[int] = frozenset()  # ports removed from both firewalls
    drop_worker: frozenset[int] = frozenset()  # ports removed from the worker's firewall only
    log_dir: Path | None = None
    # Bound on one `ray start` (healthy: ~5-10 s, ~20 s on a loaded 2-core machine).
    start_timeout: float = 90.0
    # Where the node-to-node packet capture goes (None: no capture; needs tshark).
    capture_dir: Path | None = None
    # Ray token auth (rayAuth.enabled): ask Ray's HTTP endpoints, the Jobs API and the Ray
    # Client with and without the token while the driver holds its actors (token_auth_* steps).
    token_auth: bool = False


@dataclass
class Step:
    name: str
    ok: bool
    seconds: float
    detail: Any = None


@dataclass
class RunResult:
    label: str
    ray_version: str
    steps: list[Step] = field(default_factory=list)
    listening: dict[str, dict[int, list[str]]] = field(default_factory=dict)
    outside: dict[str, list[int]] = field(default_factory=dict)
    blocked: dict[str, list[int]] = field(default_factory=dict)
    worker_ports_used: dict[str, list[int]] = field(default_factory=dict)
    # Most worker-range ports held at once, per node (sampled every 0.3 s).
    worker_ports_peak: dict[str, int] = field(default_factory=dict)
    # What Ray sent between the nodes, per port: :authority / Host / SNI (capture.py).
    authorities: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def first_failure(self) -> Step | None:
        return next((s for s in self.steps if not s.ok), None)

    def summary(self) -> str:
        lines = [
            f"== {self.label} (Ray {self.ray_version}) {'PASS' if self.ok else 'FAIL'} "
            f"in {self.seconds:.0f}s"
        ]
        for s in self.steps:
            detail = json.dumps(s.detail, default=str)
            if len(detail) > 300:
                detail = detail[:300] + "..."
            lines.append(f"  {'ok  ' if s.ok else 'FAIL'} {s.name:30s} {s.seconds:7.1f}s {detail}")
        for role, table in self.listening.items():
            lines.append(f"  listening on {role}: {sorted(table)}")
        if self.worker_ports_peak:
            lines.append(f"  worker-range ports held at once (peak): {self.worker_ports_peak}")
        for a in self.authorities:
            lines.append(
                f"  {a['from']}->{a['to']}:{a['port']} {a['kind']} {a['authority'] or '-'} "
                f"({a['form']}) x{a['requests']}"
            )
        for role, ports in self.outside.items():
            if ports:
                lines.append(f"  OUTSIDE the Services on {role}: {ports}")
        for role, ports in self.blocked.items():
            if ports:
                lines.append(f"  SYNs dropped by {role}'s firewall to ports {ports}")
        return "\n".join(lines)


class Fatal(Exception):
    pass


def venv_ray_version(venv: Path) -> str:
    """The Ray version installed in a venv (from its dist-info, without importing Ray)."""
    found = sorted(venv.glob("lib/python*/site-packages/ray-*.dist-info"))
    if not found:
        raise FileNotFoundError(f"no Ray installed in {venv}")
    return found[0].name[len("ray-") : -len(".dist-info")]


# Ray's own `ray start` prints this once the node is up (2.10 and 2.60); with `--block` it then
# stays in the foreground, watching the node's processes, as in the container.
RAY_STARTED = "Ray runtime started"


def parse_ray_start(argv: list[str]) -> tuple[bool, dict[str, str]]:
    """(head?, params) of one `ray start` argv as the probe recorded it."""
    params: dict[str, str] = {}
    head = False
    for a in argv[1:]:
        if a == "--head":
            head = True
        elif a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            params[k] = v
        elif a.startswith("--"):
            params[a[2:]] = ""
    return head, params


def worker_ports_of(params: dict[str, str]) -> list[int]:
    if params.get("worker-port-list"):
        return [int(p) for p in params["worker-port-list"].split(",") if p.strip()]
    lo = int(params.get("min-worker-port", 10002))
    hi = int(params.get("max-worker-port", 19999))
    return list(range(lo, hi + 1))


def _safe(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)


def shell_script(pod: LivePod) -> str:
    """The script of the Ray container's `bash [-l]c [--] SCRIPT` command."""
    from podcmd import shell_script as script_of

    return script_of(pod.name, list(pod.argv))


class Run:
    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.c = cfg.cluster
        self.result = RunResult(cfg.label, venv_ray_version(cfg.venv))
        cfg.venv = cfg.venv.resolve()  # commands run with another working directory
        self.python = str(cfg.venv / "bin" / "python")
        # What each node's `ray start` receives, recorded by the probe (node_ip_<role>).
        self.params: dict[str, dict[str, str]] = {}

    # -- helpers -----------------------------------------------------------------------------
    def record(
        self, name: str, ok: bool, seconds: float, detail: Any = None, fatal: bool = True
    ) -> None:
        self.result.steps.append(Step(name, ok, round(seconds, 2), detail))
        if not ok and fatal:
            raise Fatal(name)

    @contextlib.contextmanager
    def timed(self, name: str, fatal: bool = True) -> Iterator[dict[str, Any]]:
        """Record step `name`; the body sets out['ok'] / out['detail'] or raises."""
        out: dict[str, Any] = {"ok": True, "detail": None}
        t0 = time.monotonic()
        try:
            yield out
        except Fatal:
            raise
        except Exception as exc:
            out["ok"], out["detail"] = False, f"{type(exc).__name__}: {exc}"
        self.record(name, bool(out["ok"]), time.monotonic() - t0, out["detail"], fatal)

    def image_env(self) -> dict[str, str]:
        """What the Ray image's own environment gives every container: the per-version venv
        first on PATH (so the Pod's `ray` is that venv's), a home, a locale."""
        return {
            "PATH": f"{self.cfg.venv / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:"
            "/usr/bin:/sbin:/bin",
            "HOME": "/tmp",
            "LANG": "C.UTF-8",
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
        }

    def node_env(self, pod: LivePod) -> dict[str, str]:
        """The container's environment: the image's, then the Pod's (resolved by the API
        server's objects: downward API with the pod IP, Secret / ConfigMap refs)."""
        return {**self.image_env(), **pod.env}

    def allowed(self, role: str) -> list[int]:
        ports = set(self.c.pod(role).allowed) - set(self.cfg.drop_both)
        if role == "worker":
            ports -= set(self.cfg.drop_worker)
        return sorted(ports)

    def worker_ports(self) -> list[int]:
        return worker_ports_of(self.params.get("worker", {}))

    def listed(self, role: str) -> dict[int, str]:
        """Ports of the Services whose EndpointSlices list the node's Pod (a node no Service
        selects, such as a RayJob's submitter, has none)."""
        return self.c.pod(role).allowed if role in ("head", "worker") else {}

    def make_pair(self) -> NodePair:
        """The namespaces the run uses: the head and the worker, each with its firewall."""
        return NodePair(self.c.hosts, self.allowed("head"), self.allowed("worker"))

    # -- the run -----------------------------------------------------------------------------
    def execute(self) -> RunResult:
        t_start = time.monotonic()
        sweep_stale()
        try:
            pair = self.make_pair()
        except Exception as exc:  # what the namespaces are made from could not be read
            self.result.steps.append(Step("harness", False, 0.0, f"{type(exc).__name__}: {exc}"))
            self.result.seconds = round(time.monotonic() - t_start, 1)
            return self.result
        sampler: Sampler | None = None
        cap: capture.Capture | None = None
        try:
            with self.timed("network") as out:
                for node in (pair.head, pair.worker):
                    pod = self.c.pod(node.role)
                    if pod.ip != node.ip:
                        raise RuntimeError(f"{pod.name} has IP {pod.ip}, its namespace {node.ip}")
                pair.setup()
                if capture.available() and self.cfg.capture_dir is not None:
                    cap = capture.Capture(
                        pair.head.ns, self.cfg.capture_dir / f"{_safe(self.cfg.label)}.pcapng"
                    )
                    cap.start()
                out["detail"] = {
                    "head": f"{pair.head.ns} = pod {self.c.head.name}",
                    "worker": f"{pair.worker.ns} = pod {self.c.worker.name}",
                    "admitted_on_head": len(self.allowed("head")),
                    "admitted_on_worker": len(self.allowed("worker")),
                    "unscheduled_workers": list(self.c.unplayed_workers),
                }
            self.check_node_ip(pair.head, self.c.head)
            self.check_node_ip(pair.worker, self.c.worker)
            sampler = Sampler(pair.nodes, range_ports=frozenset(self.worker_ports()))
            sampler.start()
            for node in (pair.head, pair.worker):
                self.prepare_pod(node, self.c.pod(node.role))
            self.start_node(pair.head, self.c.head, "head_start")
            self.start_node(pair.worker, self.c.worker, "worker_start")
            if self.c.head.env.get("RAY_USE_TLS") == "1":
                self.check_tls(pair)
            self.workload(pair)
        except Fatal:
            pass
        except Exception as exc:  # harness bug or environment problem: still a failed run
            self.result.steps.append(Step("harness", False, 0.0, f"{type(exc).__name__}: {exc}"))
        finally:
            if sampler:
                sampler.stop()
                self.audit_ports(pair, sampler)
            if cap is not None:
                self.decode_capture(cap)
            if not self.result.ok and self.cfg.log_dir:
                self.save_logs(pair)
            t0 = time.monotonic()
            problems = pair.teardown()
            self.result.steps.append(
                Step("teardown", not problems, round(time.monotonic() - t0, 2), problems or None)
            )
            self.result.seconds = round(time.monotonic() - t_start, 1)
        return self.result

    def check_node_ip(self, node: Node, pod: LivePod) -> None:
        """The Pod's container command, run by bash in the node with the Pod's env and `ray` a
        function that records its argv: `node-ip-address` must be this Pod's FQDN under a
        headless Service whose EndpointSlice lists it, and resolve to the pod's IP."""
        with self.timed(f"node_ip_{node.role}", fatal=False) as out:
            script = shell_script(pod)
            probe = "ray() { printf '%s\\0' \"$@\"; printf '\\1\\0'; }; ulimit() { :; }; "
            proc = node.run(
                ["bash", "--noprofile", "--norc", "-c", probe + script],
                self.node_env(pod),
                timeout=20,
            )
            calls = [c.split("\0")[:-1] for c in proc.stdout.split("\1\0") if c]
            starts = [c for c in calls if c and c[0] == "start"]
            if proc.returncode != 0 or len(starts) != 1:
                raise RuntimeError(f"expected one `ray start`, got {calls}: {proc.stderr[-300:]}")
            head, params = parse_ray_start(starts[0])
            if head != (node.role == "head"):
                raise RuntimeError(f"{pod.name}: `ray start` head={head} on the {node.role}")
            self.params[node.role] = params
            value = params.get("node-ip-address")
            resolved = node.run(["getent", "ahostsv4", value or "-"], {}, timeout=10).stdout
            addrs = sorted({ln.split()[0] for ln in resolved.splitlines() if ln.strip()})
            out["detail"] = {"value": value, "resolves_to": addrs, "pod_fqdns": pod.fqdns}
            out["ok"] = value in pod.fqdns and addrs == [node.ip]

    def prepare_pod(self, node: Node, pod: LivePod) -> None:
        """Volumes and init containers of the Pod, as the kubelet would run them before the Ray
        container: every volume is a fresh tmpfs private to the node (missing mount points are
        created as the container runtime would: on the node's own /tmp and /dev/shm, and under
        /etc or /home on a private overlay, so the host's are never touched; elsewhere they are
        an error), Secret and ConfigMap volumes hold what the API server holds, then each init
        container's command runs with its own resolved env."""
        if not pod.mounts and not pod.init_containers:
            return
        with self.timed(f"pod_init_{node.role}") as out:
            paths = sorted(pod.mounts)
            script = ["set -e", "need_etc=0", "need_home=0"]
            for p in paths:
                q = shlex.quote(p)
                script.append(
                    f"[ -d {q} ] || case {q} in /etc/*) need_etc=1;; /home/*) need_home=1;; "
                    f"/tmp/*|/dev/shm/*) ;; *) echo 'no mount point {p}' >&2; exit 1;; esac"
                )
            script += [
                'if [ "$need_etc" = 1 ]; then',
                "  mkdir -p /tmp/.etc/up /tmp/.etc/work",
                "  mount -t overlay overlay -o lowerdir=/etc,upperdir=/tmp/.etc/up,"
                "workdir=/tmp/.etc/work /etc",
                f"  mount --bind /etc/netns/{node.ns}/hosts /etc/hosts",
                f"  mount --bind /etc/netns/{node.ns}/resolv.conf /etc/resolv.conf",
                "fi",
                # The image's home (/home/ray): mount points under it go on a private overlay.
                'if [ "$need_home" = 1 ]; then',
                "  mkdir -p /tmp/.home/up /tmp/.home/work",
                "  mount -t overlay overlay -o lowerdir=/home,upperdir=/tmp/.home/up,"
                "workdir=/tmp/.home/work /home",
                "fi",
            ]
            script += [
                f"mkdir -p {shlex.quote(p)} && mount -t tmpfs -o mode=0755 tmpfs {shlex.quote(p)}"
                for p in paths
            ]
            proc = node.run(
                ["bash", "-c", "\n".join(script)],
                {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                timeout=30,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"volumes: {proc.stderr.strip()}")
            for p, vol in pod.mounts.items():
                for name, text in vol.files.items():
                    node.run(
                        ["bash", "-c", 'cat > "$1"', "_", f"{p}/{name}"],
                        {},
                        timeout=10,
                        input_text=text,
                    )
            ran = []
            for ic in pod.init_containers:
                proc = node.run(list(ic.argv), {**self.image_env(), **ic.env}, timeout=60)
                if proc.returncode != 0:
                    raise RuntimeError(
                        f"init container {ic.name}: rc={proc.returncode} "
                        f"{proc.stderr.strip()[-800:]}"
                    )
                ran.append(ic.name)
            out["detail"] = {
                "volumes": {p: f"{v.kind}{sorted(v.files) or ''}" for p, v in pod.mounts.items()},
                "init_containers": ran,
            }

    def check_tls(self, pair: NodePair) -> None:
        """With Ray-native TLS, each peer's gRPC ports complete a mutual-TLS handshake whose
        certificate verifies against the CA and names the peer's Pod FQDN (the init
        container's SANs), using the client's own pod certificate."""
        head_p, wrk_p = self.params["head"], self.params["worker"]
        probes = [
            (pair.worker, pair.head, int(head_p.get("port", 6379))),
            (pair.worker, pair.head, int(head_p["node-manager-port"])),
            (pair.head, pair.worker, int(wrk_p["node-manager-port"])),
            (pair.head, pair.worker, int(wrk_p["object-manager-port"])),
        ]
        with self.timed("tls_handshake") as out:
            results = {}
            for src, dst, port in probes:
                env = self.c.pod(src.role).env
                peer = self.params[dst.role]["node-ip-address"]
                argv = [
                    "openssl",
                    "s_client",
                    "-brief",
                    "-connect",
                    f"{dst.ip}:{port}",
                    "-CAfile",
                    env["RAY_TLS_CA_CERT"],
                    "-cert",
                    env["RAY_TLS_SERVER_CERT"],
                    "-key",
                    env["RAY_TLS_SERVER_KEY"],
                    "-verify_return_error",
                    "-verify_hostname",
                    peer,
                ]
                proc = src.run(argv, {"PATH": "/usr/bin:/bin"}, timeout=20, input_text="")
                text = proc.stdout + proc.stderr
                # gRPC closes the socket after the handshake (no HTTP/2 preface), so openssl's
                # exit code is not the verdict; the verification lines are.
                ok = "Verification: OK" in text and f"Verified peername: {peer}" in text
                results[f"{src.role}->{dst.role}:{port}"] = "ok" if ok else text.strip()[-300:]
            out["ok"] = all(v == "ok" for v in results.values())
            out["detail"] = results

    def start_node(self, node: Node, pod: LivePod, step: str) -> None:
        """Run the Ray container's command and args as the API server holds them (KubeRay's
        `bash -c -- "ulimit ...; ray start ... --block"`) with the container's env. `--block`
        keeps it in the foreground like the container's main process; the node counts as up
        when `ray start` reports the runtime started, bounded by start_timeout."""
        with self.timed(step) as out:
            proc = node.popen(
                list(pod.argv),
                self.node_env(pod),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                bufsize=1,
            )
            tail: list[str] = []
            started = threading.Event()

            def pump() -> None:
                assert proc.stdout is not None
                for line in proc.stdout:
                    tail.append(line.rstrip())
                    del tail[:-40]
                    if RAY_STARTED in line:
                        started.set()

            threading.Thread(target=pump, daemon=True, name=f"{node.role}-container").start()
            deadline = time.monotonic() + self.cfg.start_timeout
            while not started.is_set() and proc.poll() is None and time.monotonic() < deadline:
                started.wait(0.2)
            out["ok"] = started.is_set() and proc.poll() is None
            detail: dict[str, Any] = {"pod": pod.name, "command": list(pod.argv)}
            if not out["ok"]:
                detail["rc"] = proc.poll()
                detail["output"] = tail[-12:]
                if proc.poll() is None:
                    detail["output"].append(f"[not started after {self.cfg.start_timeout}s]")
            out["detail"] = detail

    def workload(self, pair: NodePair) -> None:
        head_env = self.node_env(self.c.head)
        head_env["PYTHONUNBUFFERED"] = "1"
        worker_metrics = self.params["worker"].get("metrics-export-port", "8080")
        argv = [
            self.python,
            str(WORKLOAD_DIR / "driver.py"),
            "--profile",
            self.cfg.profile,
            "--actors",
            str(self.cfg.actors),
            "--tasks",
            str(self.cfg.tasks),
            "--object-mib",
            str(self.cfg.object_mib),
            "--step-timeout",
            str(self.cfg.step_timeout),
            "--worker-ip",
            pair.worker.ip,
            "--worker-metrics-port",
            worker_metrics,
        ]
        drv = pair.head.popen(
            argv,
            head_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=1,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        stderr_tail: list[str] = []

        def pump_out() -> None:
            assert drv.stdout is not None
            for line in drv.stdout:
                lines.put(line)
            lines.put(None)

        def pump_err() -> None:
            assert drv.stderr is not None
            for line in drv.stderr:
                stderr_tail.append(line.rstrip())
                del stderr_tail[:-40]

        for fn in (pump_out, pump_err):
            threading.Thread(target=fn, daemon=True).start()
        # Every driver step has its own timeout; this bounds the whole driver.
        budget = 60 + 12 * self.cfg.step_timeout
        deadline = time.monotonic() + budget
        t_step = time.monotonic()
        try:
            while True:
                try:
                    line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                except queue.Empty:
                    self.record(
                        "driver",
                        False,
                        time.monotonic() - t_step,
                        f"driver exceeded {budget:.0f}s; stderr: {stderr_tail[-10:]}",
                    )
                    return
                if line is None:
                    drv.wait(timeout=30)
                    self.record(
                        "driver",
                        False,
                        time.monotonic() - t_step,
                        f"driver exited rc={drv.returncode} before finishing; "
                        f"stderr: {stderr_tail[-15:]}",
                    )
                    return
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if "step" in msg:
                    detail = (
                        msg.get("detail")
                        if msg["ok"]
                        else {"error": msg.get("detail"), "trace": msg.get("trace", "")[-800:]}
                    )
                    self.record(msg["step"], msg["ok"], msg["seconds"], detail)
                    t_step = time.monotonic()
                    if msg["step"] == "actors_on_worker" and msg["ok"]:
                        self.result.worker_ports_used["actors"] = sorted(
                            p for ports in msg["detail"]["ports"] for p in ports
                        )
                elif msg.get("event") == "hold":
                    self.while_loaded(pair)
                    assert drv.stdin is not None
                    drv.stdin.write("release\n")
                    drv.stdin.flush()
                    drv.wait(timeout=60)
                    return
        finally:
            if drv.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(drv.pid, 9)

    def client(
        self,
        node: Node,
        args: list[str],
        timeout: float,
        env_change: dict[str, str | None] | None = None,
    ) -> tuple[bool, Any]:
        """client.py in the node with the Pod's env; ``env_change`` sets (or, with None,
        removes) variables first."""
        env = self.node_env(self.c.pod(node.role))
        for k, v in (env_change or {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        proc = node.run(
            [self.python, str(WORKLOAD_DIR / "client.py"), *args, "--timeout", str(timeout)],
            env,
            timeout=timeout + 60,
        )
        try:
            out = json.loads(proc.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            out = {"ok": False, "stdout": proc.stdout[-500:], "stderr": proc.stderr[-1500:]}
        return proc.returncode == 0 and bool(out.get("ok")), out

    def while_loaded(self, pair: NodePair) -> None:
        """Steps run from the worker node while the driver holds its actors."""
        if self.cfg.profile in ("full", "smoke"):
            env = self.c.head.env
            keys = ["AUTOSCALER_METRIC_PORT", "DASHBOARD_METRIC_PORT"]
            if "no-monitor" in self.params["head"]:
                # Autoscaling: KubeRay starts the head with --no-monitor and runs the monitor
                # (and its metrics port) in the autoscaler container, which is not run here.
                keys.remove("AUTOSCALER_METRIC_PORT")
            head_http = [env[k] for k in keys if k in env]
            if head_http:
                with self.timed("head_metrics_ports") as out:
                    ok, reply = self.client(
                        pair.worker,
                        ["http", *[f"http://{pair.head.ip}:{p}/metrics" for p in head_http]],
                        timeout=self.cfg.step_timeout,
                    )
                    out["ok"], out["detail"] = ok, reply
        if self.cfg.token_auth:
            self.token_auth(pair)
        if self.cfg.job:
            with self.timed("job_submission") as out:
                # The head Service the worker was given (its --address), on the dashboard port.
                host = self.params["worker"]["address"].rpartition(":")[0]
                url = f"http://{host}:{self.params['head'].get('dashboard-port', '8265')}"
                ok, reply = self.client(
                    pair.worker,
                    ["job", url],
                    timeout=max(180.0, self.cfg.step_timeout),
                )
                out["ok"] = ok
                out["detail"] = {"status": reply.get("status")} if ok else reply

    def token_auth(self, pair: NodePair) -> None:
        """From the worker node, with the worker Pod's env (RAY_AUTH_TOKEN from the operator's
        Secret): each HTTP endpoint without and with the token, then the Jobs API and the Ray
        Client without it and with it. Each step records what Ray answered (the test judges);
        a step fails only when the harness could not ask."""
        head, worker = pair.head.ip, pair.worker.ip
        host = self.params["worker"]["address"].rpartition(":")[0]
        dashboard = f"http://{host}:{self.params['head'].get('dashboard-port', '8265')}"
        agent = self.params["head"].get("dashboard-agent-listen-port", "52365")
        metrics = self.params["head"].get("metrics-export-port", "8080")
        env = self.c.head.env
        urls = {
            "dashboard /api/version": f"{dashboard}/api/version",
            "jobs API /api/jobs/": f"{dashboard}/api/jobs/",
            "dashboard /api/gcs_healthz": f"{dashboard}/api/gcs_healthz",
            "agent /api/healthz (probe)": f"http://{head}:{agent}/api/healthz",
            "agent /api/local_raylet_healthz": f"http://{head}:{agent}/api/local_raylet_healthz",
            "head metrics": f"http://{head}:{metrics}/metrics",
            "worker metrics": f"http://{worker}:{metrics}/metrics",
        }
        for key, name in (("DASHBOARD_METRIC_PORT", "dashboard metrics"),
                          ("AUTOSCALER_METRIC_PORT", "autoscaler metrics")):
            if key in env and "no-monitor" not in self.params["head"]:
                urls[name] = f"http://{head}:{env[key]}/metrics"
        with self.timed("token_auth_http") as out:
            ok, reply = self.client(pair.worker, ["auth", *urls.values()], timeout=60)
            by_url = reply.get("results") or {}
            out["ok"] = ok
            out["detail"] = {name: by_url.get(url, reply) for name, url in urls.items()}
        client = f"ray://{host}:{self.params['head'].get('ray-client-server-port', '10001')}"
        # A caller that knows nothing of Ray's auth (no RAY_AUTH_MODE, no token), and one with
        # the wrong token: what reaches the port without the Secret.
        none: dict[str, str | None] = {"RAY_AUTH_MODE": None, "RAY_AUTH_TOKEN": None}
        wrong: dict[str, str | None] = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-it"}
        for step, args, change in (
            ("token_auth_job_without_token", ["job", dashboard], none),
            ("token_auth_job_wrong_token", ["job", dashboard], wrong),
            ("token_auth_rayclient_without_token", ["rayclient", client], none),
            ("token_auth_rayclient_wrong_token", ["rayclient", client], wrong),
            ("token_auth_rayclient_with_token", ["rayclient", client], {}),
        ):
            with self.timed(step) as out:
                ok, reply = self.client(pair.worker, args, timeout=60, env_change=change)
                if not ok:  # the end of what the caller saw: the error, not a stack dump
                    reply = {k: str(v)[-400:] for k, v in reply.items()}
                out["detail"] = {"succeeded": ok, "reply": reply}

    def audit_ports(self, pair: NodePair, sampler: Sampler) -> None:
        t0 = time.monotonic()
        for node in pair.nodes:
            seen = sampler.seen.get(node.role, {})
            self.result.listening[node.role] = {p: sorted(v) for p, v in sorted(seen.items())}
            allowed = self.listed(node.role)
            self.result.outside[node.role] = sorted(p for p in seen if p not in allowed)
            self.result.blocked[node.role] = node.blocked_ports()
            wp = set(worker_ports_of(self.params.get(node.role, {})))
            self.result.worker_ports_used[node.role] = sorted(p for p in seen if p in wp)
            self.result.worker_ports_peak[node.role] = sampler.peak.get(node.role, 0)
        outside = {r: p for r, p in self.result.outside.items() if p}
        detail: dict[str, Any] = {
            r: {p: self.result.listening[r][p] for p in ports} for r, ports in outside.items()
        }
        self.result.steps.append(
            Step(
                "listening_ports",
                not outside,
                round(time.monotonic() - t0, 2),
                detail or {r: sorted(v) for r, v in self.result.listening.items()},
            )
        )

    def decode_capture(self, cap: capture.Capture) -> None:
        """Stop the capture; every authority Ray sent to a port a Service admits."""
        t0 = time.monotonic()
        cap.stop()
        ok, detail = not cap.errors, "; ".join(cap.errors) or None
        try:
            ports = set(self.c.head.allowed) | set(self.c.worker.allowed)
            names = {f: "Pod FQDN" for p in (self.c.head, self.c.worker) for f in p.fqdns}
            for name in self.c.hosts:
                names.setdefault(name, "Service name")
                short = name.split(".svc.")[0]
                names.setdefault(short, "Service name")
                names.setdefault(short.split(".")[0], "Service name")
            roles = {HEAD_IP: "head", WORKER_IP: "worker"}
            reqs = capture.decode(cap.path, ports)
            self.result.authorities = capture.summarize(reqs, roles, names)
        except Exception as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        self.result.steps.append(
            Step("capture", ok, round(time.monotonic() - t0, 2),
                 detail or {"rows": len(self.result.authorities), "pcap": str(cap.path)})
        )

    def save_logs(self, pair: NodePair) -> None:
        assert self.cfg.log_dir is not None
        for node in pair.nodes:
            if not node.init_pid:
                continue
            dest = self.cfg.log_dir / self.cfg.label / node.role
            dest.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(Exception), open(dest / "logs.tar", "wb") as f:
                proc = subprocess.Popen(
                    node.nsenter(
                        [
                            "tar",
                            "-C",
                            "/tmp/ray",
                            "-cf",
                            "-",
                            "--exclude=*.so",
                            "session_latest/logs",
                        ]
                    ),
                    stdout=f,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
                    proc.wait()


def run(cfg: RunConfig, on_result: Callable[[RunResult], None] | None = None) -> RunResult:
    result = Run(cfg).execute()
    if on_result:
        on_result(result)
    return result
