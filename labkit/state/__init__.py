"""State: the places a session can live, from a server's memory to the client.

* :mod:`.sessions`     a server's own memory, with idle/absolute timeouts and an LRU bound;
* :mod:`.redis`        a shared Redis store (a real Redis server, started by the kit);
* :mod:`.replication`  copies kept on every server, by write-update or write-invalidate;
* :mod:`.tokens`       nothing on the server: signed tokens (JWT) the client carries;
* :mod:`.serverless`   a function runtime that keeps only warm containers.

Read them in that order: each one moves a little more of the state off the server.
Next: :mod:`labkit.observe` (measuring what each design costs).
"""
