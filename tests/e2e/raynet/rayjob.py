"""A RayJob to completion: the real KubeRay operator's RayJob, run by real Ray from the Pods it
made, submitted by the operator's own submitter Job Pod, polled by the operator itself.

The chart's RayJob is installed like any deployment (``live.LocalCluster``); the operator makes
the job's RayCluster, whose head and worker the harness starts as for a RayCluster
(``scenario.Run``). Then:

- the namespaces are ``netns.JobNodes``: the head/worker pair plus the submitter's namespace
  and a link from this machine (where the operator runs) to the head. The head's firewall
  admits the submitter on the head's declared ports that the live AuthorizationPolicies grant
  the submitter Pod's identity, and the operator on the RayJob's dashboard port if they grant
  the operator's identity that port;
- the operator's own /etc/hosts (``LocalCluster.operator_resolves``) answers the cluster DNS's
  names, so its `GET http://<raycluster>-head-svc.<ns>.svc.cluster.local:8265/api/jobs/<id>`
  reaches the head;
- the kubelet stand-in plays the submitter Job's Pods: bound, Running with the submitter
  namespace's address; the harness runs the Pod's container command and args as the API
  server holds them (KubeRay's `bash -ce -- "if ! ray job status ...; then ray job submit
  --no-wait ...; fi; ray job logs --follow ..."`) with its env (RAY_DASHBOARD_ADDRESS,
  RAY_JOB_SUBMISSION_ID) in the submitter's namespace, and reports the Pod finished with the
  process's exit code; a failed Pod is replaced by the Job controller and played again;
- the run ends when the Job is Complete or Failed and the operator has moved the RayJob to
  Complete or Failed (it needs both: K8sJobMode waits for the submitter).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .netns import SUBMITTER_IP, JobNodes, Node, NodePair
from .scenario import Run, RunConfig, RunResult, Step

RESULT_PREFIX = "MESHRAY_RAYJOB_RESULT "
TERMINAL = ("Complete", "Failed")


@dataclass
class RayJobConfig(RunConfig):
    control: Any = None  # the LocalCluster (API client, operator hosts file, install times)
    rayjob: str = ""  # the RayJob's name (= the submitter Job's name)
    watcher: RayJobWatcher | None = None  # started before the deployment was read
    drop_submitter: frozenset[int] = frozenset()  # ports the head does not admit from it
    submit_timeout: float = 360.0  # every submitter Pod of the Job, retries included
    settle_timeout: float = 120.0  # the operator's last status after the Job finished


@dataclass
class RayJobResult(RunResult):
    rayjob: dict[str, Any] = field(default_factory=dict)


# ---- what the live AuthorizationPolicies grant ----------------------------------------------
def principal_matches(pattern: str, principal: str) -> bool:
    """Istio's principal match: exact, `*`, or one `*` at the start or the end."""
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return principal.endswith(pattern[1:])
    if pattern.endswith("*"):
        return principal.startswith(pattern[:-1])
    return pattern == principal


def granted_ports(
    policies: list[dict[str, Any]], labels: dict[str, str], principal: str, ports: set[int]
) -> set[int]:
    """The ports among ``ports`` that the ALLOW AuthorizationPolicies selecting a Pod with
    ``labels`` grant ``principal``. Only what decides a port is read: a source matches by
    `principals` alone (a source with other keys, or a rule with `when`, grants nothing here:
    not modelled, so never admitted), `to` by `ports` / `notPorts`."""
    out: set[int] = set()
    for ap in policies:
        spec = ap.get("spec") or {}
        if spec.get("action", "ALLOW") != "ALLOW":
            continue
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        if any(labels.get(k) != v for k, v in selector.items()):
            continue
        for rule in spec.get("rules") or []:
            if rule.get("when"):
                continue
            froms = rule.get("from")
            if froms is not None and not any(
                set(f.get("source") or {}) == {"principals"}
                and any(principal_matches(p, principal) for p in f["source"]["principals"])
                for f in froms
            ):
                continue
            for to in rule.get("to") or [{}]:
                op = to.get("operation") or {}
                allowed = {int(p) for p in op["ports"]} if "ports" in op else set(ports)
                allowed -= {int(p) for p in op.get("notPorts", [])}
                out |= allowed & ports
    return out


