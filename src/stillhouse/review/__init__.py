"""review: people correct the LLM's least-sure suggestions in a browser, keyboard first.

``queue`` orders what reviewers meet, ``decisions`` stores each answer as a ``human:NAME``
annotation, ``session`` and ``security`` hold the server's state and its guards, ``app`` and
``server`` are the HTTP side (FastAPI + the static page in ``static/``), ``agreement`` and
``stats`` measure reviewers and their agreement, ``inputs`` reads a ``--input`` file of
suggestions.
"""
