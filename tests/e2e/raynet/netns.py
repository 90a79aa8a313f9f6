"""Two network namespaces joined by a veth pair, each a "pod" with its own firewall.

Each node runs under ``ip netns exec NS unshare --mount --pid --fork --kill-child
--mount-proc``: its own network, mount and PID namespaces, with private tmpfs ``/tmp`` and
``/dev/shm`` as separate pods have, and ``/etc/hosts`` bind-mounted by ``ip netns exec`` from
``/etc/netns/NS/hosts``. Every process of a node (Ray daemons, workers, the driver) lives in
that PID namespace, so killing the namespace's ``unshare`` kills exactly the processes this
harness started and nothing else on the machine. Namespace names carry this process's PID
(``mr-<pid>-<seq>-head``) so parallel runs never collide.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HEAD_IP = "10.231.7.1"
WORKER_IP = "10.231.7.2"
PREFIX_LEN = 24
NFT_TABLE = "meshray_e2e"
_SEQ = itertools.count(1)
_NS_RE = re.compile(r"^mr-(\d+)-(\d+)-(head|worker|submitter)$")
# The RayJob submitter's namespace and the operator's end of the link from this machine's own
# network namespace to the head (JobNodes): addresses that exist only on these links.
SUBMITTER_IP = "10.231.7.3"
OPERATOR_IP = "10.231.7.254"
# Host-side interface names (IFNAMSIZ 15): mo<pid>x<seq>; gVisor keeps a veth's host end when
# its peer's namespace is deleted, so teardown deletes it and sweep_stale removes dead runs'.
_LINK_RE = re.compile(r"^mo(\d+)x(\d+)$")
REPO_ROOT = Path(__file__).resolve().parents[3]


def _kept_path() -> str:
    """The checkout, when it lies under a directory each node replaces with its own tmpfs."""
    if any(REPO_ROOT.is_relative_to(d) for d in (Path("/tmp"), Path("/dev/shm"))):
        return str(REPO_ROOT)
    return ""


# A checkout under /tmp (CI clones anywhere) would vanish under the node's private /tmp, and
# with it the venvs, the workload and the DNS stand-in: MR_KEEP names such a path, which is
# parked on /mnt (only inside this mount namespace) and moved back onto the fresh tmpfs.
NODE_INIT = r"""
set -e
if [ -n "${MR_KEEP:-}" ]; then mount --bind "$MR_KEEP" /mnt; fi
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
if [ -n "${MR_KEEP:-}" ]; then mkdir -p "$MR_KEEP" && mount --move /mnt "$MR_KEEP"; fi
echo READY
trap 'exit 0' TERM
while :; do sleep 3600 & wait $! || true; done
"""


class NetnsError(Exception):
    pass


def _run(
    argv: Sequence[str], timeout: float = 30, input_text: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv), input=input_text, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr.strip()}")
    return proc


def require_tools() -> list[str]:
    """Missing host tools (the suite skips with this list; `make e2e-deps` installs them)."""
    return [t for t in ("ip", "nft", "unshare", "nsenter", "ss", "bash") if not shutil.which(t)]


def _die_with_parent() -> None:
    """prctl(PR_SET_PDEATHSIG, SIGKILL) in the child: if the harness itself is killed, the
    node's `unshare` dies too, and `--kill-child` then ends the node's PID namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Delete namespaces left by earlier runs of this harness whose process is gone."""
    removed = []
    out = _run(["ip", "netns", "list"], check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.strip() else ""
        m = _NS_RE.match(name)
        if not m or pid_alive(int(m.group(1))):
            continue
        for pid in _ns_pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)
        removed.append(name)
    for line in _run(["ip", "-o", "link", "show"], check=False).stdout.splitlines():
        parts = line.split(":", 2)
        link = parts[1].strip().split("@", 1)[0] if len(parts) > 1 else ""
        m = _LINK_RE.match(link)
        if m and not pid_alive(int(m.group(1))):
            _run(["ip", "link", "del", link], check=False)
            removed.append(link)
    return removed


def _ns_pids(name: str) -> list[int]:
    out = _run(["ip", "netns", "pids", name], check=False).stdout
    return [int(p) for p in out.split()]


@dataclass(frozen=True)
class Source:
    """Another client of a node, admitted from its own address on its own ports (the RayJob
    submitter, the KubeRay operator). Its sets: allowed_<name>, syn_<name> (ports it opened a
    connection to, admitted) and blocked_<name> (SYNs dropped)."""

    name: str
    ip: str
    ports: tuple[int, ...]


def nft_ruleset(peer_ip: str, ports: Sequence[int], sources: Sequence[Source] = ()) -> str:
    elements = ", ".join(str(p) for p in sorted(set(ports))) or "1"
    sets, rules = "", ""
    for src in sources:
        # An empty set has no elements clause (nft refuses `elements = { }`): it admits nothing.
        own = ", ".join(str(p) for p in sorted(set(src.ports)))
        sets += (
            f"  set allowed_{src.name} {{ type inet_service; "
            + (f"elements = {{ {own} }}; " if own else "")
            + "}\n"
            f"  set syn_{src.name} {{ type inet_service; flags dynamic; }}\n"
            f"  set blocked_{src.name} {{ type inet_service; flags dynamic; }}\n"
        )
        syn = "tcp flags & (syn | ack) == syn"
        rules += (
            f"    ip saddr {src.ip} {syn} tcp dport @allowed_{src.name} "
            f"add @syn_{src.name} {{ tcp dport }}\n"
            f"    ip saddr {src.ip} tcp dport @allowed_{src.name} accept\n"
            f"    ip saddr {src.ip} {syn} add @blocked_{src.name} {{ tcp dport }} counter drop\n"
        )
    return f"""
