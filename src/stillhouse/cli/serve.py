"""`stillhouse serve`: the task's systems as an HTTP service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from stillhouse.cli._common import TaskOption, app, clean_errors, out
from stillhouse.cli._engine import EngineOption, RayAddressOption

STOPPED = "stopped: requests in flight were answered and the prediction log was written."


@app.command()
@clean_errors(interrupted=STOPPED)
def serve(
    task: TaskOption,
    system: Annotated[
        list[str] | None,
        typer.Option(
            "--system",
            "-s",
            help="NAME=model:DIR, NAME=llm:MODEL or NAME=cascade:STAGE@T,...,STAGE\\[@A] as "
            "evaluate takes them (not preds:); repeatable, the first is the default. Without "
            "it: the task's \\[serve.systems].",
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; other than loopback needs a token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    threads: Annotated[
        int | None,
        typer.Option(
            help="Intra-op threads per worker (ONNX Runtime, llama.cpp, BLAS, torch); default: "
            "cores // workers − 1 (a core for each worker's event loop), at least 1; "
            "workers × threads ≤ cores."
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="File holding the bearer token every endpoint but /healthz and /readyz "
            "requires (default: $STILLHOUSE_TOKEN if set, else no token)."
        ),
    ] = None,
    max_batch: Annotated[
        int | None,
        typer.Option(help="Most texts per model call (default: \\[serve].max_batch, 64)."),
    ] = None,
    max_wait_ms: Annotated[
        float | None,
        typer.Option(
            help="Most a batch waits for requests already arriving; a lone request never waits "
            "(default: \\[serve].max_wait_ms, 2)."
        ),
    ] = None,
    log_predictions: Annotated[
        str | None,
        typer.Option(
            help="all, none or sample:P (a share, e.g. sample:0.1); abstained texts always go "
            "to the review queue (default: \\[serve].log_predictions, all)."
        ),
    ] = None,
    log_texts: Annotated[
        bool,
        typer.Option(
            "--log-texts",
            help="Store the texts themselves in the prediction log, not only their hashes "
            "(default: \\[serve].log_texts, false).",
        ),
    ] = False,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure", help="Allow a non-loopback --host without a token (anyone may call)."
        ),
    ] = False,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Print a line per request (costs speed).")
    ] = False,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
    replicas: Annotated[
        int | None,
        typer.Option(min=1, help="With --engine ray: Ray Serve replicas, each with every system."),
    ] = None,
    autoscale: Annotated[
        str | None,
        typer.Option(
            help="With --engine ray: MIN-MAX replicas, scaled by Ray Serve with the load (e.g. 1-4)."
        ),
    ] = None,
) -> None:
    """Serve the task's systems over HTTP: POST /v1/predict, GET /v1/systems, /healthz, /readyz,
    /metrics, /openapi.json, POST /v1/admin/reload (or SIGHUP)."""
    from stillhouse.errors import Errors, fail
    from stillhouse.output_guard import Output, check_outputs
    from stillhouse.scale.engine import make_engine
    from stillhouse.serve.prediction_log import PredictionLog
    from stillhouse.serve.server import bind, describe_start, run_server, url_of
    from stillhouse.serve.settings import ServeSettings, plan_threads, read_token
    from stillhouse.serve.systems import check_specs, served_specs
    from stillhouse.task import load_task

    chosen = make_engine(engine, ray_address)
    if not chosen.is_ray:
        for option, value in (("--replicas", replicas), ("--autoscale", autoscale)):
            if value is not None:
                raise fail(Errors.E954, option=option)
    elif workers != 1:
        raise fail(Errors.E959, option="--workers (use --replicas)")
    spec = load_task(task)
    settings = ServeSettings.from_task(
        spec,
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        token=read_token(token_file),
        insecure=insecure,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        log_predictions=log_predictions,
        log_texts=log_texts or None,  # None: the task's [serve].log_texts
        access_log=access_log,
    ).check()
    if chosen.is_ray:
        from stillhouse.scale.serve import choose_replicas, run_on_ray

        count = choose_replicas(replicas, autoscale)
        systems = served_specs(spec, system or [])
        check_specs(systems, spec)
        settings = settings.with_values(threads=threads or 1)
        run_on_ray(spec, systems, settings, count, chosen, lambda line: out.print(escape(line)))
        return
    plan = plan_threads(settings.workers, settings.threads)
    settings = settings.with_values(threads=plan.threads)
    systems = served_specs(spec, system or [])
    inputs = check_specs(systems, spec)
    check_outputs([Output("the prediction log (the task's store)", spec.store_path)], inputs)
    sock = bind(settings.host, settings.port)
    log = PredictionLog(spec, policy=settings.log_predictions, log_texts=settings.log_texts)
    try:
        for line in describe_start(spec, systems, settings, url_of(sock), plan):
            out.print(escape(line), highlight=False, soft_wrap=True)
        if settings.workers > 1:
            log.close()  # each worker keeps its own
        run_server(spec, systems, settings, sock, plan, prediction_log=log)
    finally:
        log.close()
        sock.close()
