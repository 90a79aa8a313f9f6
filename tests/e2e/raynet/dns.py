"""A minimal DNS responder standing in for the cluster DNS inside one node's namespaces.

Ray's gRPC resolves peer addresses with c-ares, which asks a DNS server and does not read
``/etc/hosts``; without a server every new connection to a Pod FQDN waits for c-ares timeouts
(3 s, 6 s: Ray 2.10 workers then take ~18 s to start). This answers A queries from the
namespace's own hosts file (``/etc/netns/NAME/hosts`` bind-mounted on ``/etc/hosts``), empty
NOERROR for other types of known names and NXDOMAIN for everything else, on 127.0.0.1:53/udp,
which is where the namespace's resolv.conf points. Run as ``python dns.py``; stdlib only.
"""

from __future__ import annotations

import socket
import struct


def load_hosts(path: str = "/etc/hosts") -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    with open(path) as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if len(words) < 2 or ":" in words[0]:
                continue
            for name in words[1:]:
                table.setdefault(name.lower().rstrip("."), []).append(words[0])
    return table


def parse_question(packet: bytes) -> tuple[str, int, int]:
    """(name, qtype, offset after the question)."""
    labels = []
    pos = 12
    while packet[pos]:
        n = packet[pos]
        labels.append(packet[pos + 1 : pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    qtype = struct.unpack("!H", packet[pos + 1 : pos + 3])[0]
    return ".".join(labels).lower(), qtype, pos + 5


def answer(packet: bytes, hosts: dict[str, list[str]]) -> bytes:
    (qid, flags) = struct.unpack("!HH", packet[:4])
    name, qtype, end = parse_question(packet)
    question = packet[12:end]
    addrs = hosts.get(name)
    rcode = 0 if addrs is not None else 3  # NXDOMAIN
    records = b""
    count = 0
    if addrs and qtype == 1:  # A
        for addr in addrs:
            records += struct.pack("!HHHIH", 0xC00C, 1, 1, 5, 4) + socket.inet_aton(addr)
            count += 1
    rd = flags & 0x0100
    header = struct.pack("!HHHHHH", qid, 0x8000 | 0x0400 | rd | 0x0080 | rcode, 1, count, 0, 0)
    return header + question + records


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 53))
    print("DNS READY", flush=True)
    while True:
        packet, peer = sock.recvfrom(4096)
        try:
            sock.sendto(answer(packet, load_hosts()), peer)
        except (IndexError, struct.error, UnicodeError):
            continue


if __name__ == "__main__":
    main()
