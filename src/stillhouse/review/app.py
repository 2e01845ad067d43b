"""The review page's HTTP side: a FastAPI app over a :class:`~stillhouse.review.session.Review`.

Endpoints (JSON unless said otherwise; every POST needs the page's Origin and CSRF token)::

    GET  /                 the page (static/index.html); /login the login page; /static/* files
    POST /api/login        {"token"} → the session cookie (servers started with --token-file)
    GET  /api/session      the task (labels, descriptions, instructions), the reviewer, the CSRF
                           token; makes the session cookie where none is needed to log in
    POST /api/annotator    {"name"}: who reviews in this browser (unless --annotator fixed it)
    GET  /api/next         {"item", "progress", "history"}: what to show next (item null: done)
    GET  /api/item/{id}    the same for one example (to change one of the last decisions)
    POST /api/decide       {"id", "decision": answer|reject|skip|flag, "answer", "lead_time_ms",
                           "comment", "apply_to_similar"} → stored, then as /api/next
    POST /api/undo         take back the latest decision → that example, as /api/next
    GET  /api/conflicts    disagreements and flags not resolved yet
    POST /api/resolve      {"id", "answer", "lead_time_ms"} → a gold answer; the open conflicts
    GET  /api/stats        what `stillhouse review --stats --json` prints

Errors are ``{"error": message, "code": "E8xx"}`` with a fitting HTTP status.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict

from stillhouse.errors import Errors, StillhouseError, fail
from stillhouse.review.decisions import (
    Decision,
    check_name,
    human_annotator,
    parse_answer,
    reviewer_name,
)
from stillhouse.review.security import COOKIE, CSRF_HEADER, SECURITY_HEADERS, Guard, Visitor
from stillhouse.review.session import HISTORY, People, Review

STATUS = {
    "E880": 401,
    "E881": 401,
    "E882": 403,
    "E883": 403,
    "E889": 403,
    "E884": 404,
    "E887": 409,
    "E888": 409,
    "E885": 422,
    "E886": 422,
    "E868": 422,
}
# Requests a visitor may make before a session exists (or before logging in).
_OPEN = {"/", "/login", "/api/login", "/api/session", "/favicon.ico"}


def static_folder() -> Path:
    """The page's files shipped in the package (E870 when an install lost them)."""
    folder = Path(str(files("stillhouse.review") / "static"))
    if not (folder / "index.html").is_file():
        raise fail(Errors.E870, path=folder)
    return folder


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(_Body):
    token: str


class NameBody(_Body):
    name: str


class DecideBody(_Body):
    id: str
    decision: str
    answer: Any = None
    lead_time_ms: int = 0
    comment: str = ""
    apply_to_similar: bool = True


class ResolveBody(_Body):
    id: str
    answer: Any
    lead_time_ms: int = 0