table inet {NFT_TABLE} {{
  set allowed {{ type inet_service; elements = {{ {elements} }}; }}
  set blocked {{ type inet_service; flags dynamic; }}
{sets}  chain input {{
    type filter hook input priority filter; policy drop;
    iifname "lo" accept
    ct state established,related accept
    ip saddr {peer_ip} tcp dport @allowed accept
    ip saddr {peer_ip} tcp flags & (syn | ack) == syn add @blocked {{ tcp dport }} counter drop
{rules}  }}
}}
"""


@dataclass
class Node:
    role: str
    ns: str
    ip: str
    peer_ip: str
    init: subprocess.Popen[str] | None = None
    init_pid: int = 0  # host PID of the namespace's PID 1

    def nsenter(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", "-t", str(self.init_pid), "-m", "-n", "-p", "--", *argv]

    def popen(
        self, argv: Sequence[str], env: Mapping[str, str], **kw: object
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
            self.nsenter(argv), env=dict(env), text=True, start_new_session=True, **kw
        )

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        timeout: float,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run in the node; on timeout the process group is killed and rc is -9."""
        proc = self.popen(
            argv,
            env,
            stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = proc.communicate(input_text, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return subprocess.CompletedProcess(
                proc.args, -9, out, (err or "") + f"\n[timeout after {timeout}s]"
            )
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def listening(self) -> list[tuple[str, int, list[tuple[str, int]]]]:
        """(address, port, [(process, pid)]) of every TCP listener in this namespace."""
        out = _run(["ip", "netns", "exec", self.ns, "ss", "-Hltnp"], check=False).stdout
        result = []
        for line in out.splitlines():
            cols = line.split()
            if len(cols) < 4:
                continue
            addr, _, port = cols[3].rpartition(":")
            procs = [
                (m.group(1), int(m.group(2))) for m in re.finditer(r'\("([^"]*)",pid=(\d+)', line)
            ]
            result.append((addr.strip("[]"), int(port), procs))
        return result

    def blocked_ports(self, set_name: str = "blocked") -> list[int]:
        """The ports in one of the firewall's dynamic sets (default: SYNs dropped from the peer)."""
        proc = _run(
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                "nft",
                "-j",
                "list",
                "set",
                "inet",
                NFT_TABLE,
                set_name,
            ],
            check=False,
        )
        if proc.returncode != 0:
            return []
        ports: list[int] = []
        for item in json.loads(proc.stdout).get("nftables", []):
            for elem in (item.get("set") or {}).get("elem", []):
                value = elem.get("elem", {}).get("val", elem) if isinstance(elem, dict) else elem
                if isinstance(value, int):
                    ports.append(value)
        return sorted(ports)


def _is_loopback(addr: str) -> bool:
    return addr.startswith("127.") or addr in ("::1", "::ffff:127.0.0.1")


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    args = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    if not args:
        return "?"
    # Name Ray processes by what they run: `ray::Pinned`, `raylet`, `.../agent.py`, ...
    interesting = [a for a in args if a.endswith(".py") or a.startswith("ray::")]
    head = interesting[0] if interesting else args[0]
    return "/".join(Path(head).parts[-2:]) if "/" in head else head


@dataclass
class Sampler:
    """Polls `ss` in both namespaces and keeps every non-loopback TCP listener ever seen."""

    nodes: Sequence[Node]
    interval: float = 0.3
    # Worker-range ports: the most held at once per node is kept (Ray's real port demand).
    range_ports: frozenset[int] = frozenset()
    seen: dict[str, dict[int, set[str]]] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample_once(self) -> None:
        for node in self.nodes:
            table = self.seen.setdefault(node.role, {})
            now: set[int] = set()
            for addr, port, procs in node.listening():
                if _is_loopback(addr):
                    continue
                if port in self.range_ports:
                    now.add(port)
                names = table.setdefault(port, set())
                for comm, pid in procs:
                    names.add(f"{cmdline(pid)} [{comm}] @{addr}")
            self.peak[node.role] = max(self.peak.get(node.role, 0), len(now))

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.sample_once()
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="port-sampler")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        with contextlib.suppress(Exception):
            self.sample_once()