# ---- watching the RayJob and its Job --------------------------------------------------------
class RayJobWatcher:
    """Polls the RayJob and its submitter Job every 0.3 s and keeps every change of
    (jobStatus, jobDeploymentStatus, reason) and of the Job's counts and conditions, with the
    seconds since the deployment's install began (``installed_at[namespace]``, once known)."""

    def __init__(
        self, api: Any, namespace: str, name: str, installed_at: dict[str, float] | None = None
    ) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.installed_at = installed_at if installed_at is not None else {}
        self.t0 = time.monotonic()
        self.rayjob: list[dict[str, Any]] = []
        self.job: list[dict[str, Any]] = []
        self.first_seen: dict[str, float] = {}  # jobStatus / jobDeploymentStatus -> time
        self.last_rayjob: dict[str, Any] = {}
        self.last_job: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> RayJobWatcher:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="rayjob-watch")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)
        with contextlib.suppress(Exception):
            self.poll()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.poll()
            self._stop.wait(0.3)

    def poll(self) -> None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        now = round(time.monotonic() - self.installed_at.get(self.namespace, self.t0), 1)
        try:
            obj = client.CustomObjectsApi(self.api).get_namespaced_custom_object(
                "ray.io", "v1", self.namespace, "rayjobs", self.name
            )
        except ApiException as e:
            if e.status != 404:
                raise
            obj = {}
        st = obj.get("status") or {}
        self.last_rayjob = st
        row = {
            "jobStatus": st.get("jobStatus", ""),
            "jobDeploymentStatus": st.get("jobDeploymentStatus", "") if obj else "(absent)",
            "reason": st.get("reason", ""),
        }
        if not self.rayjob or {k: self.rayjob[-1][k] for k in row} != row:
            self.rayjob.append({"t": now, **row})
        for key in ("jobStatus", "jobDeploymentStatus"):
            if row[key]:
                self.first_seen.setdefault(f"{key}={row[key]}", time.monotonic())
        try:
            job = client.BatchV1Api(self.api).read_namespaced_job_status(self.name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise
            return
        self.last_job = job
        js = job.status
        jrow = {
            "active": js.active or 0,
            "succeeded": js.succeeded or 0,
            "failed": js.failed or 0,
            "conditions": sorted(c.type for c in js.conditions or [] if c.status == "True"),
        }
        if not self.job or {k: self.job[-1][k] for k in jrow} != jrow:
            self.job.append({"t": now, **jrow})


def job_finished(job: Any) -> str:
    """The Job's terminal condition that is True (Complete or Failed), or an empty string."""
    for c in (job.status.conditions or []) if job is not None else []:
        if c.type in TERMINAL and c.status == "True":
            return str(c.type)
    return ""


# ---- the run ----------------------------------------------------------------------------------
class RayJobRun(Run):
    def __init__(self, cfg: RayJobConfig) -> None:
        super().__init__(cfg)
        self.jc = cfg
        self.jres = RayJobResult(cfg.label, self.result.ray_version)
        self.result = self.jres
        self.ns = cfg.cluster.namespace
        self.api = cfg.control.api
        self.watcher = cfg.watcher or RayJobWatcher(
            self.api, self.ns, cfg.rayjob, cfg.control.installed_at
        )
        if not self.watcher.started:
            self.watcher.start()
        self.submitter_ports: list[int] = []
        self.operator_ports: list[int] = []

    def execute(self) -> RunResult:
        try:
            return super().execute()
        finally:
            self.watcher.stop()
            self.jc.control.operator_resolves(None)
            statuses = {"RayJob": self.watcher.rayjob, "Job": self.watcher.job}
            self.jres.rayjob.setdefault("statuses", statuses)

    # -- who may reach the head ---------------------------------------------------------------
    def admitted(self) -> dict[str, Any]:
        """The ports the head's firewall admits from the submitter and from the operator: the
        head's declared ports (its Services' EndpointSlices) granted by the live
        AuthorizationPolicies to the submitter Pod's ServiceAccount identity, and the RayJob's
        dashboard port (status.dashboardURL, what the operator polls) if they grant it to the
        operator's identity (kuberay.operator.* in the release's values)."""
        from kubernetes import client

        core = client.CoreV1Api(self.api)
        deadline = time.monotonic() + 90
        pods: list[Any] = []
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.watcher.last_rayjob or {}
            pods = core.list_namespaced_pod(
                self.ns, label_selector=f"batch.kubernetes.io/job-name={self.jc.rayjob}"
            ).items
            if pods and status.get("dashboardURL"):
                break
            time.sleep(0.5)
        if not pods or not status.get("dashboardURL"):
            raise RuntimeError(
                f"no submitter Pod / dashboardURL after 90s: RayJob status {status}, "
                f"RayJob statuses {self.watcher.rayjob}"
            )
        values = self.jc.control.helm_values(self.ns)
        trust = (values.get("mesh") or {}).get("trustDomain") or "cluster.local"
        op = (values.get("kuberay") or {}).get("operator") or {}
        sa = pods[0].spec.service_account_name or "default"
        submitter = f"{trust}/ns/{self.ns}/sa/{sa}"
        operator = f"{trust}/ns/{op.get('namespace')}/sa/{op.get('serviceAccount')}"
        policies = client.CustomObjectsApi(self.api).list_namespaced_custom_object(
            "security.istio.io", "v1", self.ns, "authorizationpolicies"
        )["items"]
        labels = core.read_namespaced_pod(self.c.head.name, self.ns).metadata.labels or {}
        declared = set(self.c.head.allowed)
        dashboard = int(str(status["dashboardURL"]).rpartition(":")[2])
        sub = granted_ports(policies, labels, submitter, declared) - set(self.jc.drop_submitter)
        opr = granted_ports(policies, labels, operator, {dashboard})
        self.submitter_ports, self.operator_ports = sorted(sub), sorted(opr)
        return {
            "dashboardURL": status["dashboardURL"],
            "submitter": {"principal": submitter, "admitted": self.submitter_ports},
            "operator": {"principal": operator, "admitted": self.operator_ports},
            "dropped_for_submitter": sorted(self.jc.drop_submitter),
        }

    def make_pair(self) -> NodePair:
        t0 = time.monotonic()
        detail = self.admitted()
        ok = bool(self.operator_ports)  # the operator must reach the dashboard in every run
        self.result.steps.append(Step("admission", ok, round(time.monotonic() - t0, 2), detail))
        self.jres.rayjob["admission"] = detail
        # The operator's resolver answers what the cluster DNS would (the head Service's name),
        # from now on: Go re-reads /etc/hosts within 5 s of a change.
        self.jc.control.operator_resolves(dict(self.c.hosts))
        return JobNodes(
            self.c.hosts,
            self.allowed("head"),
            self.allowed("worker"),
            self.submitter_ports,
            self.operator_ports,
        )

    # -- the job ---------------------------------------------------------------------------------
    def workload(self, pair: NodePair) -> None:
        """Instead of the port-contract driver: the operator's submitter Pod(s), then the
        operator's own verdict."""
        from kubelet import Kubelet

        assert isinstance(pair, JobNodes)
        ctl = self.jc.control
        name = self.jc.rayjob

        def submitter_pod(pod: Any) -> bool:
            labels = pod.metadata.labels or {}
            return bool(
                pod.metadata.namespace == self.ns
                and labels.get("batch.kubernetes.io/job-name") == name
            )

        kubelet = Kubelet(
            self.api, ip_for=lambda pod: SUBMITTER_IP, only=submitter_pod, interval=0.2
        ).start()
        try:
            self.run_submitter(pair.submitter, kubelet)
            self.settle()
        finally:
            kubelet.stop()
            self.watcher.stop()
            ctl.operator_resolves(None)
            self.jres.rayjob["kubelet_errors"] = kubelet.errors[-5:]
            self.jres.rayjob["statuses"] = {"RayJob": self.watcher.rayjob, "Job": self.watcher.job}
            head = pair.head
            for src in ("submitter", "operator"):
                self.jres.rayjob[f"syn_{src}"] = head.blocked_ports(f"syn_{src}")
                self.result.blocked[f"{src}->head"] = head.blocked_ports(f"blocked_{src}")

    def run_submitter(self, node: Node, kubelet: Any) -> None:
        """Play every Pod the Job controller makes for the submitter Job until the Job is
        Complete or Failed: run its container, report it finished with the exit code."""
        from kubernetes import client

        core = client.CoreV1Api(self.api)
        batch = client.BatchV1Api(self.api)
        t0 = time.monotonic()
        deadline = t0 + self.jc.submit_timeout
        done: set[str] = set()
        attempts: list[dict[str, Any]] = []
        finished = ""
        while time.monotonic() < deadline:
            job = batch.read_namespaced_job_status(self.jc.rayjob, self.ns)
            finished = job_finished(job)
            if finished:
                break
            pods = core.list_namespaced_pod(
                self.ns, label_selector=f"batch.kubernetes.io/job-name={self.jc.rayjob}"
            ).items
            for pod in pods:
                if pod.metadata.name in done or pod.status.phase != "Running":
                    continue
                if not pod.status.pod_ip:
                    continue
                done.add(pod.metadata.name)
                attempt = self.run_pod(node, pod, max(10.0, deadline - time.monotonic()))
                kubelet.finish(self.ns, pod.metadata.name, attempt["exit_code"])
                attempts.append(attempt)
            time.sleep(0.3)
        self.jres.rayjob["attempts"] = attempts
        ok = finished == "Complete"
        self.record(
            "submitter",
            ok,
            time.monotonic() - t0,
            {
                "job": finished or f"not finished after {self.jc.submit_timeout:.0f}s",
                "pods": [
                    {k: a[k] for k in ("pod", "exit_code", "seconds", "output")} for a in attempts
                ],
            },
            fatal=False,
        )

    def run_pod(self, node: Node, pod: Any, timeout: float) -> dict[str, Any]:
        """The Pod's first container, as the API server holds it, in the submitter's node."""
        from kubernetes import client
        from podcmd import expand_kubelet, pod_env

        core = client.CoreV1Api(self.api)
        container = pod.spec.containers[0]
        env = pod_env(core, pod, container)
        argv = [
            expand_kubelet(w, env) for w in [*(container.command or []), *(container.args or [])]
        ]
        t0 = time.monotonic()
        proc = node.run(argv, {**self.image_env(), **env}, timeout=timeout)
        seconds = round(time.monotonic() - t0, 1)
        rc = proc.returncode
        # What a runtime reports for a process killed by a signal: 128 + the signal.
        code = rc if rc >= 0 else 128 - rc
        out = proc.stdout + proc.stderr
        result = None
        for line in out.splitlines():
            if RESULT_PREFIX in line:
                with contextlib.suppress(json.JSONDecodeError):
                    result = json.loads(line.split(RESULT_PREFIX, 1)[1])
        self.jres.rayjob.setdefault("command", argv)
        self.jres.rayjob.setdefault(
            "env", {k: v for k, v in env.items() if k.startswith(("RAY_", "PYTHON"))}
        )
        if result is not None:
            self.jres.rayjob["job_result"] = result
        return {
            "pod": pod.metadata.name,
            "exit_code": min(code, 255),
            "seconds": seconds,
            "output": _tail(out, 12),
            "result": result,
        }

    def settle(self) -> None:
        """Until the operator moves the RayJob to Complete or Failed (it needs the Job finished
        and, for Complete, the Ray job terminal from its own dashboard poll)."""
        from kubernetes import client

        t0 = time.monotonic()
        deadline = t0 + self.jc.settle_timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = self.watcher.last_rayjob or {}
            if st.get("jobDeploymentStatus") in TERMINAL:
                break
            time.sleep(0.3)
        keys = ("jobStatus", "jobDeploymentStatus", "reason", "message", "jobId", "rayClusterName")
        final = {k: st.get(k, "") for k in keys}
        # The Job as it is now, read after the RayJob's last status (the watcher's copy may be
        # from the poll before: it reads the RayJob first).
        job = client.BatchV1Api(self.api).read_namespaced_job_status(self.jc.rayjob, self.ns)
        final_job = {
            "conditions": sorted(c.type for c in job.status.conditions or [] if c.status == "True"),
            "succeeded": job.status.succeeded or 0,
            "failed": job.status.failed or 0,
        }
        self.jres.rayjob["final"] = {"RayJob": final, "Job": final_job}
        installed = self.jc.control.installed_at.get(self.ns)
        succeeded = self.watcher.first_seen.get("jobStatus=SUCCEEDED")
        if installed is not None and succeeded is not None:
            self.jres.rayjob["install_to_succeeded_s"] = round(succeeded - installed, 1)
        ok = final["jobStatus"] == "SUCCEEDED" and final["jobDeploymentStatus"] == "Complete"
        self.record(
            "rayjob_status", ok, time.monotonic() - t0, self.jres.rayjob["final"], fatal=False
        )


def _tail(text: str, n: int) -> list[str]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return [re.sub(r"\x1b\[[0-9;]*m", "", ln)[:300] for ln in lines[-n:]]


def run_rayjob(cfg: RayJobConfig) -> RayJobResult:
    result = RayJobRun(cfg).execute()
    assert isinstance(result, RayJobResult)
    return result


__all__ = [
    "RayJobConfig",
    "RayJobResult",
    "RayJobRun",
    "RayJobWatcher",
    "granted_ports",
    "principal_matches",
    "run_rayjob",
]