def create_app(review: Review, guard: Guard, *, annotator: str | None = None) -> FastAPI:
    """The app. ``annotator``: a reviewer name fixed for every browser (``--annotator``);
    without it each browser session names its reviewer."""
    static = static_folder()
    app = FastAPI(title="stillhouse review", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=static), name="static")
    names: dict[str, str] = {}  # session → reviewer name
    lock = asyncio.Lock()  # one decision at a time: each reads, then writes the store
    task = review.task

    def error(problem: StillhouseError) -> JSONResponse:
        return JSONResponse(
            {"error": problem.message, "code": problem.code},
            status_code=STATUS.get(problem.code, 503),
        )

    @app.exception_handler(StillhouseError)
    async def _stillhouse_error(request: Request, problem: StillhouseError) -> JSONResponse:
        return error(problem)

    @app.exception_handler(RequestValidationError)
    async def _bad_body(request: Request, problem: RequestValidationError) -> JSONResponse:
        first = problem.errors()[0] if problem.errors() else {"msg": "malformed request"}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        detail = f"{where}: {first['msg']}" if where else str(first["msg"])
        return error(fail(Errors.E886, id="(request)", detail=detail))

    @app.middleware("http")
    async def guard_every_request(request: Request, call_next: Any) -> Response:
        host = request.headers.get("host")
        if not guard.host_allowed(host):
            expected = f"http://127.0.0.1:{guard.port}/"
            response: Response = error(fail(Errors.E889, host=host or "", expected=expected))
        else:
            response = await _checked(request, call_next)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def _checked(request: Request, call_next: Any) -> Response:
        path = request.url.path
        visitor = guard.visitor(request.cookies.get(COOKIE))
        request.state.visitor = visitor
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("origin")
            if not guard.origin_allowed(origin, request.headers.get("host")):
                expected = f"http://{request.headers.get('host', '')}"
                return error(
                    fail(Errors.E882, origin=origin or "nowhere (no Origin)", expected=expected)
                )
            if path != "/api/login" and (
                visitor is None or not guard.csrf_ok(visitor, request.headers.get(CSRF_HEADER))
            ):
                return error(fail(Errors.E883))
        if path.startswith("/static/") or path in _OPEN:
            return await call_next(request)
        if visitor is None or (guard.needs_login and not visitor.logged_in):
            return error(fail(Errors.E881))
        return await call_next(request)

    def visitor_of(request: Request) -> Visitor:
        visitor = request.state.visitor
        if visitor is None:
            raise fail(Errors.E881)
        return visitor

    def reviewer(visitor: Visitor) -> str:
        name = annotator or names.get(visitor.session)
        if name is None:
            raise fail(Errors.E888)
        return human_annotator(name)

    def view(
        who: str, visitor: Visitor, example_id: str | None, people: People | None = None
    ) -> dict[str, Any]:
        people = review.people() if people is None else people
        item = None if example_id is None else review.item(who, example_id, people)
        return {
            "item": item,
            "progress": asdict(review.progress(who, visitor.session, people)),
            "history": review.history(who, people),
        }

    def set_cookie(response: Response, value: str) -> None:
        response.set_cookie(COOKIE, value, httponly=True, samesite="strict", path="/", secure=False)

    @app.get("/", include_in_schema=False)
    async def page(request: Request) -> Response:
        visitor = request.state.visitor
        if guard.needs_login and (visitor is None or not visitor.logged_in):
            return RedirectResponse("/login", status_code=303)
        return FileResponse(static / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/login", include_in_schema=False)
    async def login_page() -> Response:
        return FileResponse(static / "login.html", media_type="text/html")

    @app.post("/api/login")
    async def login(body: LoginBody) -> Response:
        if not guard.check_token(body.token):
            await asyncio.sleep(0.5)  # slows down guessing
            raise fail(Errors.E880)
        _, value = guard.new_cookie(logged_in=True)
        response = JSONResponse({"ok": True})
        set_cookie(response, value)
        return response

    @app.get("/api/session")
    async def session(request: Request) -> Response:
        visitor = request.state.visitor
        fresh = None
        if visitor is None:
            if guard.needs_login:
                raise fail(Errors.E881)
            visitor, fresh = guard.new_cookie(logged_in=False)
        elif guard.needs_login and not visitor.logged_in:
            raise fail(Errors.E881)
        name = annotator or names.get(visitor.session)
        response = JSONResponse(
            {
                "csrf": guard.csrf_token(visitor),
                "session": visitor.session,
                "annotator": name,
                "annotator_fixed": annotator is not None,
                "task": {
                    "name": task.name,
                    "kind": task.kind,
                    "instructions": task.instructions,
                    "labels": [
                        {"name": label, "description": description}
                        for label, description in task.labels.items()
                    ],
                },
                "queue": review.queue.name,
                "overlap": review.queue.overlap,
                "history_limit": HISTORY,
                "login": guard.needs_login,
            }
        )
        if fresh is not None:
            set_cookie(response, fresh)
        return response

    @app.post("/api/annotator")
    async def name_reviewer(request: Request, body: NameBody) -> dict[str, Any]:
        visitor = visitor_of(request)
        if annotator is None:
            names[visitor.session] = check_name(body.name, "Reviewer name")
        return {"annotator": annotator or names[visitor.session]}

    @app.get("/api/next")
    async def next_item(request: Request) -> dict[str, Any]:
        visitor = visitor_of(request)
        who = reviewer(visitor)
        async with lock:
            people = review.people()
            return view(who, visitor, review.next_id(who, people), people)

    @app.get("/api/item/{example_id}")
    async def one_item(request: Request, example_id: str) -> dict[str, Any]:
        visitor = visitor_of(request)
        who = reviewer(visitor)
        review.entry(example_id)  # E884 when it is not in this review
        return view(who, visitor, example_id)

    @app.post("/api/decide")
    async def decide(request: Request, body: DecideBody) -> dict[str, Any]:
        visitor = visitor_of(request)
        who = reviewer(visitor)
        answer = None
        if body.decision == "answer":
            text = review.entry(body.id).example.text
            answer = parse_answer(body.answer, task.kind, task.label_names, body.id, text)
        decision = Decision(
            body.id, body.decision, answer, body.lead_time_ms, body.comment, body.apply_to_similar
        )
        async with lock:
            review.decide(who, visitor.session, decision)
            people = review.people()  # read once after the write, for all that is shown
            return view(who, visitor, review.next_id(who, people), people)

    @app.post("/api/undo")
    async def undo(request: Request) -> dict[str, Any]:
        visitor = visitor_of(request)
        who = reviewer(visitor)
        async with lock:
            example_id = review.undo(who, visitor.session)
            return view(who, visitor, review.next_id(who) or example_id)

    @app.get("/api/conflicts")
    async def conflicts(request: Request) -> dict[str, Any]:
        visitor_of(request)
        return {"conflicts": review.conflicts()}

    @app.post("/api/resolve")
    async def resolve(request: Request, body: ResolveBody) -> dict[str, Any]:
        visitor = visitor_of(request)
        who = reviewer(visitor)
        text = review.text_of(body.id)
        answer = parse_answer(body.answer, task.kind, task.label_names, body.id, text)
        async with lock:
            review.resolve(who, visitor.session, body.id, answer, body.lead_time_ms)
            return {"conflicts": review.conflicts(), "resolved_by": reviewer_name(who)}

    @app.get("/api/stats")
    async def stats(request: Request) -> dict[str, Any]:
        from stillhouse.review.stats import review_stats

        visitor_of(request)
        return review_stats(task).as_dict()

    return app
