"""Text health: empty, short, long, mojibake, markup, control characters, boilerplate."""

from __future__ import annotations

from audit_data import nusax_rows

from stillhouse.audit.text_health import (
    boilerplate_segments,
    check_text_health,
    markup_detail,
    mojibake_detail,
)
from stillhouse.data.records import Example


def test_mojibake_is_utf8_read_with_the_wrong_codec() -> None:
    damaged = "The cafÃ© was great, didnâ€™t expect it".encode().decode("utf-8")
    assert mojibake_detail("café déjà vu — ok") is None
    assert mojibake_detail("plain ascii") is None
    assert "cp1252" in (mojibake_detail(damaged) or "")
    assert "U+FFFD" in (mojibake_detail("bad \ufffd byte") or "")


def test_markup_remnants() -> None:
    assert markup_detail("great <br/> food") == "'<br/>'"
    assert markup_detail("fish &amp; chips") == "'&amp;'"
    assert markup_detail("3 < 4 and 5 > 2") is None


def test_boilerplate_is_a_sentence_repeated_across_many_texts() -> None:
    texts = [r["text"] for r in nusax_rows("english", count=200)]
    signed = [t + "\nSent from my phone, please excuse typos." for t in texts[:20]]
    found = boilerplate_segments(texts[20:] + signed)
    assert found == {"sent from my phone, please excuse typos.": 20}


def test_check_reports_each_problem_with_its_row() -> None:
    rows = nusax_rows("english", count=100)
    examples = [Example(r["id"], r["text"]) for r in rows]
    examples += [
        Example("short", "ok"),
        Example("long", "word " * 500),
        Example("moji", "NiÃ±o food"),
        Example("html", "<p>nice place</p>"),
        Example("ctrl", "tab\x07bell"),
    ]
    result = check_text_health(examples, ["data.jsonl:7: text field `text` is empty"])
    found = {(p.id, p.problem) for p in result.findings}
    assert found == {
        ("data.jsonl:7", "empty"),
        ("short", "very short"),
        ("long", "very long"),
        ("moji", "encoding damage"),
        ("html", "markup"),
        ("ctrl", "control characters"),
    }
    assert result.status == "problem"
    assert result.metrics["rows"] == 106