class NodePair:
    """Creates the namespaces, veth pair, hosts files, firewalls and node inits; tears down."""

    def __init__(
        self,
        hosts: Mapping[str, Sequence[str]],
        head_allowed: Sequence[int],
        worker_allowed: Sequence[int],
    ) -> None:
        seq = next(_SEQ)
        base = f"mr-{os.getpid()}-{seq}"
        self.head = Node("head", f"{base}-head", HEAD_IP, WORKER_IP)
        self.worker = Node("worker", f"{base}-worker", WORKER_IP, HEAD_IP)
        # name -> addresses (what the cluster DNS answers), written into both hosts files
        self.hosts = {name: tuple(ips) for name, ips in hosts.items()}
        self.allowed = {"head": list(head_allowed), "worker": list(worker_allowed)}
        self.created: list[str] = []

    @property
    def nodes(self) -> tuple[Node, ...]:
        return (self.head, self.worker)

    def setup(self) -> None:
        for node in (self.head, self.worker):
            _run(["ip", "netns", "add", node.ns])
            self.created.append(node.ns)
        _run(
            [
                "ip",
                "link",
                "add",
                "eth0",
                "netns",
                self.head.ns,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                self.worker.ns,
            ]
        )
        for node in (self.head, self.worker):
            _run(["ip", "-n", node.ns, "addr", "add", f"{node.ip}/{PREFIX_LEN}", "dev", "eth0"])
            _run(["ip", "-n", node.ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", node.ns, "link", "set", "eth0", "up"])
            # A default route, as a pod has (Ray finds its address with a UDP "connect").
            _run(["ip", "-n", node.ns, "route", "add", "default", "dev", "eth0"])
            self._write_etc(node)
            _run(
                ["ip", "netns", "exec", node.ns, "nft", "-f", "-"],
                input_text=self.ruleset(node),
            )
        self.extend()
        for node in self.nodes:
            self._start_init(node)

    def _write_etc(self, node: Node) -> None:
        """The node's /etc/netns/<ns>/hosts (what the cluster DNS answers) and resolv.conf."""
        etc = Path("/etc/netns") / node.ns
        etc.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
        lines += [f"{ip} {name}" for name, ips in self.hosts.items() for ip in ips]
        (etc / "hosts").write_text("\n".join(lines) + "\n")
        # No DNS server is reachable: fail lookups fast instead of waiting for timeouts.
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")

    def ruleset(self, node: Node) -> str:
        """The node's nftables input policy: drop, but its peer on the ports admitted to it."""
        return nft_ruleset(node.peer_ip, self.allowed[node.role])

    def extend(self) -> None:
        """More namespaces and links before the nodes start (none for a plain pair)."""

    def _start_init(self, node: Node) -> None:
        node.init = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                node.ns,
                "unshare",
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "--propagation",
                "private",
                "bash",
                "-c",
                NODE_INIT,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env={**os.environ, "MR_KEEP": _kept_path()},
        )
        assert node.init.stdout is not None
        line = node.init.stdout.readline().strip()
        if line != "READY":
            raise NetnsError(f"{node.role} init failed: {line} {node.init.stderr}")
        children = Path(f"/proc/{node.init.pid}/task/{node.init.pid}/children").read_text()
        node.init_pid = int(children.split()[0])
        # The cluster-DNS stand-in (see dns.py); it dies with the namespace.
        dns = node.popen(
            [sys.executable, str(Path(__file__).with_name("dns.py"))],
            {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert dns.stdout is not None
        if dns.stdout.readline().strip() != "DNS READY":
            raise NetnsError(f"{node.role}: DNS stand-in did not start")

    def teardown(self, deadline: float = 30.0) -> list[str]:
        """Kill every process of both nodes, delete namespaces and hosts files. Returns problems."""
        problems: list[str] = []
        end = time.monotonic() + deadline
        for node in self.nodes:
            if node.init and node.init.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    # --kill-child: SIGKILL to the namespace's PID 1, which ends the namespace.
                    os.killpg(node.init.pid, signal.SIGKILL)
        for ns in self.created:
            while _ns_pids(ns) and time.monotonic() < end:
                for pid in _ns_pids(ns):  # only processes inside our own namespace
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
            left = _ns_pids(ns)
            if left:
                problems.append(f"{ns}: processes still alive: {left}")
        for node in self.nodes:
            if node.init:
                with contextlib.suppress(Exception):
                    node.init.wait(timeout=max(0.1, end - time.monotonic()))
        for ns in self.created:
            proc = _run(["ip", "netns", "del", ns], check=False)
            if proc.returncode != 0:
                problems.append(f"ip netns del {ns}: {proc.stderr.strip()}")
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
        self.created.clear()
        return problems


class JobNodes(NodePair):
    """The head/worker pair plus what a RayJob needs: a third namespace for the submitter Pod
    (its own veth to the head, 10.231.7.3, no Service lists it so its firewall admits nothing)
    and a veth from this machine's own network namespace to the head (10.231.7.254 on this
    side, a /32 route to the head only), by which the KubeRay operator, a process of this
    machine, reaches the head's dashboard. The head's firewall admits each of them from its own
    address on its own ports only (``submitter_allowed``, ``operator_allowed``).

    The submitter's namespace gives up a connection attempt after 3 s (tcp_syn_retries=1)
    instead of ~2 min: a connection the firewall drops then fails about as fast as one the
    mesh refuses, which is what the negative control needs; admitted connections never retry."""

    def __init__(
        self,
        hosts: Mapping[str, Sequence[str]],
        head_allowed: Sequence[int],
        worker_allowed: Sequence[int],
        submitter_allowed: Sequence[int],
        operator_allowed: Sequence[int],
    ) -> None:
        super().__init__(hosts, head_allowed, worker_allowed)
        base = self.head.ns.removesuffix("-head")
        self.submitter = Node("submitter", f"{base}-submitter", SUBMITTER_IP, HEAD_IP)
        self.sources = (
            Source("submitter", SUBMITTER_IP, tuple(submitter_allowed)),
            Source("operator", OPERATOR_IP, tuple(operator_allowed)),
        )
        seq = base.rsplit("-", 1)[1]
        self.host_link = f"mo{os.getpid()}x{seq}"
        self._host_link_made = False

    @property
    def nodes(self) -> tuple[Node, ...]:
        return (self.head, self.worker, self.submitter)

    def ruleset(self, node: Node) -> str:
        if node is self.head:
            return nft_ruleset(node.peer_ip, self.allowed["head"], self.sources)
        if node is self.submitter:
            return nft_ruleset(node.peer_ip, ())
        return super().ruleset(node)

    def extend(self) -> None:
        sub, head = self.submitter, self.head
        _run(["ip", "netns", "add", sub.ns])
        self.created.append(sub.ns)
        _run(
            [
                *("ip", "link", "add", "sub0", "netns", head.ns, "type", "veth"),
                *("peer", "name", "eth0", "netns", sub.ns),
            ]
        )
        _run(["ip", "-n", sub.ns, "addr", "add", f"{sub.ip}/32", "dev", "eth0"])
        for cmd in (["link", "set", "lo", "up"], ["link", "set", "eth0", "up"]):
            _run(["ip", "-n", sub.ns, *cmd])
        _run(["ip", "-n", sub.ns, "route", "add", "default", "dev", "eth0"])
        _run(["ip", "-n", head.ns, "link", "set", "sub0", "up"])
        _run(["ip", "-n", head.ns, "route", "add", f"{sub.ip}/32", "dev", "sub0", "src", head.ip])
        _run(["ip", "netns", "exec", sub.ns, "sysctl", "-qw", "net.ipv4.tcp_syn_retries=1"])
        self._write_etc(sub)
        _run(["ip", "netns", "exec", sub.ns, "nft", "-f", "-"], input_text=self.ruleset(sub))
        # The operator's link: this machine's end keeps only a /32 route to the head, so no
        # other traffic of this machine changes; a second run holding that route fails here.
        link = self.host_link
        _run(["ip", "link", "add", link, "type", "veth", "peer", "name", "op0", "netns", head.ns])
        self._host_link_made = True
        _run(["ip", "addr", "add", f"{OPERATOR_IP}/32", "dev", link])
        _run(["ip", "link", "set", link, "up"])
        _run(["ip", "-n", head.ns, "link", "set", "op0", "up"])
        _run(
            ["ip", "-n", head.ns, "route", "add", f"{OPERATOR_IP}/32", "dev", "op0", "src", head.ip]
        )
        _run(["ip", "route", "add", f"{head.ip}/32", "dev", link, "src", OPERATOR_IP])

    def teardown(self, deadline: float = 30.0) -> list[str]:
        problems = super().teardown(deadline)
        if self._host_link_made:
            proc = _run(["ip", "link", "del", self.host_link], check=False)
            gone = _run(["ip", "link", "show", self.host_link], check=False).returncode != 0
            if not gone:
                problems.append(f"ip link del {self.host_link}: {proc.stderr.strip()}")
            self._host_link_made = False
        return problems


@contextlib.contextmanager
def node_pair(
    hosts: Mapping[str, Sequence[str]], head_allowed: Sequence[int], worker_allowed: Sequence[int]
) -> Iterator[NodePair]:
    pair = NodePair(hosts, head_allowed, worker_allowed)
    try:
        pair.setup()
        yield pair
    finally:
        pair.teardown()
