"""`python -m stillhouse.cli ARGS`: the same as the `stillhouse` console script."""

from stillhouse.cli import app

app()
