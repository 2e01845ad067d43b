"""The backend for any OpenAI-compatible chat server (vLLM, Ollama, llama.cpp server, OpenAI).

Model spec: ``openai:URL#MODEL``, e.g. ``openai:http://127.0.0.1:8000/v1#qwen2.5-0.5b``. Requests go
to ``URL/chat/completions`` with greedy settings (temperature 0, a fixed seed). Constrained output
(one of ``choices``, or JSON for a schema) uses ``response_format``: the standard
``{"type": "json_schema", ...}`` first; a server that refuses it (llama_cpp.server 0.3.x accepts
only ``{"type": "json_object", "schema": ...}``) is asked the other way for the rest of the session.

The chat API gives no log-likelihood of a given reply, so this backend cannot score labels
(``can_score = False``).

Every request goes through :meth:`OpenAIBackend.generate`, where ``[privacy]`` applies
(:mod:`stillhouse.guard.privacy`): the data part of the prompt is pseudonymized or redacted
before it is sent, placeholders in the reply are put back, and a blocked text raises
:class:`~stillhouse.guard.privacy.PrivacyBlocked` without any request.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import httpx
import numpy as np

from stillhouse import registry
from stillhouse.errors import Errors, StillhouseError, fail
from stillhouse.guard.privacy import PrivacyBlocked, PrivacyFilter, resolve_mode
from stillhouse.llm.backend import BackendSettings, Generation
from stillhouse.llm.prompts import ChatPrompt

_SPEC_PREFIX = "openai:"
_DEFAULT_RETRY_BASE_S = 0.5  # backoff 0.5, 1, 2, 4 s
_DEFAULT_MAX_RETRIES = 4
_GARBAGE_RETRIES = 1  # a server that answers nonsense rarely gets better
_NOT_A_COMPLETION = "answered something that is not an OpenAI chat completion"


def parse_openai_spec(spec: str) -> tuple[str, str]:
    """``"openai:http://host:8000/v1#model"`` -> ``("http://host:8000/v1", "model")``.

    The base URL loses any trailing slash. Raises E311 for a missing ``#MODEL`` or a URL that is
    not http(s)://host[...].
    """
    if not spec.startswith(_SPEC_PREFIX):
        raise fail(Errors.E311, spec=spec, detail="it does not start with `openai:`")
    url, hash_sign, model = spec[len(_SPEC_PREFIX) :].partition("#")
    url, model = url.strip().rstrip("/"), model.strip()
    if not hash_sign or not model:
        raise fail(Errors.E311, spec=spec, detail="the model name after `#` is missing")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise fail(Errors.E311, spec=spec, detail=f"`{url}` is not a URL ({error})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise fail(Errors.E311, spec=spec, detail=f"`{url}` is not an http(s)://HOST URL")
    return url, model


def choice_schema(choices: Sequence[str]) -> dict[str, Any]:
    """The JSON schema that restricts a reply to ``{"label": <one of choices>}``."""
    return {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(choices)}},
        "required": ["label"],
    }


class _Failure(NamedTuple):
    """What went wrong with one attempt (``what``), and an excerpt of the answer if any."""

    what: str
    shown: str = ""


class _RequestRejected(Exception):
    """The server refused the request itself (HTTP 400/422...): retrying the same body is futile."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.text)
        self.status = response.status_code
        self.text = response.text


