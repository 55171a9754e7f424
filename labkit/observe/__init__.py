"""Observe: what the system did, measured and drawn.

:mod:`.load` runs simulated users against a server or cluster (``lk.load_test``), with
faults on a schedule, and reports throughput, latency percentiles and failures;
:mod:`.topology` draws clients, balancer, servers and store with networkx.
"""
