"""`stillhouse review`: check the settings, build the queue, listen, serve the page.

Everything that can be refused is refused before the server starts (exit 2, one message): an
unknown queue (E860), a store that does not exist without --input (E861), a queue with nothing
in it (E862), a host beyond loopback without a token (E863), a bad token file (E864), a port in
use (E865) or an address that is not this machine's (E866), settings out of range (E867), a bad
reviewer name (E868), a store of another task (E205/E206), a changed text under a known id
(E207); nothing is written to the store before all of them passed.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stillhouse.data.store import Store
from stillhouse.errors import Errors, fail
from stillhouse.review.decisions import Suggestion, check_name
from stillhouse.review.inputs import ReviewInput, read_review_input
from stillhouse.review.queue import QUEUES, ReviewQueue, build_queue
from stillhouse.review.security import Guard, is_loopback, read_token
from stillhouse.review.session import Review
from stillhouse.task import Task

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
# What E862 advises, per queue, when the queue is empty.
EMPTY_ADVICE = {
    "audit": "run `stillhouse audit --task TASK --data FILE --out DIR` first, which fills it",
    "abstained": "`stillhouse serve` fills it with the texts its cascade abstains on",
    "privacy": "`stillhouse annotate` fills it with the texts that privacy mode `block` kept "
    "from a remote LLM",
    "injection": "`stillhouse annotate` fills it with the texts that [guard] injection `route` "
    "or `block` kept from the LLM",
    "disagreement": "no example has an LLM answer that differs from gold or a person's; try "
    "--queue auto",
    "uncertain": "no unsettled example has an LLM answer with probabilities; run `stillhouse "
    "annotate` first, or try --queue auto",
    "auto": "every stored example has a gold answer already; give new texts with --input FILE",
    "random": "every stored example has a gold answer already; give new texts with --input FILE",
}


@dataclass(frozen=True)
class ReviewSettings:
    """What `stillhouse review` was asked for (see its --help)."""

    queue: str = "auto"
    input_path: Path | None = None
    annotator: str | None = None
    overlap: float = 0.0
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token_file: Path | None = None


def check_settings(settings: ReviewSettings) -> tuple[str | None, str | None]:
    """The reviewer name (None: each browser names its own) and the token (None: no login);
    E860, E863, E864, E867, E868 for bad settings. Reads only the token file."""
    if settings.queue not in QUEUES:
        raise fail(Errors.E860, value=settings.queue)
    if not 0.0 <= settings.overlap <= 1.0:
        raise fail(
            Errors.E867,
            what="--overlap",
            expected="between 0 and 1 (the share of examples two reviewers label)",
            value=settings.overlap,
        )
    if not 0 <= settings.port <= 65535:
        raise fail(
            Errors.E867,
            what="--port",
            expected="0–65535 (0 takes a free port)",
            value=settings.port,
        )
    name = None if settings.annotator is None else check_name(settings.annotator)
    token = None if settings.token_file is None else read_token(settings.token_file)
    if token is None and not is_loopback(settings.host):
        raise fail(Errors.E863, host=settings.host)
    return name, token


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: a free port); E865 when the port is taken,
    E866 when this machine cannot listen there."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as error:
        raise fail(Errors.E866, host=host, port=port, detail=str(error)) from None
    sock = socket.socket(family, kind, proto)
    try:
        # a restarted server takes its port back at once (connections of the killed one linger)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise fail(Errors.E865, port=port, host=host, detail=error.strerror) from None
        raise fail(Errors.E866, host=host, port=port, detail=error.strerror or str(error)) from None
    sock.set_inheritable(True)
    return sock


def plan_review(task: Task, settings: ReviewSettings, given: ReviewInput | None) -> ReviewQueue:
    """The queue, read from the store without writing (E861 no store and no --input, E862 an
    empty queue, E205/E206 another task's store, E207 a changed text under a known id)."""
    suggestions: dict[str, Suggestion] = {} if given is None else given.suggestions
    rows = None if given is None else given.examples
    store = None
    if task.store_path.exists():
        store = Store.for_task(task, create=False)
    elif given is None:
        raise fail(Errors.E861, path=task.store_path)
    try:
        if store is not None and given is not None:
            store.check_examples(given.examples)
        queue = build_queue(
            task,
            store,
            settings.queue,
            rows=rows,
            suggestions=suggestions,
            overlap=settings.overlap,
        )
    finally:
        if store is not None:
            store.close()
    if not queue.order:
        advice = EMPTY_ADVICE[settings.queue]
        if given is not None:
            advice = f"none of the {len(given.examples)} rows of {given.path} is in it"
        raise fail(Errors.E862, queue=settings.queue, path=task.store_path, advice=advice)
    return queue


def run_review(
    task: Task,
    settings: ReviewSettings,
    *,
    announce: Callable[[str, ReviewQueue], None] = lambda url, queue: None,
) -> None:
    """Check everything, then serve the review page until Ctrl-C (``announce(url, queue)`` is
    called once the server listens)."""
    import uvicorn

    from stillhouse.review.app import create_app, static_folder

    name, token = check_settings(settings)
    static_folder()  # E870 before anything else happens
    given = None if settings.input_path is None else read_review_input(task, settings.input_path)
    if given is None and not task.store_path.exists():
        raise fail(Errors.E861, path=task.store_path)
    sock = listen(settings.host, settings.port)
    try:
        queue = plan_review(task, settings, given)
        store = Store.for_task(task, create=True)
    except BaseException:
        sock.close()
        raise
    try:
        if given is not None:
            store.add_examples(given.examples, task.kind)
        port = sock.getsockname()[1]
        guard = Guard(settings.host, port, token)
        app = create_app(Review(task, store, queue), guard, annotator=name)
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        announce(f"http://{host}:{port}/", queue)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        store.close()
        sock.close()
