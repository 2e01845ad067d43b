"""Who may use a review server: loopback by default, a token beyond it (login cookie), Origin and
CSRF checks on every POST, the Host check against DNS rebinding; on a real server (uvicorn on a
free 127.0.0.1 port, in a thread of this process)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from review_helpers import distinct_texts, fill_classify, write_task

from stillhouse.errors import StillhouseError
from stillhouse.review.security import COOKIE
from stillhouse.review.server import ReviewSettings, check_settings, listen

TOKEN = "a-secret-token-of-32-characters!"


@contextmanager
def serving(task, token: str | None = None) -> Iterator[str]:
    """The review app of ``task`` on 127.0.0.1 (a free port) until the block ends; its URL."""
    import uvicorn

    from stillhouse.data.store import Store
    from stillhouse.review.app import create_app
    from stillhouse.review.queue import build_queue
    from stillhouse.review.security import Guard
    from stillhouse.review.session import Review

    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    holder: dict[str, uvicorn.Server] = {}
    ready = threading.Event()

    def run() -> None:
        # the store is opened in the thread that uses it (SQLite connections stay in one thread)
        with Store.for_task(task, create=True) as store:
            app = create_app(
                Review(task, store, build_queue(task, store)),
                Guard("127.0.0.1", port, token),
                annotator="tess",
            )
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
            holder["server"] = server
            ready.set()
            server.run(sockets=[sock])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(url + "/static/review.css", timeout=1)
                break
            except httpx.TransportError:
                threading.Event().wait(0.05)
        yield url
    finally:
        holder["server"].should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def task(tmp_path: Path):
    made = write_task(tmp_path / "task")
    fill_classify(made, distinct_texts(4))
    return made


def code(response: httpx.Response) -> str:
    return response.json().get("code", "")


def test_loopback_needs_no_token_but_every_post_needs_origin_and_csrf(task) -> None:
    with serving(task) as url, httpx.Client(base_url=url) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        session = client.get("/api/session").json()
        assert COOKIE in client.cookies and session["login"] is False
        item = client.get("/api/next").json()["item"]
        body = {"id": item["id"], "decision": "reject"}
        post: Callable[..., httpx.Response] = client.post
        assert code(post("/api/decide", json=body)) == "E882"  # no Origin
        assert (
            code(post("/api/decide", json=body, headers={"Origin": "http://evil.example"}))
            == "E882"
        )
        own = {"Origin": url}
        assert code(post("/api/decide", json=body, headers=own)) == "E883"  # no CSRF token
        wrong = {**own, "X-CSRF-Token": "0" * 32}
        assert code(post("/api/decide", json=body, headers=wrong)) == "E883"
        fine = post("/api/decide", json=body, headers={**own, "X-CSRF-Token": session["csrf"]})
        assert fine.status_code == 200 and fine.json()["history"][0]["decision"] == "reject"
        # a page elsewhere reaching the server through a DNS name that points at 127.0.0.1
        rebound = client.get("/api/next", headers={"Host": "evil.example"})
        assert rebound.status_code == 403 and code(rebound) == "E889"
        # a cookie not signed by this server is no session
        client.cookies.set(COOKIE, "abc.1.00000000000000000000000000000000")
        assert code(client.get("/api/next")) == "E881"


def test_a_token_server_wants_a_login_first(task) -> None:
    with serving(task, TOKEN) as url, httpx.Client(base_url=url) as client:
        front = client.get("/", follow_redirects=False)
        assert front.status_code == 303 and front.headers["location"] == "/login"
        assert code(client.get("/api/session")) == "E881"
        assert code(client.get("/api/next")) == "E881"
        own = {"Origin": url}
        refused = client.post("/api/login", json={"token": "not-the-token-at-all"}, headers=own)
        assert (
            refused.status_code == 401 and code(refused) == "E880" and COOKIE not in client.cookies
        )
        assert code(client.post("/api/login", json={"token": TOKEN})) == "E882"  # no Origin
        login = client.post("/api/login", json={"token": TOKEN}, headers=own)
        assert login.status_code == 200
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        session = client.get("/api/session").json()
        assert session["login"] is True and session["annotator"] == "tess"
        assert client.get("/api/next").json()["item"] is not None


def test_settings_beyond_loopback_need_a_good_token(tmp_path: Path) -> None:
    with pytest.raises(StillhouseError) as raised:
        check_settings(ReviewSettings(host="0.0.0.0"))
    assert raised.value.code == "E863"
    short = tmp_path / "short"
    short.write_text("tiny\n")
    for path in (short, tmp_path / "missing", tmp_path):
        with pytest.raises(StillhouseError) as raised:
            check_settings(ReviewSettings(host="0.0.0.0", token_file=path))
        assert raised.value.code == "E864" and str(path) in raised.value.message
    good = tmp_path / "token"
    good.write_text(TOKEN + "\nsecond line ignored\n")
    assert check_settings(ReviewSettings(host="0.0.0.0", token_file=good)) == (None, TOKEN)


def test_a_port_in_use_or_an_address_elsewhere_is_refused() -> None:
    taken = listen("127.0.0.1", 0)
    try:
        with pytest.raises(StillhouseError) as raised:
            listen("127.0.0.1", taken.getsockname()[1])
        assert raised.value.code == "E865" and str(taken.getsockname()[1]) in raised.value.message
    finally:
        taken.close()
    with pytest.raises(StillhouseError) as raised:
        listen("192.0.2.1", 0)  # TEST-NET-1: never an address of this machine
    assert raised.value.code == "E866"
