"""The mesh cost meshray quotes, measured with the real istiod: one run of `make bench-mesh`
(tools/bench/bench_mesh.py), whose output is committed as docs/mesh-cost.json and tabled in
docs/mesh-cost.md. Sizes are the LDS + CDS + RDS + EDS istiod sends a sidecar, as compact
protojson. tests/cli/test_mesh_cost.py recomputes each number below from that JSON, so a new run
must come with new numbers here (and the README's table).

Used by `meshray validate`'s warnings; the chart's ceiling on Ray-TLS listeners
(rayTls.maxListeners, templates/mesh/_validate_cost.tpl) is about the same growth.
"""

from __future__ import annotations

# Which run: its date and docs/mesh-cost.json, quoted in every warning.
MEASURED = "run of 2026-11-23, docs/mesh-cost.md"

# A Ray worker's sidecar, rayTls off, exportTo ".": KB per declared worker port
# (11 -> 200 worker ports at 1 replica).
KB_PER_WORKER_PORT = 12.9

# rayTls on: KB per listener istiod adds to a Ray sidecar for each Ray pod x worker port
# (KB per added worker pod / listeners per added worker pod, 1 -> 30 replicas at 200 ports).
KB_PER_TLS_LISTENER = 0.6

# exportTo "*": KB per worker port in the sidecar of a plain Pod in another namespace
# (11 -> 200 worker ports at 1 replica, rayTls off).
OTHER_KB_PER_WORKER_PORT_EXPORTED = 6.5
