"""The `stillhouse` command: thin typer commands over the library's functions; no logic here.

One module per command (as in spaCy's ``spacy/cli/``); importing it registers its command on
``app``. The imports below are the one list that assembles the CLI, in ``stillhouse --help`` order.
"""

from __future__ import annotations

# Import order is registration order, which is `stillhouse --help` order: keep isort off it.
# isort: off
from stillhouse.cli import (  # noqa: F401  (imported to register their commands)
    init,
    annotate,
    export,
    models,
    demo,
    evaluate,
    gate,
    train,
    predict,
    audit,
    serve,
    monitor,
    review,
    guard,
    labels,
)

# isort: on
from stillhouse.cli._common import app

__all__ = ["app"]
