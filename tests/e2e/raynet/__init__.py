"""Real-Ray end-to-end harness for the meshray port contract.

Two Linux network namespaces (head, worker) joined by a veth pair, each behind an nftables
input policy of drop that admits from its peer only the ports of the Services selecting that
node. Ray runs for real in each, started with exactly the rendered ``rayStartParams``.
"""
