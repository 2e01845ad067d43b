"""The options every command that can run on Ray shares: --engine, --ray-address, --ray-workers."""

from __future__ import annotations

from typing import Annotated

import typer

EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="local: run in this process | ray: run the models in Ray actors (one model each); "
        "this process still writes every output.",
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="With --engine ray: auto (this machine's cluster), ray://HOST:PORT or HOST:PORT "
        "(default: start a local Ray instance for the run).",
    ),
]
RayWorkersOption = Annotated[
    int | None,
    typer.Option(
        "--ray-workers",
        min=1,
        help="With --engine ray: actors to start, one model each (default: one per CPU of the "
        "cluster, divided by --threads).",
    ),
]
