"""The data-quality audit: one module per check, plus loading, the report, the fix and the queue.

`stillhouse audit` calls :func:`stillhouse.audit.run.run_audit`, which reads the data with the
task's field mapping, runs the chosen checks (each returns a :class:`~stillhouse.audit.result.CheckResult`)
and writes ``audit.json`` / ``audit.html``; :mod:`stillhouse.audit.fix` writes a cleaned copy.
"""
