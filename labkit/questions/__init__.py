"""The graded questions of the course, one module per chapter: ``qNN.py``.

How to add a question
---------------------

1. Open (or create) ``labkit/questions/qNN.py`` for chapter ``NN``. Nothing else
   needs registering: the registry imports ``labkit.questions.qNN`` the first time
   an id starting with ``"NN."`` is checked (and all of them when listing ids).

2. Write one function per question and decorate it::

       from labkit.checks import CheckFailed, probe, question

       @question("01.session_store", points=3, hints=[
           "A nudge: what has to happen when a session is older than its ttl?",
           "More: keep (value, expires_at) pairs and compare with time.monotonic().",
           "Almost the answer: in get(), delete the entry and return None if expired.",
       ])
       def session_store(make_store):
           "Build a session store with expiry and eviction."   # first line = title
           store = make_store(ttl=1.0)
           ...
           if got is not None:
               raise CheckFailed(f"get('s1') after its ttl should be None, but your"
                                 f" store returned {got!r}.")

   * The id is ``"NN.snake_case"`` and must never change once learners use it
     (grades are keyed on it).
   * The function receives the learner's answers, in the order of
     ``lk.check(id, *answers)``; its parameter names appear in error messages, so
     name them after what the notebook calls them.
   * Fail with ``CheckFailed("what was expected, and what their code did")``.
     Anything else the learner's code raises also fails the check, with its type and
     message; ``NotImplementedError`` (the released stub) becomes "replace the stub".
   * Drive the learner's code black-box where you can: serve their app with
     ``probe.serve_factory`` (a ``with`` block, so the server is closed even when
     the check fails) and talk to it with ``probe.call``. Close everything you start.
   * Keep messages free of ports, times and addresses (nbval compares the text).

3. In ``solutions/NN_*_exercises.ipynb``, put the learner's part between
   ``### BEGIN SOLUTION`` and ``### END SOLUTION`` and call
   ``lk.check("NN.name", answer)`` in the cell after it. Run ``labkit release``.

4. Add tests: the reference solution passes, the stub fails, a plausible wrong
   answer fails with a useful message (see ``tests/questions/test_checks_q00.py``).
"""