class OpenAIBackend:
    """Generation through an OpenAI-compatible ``/chat/completions`` endpoint.

    ``model_sha256`` cannot be a file hash for a remote model: it is ``"remote:"`` plus the first
    16 hex digits of sha256(``URL#MODEL``), the best identity available. The API key, if any, is
    read from the environment variable ``settings.api_key_env`` when the backend is opened; local
    servers need none. ``settings.extra`` may set ``retry_base_s`` (first backoff, default 0.5 s)
    and ``max_retries`` (default 4).
    """

    name = "openai"
    can_score = False

    def __init__(self, base_url: str, model: str, settings: BackendSettings) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.settings = settings
        self.model_name = f"{_SPEC_PREFIX}{self.base_url}#{model}"
        identity = hashlib.sha256(f"{self.base_url}#{model}".encode()).hexdigest()
        self.model_sha256 = "remote:" + identity[:16]
        # "json_schema" (standard) until the server refuses it, then "json_object" (llama.cpp).
        self.json_format = "json_schema"
        self._send_logprobs = True
        self._url = f"{self.base_url}/chat/completions"
        self._api_key = os.environ.get(settings.api_key_env) or None
        self._retry_base_s = float(settings.extra.get("retry_base_s", _DEFAULT_RETRY_BASE_S))
        self._max_retries = int(settings.extra.get("max_retries", _DEFAULT_MAX_RETRIES))
        # the one place texts leave the process: [privacy] applies to every prompt sent
        self.privacy = PrivacyFilter(
            resolve_mode(settings.privacy.remote, self.base_url), settings.privacy
        )
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s),
            limits=httpx.Limits(max_connections=max(settings.concurrency, 1) + 2),
        )

    # -- the Backend protocol -------------------------------------------------------------

    def score_labels(self, prompt: ChatPrompt, labels: Sequence[str]) -> np.ndarray:
        """Not available: the chat API does not give the likelihood of a chosen reply."""
        raise fail(Errors.E310, runtime=self.name)

    def score_labels_many(
        self, prompts: Sequence[ChatPrompt], labels: Sequence[str]
    ) -> list[np.ndarray]:
        """Not available, as :meth:`score_labels`."""
        raise fail(Errors.E310, runtime=self.name)

    def score_yes_no(self, prompt: ChatPrompt, labels: Sequence[str]) -> np.ndarray:
        """Not available, as :meth:`score_labels`."""
        raise fail(Errors.E310, runtime=self.name)

    def score_yes_no_many(
        self, prompts: Sequence[ChatPrompt], labels: Sequence[str]
    ) -> list[np.ndarray]:
        """Not available, as :meth:`score_labels`."""
        raise fail(Errors.E310, runtime=self.name)

    def generate(
        self,
        prompt: ChatPrompt,
        *,
        choices: Sequence[str] | None = None,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> Generation:
        """Greedy reply: free text, one of ``choices``, or JSON text valid for ``json_schema``.

        With ``choices`` the server writes ``{"label": ...}`` and the label alone is returned; a
        server that ignored the constraint gives its raw reply, for the caller's parser to judge.
        ``logprob`` is the sum of the reply's token log-probabilities as the server reports them
        (JSON punctuation included when constrained), or None. The prompt's data part is
        protected as ``[privacy]`` says first (PrivacyBlocked: nothing was sent).
        """
        if choices is not None and json_schema is not None:
            raise ValueError("generate() takes choices or json_schema, not both")
        schema = choice_schema(choices) if choices is not None else json_schema
        protected = self.privacy.protect(prompt.variable)
        if protected.blocked:
            raise PrivacyBlocked(protected.counts)
        sent = dataclasses.replace(prompt, variable=protected.text)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": sent.messages(),
            "temperature": 0,
            "seed": self.settings.seed,
            "max_tokens": max_tokens or self.settings.max_new_tokens,
        }
        completion = self._complete(body, schema)
        text = completion["choices"][0]["message"]["content"]
        text = protected.restore(text) if schema is None else protected.restore_json(text)
        if choices is not None:
            text = _chosen_label(text, choices)
        usage = completion.get("usage") or {}
        return Generation(
            text=text,
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0),
            logprob=_sum_logprobs(completion),
        )

    def generate_many(self, prompts: Sequence[ChatPrompt], **kwargs: Any) -> list[Generation]:
        """:meth:`generate` for each prompt, up to ``settings.concurrency`` requests at a time;
        results in the order of ``prompts``."""
        workers = max(1, min(self.settings.concurrency, len(prompts)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda prompt: self.generate(prompt, **kwargs), prompts))

    def truncate(self, text: str, max_tokens: int) -> tuple[str, int]:
        """Head of ``text`` within ``max_tokens`` and its token count, both *approximate*: the
        server's tokenizer is not available here, so a token is taken to be 4 characters."""
        approx_tokens = -(-len(text) // 4)
        return text[: max(max_tokens, 0) * 4], approx_tokens

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": self.name,
            "url": self.base_url,
            "model": self.model,
            "privacy": self.privacy.record(),
        }

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- requests --------------------------------------------------------------------------

    def _complete(self, body: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any]:
        """Send a chat completion, stepping down once per optional feature the server refuses
        (``json_schema`` -> ``json_object``, logprobs -> none); the choice sticks for the session."""
        while True:
            request = dict(body)
            if schema is not None:
                request["response_format"] = self._response_format(schema)
            if self._send_logprobs:
                request.update(logprobs=True, top_logprobs=0)  # llama.cpp needs top_logprobs
            try:
                return self._post(request)
            except _RequestRejected as rejected:
                if not self._step_down(rejected.text, constrained=schema is not None):
                    detail = f"answered HTTP {rejected.status}: {_excerpt(rejected.text)}"
                    raise fail(Errors.E307, url=self._url, detail=detail) from None

    def _step_down(self, refusal: str, *, constrained: bool) -> bool:
        """Drop the feature a refusal names, if it is one we can do without; False if none."""
        names_format = "response_format" in refusal or "json_schema" in refusal
        if constrained and self.json_format == "json_schema" and names_format:
            self.json_format = "json_object"
            return True
        if self._send_logprobs and "logprobs" in refusal:
            self._send_logprobs = False
            return True
        return False

    def _response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self.json_format == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
        return {"type": "json_object", "schema": schema}

    def _post(self, request: dict[str, Any]) -> dict[str, Any]:
        """One completion with retries on connection errors, timeouts, 429 and 5xx.

        Raises :class:`_RequestRejected` for a refused request, E308/E307 for a refused key, and
        E307 once the retries are spent or the server keeps answering something unreadable.
        """
        attempts, garbage = 0, 0
        while True:
            attempts += 1
            outcome = self._attempt(request)
            if not isinstance(outcome, _Failure):
                return outcome
            garbage += outcome.what == _NOT_A_COMPLETION
            if garbage > _GARBAGE_RETRIES or attempts > self._max_retries:
                detail = f"{outcome.what} after {attempts} attempt{'s' if attempts > 1 else ''}"
                detail += f": {outcome.shown}" if outcome.shown else ""
                raise fail(Errors.E307, url=self._url, detail=detail)
            time.sleep(self._retry_base_s * 2 ** (attempts - 1))

    def _attempt(self, request: dict[str, Any]) -> dict[str, Any] | _Failure:
        """The completion, or what went wrong in a way worth retrying."""
        try:
            response = self._client.post(self._url, json=request)
        except httpx.TimeoutException:
            return _Failure(f"timed out after {self.settings.timeout_s:g} s")
        except httpx.ConnectError as error:
            return _Failure(f"could not connect ({_reason(error)})")
        except httpx.TransportError as error:
            return _Failure(f"the connection failed ({_reason(error)})")
        status = response.status_code
        if status in (401, 403):
            raise self._auth_error(status)
        if status == 429 or status >= 500:
            if _is_validation_error(response):
                raise _RequestRejected(response)
            return _Failure(f"answered HTTP {status}", _excerpt(response.text))
        if status >= 400:
            if status in (400, 422):
                raise _RequestRejected(response)
            hint = " (the URL normally ends with /v1)" if status == 404 else ""
            detail = f"answered HTTP {status}{hint}: {_excerpt(response.text)}"
            raise fail(Errors.E307, url=self._url, detail=detail)
        return _chat_completion(response)

    def _auth_error(self, status: int) -> StillhouseError:
        if self._api_key is None:
            return fail(Errors.E308, name=self.settings.api_key_env, url=self.base_url)
        detail = f"rejected the API key from ${self.settings.api_key_env} (HTTP {status})"
        return fail(Errors.E307, url=self._url, detail=detail)


