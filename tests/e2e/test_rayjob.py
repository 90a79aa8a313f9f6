"""A RayJob from values-examples/rayjob.yaml runs to completion with real Ray.

The chart is `helm install`ed with the example (its ConfigMap with the job's script created
first, as the example says). The real KubeRay operator creates the job's RayCluster; its head
and worker start from the operator's Pods as for a RayCluster (test_port_contract.py); the
submitter starts from the operator's Job Pod, its own command and env, in its own network
namespace, and reaches the head's dashboard through the head's firewall; the operator polls the
dashboard itself, through its own link to the head and its own hosts file. The operator must
move the RayJob to SUCCEEDED / Complete and the Job controller the Job to Complete. The
negative control closes the dashboard port to the submitter: the Job and the RayJob must fail.
See raynet/rayjob.py and README.md ("RayJob").
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from e2e_support import LOG_DIR, RAY_VERSIONS, TOKEN_AUTH_VERSIONS, rayjob, rayjob_name, venv_for
from raynet.live import Deployment, LocalCluster
from raynet.rayjob import RayJobConfig, RayJobResult, RayJobWatcher, run_rayjob
from raynet.scenario import RunResult

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("e2e_host")]
JOB_STEPS = ("submitter", "rayjob_status")  # the steps the negative control must fail


def live_rayjob(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    from kubernetes import client

    return dict(
        client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
            "ray.io", "v1", namespace, "rayjobs", rayjob_name()
        )
    )


def run_job(
    cluster: LocalCluster,
    dep: Deployment,
    version: str,
    label: str,
    record: list[RunResult],
    drop_dashboard: bool = False,
) -> RayJobResult:
    # Install now (a RayJob's deadline runs from its install) and watch it from there on.
    cluster.submit(dep)
    watcher = RayJobWatcher(cluster.api, dep.namespace, rayjob_name(), cluster.installed_at)
    watcher.start()
    live = cluster.read(dep, label)
    # The head's dashboard port: the port of KubeRay's head Service named `dashboard`.
    dashboard = [p for p, name in live.head.allowed.items() if name.endswith("/dashboard")]
    assert len(dashboard) == 1, live.head.allowed
    cfg = RayJobConfig(
        cluster=live,
        venv=venv_for(version),
        label=label,
        job=False,
        log_dir=LOG_DIR if not drop_dashboard else None,
        control=cluster,
        rayjob=rayjob_name(),
        watcher=watcher,
        drop_submitter=frozenset(dashboard) if drop_dashboard else frozenset(),
        submit_timeout=240.0 if drop_dashboard else 360.0,
    )
    result = run_rayjob(cfg)
    record.append(result)
    print(result.summary())
    print("RayJob:", result.rayjob)
    # Ray itself must be up, with no stray listener, whatever the job's outcome.
    others = [s.name for s in result.steps if not s.ok and s.name not in JOB_STEPS]
    assert not others, f"steps failed before the job: {others}\n{result.summary()}"
    return result


@pytest.mark.parametrize("version", RAY_VERSIONS)
def test_rayjob(version: str, e2e_cluster: LocalCluster, record_run: list[RunResult]) -> None:
    dep = rayjob(version)
    result = run_job(e2e_cluster, dep, version, f"rayjob@{version}", record_run)
    rj = result.rayjob
    failed = [s.name for s in result.steps if not s.ok]
    assert result.ok, f"steps failed: {failed}\n{result.summary()}\n{rj}"
    dropped = {k: v for k, v in result.blocked.items() if v}
    assert not dropped, f"connection attempts dropped by the firewall: {dropped}"

    # The operator's verdict, from its own dashboard poll, and the Job controller's.
    final = rj["final"]
    assert final["RayJob"]["jobStatus"] == "SUCCEEDED", final
    assert final["RayJob"]["jobDeploymentStatus"] == "Complete", final
    assert "Complete" in final["Job"]["conditions"], final
    assert final["Job"]["succeeded"] == 1 and final["Job"]["failed"] == 0, final
    assert [a["exit_code"] for a in rj["attempts"]] == [0], rj["attempts"]

    # What ran is the operator's submitter: KubeRay 1.6's command, its env, its job id.
    spec = live_rayjob(e2e_cluster, dep.namespace)
    script = rj["command"][-1]
    assert rj["command"][:-1] in (["/bin/bash", "-ce", "--"], ["bash", "-ce", "--"]), rj["command"]
    for piece in ("ray job status", "ray job submit", "--no-wait", "ray job logs", "--follow"):
        assert piece in script, script
    assert rj["env"]["RAY_DASHBOARD_ADDRESS"] == spec["status"]["dashboardURL"], rj["env"]
    assert rj["env"]["RAY_JOB_SUBMISSION_ID"] == spec["status"]["jobId"], rj["env"]

    # The job itself: tasks on both nodes, with the RayJob's runtime env (followed logs).
    res = rj.get("job_result")
    assert res and res["nodes"] == 2 and res["nodes_with_tasks"] == 2, res
    env_vars = yaml.safe_load(spec["spec"]["runtimeEnvYAML"])["env_vars"]
    assert res["greeting"] == env_vars["JOB_GREETING"], res

    # Both clients came only where the chart's AuthorizationPolicy admits them: the dashboard.
    dashboard = int(spec["status"]["dashboardURL"].rpartition(":")[2])
    assert rj["syn_submitter"] == [dashboard], rj["syn_submitter"]
    assert rj["syn_operator"] == [dashboard], rj["syn_operator"]


@pytest.mark.parametrize("version", RAY_VERSIONS[:1])
def test_negative_rayjob_submitter_port(
    version: str, e2e_cluster: LocalCluster, record_run: list[RunResult]
) -> None:
    """The dashboard port closed to the submitter's namespace by the head's firewall (the
    operator's link still admitted): every submitter Pod fails, the Job fails after its
    backoffLimit, and the operator fails the RayJob with SubmissionFailed."""
    dep = rayjob(version, "-no-dashboard")
    result = run_job(e2e_cluster, dep, version, f"rayjob-no-dashboard@{version}", record_run, True)
    rj = result.rayjob
    spec = live_rayjob(e2e_cluster, dep.namespace)
    dashboard = int(spec["status"]["dashboardURL"].rpartition(":")[2])
    backoff = int((spec["spec"].get("submitterConfig") or {}).get("backoffLimit", 2))
    final = rj["final"]
    assert final["RayJob"]["jobDeploymentStatus"] == "Failed", final
    assert final["RayJob"]["reason"] == "SubmissionFailed", final
    assert final["RayJob"]["jobStatus"] != "SUCCEEDED", final
    assert "Failed" in final["Job"]["conditions"], final
    assert final["Job"]["failed"] == backoff + 1, final
    assert rj["attempts"] and all(a["exit_code"] != 0 for a in rj["attempts"]), rj["attempts"]
    # The cause is the closed port, seen by the firewall, and only that: the operator's own
    # polls on the same port still went through.
    assert dashboard in result.blocked["submitter->head"], result.blocked
    assert rj["syn_submitter"] == [], rj["syn_submitter"]
    assert rj["syn_operator"] == [dashboard], rj["syn_operator"]
    # Ray's own nodes were fine (run_job checked): the submitter's steps are what failed.
    failed = {s.name for s in result.steps if not s.ok}
    assert failed == set(JOB_STEPS), result.summary()


@pytest.mark.parametrize("version", TOKEN_AUTH_VERSIONS)
def test_rayjob_with_token_auth(
    version: str, e2e_cluster: LocalCluster, record_run: list[RunResult]
) -> None:
    """rayAuth.enabled on the RayJob: the operator gives the job's cluster and the submitter's
    container the token from the Secret it creates, and polls the dashboard with it (it reads
    the Secret itself); the job runs to SUCCEEDED, as without the token."""
    dep = rayjob(version, "-token", sets=("rayAuth.enabled=true",))
    result = run_job(e2e_cluster, dep, version, f"rayjob-token@{version}", record_run)
    rj = result.rayjob
    failed = [s.name for s in result.steps if not s.ok]
    assert result.ok, f"steps failed: {failed}\n{result.summary()}\n{rj}"
    final = rj["final"]
    assert final["RayJob"]["jobStatus"] == "SUCCEEDED", final
    assert final["RayJob"]["jobDeploymentStatus"] == "Complete", final
    assert rj["env"].get("RAY_AUTH_MODE") == "token", rj["env"]
    assert len(rj["env"].get("RAY_AUTH_TOKEN", "")) >= 32, "the submitter got no token"
