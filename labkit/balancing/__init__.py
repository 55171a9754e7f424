"""Balancing: several servers behind one address.

Read :mod:`.policies` first (how a balancer picks a server: round robin, least
connections, sticky, consistent hash, or your own object with ``choose``), then
:mod:`.balancer` (the socket relay that applies a policy, skips dead servers and
retries idempotent requests) and :mod:`.cluster` (``lk.Cluster``: servers plus a
balancer, with kill, revive, stats and draw). Next: :mod:`labkit.state`.
"""
