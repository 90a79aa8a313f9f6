#!/usr/bin/env python3
"""A real Kubernetes control plane on loopback, without containers or a kubelet.

etcd (Debian's etcd-server), kube-apiserver and kube-controller-manager (built from
k8s.io/kubernetes by tools/controlplane/k8s), the KubeRay operator (built from its Go module) run as
plain processes of this machine. Every listener binds 127.0.0.1 on a port picked free at start,
so several control planes (one per operator version) can run side by side. Certificates are
generated with openssl for each start. A kubelet stand-in (tools/controlplane/kubelet.py) plays the
node: it binds Pods and reports them Running and Ready with an IP, so EndpointSlices are real.

Used by the pytest fixtures of tests/cluster and by `make cluster-up` / `make cluster-down`:

    controlplane.py up   --dir .cache/cluster/dev --operator v1.6.2 [--kubelet]
    controlplane.py down --dir .cache/cluster/dev

`down` stops exactly the processes recorded in <dir>/pids.json by `up` (checked against their
command line, so a recycled pid is never signalled), nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NODE_NAME = "meshray-node"
SERVICE_CIDR = "10.96.0.0/16"  # only allocated from, never contacted
_PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    pass


def _ephemeral_range() -> range:
    """The kernel's ephemeral port range: where bind(0) and every outgoing connect() take
    their local port from."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    return range(low, high + 1)


