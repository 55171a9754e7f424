"""Observe: what the system did, measured and drawn.

:mod:`.load` runs simulated users against a server or cluster (``lk.load_test``), with
faults on a schedule; each user speaks HTTP through :mod:`._client`, a lean client
with its own cookie jar. :mod:`.report` holds what came back (``LoadReport``):
throughput, latency percentiles, failures, the latency timeline with failures marked
and throughput over time. :mod:`.topology` draws clients, balancer, servers and store
with networkx; :mod:`.panel` drives a running cluster by hand.
"""
