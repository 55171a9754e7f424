"""Serving: one Flask app on a real socket, in a thread or a forked process.

Read :mod:`.server` first (``lk.serve`` and :class:`Server`: start, kill, revive,
close); :mod:`._serving` holds the thread and process machinery and
:mod:`._middleware` what the kit adds to every app (``X-Served-By``, the structured
request log, the internal ``/__labkit__`` endpoints). Next: :mod:`labkit.balancing`.
"""
