"""task.toml: the template loads, and every mistake is one error naming the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from stillhouse.errors import StillhouseError
from stillhouse.task import STORE_FILE_NAME, init_task, load_task, parse_task

MINIMAL = 'name = "reviews"\n[labels]\npositive = "Pleased."\nnegative = "Unhappy."\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "task.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> StillhouseError:
    with pytest.raises(StillhouseError) as caught:
        load_task(path)
    return caught.value


def test_the_template_written_by_init_loads_as_a_three_label_classify_task(tmp_path: Path) -> None:
    written = init_task(tmp_path / "t")

    task = load_task(tmp_path / "t")

    assert written == tmp_path / "t" / "task.toml"
    assert task.name == "t"
    assert task.kind == "classify"
    assert task.label_names == ["positive", "negative", "neutral"]
    assert [shot.label for shot in task.examples] == ["positive", "negative"]


def test_init_refuses_a_folder_that_already_has_a_task(tmp_path: Path) -> None:
    init_task(tmp_path / "t")
    before = (tmp_path / "t" / "task.toml").read_text()

    with pytest.raises(StillhouseError) as caught:
        init_task(tmp_path / "t")

    assert caught.value.code == "E005"
    assert str(tmp_path / "t") in caught.value.message
    assert (tmp_path / "t" / "task.toml").read_text() == before


def test_a_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    error = load_error(tmp_path / "nowhere" / "task.toml")

    assert error.code == "E001"
    assert str(tmp_path / "nowhere" / "task.toml") in error.message
    assert "stillhouse init" in error.message


def test_invalid_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x"\nkind = \n')

    error = load_error(path)

    assert error.code == "E002"
    assert str(path) in error.message
    assert "line 2" in error.message


@pytest.mark.parametrize(
    ("mistake", "key", "expected"),
    [
        ("kind = 3\n" + MINIMAL, "kind", "'classify', 'multilabel' or 'spans'"),
        (MINIMAL + '[llm]\nn_ctx = "big"\n', "llm.n_ctx", "valid integer"),
        ('lables = { a = "A" }\n' + MINIMAL, "lables", "unknown key"),
        (MINIMAL + '[llm]\nmodle = "qwen2.5-0.5b"\n', "llm.modle", "unknown key"),
        ('name = "reviews"\n', "labels", "required but missing"),
        ('name = "reviews"\n[labels]\n', "labels", "add at least one label"),
    ],
    ids=[
        "kind-not-a-string",
        "n_ctx-not-an-int",
        "typo-top-level",
        "typo-in-llm",
        "no-labels",
        "empty-labels",
    ],
)
def test_a_wrong_or_unknown_key_is_named_with_what_is_expected(
    tmp_path: Path, mistake: str, key: str, expected: str
) -> None:
    path = write(tmp_path, mistake)

    error = load_error(path)

    assert error.code == "E003"
    assert str(path) in error.message
    assert f"`{key}`" in error.message
    assert expected in error.message
    assert "pydantic" not in error.message


def test_a_classify_task_needs_two_labels(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x"\n[labels]\nonly = "The one label."\n')

    error = load_error(path)

    assert error.code == "E003"
    assert str(path) in error.message
    assert "at least 2 labels" in error.message


def test_a_multilabel_task_may_have_a_single_label(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x"\nkind = "multilabel"\n[labels]\nonly = "The one label."\n')

    assert load_task(path).label_names == ["only"]


def test_an_example_with_an_unknown_label_is_named_by_its_position(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '[[examples]]\ntext = "Meh."\nlabel = "neutral"\n')

    error = load_error(path)

    assert error.code == "E003"
    assert "examples[0]" in error.message
    assert "'neutral'" in error.message
    assert "not one of the task's labels" in error.message


def test_a_multilabel_example_needs_labels_not_label(tmp_path: Path) -> None:
    text = MINIMAL.replace('name = "reviews"', 'name = "reviews"\nkind = "multilabel"')
    path = write(tmp_path, text + '[[examples]]\ntext = "Great."\nlabel = "positive"\n')

    error = load_error(path)

    assert error.code == "E003"
    assert "examples[0]" in error.message
    assert "needs `labels`" in error.message


def test_a_label_name_with_surrounding_spaces_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x"\n[labels]\n" positive " = "P."\nnegative = "N."\n')

    error = load_error(path)

    assert error.code == "E003"
    assert "' positive '" in error.message
    assert "surrounding spaces" in error.message


def test_path_is_not_a_key_a_task_file_may_set(tmp_path: Path) -> None:
    path = write(tmp_path, 'path = "/elsewhere/task.toml"\n' + MINIMAL)

    error = load_error(path)

    assert error.code == "E004"
    assert str(path) in error.message
    assert "`path`" in error.message


def test_parse_task_reports_every_problem_in_one_message(tmp_path: Path) -> None:
    with pytest.raises(StillhouseError) as caught:
        parse_task({"name": "x", "kind": 3, "lables": {}}, tmp_path / "task.toml")

    message = caught.value.message
    assert caught.value.code == "E003"
    assert "`kind`" in message and "`lables`" in message and "`labels`" in message


def test_the_fingerprint_is_stable_and_follows_the_content(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    first = load_task(path).fingerprint()

    assert load_task(path).fingerprint() == first
    write(tmp_path, MINIMAL.replace('"Pleased."', '"Pleased, or recommends it."'))
    assert load_task(path).fingerprint() != first


def test_the_fingerprint_does_not_depend_on_where_the_task_lives(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    assert (
        load_task(write(tmp_path / "a", MINIMAL)).fingerprint()
        == load_task(write(tmp_path / "b", MINIMAL)).fingerprint()
    )


def test_the_store_lives_next_to_task_toml(tmp_path: Path) -> None:
    init_task(tmp_path / "t")

    task = load_task(tmp_path / "t" / "task.toml")

    assert task.store_path == (tmp_path / "t" / STORE_FILE_NAME).resolve()
    assert task.store_path.parent == task.path.parent  # type: ignore[union-attr]


# --- what is at the path, byte-order marks, empty [input] field names ----------------------


@pytest.mark.parametrize("kind", ["folder", "device"])
def test_a_task_path_that_is_not_a_regular_file_says_what_it_is(tmp_path: Path, kind: str) -> None:
    if kind == "folder":  # a folder is read as the task.toml inside it; here that is a folder too
        (tmp_path / "task.toml").mkdir()
        path, shown, what = tmp_path, tmp_path / "task.toml", "a folder"
    else:
        path = shown = Path("/dev/null")
        what = "a device file"

    error = load_error(path)

    assert error.code == "E006"
    assert f"Task file {shown} is {what}, not a regular file" in error.message
    assert "does not exist" not in error.message


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "task.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode("utf-8"))

    assert load_task(path).label_names == ["positive", "negative"]


def test_a_utf16_task_file_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "task.toml"
    path.write_bytes(MINIMAL.encode("utf-16"))  # with its byte-order mark, as Notepad saves it

    error = load_error(path)

    assert error.code == "E002"
    assert "UTF-16" in error.message and "save it as UTF-8" in error.message


@pytest.mark.parametrize(
    ("table", "key", "fragment"),
    [
        ('text = ""', "input.text", "the field name is empty"),
        ('label = "  "', "input.label", "the field name is only spaces"),
        ('id = ""', "input.id", "the field name is empty"),
        ('meta = ["lang", ""]', "input.meta", "entry 2 is empty"),
    ],
)
def test_an_empty_input_field_name_is_named_by_its_key(
    tmp_path: Path, table: str, key: str, fragment: str
) -> None:
    path = write(tmp_path, f"{MINIMAL}[input]\n{table}\n")

    error = load_error(path)

    assert error.code == "E003"
    assert f"{path}: key `{key}`: {fragment}" in error.message


def test_the_cli_reads_a_task_with_a_bom_and_names_an_empty_input_field(
    tmp_path: Path, run_cli
) -> None:
    folder = tmp_path / "task"
    folder.mkdir()
    text = MINIMAL + '[input]\ntext = ""\n'
    (folder / "task.toml").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))

    result = run_cli(tmp_path, "gate", "--task", "task", "--results", "results.json")

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert (
        "[E003]" in result.stderr and "key `input.text`: the field name is empty" in result.stderr
    )
    assert "Invalid statement" not in result.stderr
