"""Scale out on Ray: the same commands with their inference in Ray actors, and serve on Ray Serve.

- :mod:`~stillhouse.scale.engine` — ``--engine local|ray`` and ``--ray-address``, checked, and
  the connection to a Ray cluster (a local instance started for the run, or an existing one).
- :mod:`~stillhouse.scale.pool` — restartable actors, one loaded model each, fed batches in
  order with a bounded window; results come back in input order, so the driver writes exactly
  what a local run writes.
- :mod:`~stillhouse.scale.llm` — annotate's LLM in actors (a driver-side stand-in for the backend).
- :mod:`~stillhouse.scale.models` — a trained model (predict) or any system (evaluate) in actors.
- :mod:`~stillhouse.scale.embed` — audit's sentence embeddings in actors.
- :mod:`~stillhouse.scale.serve` — ``serve --engine ray``: a Ray Serve deployment.

Only the driver (the process that runs the command) touches the SQLite store and the output
files; actors receive texts and return answers. Ray is optional (the ``scale`` extra).
"""
