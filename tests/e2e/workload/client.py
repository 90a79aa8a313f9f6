"""Out-of-driver probes, run with the Ray venv's python inside a node's namespaces.

``client.py job URL`` submits a job with a runtime_env (working_dir + env_vars) through the
Jobs API and waits for it; ``client.py http URL...`` scrapes HTTP endpoints; ``client.py auth
URL...`` asks each URL without a token, with a wrong one and with Ray's token (RAY_AUTH_TOKEN,
as a bearer token) and reports the HTTP statuses; ``client.py rayclient ray://HOST:PORT``
connects a Ray Client and runs one task. Prints one JSON object; exit code 0 only on success
(for ``auth``: every request got an HTTP answer).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def job(url: str, timeout: float) -> dict[str, Any]:
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(url)
    with tempfile.TemporaryDirectory() as wd:
        with (
            open(os.path.join(HERE, "job_entry.py")) as src,
            open(os.path.join(wd, "job_entry.py"), "w") as dst,
        ):
            dst.write(src.read())
        with open(os.path.join(wd, "meshray_job_mod.py"), "w") as f:
            f.write("VALUE = 'job-working-dir'\n")
        job_id = client.submit_job(
            entrypoint="python job_entry.py",
            runtime_env={"working_dir": wd, "env_vars": {"MESHRAY_JOB_ENV": "job-env"}},
        )
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = client.get_job_status(job_id)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            break
        time.sleep(0.5)
    logs = client.get_job_logs(job_id)
    ok = status == JobStatus.SUCCEEDED and "MESHRAY_JOB_OK" in logs
    if status not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        client.stop_job(job_id)
    return {"ok": ok, "job_id": job_id, "status": str(status), "logs": logs[-1500:]}


def http(urls: list[str], timeout: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for url in urls:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=10) as resp:
                    body = resp.read().decode(errors="replace")
                samples = [ln for ln in body.splitlines() if ln and not ln.startswith("#")]
                results[url] = {"status": resp.status, "samples": len(samples)}
                break
            except OSError as exc:
                last = repr(exc)
                time.sleep(1)
        else:
            results[url] = {"error": last}
    return {"ok": all("status" in r for r in results.values()), "results": results}


def _status(url: str, headers: dict[str, str]) -> int | str:
    """The HTTP status of one GET (an error status is an answer too), or the error."""
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError as exc:
        return repr(exc)


def auth(urls: list[str]) -> dict[str, Any]:
    """Each URL without a token, with a wrong one and with RAY_AUTH_TOKEN (None when the
    environment has no token)."""
    token = os.environ.get("RAY_AUTH_TOKEN", "")
    results = {
        url: {
            "without": _status(url, {}),
            "wrong": _status(url, {"Authorization": "Bearer not-the-token"}),
            "with": _status(url, {"Authorization": f"Bearer {token}"}) if token else None,
        }
        for url in urls
    }
    answered = all(isinstance(v, int) or v is None for r in results.values() for v in r.values())
    return {"ok": answered, "results": results}


def rayclient(address: str, timeout: float) -> dict[str, Any]:
    import ray

    ray.init(address, logging_level="WARNING")
    try:
        node = ray.get(ray.remote(lambda: ray.get_runtime_context().get_node_id()).remote(),
                       timeout=timeout)
    finally:
        ray.shutdown()
    return {"ok": bool(node), "node": node}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["job", "http", "auth", "rayclient"])
    p.add_argument("urls", nargs="+")
    p.add_argument("--timeout", type=float, default=120)
    a = p.parse_args()
    try:
        if a.what == "job":
            out = job(a.urls[0], a.timeout)
        elif a.what == "auth":
            out = auth(a.urls)
        elif a.what == "rayclient":
            out = rayclient(a.urls[0], a.timeout)
        else:
            out = http(a.urls, a.timeout)
    except Exception as exc:
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out, default=str))
    sys.exit(0 if out.get("ok") else 1)


if __name__ == "__main__":
    main()
