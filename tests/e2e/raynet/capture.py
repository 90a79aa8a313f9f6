"""What Ray puts on the wire between the two nodes: a packet capture on the head namespace's
eth0 (the one veth both nodes share), decoded by tshark after the run (issue 10).

Istio's outbound sidecar routes an HTTP/2 (gRPC) or HTTP/1 connection by its ``:authority``
(``Host``): the Pod FQDN under the headless Service matches that Service's virtual host and
gets the mTLS cluster; anything else falls through to the port's ``allow_any`` passthrough,
plaintext. So the value Ray's clients send decides mTLS under STRICT. This module records,
per direction and destination port, every ``:authority`` / ``Host`` (and the TLS SNI where the
connection is Ray-native TLS) the capture holds.

Decoding: ``http2_tcp`` heuristics (tried before the port tables), so every h2c connection is
HTTP/2 whatever its port; HTTP/1 by "decode as" on every port the peer's Services admit; TLS
ClientHellos in a second pass, decoded as TLS on the same ports. HPACK needs each connection
from its first frame: the capture starts before either node runs `ray start`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TSHARK = "tshark"


def available() -> bool:
    return shutil.which(TSHARK) is not None


@dataclass
class Capture:
    ns: str  # network namespace whose eth0 is captured
    path: Path
    proc: subprocess.Popen[bytes] | None = None
    errors: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, TSHARK, "-q", "-i", "eth0", "-f", "tcp",
             "-w", str(self.path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        # dumpcap creates the file once it captures: wait for it so no early packet is lost.
        deadline = time.monotonic() + 15
        while not self.path.exists() and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        if not self.path.exists():
            self.errors.append("capture did not start")

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            _, err = self.proc.communicate()
        if self.proc.returncode not in (0, -signal.SIGINT) and err:
            self.errors.append(err.decode(errors="replace")[-500:])
        self.proc = None


def _decode_as(ports: Iterable[int], proto: str) -> list[str]:
    return [a for p in sorted(set(ports)) for a in ("-d", f"tcp.port=={p},{proto}")]


def _fields(path: Path, args: Sequence[str], names: Sequence[str]) -> list[list[str]]:
    cmd = [TSHARK, "-n", "-r", str(path), *args, "-T", "fields", "-E", "separator=\t",
           "-E", "occurrence=a", "-E", "aggregator=|"]
    for n in names:
        cmd += ["-e", n]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"tshark failed: {out.stderr[-500:]}")
    return [line.split("\t") for line in out.stdout.splitlines() if line.strip()]


@dataclass(frozen=True)
class Request:
    src: str
    dst: str
    dport: int
    kind: str  # "h2" (:authority), "http1" (Host), "tls" (SNI)
    authority: str  # "" when the ClientHello carries no SNI
    path: str = ""


def decode(path: Path, ports: Iterable[int]) -> list[Request]:
    """Every request's authority in the capture, to a port in `ports`."""
    ports = sorted(set(ports))
    out: list[Request] = []
    rows = _fields(
        path,
        ["-o", "tcp.try_heuristic_first:TRUE", "--enable-heuristic", "http2_tcp",
         *_decode_as(ports, "http"), "-Y", "http2.headers.authority or http.request"],
        ["ip.src", "ip.dst", "tcp.dstport", "http2.headers.authority", "http2.headers.path",
         "http.host", "http.request.uri"],
    )
    for src, dst, dport, h2auth, h2path, host, uri in rows:
        if not dport.isdigit() or int(dport) not in ports:
            continue
        auths = [a for a in h2auth.split("|") if a]
        paths = h2path.split("|") if h2path else []
        for i, a in enumerate(auths):
            out.append(Request(src, dst, int(dport), "h2", a, paths[i] if i < len(paths) else ""))
        if host:
            for i, h in enumerate(host.split("|")):
                u = uri.split("|")
                out.append(Request(src, dst, int(dport), "http1", h, u[i] if i < len(u) else ""))
    hellos = _fields(
        path,
        [*_decode_as(ports, "tls"), "-Y", "tls.handshake.type == 1"],
        ["ip.src", "ip.dst", "tcp.dstport", "tls.handshake.extensions_server_name"],
    )
    for src, dst, dport, sni in hellos:
        if dport.isdigit() and int(dport) in ports:
            out.append(Request(src, dst, int(dport), "tls", sni))
    return out


def classify(authority: str, names: dict[str, str]) -> str:
    """What an authority is: the name kinds in `names` (host -> kind), else an IP or other."""
    host = authority
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host in names:
        return names[host]
    if not host:
        return "none"
    if all(part.isdigit() for part in host.split(".")) or ":" in host:
        return "pod IP" if host not in ("127.0.0.1", "::1") else "loopback IP"
    return "other name"


def summarize(requests: Iterable[Request], roles: dict[str, str],
              names: dict[str, str]) -> list[dict[str, Any]]:
    """One row per (from, to, port, kind, authority): count and a sample path."""
    count: Counter[tuple[str, str, int, str, str]] = Counter()
    sample: dict[tuple[str, str, int, str, str], str] = {}
    for r in requests:
        key = (roles.get(r.src, r.src), roles.get(r.dst, r.dst), r.dport, r.kind, r.authority)
        count[key] += 1
        sample.setdefault(key, r.path)
    return [
        {"from": k[0], "to": k[1], "port": k[2], "kind": k[3], "authority": k[4],
         "form": classify(k[4], names), "requests": n, "path": sample[k]}
        for k, n in sorted(count.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][4]))
    ]
