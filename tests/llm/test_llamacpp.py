"""The in-process llama.cpp backend on the real small model: label scores equal an independent
token-by-token evaluation, whatever the label trie, grouping or cache history."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from stillhouse.errors import StillhouseError
from stillhouse.llm.answer import softmax
from stillhouse.llm.backend import BackendSettings, open_backend
from stillhouse.llm.backends.llamacpp import LlamaCppBackend
from stillhouse.llm.prompts import ChatPrompt, build_prompt, span_schema
from stillhouse.task import Task

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"
SENTIMENT = Task(
    name="sentiment",
    instructions="Classify the sentiment of the text.",
    labels={
        "positive": "The writer is pleased.",
        "neutral": "No clear opinion.",
        "negative": "The writer is unhappy.",
    },
)
# Labels that share their first tokens, so the trie has shared nodes and branches at depth 2+.
BANKING = Task(
    name="banking",
    instructions="Classify the customer's request.",
    labels={
        name: ""
        for name in (
            "card_arrival",
            "card_linking",
            "card_delivery_estimate",
            "top_up_failed",
            "top_up_limits",
            "exchange_rate",
        )
    },
)
BANKING_TEXTS = (
    "My new card still has not arrived, when will it come?",
    "Why did my top up fail this morning?",
    "What rate do you use to exchange euros to pounds?",
    "How do I link the card I got to the app?",
    "Is there a maximum amount I can top up?",
)


@pytest.fixture(scope="module")
def backend() -> Iterator[LlamaCppBackend]:
    opened = open_backend(MODEL, BackendSettings(threads=2, n_ctx=2048, score_tolerance=0.0))
    assert isinstance(opened, LlamaCppBackend)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def reference_model(backend: LlamaCppBackend) -> Iterator[llama_cpp.Llama]:
    """A second, plain copy of the model, evaluated one sequence at a time.

    It uses flash attention like the backend's scoring context (llama.cpp's default on CPU):
    without it, llama.cpp's CPU attention rounds differently with the number of tokens and cache
    cells in a batch, by up to ~1 nat on this model, which would hide real errors.
    """
    model = llama_cpp.Llama(
        model_path=str(backend.path),
        n_ctx=2048,
        n_threads=2,
        n_threads_batch=2,
        flash_attn=True,
        n_ubatch=63,  # as the scoring context: the attention kernel changes from 64 tokens on
        verbose=False,
    )
    yield model
    model.close()


def _next_token_log_probs(model: llama_cpp.Llama) -> np.ndarray:
    logits = np.ctypeslib.as_array(
        llama_cpp.llama_get_logits_ith(model.ctx, -1), shape=(model.n_vocab(),)
    ).astype(np.float64)
    top = logits.max()
    return logits - (top + np.log(np.exp(logits - top).sum()))


def reference_scores(
    backend: LlamaCppBackend, model: llama_cpp.Llama, prompt: ChatPrompt, labels: Sequence[str]
) -> np.ndarray:
    """Sum of log P(token | everything before) over each label's continuation (its tokens, plus
    end-of-turn where it starts another label), evaluating one token at a time after the prompt.

    The prompt goes in the chunks the backend decodes (the fixed part, then the text): llama.cpp's kernels round slightly differently
    by batch shape.
    """
    fixed, variable = backend.prompt_tokens(prompt)
    prompt_length = len(fixed) + len(variable)
    model.reset()
    model.eval(fixed)
    model.eval(variable)
    after_prompt = _next_token_log_probs(model)
    scores = []
    for continuation in backend.label_continuations(labels):
        model.n_tokens = prompt_length  # the next eval drops everything after the prompt
        log_probs, total = after_prompt, 0.0
        for position, token in enumerate(continuation):
            total += float(log_probs[token])
            if position < len(continuation) - 1:
                model.eval([token])
                log_probs = _next_token_log_probs(model)
        scores.append(total)
    return np.array(scores)


# label scoring ---------------------------------------------------------------------------------


def test_only_a_label_that_starts_another_gets_the_end_of_turn_token(
    backend: LlamaCppBackend,
) -> None:
    card, card_arrival, top_up = backend.label_continuations(["card", "card_arrival", "top_up"])
    assert card == [*backend._tokenize("card"), backend._end_of_turn]
    assert card_arrival == backend._tokenize("card_arrival")
    assert top_up == backend._tokenize("top_up")
    assert card_arrival[: len(card) - 1] == card[:-1]  # "card" is a token prefix of the other


@pytest.mark.parametrize(
    ("task", "texts"),
    [
        (SENTIMENT, ("The food was great and the staff friendly.", "It rained all day.")),
        (BANKING, BANKING_TEXTS[:2]),
    ],
    ids=["3-labels", "6-labels-shared-prefixes"],
)
def test_label_scores_match_a_token_by_token_evaluation(
    backend: LlamaCppBackend,
    reference_model: llama_cpp.Llama,
    task: Task,
    texts: Sequence[str],
) -> None:
    for text in texts:
        prompt = build_prompt(task, text)

        scores = backend.score_labels(prompt, task.label_names)
        expected = reference_scores(backend, reference_model, prompt, task.label_names)

        assert scores.shape == (len(task.label_names),)
        assert np.abs(scores - expected).max() < 0.05, (scores, expected)
        assert int(np.argmax(scores)) == int(np.argmax(expected))


def test_scores_do_not_depend_on_what_was_scored_before(backend: LlamaCppBackend) -> None:
    first = build_prompt(BANKING, BANKING_TEXTS[0])
    same_fixed_part = build_prompt(BANKING, BANKING_TEXTS[1])
    other_fixed_part = build_prompt(SENTIMENT, "Terrible service, never again.")

    before = backend.score_labels(first, BANKING.label_names)
    backend.score_labels(same_fixed_part, BANKING.label_names)
    again_after_same_fixed = backend.score_labels(first, BANKING.label_names)
    backend.score_labels(other_fixed_part, SENTIMENT.label_names)
    again_after_other_fixed = backend.score_labels(first, BANKING.label_names)

    np.testing.assert_array_equal(again_after_same_fixed, before)
    np.testing.assert_array_equal(again_after_other_fixed, before)


def test_texts_scored_together_score_exactly_as_one_at_a_time(
    backend: LlamaCppBackend,
) -> None:
    prompts = [build_prompt(BANKING, text) for text in BANKING_TEXTS]
    one_at_a_time = [backend.score_labels(p, BANKING.label_names) for p in prompts]

    together = backend.score_labels_many(prompts, BANKING.label_names)
    reversed_order = backend.score_labels_many(prompts[::-1], BANKING.label_names)[::-1]

    for single, batched, other_order in zip(one_at_a_time, together, reversed_order, strict=True):
        np.testing.assert_array_equal(batched, single)
        np.testing.assert_array_equal(other_order, single)


def test_prompts_with_other_fixed_parts_in_one_call_are_each_scored_on_their_own(
    backend: LlamaCppBackend,
) -> None:
    banking = build_prompt(BANKING, BANKING_TEXTS[0])
    sentiment = build_prompt(SENTIMENT, "Terrible service, never again.")
    labels = ["positive", "negative"]

    mixed = backend.score_labels_many([sentiment, banking, sentiment], labels)

    np.testing.assert_array_equal(mixed[1], backend.score_labels(banking, labels))
    np.testing.assert_array_equal(mixed[0], backend.score_labels(sentiment, labels))
    np.testing.assert_array_equal(mixed[2], mixed[0])


def test_few_free_sequences_make_branches_wait_without_changing_scores(
    backend: LlamaCppBackend, reference_model: llama_cpp.Llama
) -> None:
    prompts = [build_prompt(BANKING, text) for text in BANKING_TEXTS[:3]]
    expected = [backend.score_labels(p, BANKING.label_names) for p in prompts]
    n_seq_max = backend._n_seq_max
    backend._n_seq_max = 4  # the fixed part, a keeper, two free: texts and branches must queue
    try:
        squeezed = backend.score_labels_many(prompts, BANKING.label_names)
    finally:
        backend._n_seq_max = n_seq_max

    for got, want in zip(squeezed, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    reference = reference_scores(backend, reference_model, prompts[0], BANKING.label_names)
    assert np.abs(squeezed[0] - reference).max() < 0.05


def test_a_cache_too_small_for_all_texts_at_once_is_refilled_between_them(
    backend: LlamaCppBackend,
) -> None:
    prompts = [build_prompt(BANKING, text) for text in BANKING_TEXTS]
    expected = [backend.score_labels(p, BANKING.label_names) for p in prompts]
    fixed, variable = backend.prompt_tokens(prompts[0])
    per_text = len(variable) + 20  # the text and its decodable label-trie nodes, roughly
    small = open_backend(
        MODEL,
        BackendSettings(threads=2, n_ctx=len(fixed) + 2 * per_text, score_tolerance=0.0),
    )
    try:
        refilled = small.score_labels_many(prompts, BANKING.label_names)
    finally:
        small.close()

    for got, want in zip(refilled, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def _probabilities_and_work(
    backend: LlamaCppBackend, prompts: Sequence[ChatPrompt], tolerance: float
) -> tuple[list[np.ndarray], int]:
    """Label probabilities per prompt at ``tolerance``, and how many tokens that decoded."""
    backend.tolerance = tolerance
    try:
        before = backend.tokens_processed
        probs = [softmax(backend.score_labels(p, BANKING.label_names)) for p in prompts]
        return probs, backend.tokens_processed - before
    finally:
        backend.tolerance = 0.0


@pytest.mark.parametrize(
    ("tolerance", "max_total_variation"),
    [(1e-3, 0.02), (0.05, 0.1)],
)
def test_pruning_the_label_trie_keeps_the_answer_and_the_probabilities(
    backend: LlamaCppBackend, tolerance: float, max_total_variation: float
) -> None:
    prompts = [build_prompt(BANKING, text) for text in BANKING_TEXTS]
    # Each prompt scored exactly, then pruned: both decode the same prompt tokens.
    exact, pruned = [], []
    exact_work = pruned_work = 0
    for prompt in prompts:
        (probs,), work = _probabilities_and_work(backend, [prompt], 0.0)
        exact.append(probs)
        exact_work += work
        (probs,), work = _probabilities_and_work(backend, [prompt], tolerance)
        pruned.append(probs)
        pruned_work += work

    for exact_probs, pruned_probs in zip(exact, pruned, strict=True):
        assert int(np.argmax(pruned_probs)) == int(np.argmax(exact_probs))
        assert 0.5 * np.abs(pruned_probs - exact_probs).sum() < max_total_variation
    assert pruned_work <= exact_work
    if tolerance >= 0.05:  # these texts leave some labels far enough behind to be pruned
        assert pruned_work < exact_work


# multilabel and generation ---------------------------------------------------------------------


def test_yes_no_gives_one_probability_per_label(backend: LlamaCppBackend) -> None:
    task = Task(
        name="topics",
        kind="multilabel",
        labels={"food": "Mentions food.", "service": "Mentions staff.", "price": "Mentions cost."},
    )
    prompt = build_prompt(task, "The soup was cold and the waiter rude.")
    other = build_prompt(task, "Cheap and cheerful, the chef knows his trade.")

    probs = backend.score_yes_no(prompt, task.label_names)
    together = backend.score_yes_no_many([other, prompt], task.label_names)

    assert probs.shape == (3,)
    assert np.all((probs > 0) & (probs < 1))
    np.testing.assert_array_equal(together[1], probs)
    np.testing.assert_array_equal(together[0], backend.score_yes_no(other, task.label_names))


def test_generation_restricted_to_choices_returns_one_of_them(backend: LlamaCppBackend) -> None:
    prompt = build_prompt(SENTIMENT, "I loved every minute of it.")

    generation = backend.generate(prompt, choices=SENTIMENT.label_names)

    assert generation.text in SENTIMENT.label_names
    assert generation.tokens_out >= 1


def test_generation_for_a_span_schema_returns_json_with_entities(
    backend: LlamaCppBackend,
) -> None:
    task = Task(
        name="names",
        kind="spans",
        labels={"person": "A person.", "location": "A place.", "organisation": "A company."},
    )
    prompt = build_prompt(task, "Angela Merkel visited Paris.")

    generation = backend.generate(prompt, json_schema=span_schema(task.label_names))

    reply = json.loads(generation.text)
    assert isinstance(reply, dict)
    assert isinstance(reply["entities"], list)


# limits ----------------------------------------------------------------------------------------


def test_a_prompt_longer_than_the_context_is_E309() -> None:
    small = open_backend(MODEL, BackendSettings(threads=2, n_ctx=256, score_tolerance=0.0))
    task = Task(
        name="long",
        instructions=" ".join(["Read the text carefully before you decide."] * 46),  # ~2000 chars
        labels={"yes": "", "no": ""},
    )
    try:
        with pytest.raises(StillhouseError) as caught:
            small.score_labels(build_prompt(task, "Short text."), task.label_names)
    finally:
        small.close()

    assert caught.value.code == "E309"
    assert "256" in caught.value.message


def test_truncate_keeps_the_head_within_the_token_budget(backend: LlamaCppBackend) -> None:
    text = "word " * 200_000

    cut, original_tokens = backend.truncate(text, 64)

    assert len(backend._tokenize(cut)) <= 64
    assert text.startswith(cut.strip())
    assert original_tokens > 100_000


def test_truncate_returns_a_short_text_unchanged(backend: LlamaCppBackend) -> None:
    text = "The room was clean and quiet."

    cut, original_tokens = backend.truncate(text, 64)

    assert cut == text
    assert original_tokens == len(backend._tokenize(text))


# opening ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_spec", "code"),
    [
        (lambda folder: str(folder / "missing.gguf"), "E301"),
        (lambda folder: _text_file(folder / "x.gguf"), "E302"),
        (lambda folder: "no-such-model", "E305"),
    ],
    ids=["missing-file", "not-gguf", "unknown-name"],
)
def test_open_backend_refuses_what_it_cannot_load(
    tmp_path: Path, make_spec: Callable[[Path], str], code: str
) -> None:
    spec = make_spec(tmp_path)

    with pytest.raises(StillhouseError) as caught:
        open_backend(spec, BackendSettings(threads=2))

    assert caught.value.code == code
    assert spec in caught.value.message


def _text_file(path: Path) -> str:
    path.write_text("not a model\n")
    return str(path)
