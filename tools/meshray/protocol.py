"""The protocol Istio gives a Service port: ``appProtocol``, else the port name's prefix.

Ground of the model: ``raymodel`` (KubeRay's head Service) and ``services`` (the input's
Services) both read ports this way, and it imports neither of them.
"""

from __future__ import annotations

from typing import Any

# protocols Istio recognises from a Service port's name prefix (``grpc-foo``)
ISTIO_PROTOCOLS = ("http2", "http", "https", "grpc-web", "grpc", "tcp", "tls", "mongo",
                   "mysql", "redis", "udp")


def declared_protocol(port: dict[str, Any]) -> str | None:
    """The protocol Istio uses for a Service port: appProtocol wins, else the name prefix."""
    app = port.get("appProtocol")
    if app:
        app = str(app).lower()
        return "http2" if app == "kubernetes.io/h2c" else app
    name = str(port.get("name") or "").lower()
    for proto in ISTIO_PROTOCOLS:
        if name == proto or name.startswith(proto + "-"):
            return proto
    return None