def _xdist_share() -> tuple[int, int]:
    """(k, n): the workers of one pytest-xdist run (`make cluster-e2e` runs one per operator
    version) start control planes side by side, each with its own picker; worker gwK takes
    only the ports p with p % n == k, so no two workers ever pick the same port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(count) > 0:
        return int(worker[2:]) % int(count), int(count)
    return 0, 1


class PortPicker:
    """Loopback TCP ports for the listeners of the processes we start.

    A port is free when picked and stays ours: it is never handed out twice by this picker, and
    it lies outside the kernel's ephemeral range, so neither a later pick nor an outgoing
    connection of this machine (the API server's to etcd, the operator's to the API server)
    takes it before the child binds it. bind(0)-then-close gives no such promise: CI once gave
    the operator's metrics and health-probe listeners the same port, and every cluster test
    errored.
    """

    def __init__(self, pool: Sequence[int] | None = None) -> None:
        if pool is None:
            eph = _ephemeral_range()
            share, shares = _xdist_share()
            pool = [p for p in range(10000, 65536) if p not in eph and p % shares == share]
        self.pool = list(pool)
        self.issued: set[int] = set()
        self._rng = random.Random()

    def _candidates(self) -> Iterator[int]:
        # Random tries first (cheap while the pool is mostly unused), then every port left.
        if self.pool:
            for _ in range(64):
                yield self._rng.choice(self.pool)
        rest = [p for p in self.pool if p not in self.issued]
        self._rng.shuffle(rest)
        yield from rest

    def __call__(self) -> int:
        for port in self._candidates():
            if port in self.issued:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            self.issued.add(port)
            return port
        raise ControlPlaneError(
            f"no free loopback port left among {len(self.pool)} candidates "
            f"({len(self.issued)} already handed out by this process)"
        )


free_port = PortPicker()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """preexec_fn: the child gets SIGTERM when the process that started it dies (pytest)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(d: Path) -> None:
    """CA, apiserver serving cert, an admin client cert (system:masters), SA signing keys."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "7",
        "-subj",
        "/CN=meshray-local-ca",
        cwd=d,
    )
    sans = (
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        "extendedKeyUsage=serverAuth\n"
    )
    (d / "server.ext").write_text(sans)
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subj, ext in (
        ("apiserver", "/CN=kube-apiserver", "server.ext"),
        ("admin", "/O=system:masters/CN=meshray-admin", "client.ext"),
    ):
        _openssl(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            subj,
            cwd=d,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "7",
            "-extfile",
            ext,
            "-out",
            f"{name}.crt",
            cwd=d,
        )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


def write_kubeconfig(path: Path, server: str, certs: Path) -> None:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "meshray-local",
                "cluster": {"server": server, "certificate-authority": str(certs / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": "meshray-admin",
                "user": {
                    "client-certificate": str(certs / "admin.crt"),
                    "client-key": str(certs / "admin.key"),
                },
            }
        ],
        "contexts": [
            {
                "name": "meshray-local",
                "context": {"cluster": "meshray-local", "user": "meshray-admin"},
            }
        ],
        "current-context": "meshray-local",
    }
    path.write_text(json.dumps(cfg, indent=2))


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    exe: str = ""  # what the process finally runs when argv[0] is a wrapper that execs it


@dataclass
class ControlPlane:
    """One control plane under ``workdir``. ``operator`` is a KubeRay version with a binary
    ``bin/kuberay-operator-<version>`` and CRDs in ``operator_crds``, or None for none."""

    workdir: Path
    bin_dir: Path = ROOT / "bin"
    operator: str | None = None
    operator_crds: Path | None = None
    extra_crds: Sequence[Path] = ()
    operator_env: dict[str, str] = field(
        default_factory=lambda: {"ENABLE_INIT_CONTAINER_INJECTION": "false"}
    )
    die_with_parent: bool = True
    # A file bind-mounted on /etc/hosts for the operator only (its own mount namespace), made
    # from this machine's /etc/hosts when missing: a caller that serves Pods on this machine
    # writes the cluster's Service names into it, in place (the bind mount follows the inode),
    # so the operator resolves them as in a cluster (the e2e suite's RayJob dashboard polls).
    # None: the operator runs as a plain process with the machine's resolver.
    operator_hosts: Path | None = None
    procs: list[Proc] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def certs(self) -> Path:
        return self.workdir / "certs"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    # ---- processes ---------------------------------------------------------------------
    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, exe: str = ""
    ) -> Proc:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        full_env = {**os.environ, **(env or {})}
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=self.workdir,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        p = Proc(name, argv, env or {}, log, popen, exe)
        self.procs.append(p)
        self._write_pids()
        return p

    def _write_pids(self) -> None:
        data = [
            {"name": p.name, "pid": p.popen.pid, "exe": p.exe or p.argv[0]}
            for p in self.procs
            if p.popen
        ]
        (self.workdir / "pids.json").write_text(json.dumps(data, indent=1))

    def _wait(self, what: str, probe: Any, timeout: float, proc: Proc) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.popen and proc.popen.poll() is not None:
                raise ControlPlaneError(
                    f"{proc.name} exited with {proc.popen.returncode} while waiting for {what}; "
                    f"log: {proc.log}\n{_tail(proc.log)}"
                )
            with contextlib.suppress(Exception):
                if probe():
                    return
            time.sleep(0.2)
        raise ControlPlaneError(
            f"timed out after {timeout:.0f}s waiting for {what}; log: {proc.log}\n{_tail(proc.log)}"
        )

    # ---- start ---------------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> ControlPlane:
        t0 = time.monotonic()
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        make_certs(self.certs)
        steps = [
            self._start_etcd,
            self._start_apiserver,
            self._start_controller_manager,
            self._bootstrap,
        ] + ([self._start_operator] if self.operator else [])
        self.timings: dict[str, float] = {}
        try:
            for step in steps:
                t = time.monotonic()
                step(timeout)
                self.timings[step.__name__.lstrip("_")] = round(time.monotonic() - t, 1)
        except BaseException:
            self.stop()
            raise
        (self.workdir / "ready").write_text(f"{time.monotonic() - t0:.1f}\n")
        (self.workdir / "timings.json").write_text(json.dumps(self.timings))
        return self

    def _start_etcd(self, timeout: float) -> None:
        etcd = shutil.which("etcd") or "/usr/bin/etcd"
        client, peer = free_port(), free_port()
        # etcd data on tmpfs when there is one: fsync on a 2-core VM disk makes writes slow.
        shm = Path("/dev/shm")
        data = (
            (shm / f"meshray-etcd-{os.getpid()}-{client}")
            if shm.is_dir()
            else (self.workdir / "etcd")
        )
        (self.workdir / "etcd-data").write_text(str(data))
        self.etcd_url = f"http://127.0.0.1:{client}"
        p = self._spawn(
            "etcd",
            [
                etcd,
                "--name",
                "meshray",
                "--data-dir",
                str(data),
                "--listen-client-urls",
                self.etcd_url,
                "--advertise-client-urls",
                self.etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"meshray=http://127.0.0.1:{peer}",
                "--log-level",
                "warn",
            ],
            env={"ETCD_UNSUPPORTED_ARCH": ""},
        )
        self._wait("etcd health", lambda: _http_ok(f"{self.etcd_url}/health"), timeout, p)

    def _start_apiserver(self, timeout: float) -> None:
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        c = self.certs
        p = self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={c}",
                f"--tls-cert-file={c / 'apiserver.crt'}",
                f"--tls-private-key-file={c / 'apiserver.key'}",
                f"--client-ca-file={c / 'ca.crt'}",
                f"--service-account-key-file={c / 'sa.pub'}",
                f"--service-account-signing-key-file={c / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--authorization-mode=Node,RBAC",
                # The default reconciler refuses a loopback advertise address.
                "--endpoint-reconciler-type=none",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
        )
        write_kubeconfig(self.kubeconfig, self.server, c)
        self._wait("kube-apiserver /readyz", lambda: self._api_ok("/readyz"), timeout, p)

    def _api_ok(self, path: str) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.certs / "ca.crt"))
        ctx.load_cert_chain(str(self.certs / "admin.crt"), str(self.certs / "admin.key"))
        with urllib.request.urlopen(self.server + path, context=ctx, timeout=2) as r:
            return bool(r.status == 200)

    def _start_controller_manager(self, timeout: float) -> None:
        c = self.certs
        p = self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                # deployment and replicaset: the live identity audit reads a Deployment's
                # chain (Deployment -> ReplicaSet -> Pod) as the real controllers write it;
                # job: a RayJob's submitter is a batch Job whose Pod the Job controller creates
                "--controllers=serviceaccount,serviceaccount-token,namespace,garbagecollector,"
                "endpointslice,endpointslicemirroring,deployment,replicaset,job",
                f"--service-account-private-key-file={c / 'sa.key'}",
                f"--root-ca-file={c / 'ca.crt'}",
                "--leader-elect=false",
                "--secure-port=0",
                "--v=1",
            ],
        )
        from kubernetes import client  # deferred: only the control plane needs the client

        core = client.CoreV1Api(self.api_client())

        def default_sa() -> bool:
            core.read_namespaced_service_account("default", "default")
            return True

        self._wait("the default ServiceAccount", default_sa, timeout, p)

    def api_client(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def _bootstrap(self, timeout: float) -> None:
        """The Node every Pod is bound to, then CRDs, each waited for until Established."""
        from kubernetes import client

        api = self.api_client()
        core = client.CoreV1Api(api)
        core.create_node(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME}},
            }
        )
        core.patch_node_status(
            NODE_NAME,
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "meshray kubelet stand-in",
                        }
                    ],
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                }
            },
        )
        files = list(self.extra_crds)
        if self.operator_crds:
            files += sorted(self.operator_crds.glob("ray.io_*.yaml"))
        apply_crds(api, files, timeout)

    def _start_operator(self, timeout: float) -> None:
        exe = self.bin_dir / f"kuberay-operator-{self.operator}"
        if not exe.exists():
            raise ControlPlaneError(f"{exe} is missing: run `make cluster-bins`")
        probe = free_port()
        argv = [
            str(exe),
            f"--metrics-addr=127.0.0.1:{free_port()}",
            f"--health-probe-bind-address=127.0.0.1:{probe}",
            "--enable-leader-election=false",
        ]
        if self.operator_hosts is not None:
            hosts = self.operator_hosts
            if not hosts.exists():
                hosts.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile("/etc/hosts", hosts)
            # unshare execs sh in a private mount namespace, which bind-mounts the file and
            # execs the operator: the same pid, and nothing else on the machine sees the mount.
            argv = [
                *("unshare", "--mount", "--propagation", "private", "--"),
                *("sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts)),
                *argv,
            ]
        p = self._spawn(
            f"kuberay-operator-{self.operator}",
            argv,
            env={"KUBECONFIG": str(self.kubeconfig), **self.operator_env},
            exe=str(exe),
        )
        self._wait(
            "the KubeRay operator /readyz",
            lambda: _http_ok(f"http://127.0.0.1:{probe}/readyz"),
            timeout,
            p,
        )

    # ---- istiod --------------------------------------------------------------------------
    def start_istiod(self, timeout: float = 90.0, injection: Path | None = None,
                     env: dict[str, str] | None = None) -> str:
        """Start istiod (pilot-discovery built from the pinned Istio module) out of cluster
        against this API server; every listener on loopback. Returns the plaintext xDS
        address. Needs the Istio CRDs (extra_crds) and makes the istio-system namespace.
        With ``injection`` (a directory with the injector's `config` and `values`), istiod also
        serves its sidecar injection webhook at ``istiod_https``/inject, with the API server's
        serving certificate (localhost, 127.0.0.1). ``env``: more istiod settings (e.g.
        PILOT_ENABLE_AMBIENT=true for a second, ambient-enabled istiod beside the first)."""
        from kubernetes import client

        core = client.CoreV1Api(self.api_client())
        with contextlib.suppress(Exception):
            core.create_namespace({"metadata": {"name": "istio-system"}})
        mesh = self.workdir / "istiod" / "mesh.yaml"
        mesh.parent.mkdir(parents=True, exist_ok=True)
        mesh.write_text(
            "rootNamespace: istio-system\ntrustDomain: cluster.local\n"
            "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\n"
        )
        (mesh.parent / "networks.yaml").write_text("networks: {}\n")
        grpc, http, monitoring, https = free_port(), free_port(), free_port(), free_port()
        tls: list[str] = []
        if injection is not None:
            inject_dir = self.workdir / "var" / "lib" / "istio" / "inject"  # istiod's default
            inject_dir.mkdir(parents=True, exist_ok=True)
            for name in ("config", "values"):
                shutil.copyfile(injection / name, inject_dir / name)
            tls = [
                f"--tlsCertFile={self.certs / 'apiserver.crt'}",
                f"--tlsKeyFile={self.certs / 'apiserver.key'}",
                f"--caCertFile={self.certs / 'ca.crt'}",
            ]
        p = self._spawn(
            "istiod",
            [
                str(self.bin_dir / "pilot-discovery"),
                "discovery",
                f"--kubeconfig={self.kubeconfig}",
                f"--meshConfig={mesh}",
                f"--networksConfig={mesh.parent / 'networks.yaml'}",
                f"--grpcAddr=127.0.0.1:{grpc}",
                f"--httpAddr=127.0.0.1:{http}",
                f"--httpsAddr=127.0.0.1:{https}",
                f"--secureGRPCAddr=127.0.0.1:{free_port()}",
                f"--monitoringAddr=127.0.0.1:{monitoring}",
                "--profile=false",
                "--log_output_level=default:warn",
                *tls,
            ],
            env={
                "POD_NAMESPACE": "istio-system",
                "POD_NAME": "istiod-local",
                "KUBECONFIG": str(self.kubeconfig),
                "ISTIOD_CUSTOM_HOST": "localhost",
                "PILOT_ENABLE_ANALYSIS": "false",
                "ENABLE_CA_SERVER": "false",
                "INJECTION_WEBHOOK_CONFIG_NAME": "",
                "VALIDATION_WEBHOOK_CONFIG_NAME": "",
                **(env or {}),
            },
        )
        self._wait("istiod /ready", lambda: _http_ok(f"http://127.0.0.1:{http}/ready"), timeout, p)
        self.istiod_debug = f"http://127.0.0.1:{http}"
        self.istiod_https = f"https://127.0.0.1:{https}"
        return f"127.0.0.1:{grpc}"

    # ---- stop ----------------------------------------------------------------------------
    def stop(self, timeout: float = 15.0) -> None:
        for p in reversed(self.procs):
            if p.popen and p.popen.poll() is None:
                p.popen.terminate()
        deadline = time.monotonic() + timeout
        for p in reversed(self.procs):
            if not p.popen:
                continue
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait(5)
        self.procs.clear()
        _remove_etcd_data(self.workdir)

    def restart_operator(self, env: dict[str, str], timeout: float = 60.0) -> None:
        """Stop the operator and start it again with another environment (e.g. the default
        init container injection)."""
        for p in [p for p in self.procs if p.name.startswith("kuberay-operator")]:
            assert p.popen is not None
            p.popen.terminate()
            p.popen.wait(timeout)
            self.procs.remove(p)
        self.operator_env = env
        self._start_operator(timeout)


def apply_crds(api: Any, files: Sequence[Path], timeout: float) -> None:
    import yaml
    from kubernetes import client

    ext = client.ApiextensionsV1Api(api)
    names = []
    t0 = time.monotonic()
    for f in files:
        for doc in yaml.load_all(
            f.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        ):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            doc.get("metadata", {}).pop("creationTimestamp", None)
            doc.pop("status", None)
            # _preload_content=False: the client would build model objects from every
            # (large) CRD it gets back, which takes longer than the API server does.
            ext.create_custom_resource_definition(doc, _preload_content=False)
            names.append(doc["metadata"]["name"])
    created = time.monotonic()
    deadline = created + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        raw = ext.list_custom_resource_definition(_preload_content=False)
        for crd in json.loads(raw.data)["items"]:
            conds = {
                c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []
            }
            if conds.get("Established") == "True":
                pending.discard(crd["metadata"]["name"])
        time.sleep(0.1)
    print(
        f"{len(names)} CRDs created in {created - t0:.1f}s, established after "
        f"{time.monotonic() - created:.1f}s",
        file=sys.stderr,
    )
    if pending:
        raise ControlPlaneError(f"CRDs not established after {timeout:.0f}s: {sorted(pending)}")


def _remove_etcd_data(workdir: Path) -> None:
    marker = workdir / "etcd-data"
    if marker.exists():
        data = Path(marker.read_text().strip())
        if data.name.startswith("meshray-etcd-") or data.parent == workdir:
            shutil.rmtree(data, ignore_errors=True)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as r:
        return bool(r.status == 200)


def _tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# ---- operator binaries and CRDs ------------------------------------------------------------
def operator_module_dir(version: str) -> Path:
    """The ray-operator module of that version in the Go module cache (downloaded if needed)."""
    out = subprocess.run(
        [
            "go",
            "mod",
            "download",
            "-json",
            f"github.com/ray-project/kuberay/ray-operator@{version}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(json.loads(out.stdout)["Dir"])


def shared_crds() -> Path:
    return Path(os.environ.get("MESHRAY_SHARED_CRDS") or ROOT.parent / "shared" / "crds")


def istio_crds(version: str = "1.29.6") -> list[Path]:
    """Istio's CRDs: ../shared/crds/istio-<version> when this workplace has it, else the file
    istio.io/api ships at that tag (the same bytes; mk/lint.mk takes them the same way), so a
    clone with a full module proxy needs nothing outside the repository."""
    shared = sorted((shared_crds() / f"istio-{version}").glob("*.yaml"))
    if shared:
        return shared
    out = subprocess.run(["go", "mod", "download", "-json", f"istio.io/api@v{version}"],
                         capture_output=True, text=True, check=True, cwd="/tmp")
    module_dir = Path(json.loads(out.stdout)["Dir"])
    return [module_dir / "kubernetes" / "customresourcedefinitions.gen.yaml"]


# Kubernetes Gateway API, standard channel (Gateway, HTTPRoute, GRPCRoute, TLSRoute,
# ReferenceGrant...): the same module version as mk/lint.mk's CRD set gateway-api-v1.5.0.
GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api@v1.5.0"


def gateway_api_crds(module: str = GATEWAY_API_MODULE) -> list[Path]:
    """The standard-channel CRD files of the gateway-api module (downloaded if needed)."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", module], capture_output=True, text=True, check=True
    )
    standard = Path(json.loads(out.stdout)["Dir"]) / "config" / "crd" / "standard"
    return sorted(standard.glob("gateway.networking.k8s.io_*.yaml"))


