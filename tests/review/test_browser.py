"""The review page in a real browser (Debian's chromium through Playwright) against a real
`stillhouse review` server on a free 127.0.0.1 port: keyboard-only sessions, spans with the
mouse, two reviewers and their agreement, XSS, kill -9 of the server, screenshots."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from review_helpers import (
    LLM,
    ReviewServer,
    distinct_texts,
    fill_classify,
    fill_spans,
    human_answers,
    png_pixels,
    write_task,
)
from sklearn.metrics import cohen_kappa_score

from stillhouse.data.records import Annotation, Example, Span
from stillhouse.data.store import Store
from stillhouse.review.agreement import span_tokens

pytestmark = pytest.mark.slow

TOPICS = {
    f"topic_{name}": f"Texts about {name.replace('_', ' ')}."
    for name in (
        "card_arrival",
        "card_lost",
        "exchange_rate",
        "refund_request",
        "pin_blocked",
        "top_up_failed",
        "transfer_pending",
        "cash_withdrawal",
        "account_closed",
        "wrong_amount",
        "fee_charged",
        "apple_pay",
    )
}


def renders(page: Any) -> int:
    return int(page.get_attribute("body", "data-renders") or 0)


def shown(page: Any) -> str:
    return page.get_attribute("body", "data-item") or ""


def press(page: Any, key: str) -> str:
    """Press ``key`` and wait until the page rendered the next item; returns its id."""
    before = renders(page)
    page.keyboard.press(key)
    page.wait_for_selector(f"body[data-renders='{before + 1}']", state="attached")
    return shown(page)


def open_page(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", state="attached")


def llm_probs(task: Any) -> dict[str, dict[str, float]]:
    with Store.for_task(task, create=False) as store:
        return {a.example_id: a.probs for a in store.annotations(task.kind, LLM)}


def test_fifty_items_keyboard_only(tmp_path: Path, page: Any, artifacts: Path) -> None:
    task = write_task(tmp_path / "task", labels=TOPICS)
    fill_classify(task, distinct_texts(50), seed=11)
    probs = llm_probs(task)
    ranked = {i: sorted(p, key=lambda label: -p[label]) for i, p in probs.items()}
    expected: dict[str, tuple[str, str, str]] = {}  # id → (decision, answer, comment)
    skipped: list[str] = []
    with ReviewServer(task, "--annotator", "alice") as server:
        open_page(page, server.url)
        assert page.locator("#choices li.choice").count() == 9
        for step in range(50):
            current = shown(page)
            if step == 1:
                page.screenshot(path=str(artifacts / "item-1280x800.png"))
            move = step % 8
            if move == 0:
                press(page, "Enter")
                expected[current] = ("accept", ranked[current][0], "")
            elif move == 1:
                press(page, "a")
                expected[current] = ("accept", ranked[current][0], "")
            elif move == 2:
                press(page, "2")  # the second most probable label
                expected[current] = ("correct", ranked[current][1], "")
            elif move == 3:
                # the picker: the least probable label, found by typing part of its name
                wanted = ranked[current][-1]
                page.keyboard.press("/")
                page.keyboard.type(wanted.removeprefix("topic_").replace("_", " ")[:9])
                assert page.locator("#picker-list li.pick:not([hidden])").count() >= 1
                press(page, "Enter")
                expected[current] = ("correct", wanted, "")
            elif move == 4:
                press(page, "x")
                expected[current] = ("reject", "", "")
            elif move == 5:
                press(page, " ")
                skipped.append(current)
            elif move == 6:
                page.keyboard.press("f")
                page.keyboard.type("not about banking at all")
                press(page, "Enter")
                expected[current] = ("flag", "", "not about banking at all")
            else:
                # a wrong answer, taken back with backspace, then the right one with 3
                press(page, "4")
                assert press(page, "Backspace") == current
                assert page.locator("#reasons .chip.previous").count() == 0
                press(page, "3")
                expected[current] = ("correct", ranked[current][2], "")
        # the skipped ones come back after everything else; undo with z, then accept
        for current in skipped:
            assert shown(page) == current
            press(page, "Enter")
            expected[current] = ("accept", ranked[current][0], "")
        assert shown(page) == "" and page.locator("#done").is_visible()
        last = skipped[-1]
        assert press(page, "z") == last
        press(page, "1")
        expected[last] = ("accept", ranked[last][0], "")  # key 1: the most probable label
        assert page.locator("#history li").count() == 10
        assert page.errors == []
    stored = human_answers(task, "alice")
    assert len(stored) == 50 == len(expected)
    sessions = set()
    for example_id, (decision, answer, comment) in expected.items():
        annotation = stored[example_id]
        assert annotation.info["decision"] == decision, example_id
        assert annotation.answer == answer, example_id
        assert annotation.info.get("comment", "") == comment
        assert annotation.info["lead_time_ms"] >= 0
        assert annotation.info["suggestion"]["answer"] == ranked[example_id][0]
        assert annotation.info["suggestion"]["score"] == pytest.approx(
            probs[example_id][ranked[example_id][0]], abs=1e-5
        )
        sessions.add(annotation.info["session"])
    assert len(sessions) == 1


def test_screenshots_desktop_and_phone(tmp_path: Path, browser: Any, artifacts: Path) -> None:
    # no store yet: --input brings the texts and, in a .jsonl, the suggestions
    task = write_task(tmp_path / "task")
    texts = tmp_path / "texts.jsonl"
    probs = {"positive": 0.55, "neutral": 0.3, "negative": 0.15}
    rows = [
        {"id": f"in{n}", "text": text, "probs": probs} for n, text in enumerate(distinct_texts(5))
    ]
    texts.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    with ReviewServer(task, "--annotator", "alice", "--input", str(texts)) as server:
        for name, size in (("desktop", (1280, 800)), ("phone", (390, 844))):
            context = browser.new_context(viewport={"width": size[0], "height": size[1]})
            page = context.new_page()
            open_page(page, server.url)
            assert "input:texts.jsonl" in page.inner_text("#suggestion")
            assert page.inner_text("#choices li.suggested").startswith("1")
            shot = page.screenshot()
            (artifacts / f"screenshot-{name}.png").write_bytes(shot)
            pixels = png_pixels(shot)
            assert pixels.shape[:2] == (size[1], size[0])
            background = np.median(pixels.reshape(-1, 3), axis=0)
            ink = np.abs(pixels - background).sum(axis=2) > 60
            assert ink.mean() > 0.01, f"{name}: the screenshot is (nearly) blank"
            layout = page.evaluate(
                """() => {
                  const box = (id) => document.getElementById(id).getBoundingClientRect().toJSON();
                  return {scroll: document.documentElement.scrollWidth, width: innerWidth,
                          text: box("text"), choices: box("choices"), actions: box("actions"),
                          side: box("side")};
                }"""
            )
            assert layout["scroll"] <= layout["width"], f"{name}: the page scrolls sideways"
            for part in ("text", "choices", "actions"):
                assert layout[part]["width"] > 0.5 * min(size[0], 800) - 40
                assert layout[part]["left"] >= 0 and layout[part]["right"] <= size[0]
            assert layout["text"]["bottom"] <= layout["choices"]["top"] + 1
            if name == "desktop":
                assert layout["side"]["left"] >= layout["text"]["right"]  # beside the item
            else:
                assert layout["side"]["top"] >= layout["actions"]["bottom"]  # below it
            context.close()
    with Store.for_task(task, create=False) as store:
        assert [e.id for e in store.examples(task.kind)] == [row["id"] for row in rows]
        assert all(e.gold is None for e in store.examples(task.kind))


def test_spans_with_mouse_and_keyboard(tmp_path: Path, page: Any) -> None:
    labels = {"PER": "a person", "LOC": "a place", "ORG": "an organisation"}
    task = write_task(tmp_path / "task", kind="spans", labels=labels)
    texts = [
        "Anna flew from Berlin to Paris with Lufthansa",
        "Bob works for Acme in Oslo",
        "Clara visited Rome",
    ]
    suggested = [
        [Span(0, 4, "PER", "Anna"), Span(36, 45, "PER", "Lufthansa")],
        [Span(0, 3, "PER", "Bob")],
        [Span(0, 5, "PER", "Clara"), Span(14, 18, "LOC", "Rome")],
    ]
    fill_spans(task, texts, suggested)
    with ReviewServer(task, "--annotator", "ann") as server:
        open_page(page, server.url)
        answers = {}
        for _ in range(3):
            current = shown(page)
            text = texts[int(current[2:])]
            if text.startswith("Anna"):
                # mouse: drag over "Berlin", key 2 (LOC); the same for "Paris"
                for word in ("Berlin", "Paris"):
                    token = page.locator("#text .tok", has_text=word).first.bounding_box()
                    page.mouse.move(token["x"] + 1, token["y"] + token["height"] / 2)
                    page.mouse.down()
                    page.mouse.move(
                        token["x"] + token["width"] - 1, token["y"] + token["height"] / 2, steps=3
                    )
                    page.mouse.up()
                    page.keyboard.press("2")
                # the wrong suggestion (PER): click it away, select the name again, key 3 (ORG)
                page.locator("mark.ent", has_text="Lufthansa").click()
                first = page.locator("#text .tok", has_text="Lufthansa").bounding_box()
                page.mouse.move(first["x"] + 1, first["y"] + 3)
                page.mouse.down()
                page.mouse.move(first["x"] + first["width"] - 2, first["y"] + 3, steps=3)
                page.mouse.up()
                page.keyboard.press("3")
                assert page.locator("mark.ent").count() == 4
                answers[current] = [
                    (0, 4, "PER"),
                    (15, 21, "LOC"),
                    (25, 30, "LOC"),
                    (36, 45, "ORG"),
                ]
            elif text.startswith("Bob"):
                # keyboard: the caret to "Acme" (token 3), 3 = ORG; shift+→ selects "in Oslo",
                # 2 = LOC; Home, then Delete removes the suggested "Bob" under the caret
                for _ in range(3):
                    page.keyboard.press("ArrowRight")
                page.keyboard.press("3")  # the caret moves on to "in"
                page.keyboard.press("Shift+ArrowRight")
                page.keyboard.press("2")  # "in Oslo" as LOC
                page.keyboard.press("Home")
                page.keyboard.press("Delete")
                answers[current] = [(14, 18, "ORG"), (19, 26, "LOC")]
            else:
                answers[current] = [(0, 5, "PER"), (14, 18, "LOC")]
                press(page, "a")
                continue
            press(page, "Enter")
        assert page.locator("#done").is_visible() and page.errors == []
    stored = human_answers(task, "ann")
    assert {i: [(s.start, s.end, s.label) for s in a.answer] for i, a in stored.items()} == answers
    assert (
        stored["sp002"].info["decision"] == "accept"
        and stored["sp000"].info["decision"] == "correct"
    )
    assert stored["sp000"].answer[3].text == "Lufthansa"


def test_spans_after_emoji_keep_python_character_offsets(tmp_path: Path, page: Any) -> None:
    # JS strings count UTF-16 units (an emoji is two), the store counts code points: a span after
    # an emoji must be shown on its word and stored at the offsets Python gives it
    labels = {"PER": "a person", "LOC": "a place"}
    task = write_task(tmp_path / "task", kind="spans", labels=labels)
    text = "\U0001f600\U0001f389 Dana met Eve in K\u00f6ln \U0001f680 today"
    fill_spans(task, [text], [[Span(3, 7, "PER", "Dana")]])
    with ReviewServer(task, "--annotator", "ann") as server:
        open_page(page, server.url)
        assert page.locator("mark.ent").all_inner_texts()[0].startswith("Dana")
        for _ in range(4):  # the caret from the first emoji to "Eve"
            page.keyboard.press("ArrowRight")
        page.keyboard.press("1")  # Eve = PER; the caret moves on to "in"
        page.keyboard.press("ArrowRight")
        page.keyboard.press("2")  # Köln = LOC
        press(page, "Enter")
        assert page.locator("#done").is_visible() and page.errors == []
    (answer,) = human_answers(task, "ann").values()
    assert [(s.start, s.end, s.label, text[s.start : s.end]) for s in answer.answer] == [
        (3, 7, "PER", "Dana"),
        (12, 15, "PER", "Eve"),
        (19, 23, "LOC", "K\u00f6ln"),
    ]


def test_the_page_selects_the_tokens_agreement_compares(tmp_path: Path, page: Any) -> None:
    # U+0558 (Armenian, Unicode 16) is a letter to the browser's regex but not to this Python's
    # \w: with its own tokeniser the page would make "Dana\u0558x" one token where agreement
    # counts three. The page gets the server's tokens instead
    task = write_task(tmp_path / "task", kind="spans", labels={"PER": "a person"})
    text = "Dana\u0558x met \U0001f600 Eve_2 \u0c5cok."
    fill_spans(task, [text], [[]])
    with ReviewServer(task, "--annotator", "ann") as server:
        open_page(page, server.url)
        shown_tokens = page.locator("#text .tok").all_inner_texts()
        browser_words = page.evaluate(
            "t => t.match(/[\\p{L}\\p{N}_]+|[^\\s\\p{L}\\p{N}_]/gu)", text
        )
        assert page.errors == []
    assert shown_tokens == [text[start:end] for start, end in span_tokens(text)]
    assert browser_words != shown_tokens  # the case is real in this browser


def test_two_reviewers_blind_overlap_kappa_and_conflicts(tmp_path: Path, browser: Any) -> None:
    task = write_task(tmp_path / "task")
    fill_classify(task, distinct_texts(16), seed=5)
    rng = random.Random(0)
    keys = {name: {} for name in ("alice", "bob")}
    with ReviewServer(task, "--overlap", "0.5") as server:
        pages = {}
        for name in ("alice", "bob"):
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            open_page(page, server.url)
            assert page.locator("#name").is_visible()  # no --annotator: each names themself
            page.keyboard.type(name)
            before = renders(page)
            page.keyboard.press("Enter")
            page.wait_for_selector(f"body[data-renders='{before + 1}']", state="attached")
            pages[name] = page
        # they work at the same time, taking turns key by key
        while any(shown(page) for page in pages.values()):
            for name, page in pages.items():
                current = shown(page)
                if not current:
                    continue
                assert "alice" not in page.inner_text("#item") and "bob" not in page.inner_text(
                    "#item"
                )
                key = str(rng.choice([1, 1, 2, 3]) if name == "bob" else 1 + int(current[2:]) % 3)
                keys[name][current] = key
                press(page, key)
        # alice settles the conflicts: the number key makes that label gold
        alice = pages["alice"]
        alice.keyboard.press("c")
        alice.wait_for_selector("#mode-note:not([hidden])")
        conflicts = alice.locator("#mode-note").inner_text()
        resolved = 0
        while shown(alice) and resolved < 20:
            press(alice, "2")
            resolved += 1
    stats = subprocess.run(
        [
            sys.executable,
            "-m",
            "stillhouse.cli",
            "review",
            "--task",
            str(task.path),
            "--stats",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(stats.stdout)
    alice_answers, bob_answers = human_answers(task, "alice"), human_answers(task, "bob")
    both = sorted(set(alice_answers) & set(bob_answers))
    assert both and set(alice_answers) | set(bob_answers) == {f"ex{n:03d}" for n in range(16)}
    from stillhouse.review.queue import is_overlap

    assert both == [i for i in sorted(alice_answers | bob_answers) if is_overlap(i, 0.5)]
    first = [alice_answers[i].answer for i in both]
    second = [bob_answers[i].answer for i in both]
    assert found["agreement"]["items"] == len(both)
    assert found["agreement"]["kappa"]["value"] == pytest.approx(cohen_kappa_score(first, second))
    disagreeing = sum(a != b for a, b in zip(first, second, strict=True))
    assert f"of {disagreeing}" in conflicts and resolved == disagreeing
    with Store.for_task(task, create=False) as store:
        gold = store.annotations(task.kind, "gold")
    assert len(gold) == disagreeing and {a.answer for a in gold} == {"neutral"}
    assert found["resolved"] == disagreeing and found["conflicts"] == 0
    assert {row["name"]: row["done"] for row in found["reviewers"]} == {
        "alice": len(alice_answers),
        "bob": len(bob_answers),
    }


XSS = [
    "<script>window.__xss = 1</script>",
    '<img src=x onerror="window.__xss = 2">',
    '"><svg onload="window.__xss = 3">',
]


def test_xss_in_texts_labels_and_names_is_shown_as_text(tmp_path: Path, browser: Any) -> None:
    labels = {XSS[1]: XSS[0], XSS[2]: "fine", "plain": XSS[2]}
    task = write_task(tmp_path / "task", labels=labels, name="xss", instructions=XSS[1])
    fill_classify(task, XSS, seed=1)
    token = tmp_path / "token"
    token.write_text("correct horse battery staple\n")
    with ReviewServer(task, "--token-file", str(token), "--overlap", "1") as server:
        # no CSP in this browser: the page alone must keep the markup from running
        context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.url)
        assert page.url.endswith("/login")
        page.fill("#token", "wrong token, sixteen characters")
        page.keyboard.press("Enter")
        page.wait_for_selector("#login-error:not([hidden])")
        page.fill("#token", "correct horse battery staple")
        page.keyboard.press("Enter")
        page.wait_for_url(server.url)
        page.wait_for_selector("#name:not([hidden])")
        page.keyboard.type(XSS[2])
        before = renders(page)
        page.keyboard.press("Enter")
        page.wait_for_selector(f"body[data-renders='{before + 1}']", state="attached")
        assert page.inner_text("#annotator") == XSS[2]
        seen = [page.inner_text("#text")]
        flagged = shown(page)
        page.keyboard.press("f")  # a flag whose comment is markup too
        page.keyboard.type(XSS[0])
        press(page, "Enter")
        while shown(page):
            seen.append(page.inner_text("#text"))
            page.keyboard.press("?")
            assert XSS[0] in page.inner_text("#help") and XSS[1] in page.inner_text("#help")
            page.keyboard.press("Escape")
            page.keyboard.press("/")
            page.keyboard.type("img")
            press(page, "Enter")  # picks the label named like an <img>
        assert sorted(seen) == sorted(XSS)
        assert XSS[0] in page.inner_text("#history")
        page.keyboard.press("c")  # the conflicts view shows the flagged text and its comment
        page.wait_for_selector("#mode-note:not([hidden])")
        assert page.inner_text("#text") in XSS and XSS[0] in page.inner_text("#reasons")
        markup = page.evaluate(
            "() => [window.__xss, document.querySelectorAll('img, svg, script:not([src])').length]"
        )
        assert markup == [None, 0] and errors == []
        context.close()
    stored = human_answers(task, XSS[2])
    assert len(stored) == 3 and stored[flagged].info["comment"] == XSS[0]
    assert {a.answer for a in stored.values() if a.info["decision"] != "flag"} == {XSS[1]}


def test_kill_9_mid_session_loses_nothing(tmp_path: Path, page: Any) -> None:
    task = write_task(tmp_path / "task")
    fill_classify(task, distinct_texts(12), seed=9)
    server = ReviewServer(task, "--annotator", "kim").start()
    try:
        open_page(page, server.url)
        decided = []
        for key in "123x2":
            decided.append(shown(page))
            press(page, key)
        server.kill()
        assert human_answers(task, "kim").keys() == set(decided)
        server.start()  # the same port: the open page carries on without a reload
        for key in "31":
            decided.append(shown(page))
            press(page, key)
        # one of the last 10, decided before the kill, changed from the side list
        oldest = page.locator("#history li").last
        assert page.locator("#history li").count() == 7
        before = renders(page)
        oldest.click()
        page.wait_for_selector(f"body[data-renders='{before + 1}']", state="attached")
        assert shown(page) == decided[0]
        assert "you answered before: positive" in page.inner_text("#reasons")
        press(page, "3")
        assert page.errors == []
    finally:
        server.stop()
    stored = human_answers(task, "kim")
    assert set(stored) == set(decided)
    assert len(stored) == 7 and sum(a.info["decision"] == "reject" for a in stored.values()) == 1
    assert stored[decided[0]].answer == "negative" and stored[decided[1]].answer == "neutral"
    assert len({a.info["session"] for a in stored.values()}) == 2  # a new session after restart
    with sqlite3.connect(task.store_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_multilabel_number_keys_toggle_and_enter_submits(tmp_path: Path, page: Any) -> None:
    labels = {"food": "the food", "service": "the staff", "price": "what it cost", "place": "where"}
    task = write_task(tmp_path / "task", kind="multilabel", labels=labels)
    texts = distinct_texts(3, seed=4)
    suggested = [("food", "price"), ("service",), ()]
    probabilities = [
        {"food": 0.9, "service": 0.2, "price": 0.6, "place": 0.1},
        {"food": 0.3, "service": 0.7, "price": 0.2, "place": 0.4},
        {"food": 0.1, "service": 0.2, "price": 0.3, "place": 0.4},
    ]
    examples = [Example(id=f"ml{n}", text=text) for n, text in enumerate(texts)]
    with Store.for_task(task, create=True) as store:
        store.add_examples(examples, task.kind)
        store.add_annotations(
            [
                Annotation(e.id, LLM, answer, probs, {}, time.time())
                for e, answer, probs in zip(examples, suggested, probabilities, strict=True)
            ],
            task.kind,
        )
    expected = {}
    with ReviewServer(task, "--annotator", "mo") as server:
        open_page(page, server.url)
        while current := shown(page):
            given = set(suggested[int(current[2:])])
            if current == "ml0":
                expected[current] = ("accept", tuple(sorted(given, key=list(labels).index)))
            elif current == "ml1":
                page.keyboard.press("1")  # tick food
                page.keyboard.press("2")  # untick service
                assert page.locator("#choices li.chosen").count() == 1
                expected[current] = ("correct", ("food",))
            else:
                page.keyboard.press("/")
                page.keyboard.type("cost")  # the description finds it
                page.keyboard.press("Enter")
                page.keyboard.press("4")
                expected[current] = ("correct", ("price", "place"))
            press(page, "Enter")
        assert page.errors == []
    stored = human_answers(task, "mo")
    assert {i: (a.info["decision"], tuple(a.answer)) for i, a in stored.items()} == expected


def test_a_decision_applies_to_the_similar_texts_unless_g_says_this_one_only(
    tmp_path: Path, page: Any
) -> None:
    task = write_task(tmp_path / "task")
    first, second, other = distinct_texts(3, seed=9)
    texts = [
        first,
        first.upper(),  # near copies of `first` (case and punctuation differ)
        first + "!!",
        second,
        second.replace(":", ";"),  # a near copy of `second`
        other,
    ]
    fill_classify(task, texts, seed=3)
    probs = llm_probs(task)
    trio, pair = {"ex000", "ex001", "ex002"}, {"ex003", "ex004"}
    with ReviewServer(task, "--annotator", "ana") as server:
        open_page(page, server.url)
        seen, notes = [], {}
        while current := shown(page):
            seen.append(current)
            similar = page.locator("#similar")
            notes[current] = page.inner_text("#similar-note") if similar.is_visible() else ""
            if current in pair and not pair & set(seen[:-1]):  # the pair's first: this one only
                page.keyboard.press("g")
                assert "applies to this one only" in page.inner_text("#similar-note")
            press(page, "Enter")
        assert page.errors == []
    stored = human_answers(task, "ana")
    assert set(stored) == {f"ex{n:03d}" for n in range(6)}
    # the trio: its first carried the other two, one Enter answered all three, none came back
    (leader,) = trio & set(seen)
    assert "+2 similar" in notes[leader] and "applies to all of them" in notes[leader]
    best = max(probs[leader], key=probs[leader].__getitem__)
    assert {stored[i].answer for i in trio} == {best}  # the leader's suggestion, for all
    decisions = {stored[i].info.get("decision_id") for i in trio}
    assert len(decisions) == 1 and None not in decisions  # one decision, three annotations
    # the pair with g: its second came back on its own and was answered on its own
    pair_seen = [i for i in seen if i in pair]
    assert len(pair_seen) == 2 and "+1 similar" in notes[pair_seen[0]]
    assert stored["ex003"].info.get("decision_id") != stored["ex004"].info.get("decision_id")