@registry.backends.register("openai")
def open_openai(spec: str, settings: BackendSettings) -> OpenAIBackend:
    """The backend for ``openai:URL#MODEL`` (E311 for a malformed spec)."""
    url, model = parse_openai_spec(spec)
    return OpenAIBackend(url, model, settings)


def _chat_completion(response: httpx.Response) -> dict[str, Any] | _Failure:
    """The parsed completion if it has ``choices[0].message.content``, else a failure."""
    try:
        completion = response.json()
        content = completion["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        content = None
    if not isinstance(content, str):
        return _Failure(_NOT_A_COMPLETION, repr(_excerpt(response.text, 80)))
    return completion


def _is_validation_error(response: httpx.Response) -> bool:
    # llama_cpp.server reports a request that fails validation as HTTP 500.
    return response.status_code == 500 and "validation error" in response.text


def _chosen_label(text: str, choices: Sequence[str]) -> str:
    """The label from a constrained ``{"label": ...}`` reply; the raw reply if it is not one."""
    try:
        label = json.loads(text)["label"]
    except (ValueError, KeyError, TypeError):
        return text.strip()
    return label if isinstance(label, str) and label in choices else text.strip()


def _sum_logprobs(completion: dict[str, Any]) -> float | None:
    logprobs = completion["choices"][0].get("logprobs") or {}
    tokens = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not tokens:
        return None
    try:
        return float(sum(float(token["logprob"]) for token in tokens))
    except (KeyError, TypeError, ValueError):
        return None


def _reason(error: httpx.TransportError) -> str:
    """``"[Errno 111] Connection refused"`` -> ``"connection refused"``."""
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(error)).strip().rstrip(".")
    return (text[:1].lower() + text[1:]) if text else type(error).__name__


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