def with_operator(
    workdir: Path,
    operator: str | None,
    istio: str = "1.29.6",
    die_with_parent: bool = True,
    operator_hosts: Path | None = None,
) -> ControlPlane:
    """A control plane with that KubeRay operator version (None: none), its own RayCluster,
    RayJob and RayService CRDs from its module, the Istio CRDs (istio_crds) and the
    Gateway API CRDs (standard channel) from their module. ``operator_hosts``: see
    ControlPlane.operator_hosts."""
    return ControlPlane(
        workdir,
        operator=operator,
        operator_crds=operator_module_dir(operator) / "config" / "crd" / "bases"
        if operator
        else None,
        extra_crds=[*istio_crds(istio), *gateway_api_crds()],
        die_with_parent=die_with_parent,
        operator_hosts=operator_hosts,
    )


# ---- CLI (make cluster-up / cluster-down) ----------------------------------------------------
def _pid_alive_as(pid: int, exe: str) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False
    return cmd == exe


def down(workdir: Path, timeout: float = 15.0) -> list[str]:
    pids_file = workdir / "pids.json"
    if not pids_file.exists():
        return []
    entries = json.loads(pids_file.read_text())
    stopped = []
    for e in reversed(entries):
        if _pid_alive_as(e["pid"], e["exe"]):
            os.kill(e["pid"], signal.SIGTERM)
            stopped.append(e["name"])
    deadline = time.monotonic() + timeout
    for e in entries:
        while _pid_alive_as(e["pid"], e["exe"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive_as(e["pid"], e["exe"]):
            os.kill(e["pid"], signal.SIGKILL)
    _remove_etcd_data(workdir)
    pids_file.unlink()
    return stopped


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    up = sub.add_parser("up", help="start etcd, kube-apiserver, controller-manager, operator")
    up.add_argument("--dir", type=Path, required=True)
    up.add_argument("--operator", default="v1.6.2", help="KubeRay version, or 'none'")
    up.add_argument("--istio-crds", default="1.29.6",
                    help="Istio CRD version (../shared/crds, else the istio.io/api module)")
    up.add_argument("--kubelet", action="store_true", help="also run the kubelet stand-in")
    dn = sub.add_parser("down", help="stop what `up` started in --dir")
    dn.add_argument("--dir", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.verb == "down":
        stopped = down(args.dir)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0
    if (args.dir / "pids.json").exists():
        down(args.dir)
    op = None if args.operator == "none" else args.operator
    cp = with_operator(args.dir.resolve(), op, args.istio_crds, die_with_parent=False)
    cp.start()
    if args.kubelet:
        cp._spawn(
            "kubelet-standin",
            [sys.executable, str(HERE / "kubelet.py"), "--kubeconfig", str(cp.kubeconfig)],
        )
    print(
        f"control plane up in {(cp.workdir / 'ready').read_text().strip()}s "
        f"(operator {op or 'none'}); logs in {cp.logs}\n"
        f"  export KUBECONFIG={cp.kubeconfig}\n  stop with: make cluster-down"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
