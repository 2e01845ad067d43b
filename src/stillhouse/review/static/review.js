"use strict";
// The review page. Keyboard first: every action has a key, listed on the page and under `?`.
// Every text, label and name from the server is put in the page as text (textContent or a text
// node), never as HTML.
(() => {
  const S = {
    csrf: "",
    task: null,
    labels: [],            // [{name, description}] in task order
    annotator: null,
    item: null,            // what /api/next gave
    keyOrder: [],          // label names behind keys 1–9 for this item
    chosen: new Set(),     // multilabel: the labels ticked
    spans: [],             // spans: [{start, end, label}]
    tokens: [],            // spans: [{start, end}]
    caret: 0,
    anchor: null,          // spans: token index where a keyboard selection started
    applySimilar: true,
    shownAt: 0,
    hiddenFor: 0,
    hiddenSince: null,
    mode: "review",        // or "conflicts"
    conflicts: [],
    conflictAt: 0,
    overlay: null,
    busy: false,
  };
  const $ = (id) => document.getElementById(id);
  const MAX_KEYS = 9;

  // ---------------------------------------------------------------------------------------
  // DOM helpers: text only

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function kbd(key) {
    return el("kbd", null, key);
  }

  function toast(message) {
    const box = $("toast");
    box.textContent = message;
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { box.hidden = true; }, 6000);
  }

  // ---------------------------------------------------------------------------------------
  // the server

  async function api(method, path, body, retried) {
    const headers = { "X-CSRF-Token": S.csrf };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method, headers, credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      toast("The review server does not answer; your decisions so far are stored. Retry when it is back.");
      throw error;
    }
    if (response.ok) return response.json();
    const problem = await response.json().catch(() => ({ error: response.statusText, code: "" }));
    if (problem.code === "E881" && (S.login || retried)) {
      window.location.assign("/login");
      throw new Error(problem.error);
    }
    if (!retried && (problem.code === "E881" || problem.code === "E883" || problem.code === "E888")) {
      // a restarted server (its cookies signed with a new key): a new session, the name is
      // remembered in this browser
      await start(true);
      return api(method, path, body, true);
    }
    toast(problem.error || "The request failed.");
    throw new Error(problem.error);
  }

  async function start(again) {
    const session = await api("GET", "/api/session", undefined, true);
    S.csrf = session.csrf;
    S.task = session.task;
    S.labels = session.task.labels;
    S.annotator = session.annotator;
    S.queue = session.queue;
    S.login = session.login;
    if (!again) renderChrome(session);
    if (!S.annotator) {
      const remembered = window.localStorage.getItem("stillhouse-review-name");
      if (remembered) {
        await nameReviewer(remembered);
      } else {
        openOverlay("name");
        return false;
      }
    }
    $("annotator").textContent = S.annotator;
    return true;
  }

  async function nameReviewer(name) {
    const answer = await api("POST", "/api/annotator", { name }, true);
    S.annotator = answer.annotator;
    window.localStorage.setItem("stillhouse-review-name", S.annotator);
    $("annotator").textContent = S.annotator;
  }

  async function loadNext() {
    show(await api("GET", "/api/next"));
  }

  // ---------------------------------------------------------------------------------------
  // rendering

  function renderChrome(session) {
    $("task-name").textContent = session.task.name;
    $("queue-name").textContent = `queue ${session.queue}` + (session.overlap ? ` · overlap ${Math.round(session.overlap * 100)}%` : "");
    $("help-instructions").textContent = session.task.instructions || "(no instructions in task.toml)";
    const labels = $("help-labels");
    clear(labels);
    for (const label of session.task.labels) {
      labels.appendChild(el("dt", null, label.name));
      labels.appendChild(el("dd", null, label.description || ""));
    }
    const keys = $("help-keys");
    clear(keys);
    for (const [key, what] of keyMap(session.task.kind)) {
      const row = el("tr");
      const cell = el("td");
      for (const part of key.split(" ")) cell.appendChild(kbd(part));
      row.appendChild(cell);
      row.appendChild(el("td", null, what));
      keys.appendChild(row);
    }
    for (const label of session.task.labels) pickerRow(label);
  }

  function keyMap(kind) {
    const common = [
      ["x", "reject: none of the labels fits (stored without a label)"],
      ["space", "skip: show it again after everything else"],
      ["⌫ z", "undo the last decision (the last 10 stay in the side list; click one to change it)"],
      ["f", "flag with a comment for a lead"],
      ["g", "apply the decision to the similar texts, or to this one only"],
      ["c", "conflicts view: settle disagreements into gold answers (c or Esc: back)"],
      ["?", "this panel"],
    ];
    if (kind === "multilabel") {
      return [["1–9", "tick or untick one of the top labels"], ["/", "find any label by typing, tick it"],
        ["⏎", "submit the ticked labels"], ["a", "accept the suggestion as it is"], ...common];
    }
    if (kind === "spans") {
      return [["mouse", "select text, then press the type's key"], ["← →", "move the cursor by word"],
        ["⇧← ⇧→", "select words with the keyboard"], ["1–9", "label the selection with that type"],
        ["/", "find a type by typing, label the selection"], ["Del", "remove the span under the cursor (or click it)"],
        ["Esc", "drop the selection"], ["⏎", "submit the spans"], ["a", "accept the suggested spans as they are"], ...common];
    }
    return [["⏎ a", "accept the suggestion"], ["1–9", "pick one of the top labels"],
      ["/", "find any label by typing (↑ ↓ Enter)"], ...common];
  }

  function show(view) {
    S.mode = "review";
    $("mode-note").hidden = true;
    renderProgress(view.progress);
    renderHistory(view.history);
    renderItem(view.item);
  }

  function renderProgress(progress) {
    const box = $("progress");
    clear(box);
    if (!progress) return;
    const parts = [`${progress.done} done`, `${progress.remaining} left`];
    if (progress.per_hour) parts.push(`${Math.round(progress.per_hour)}/h`);
    if (progress.eta_s && progress.remaining) parts.push(`≈ ${duration(progress.eta_s)} to go`);
    if (progress.skipped) parts.push(`${progress.skipped} skipped`);
    box.textContent = parts.join(" · ");
  }

  function duration(seconds) {
    if (seconds < 90) return `${Math.round(seconds)} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  function answerText(answer) {
    if (answer === null || answer === undefined) return "";
    if (typeof answer === "string") return answer;
    if (answer.length && typeof answer[0] === "object") {
      return answer.map((span) => `${span.label}: ${span.text}`).join("; ") || "no spans";
    }
    return answer.join(", ") || "no labels";
  }

  function renderHistory(rows) {
    const list = $("history");
    clear(list);
    for (const row of rows || []) {
      const item = el("li");
      const button = el("button", "history-row");
      button.type = "button";
      button.tabIndex = -1;
      const what = row.answer !== null ? answerText(row.answer) : "";
      button.appendChild(el("span", `decision ${row.decision}`, row.decision));
      if (what) button.appendChild(el("span", "answer", what));
      if (row.count > 1) button.appendChild(el("span", "muted", `+${row.count - 1} similar`));
      button.appendChild(el("span", "excerpt", row.excerpt));
      button.addEventListener("mousedown", (event) => event.preventDefault());
      button.addEventListener("click", () => reopen(row.id));
      item.appendChild(button);
      list.appendChild(item);
    }
  }

  async function reopen(exampleId) {
    const view = await api("GET", `/api/item/${encodeURIComponent(exampleId)}`);
    show(view);
  }

  let renders = 0;

  function renderItem(item) {
    S.item = item;
    S.anchor = null;
    // for tests and tools: which item is shown, and how many times the page rendered one
    document.body.dataset.item = item ? item.id : "";
    document.body.dataset.renders = String(++renders);
    const done = !item;
    $("done").hidden = !done;
    for (const id of ["reasons", "text", "suggestion", "choices", "actions"]) $(id).hidden = done;
    $("similar").hidden = true;
    if (done) {
      $("done").textContent = "All done: nothing is left in this queue for you. Undo (⌫ or z) brings back your last decision; c opens the conflicts.";
      return;
    }
    const reasons = $("reasons");
    clear(reasons);
    for (const reason of item.reasons) {
      const chip = el("li", `chip reason-${reason.kind}`, reason.name);
      if (reason.detail) chip.appendChild(el("span", "detail", ` · ${reason.detail}`));
      reasons.appendChild(chip);
    }
    if (item.overlap) reasons.appendChild(el("li", "chip overlap", "double-annotated (blind)"));
    if (item.previous_decision && item.previous_decision !== "undone") {
      const before = item.previous !== null ? answerText(item.previous) : item.previous_decision;
      reasons.appendChild(el("li", "chip previous", `you answered before: ${before}`));
    }
    const suggestion = item.suggestion;
    const kind = S.task.kind;
    if (kind === "multilabel") {
      const start = item.previous || (suggestion ? suggestion.answer : []);
      S.chosen = new Set(start);
    }
    if (kind === "spans") {
      const start = item.previous || (suggestion ? suggestion.answer : []);
      const units = unitOffsets(item.text);
      S.spans = start.map((span) => ({ start: units[span.start], end: units[span.end], label: span.label }));
      S.tokens = item.tokens.map(([start, end]) => ({ start: units[start], end: units[end] }));
      S.caret = 0;
    }
    renderText();
    renderSimilar(item.similar);
    renderSuggestion();
    renderChoices();
    S.shownAt = performance.now();
    S.hiddenFor = 0;
    S.hiddenSince = document.hidden ? performance.now() : null;
  }

  function renderSimilar(similar) {
    const box = $("similar");
    if (!similar || !similar.count) { box.hidden = true; return; }
    box.hidden = false;
    $("similar-note").textContent = S.applySimilar
      ? `+${similar.count} similar text(s): the decision applies to all of them (g: this one only)`
      : `+${similar.count} similar text(s): the decision applies to this one only (g: to all)`;
    box.classList.toggle("off", !S.applySimilar);
    const list = $("similar-texts");
    clear(list);
    for (const text of similar.texts) list.appendChild(el("li", null, text));
  }

  function renderSuggestion() {
    const box = $("suggestion");
    clear(box);
    const suggestion = S.item.suggestion;
    if (!suggestion) {
      box.appendChild(el("span", "muted", "No suggestion: pick a label."));
      return;
    }
    box.appendChild(el("span", "muted", "Suggested by "));
    box.appendChild(el("span", "source", suggestion.source));
    box.appendChild(el("span", "muted", ": "));
    box.appendChild(el("strong", "suggested", answerText(suggestion.answer)));
    if (suggestion.score !== null && suggestion.score !== undefined) {
      box.appendChild(el("span", "muted", ` (${Math.round(suggestion.score * 100)}%)`));
    }
  }

  function probabilityOf(label) {
    const probs = S.item && S.item.suggestion && S.item.suggestion.probs;
    if (!probs) return null;
    for (const [name, p] of probs) if (name === label) return p;
    return null;
  }

  function orderedLabels() {
    // ≤ 9 labels: task order, so each key keeps its label from item to item; more: the most
    // probable first (the suggestion's answer first when there are no probabilities)
    const names = S.labels.map((label) => label.name);
    if (names.length <= MAX_KEYS || !S.item) return names;
    const suggestion = S.item.suggestion;
    if (suggestion && suggestion.probs) {
      const ranked = suggestion.probs.map(([name]) => name).filter((name) => names.includes(name));
      return [...ranked, ...names.filter((name) => !ranked.includes(name))];
    }
    const first = [];
    const given = suggestion ? suggestion.answer : S.item.previous;
    if (typeof given === "string") first.push(given);
    else if (Array.isArray(given)) for (const part of given) first.push(typeof part === "string" ? part : part.label);
    const unique = [...new Set(first)].filter((name) => names.includes(name));
    return [...unique, ...names.filter((name) => !unique.includes(name))];
  }

  function renderChoices() {
    const list = $("choices");
    clear(list);
    const kind = S.task.kind;
    S.keyOrder = kind === "spans" ? S.labels.map((label) => label.name).slice(0, MAX_KEYS) : orderedLabels().slice(0, MAX_KEYS);
    const suggested = S.item.suggestion ? S.item.suggestion.answer : null;
    S.keyOrder.forEach((name, index) => {
      const row = el("li", "choice");
      row.dataset.index = String(index);
      if (kind === "classify" && suggested === name) row.classList.add("suggested");
      if (kind === "multilabel" && S.chosen.has(name)) row.classList.add("chosen");
      if (kind === "spans") row.classList.add(`c${labelColor(name)}`);
      row.appendChild(kbd(String(index + 1)));
      row.appendChild(el("span", "name", name));
      const p = probabilityOf(name);
      if (p !== null && kind !== "spans") {
        const bar = el("span", "bar");
        const fill = el("span", "fill");
        fill.style.width = `${Math.max(0, Math.min(100, p * 100)).toFixed(1)}%`;
        bar.appendChild(fill);
        row.appendChild(bar);
        row.appendChild(el("span", "pct", `${(p * 100).toFixed(p < 0.1 ? 1 : 0)}%`));
      }
      row.addEventListener("mousedown", (event) => event.preventDefault());
      row.addEventListener("click", () => numberKey(index));
      list.appendChild(row);
    });
    if (S.labels.length > MAX_KEYS) {
      list.appendChild(el("li", "more muted", `${S.labels.length - MAX_KEYS} more: press / to find any label`));
    }
    const accept = document.querySelector('[data-action="accept"]');
    accept.firstChild.textContent = kind === "classify" ? "Accept " : "Submit ";
  }

  // ---------------------------------------------------------------------------------------
  // spans: tokens, the caret, selections

  // Tokens come with the item (the server's tokenisation, the one agreement compares), and
  // they and span offsets cross the wire as Python counts characters (code points); a JS string counts
  // UTF-16 units, so an emoji before a span would shift it. unitOffsets(text)[p] is the unit
  // offset of code point p (p = 0 … length); pointOffsets(text) maps unit offsets back.
  function unitOffsets(text) {
    const offsets = [0];
    for (const ch of text) offsets.push(offsets[offsets.length - 1] + ch.length);
    return offsets;
  }

  function pointOffsets(text) {
    return new Map(unitOffsets(text).map((unit, point) => [unit, point]));
  }

  function labelColor(name) {
    return Math.max(0, S.labels.findIndex((label) => label.name === name)) % 8;
  }

  function selectedRange() {
    if (S.anchor === null) return null;
    return [Math.min(S.anchor, S.caret), Math.max(S.anchor, S.caret)];
  }

  function renderText() {
    const box = $("text");
    clear(box);
    const text = S.item.text;
    if (S.task.kind !== "spans") {
      box.textContent = text;
      return;
    }
    const range = selectedRange();
    let at = 0;
    const spans = [...S.spans].sort((a, b) => a.start - b.start);
    let spanAt = 0;
    let holder = box;
    let open = null;
    S.tokens.forEach((token, index) => {
      // close the span that ended, open the one that starts here
      if (open && token.start >= open.end) { holder = box; open = null; }
      if (at < token.start) {
        const gap = text.slice(at, token.start);
        (open && token.start < open.end ? holder : box).appendChild(document.createTextNode(gap));
      }
      while (spanAt < spans.length && spans[spanAt].end <= token.start) spanAt += 1;
      if (!open && spanAt < spans.length && spans[spanAt].start <= token.start && token.start < spans[spanAt].end) {
        open = spans[spanAt];
        const mark = el("mark", `ent c${labelColor(open.label)}`);
        mark.dataset.label = open.label;
        mark.dataset.start = String(open.start);
        mark.dataset.end = String(open.end);
        mark.title = `${open.label} (click or Del removes it)`;
        box.appendChild(mark);
        holder = mark;
      }
      const piece = el("span", "tok", text.slice(token.start, token.end));
      piece.dataset.tok = String(index);
      if (index === S.caret) piece.classList.add("caret");
      if (range && index >= range[0] && index <= range[1]) piece.classList.add("sel");
      holder.appendChild(piece);
      at = token.end;
    });
    if (at < text.length) box.appendChild(document.createTextNode(text.slice(at)));
  }

  function tokenOf(node) {
    const found = node && (node.nodeType === 1 ? node : node.parentElement);
    const token = found && found.closest ? found.closest("[data-tok]") : null;
    return token ? Number(token.dataset.tok) : null;
  }

  function onMouseUp(event) {
    if (S.task.kind !== "spans" || !S.item || S.overlay) return;
    const selection = window.getSelection();
    if (selection && !selection.isCollapsed) {
      const a = tokenOf(selection.anchorNode);
      const b = tokenOf(selection.focusNode);
      if (a !== null && b !== null) {
        S.anchor = Math.min(a, b);
        S.caret = Math.max(a, b);
        selection.removeAllRanges();
        renderText();
      }
      return;
    }
    const mark = event.target.closest ? event.target.closest("mark.ent") : null;
    if (mark) {
      removeSpanAt(Number(mark.dataset.start));
      return;
    }
    const token = tokenOf(event.target);
    if (token !== null) { S.caret = token; S.anchor = null; renderText(); }
  }

  function removeSpanAt(charStart) {
    S.spans = S.spans.filter((span) => span.start !== charStart);
    renderText();
  }

  function labelSelection(label) {
    const range = selectedRange() || [S.caret, S.caret];
    const start = S.tokens[range[0]].start;
    const end = S.tokens[range[1]].end;
    S.spans = S.spans.filter((span) => span.end <= start || span.start >= end);
    S.spans.push({ start, end, label });
    S.spans.sort((a, b) => a.start - b.start);
    S.anchor = null;
    S.caret = Math.min(range[1] + 1, S.tokens.length - 1);
    renderText();
  }

  function spanKeys(event) {
    const key = event.key;
    if (key === "ArrowRight" || key === "ArrowLeft") {
      const step = key === "ArrowRight" ? 1 : -1;
      if (event.shiftKey && S.anchor === null) S.anchor = S.caret;
      if (!event.shiftKey) S.anchor = null;
      S.caret = Math.max(0, Math.min(S.tokens.length - 1, S.caret + step));
      renderText();
      return true;
    }
    if (key === "Home" || key === "End") {
      S.anchor = event.shiftKey ? (S.anchor === null ? S.caret : S.anchor) : null;
      S.caret = key === "Home" ? 0 : S.tokens.length - 1;
      renderText();
      return true;
    }
    if (key === "Delete") {
      const token = S.tokens[S.caret];
      const hit = token && S.spans.find((span) => span.start < token.end && token.start < span.end);
      if (hit) removeSpanAt(hit.start);
      return true;
    }
    if (key === "Escape" && S.anchor !== null) {
      S.anchor = null;
      renderText();
      return true;
    }
    return false;
  }

  // ---------------------------------------------------------------------------------------
  // decisions

  function leadTime() {
    let hidden = S.hiddenFor;
    if (S.hiddenSince !== null) hidden += performance.now() - S.hiddenSince;
    return Math.max(0, Math.round(performance.now() - S.shownAt - hidden));
  }

  async function send(decision, answer, comment) {
    if (!S.item || S.busy) return;
    S.busy = true;
    try {
      const body = {
        id: S.item.id, decision, lead_time_ms: leadTime(), comment: comment || "",
        apply_to_similar: S.applySimilar,
      };
      if (answer !== undefined) body.answer = answer;
      show(await api("POST", "/api/decide", body));
    } finally {
      S.busy = false;
    }
  }

  function currentAnswer() {
    if (S.task.kind === "multilabel") return S.labels.map((l) => l.name).filter((name) => S.chosen.has(name));
    if (S.task.kind === "spans") {
      const points = pointOffsets(S.item.text);
      return S.spans.map((s) => ({ start: points.get(s.start), end: points.get(s.end), label: s.label }));
    }
    return undefined;
  }

  async function accept() {
    if (S.mode === "conflicts") return resolveWith(conflictAnswer());
    const suggestion = S.item && S.item.suggestion;
    if (S.task.kind === "classify") {
      if (!suggestion) { toast("No suggestion to accept: press 1–9 or / to pick a label."); return; }
      return send("answer", suggestion.answer);
    }
    return send("answer", currentAnswer());
  }

  async function acceptSuggestionAsIs() {
    if (S.task.kind === "classify" || S.mode === "conflicts") return accept();
    const suggestion = S.item && S.item.suggestion;
    if (!suggestion) { toast("No suggestion to accept."); return; }
    return send("answer", suggestion.answer);
  }

  async function chooseLabel(name) {
    if (S.task.kind === "classify") {
      if (S.mode === "conflicts") return resolveWith(name);
      return send("answer", name);
    }
    if (S.task.kind === "multilabel") {
      if (S.chosen.has(name)) S.chosen.delete(name); else S.chosen.add(name);
      renderChoices();
      return;
    }
    labelSelection(name);
  }

  function numberKey(index) {
    const name = S.keyOrder[index];
    if (name !== undefined) chooseLabel(name);
  }

  async function undo() {
    if (S.busy) return;
    S.busy = true;
    try {
      show(await api("POST", "/api/undo"));
    } finally {
      S.busy = false;
    }
  }

  // ---------------------------------------------------------------------------------------
  // conflicts: settle disagreements and flags into gold answers

  async function openConflicts() {
    const found = await api("GET", "/api/conflicts");
    S.conflicts = found.conflicts;
    S.conflictAt = 0;
    S.mode = "conflicts";
    renderConflict();
  }

  function renderConflict() {
    const note = $("mode-note");
    note.hidden = false;
    const conflict = S.conflicts[S.conflictAt];
    if (!conflict) {
      note.textContent = "Conflicts: none open. c or Esc goes back to the review.";
      renderItem(null);
      $("done").textContent = "No open conflicts.";
      S.mode = "conflicts";
      return;
    }
    note.textContent = `Conflict ${S.conflictAt + 1} of ${S.conflicts.length}: your answer becomes the gold answer. Space: next · c or Esc: back to the review.`;
    const first = conflict.answers.find((a) => a.answer !== null);
    const item = {
      id: conflict.id,
      text: conflict.text,
      reasons: conflict.answers.map((a) => ({
        kind: "conflict",
        name: a.annotator,
        detail: (a.answer !== null ? answerText(a.answer) : a.decision) + (a.comment ? ` (“${a.comment}”)` : ""),
      })),
      suggestion: first ? { source: first.annotator, answer: first.answer, score: null, probs: null } : null,
      similar: { count: 0, texts: [] },
      overlap: false,
      previous: null,
      previous_decision: null,
    };
    renderItem(item);
    S.mode = "conflicts";
  }

  function conflictAnswer() {
    if (S.task.kind === "classify") return S.item.suggestion ? S.item.suggestion.answer : null;
    return currentAnswer();
  }

  async function resolveWith(answer) {
    if (answer === null || answer === undefined || !S.item || S.busy) return;
    S.busy = true;
    try {
      const found = await api("POST", "/api/resolve", { id: S.item.id, answer, lead_time_ms: leadTime() });
      S.conflicts = found.conflicts;
      S.conflictAt = Math.min(S.conflictAt, Math.max(0, S.conflicts.length - 1));
      renderConflict();
    } finally {
      S.busy = false;
    }
  }

  // ---------------------------------------------------------------------------------------
  // overlays: help, picker, flag, name

  function openOverlay(id) {
    closeOverlay();
    S.overlay = id;
    $(id).hidden = false;
    if (id === "picker") {
      const input = $("picker-input");
      input.value = "";
      sortPicker();
      filterPicker();
      input.focus();
    } else if (id === "flag") {
      $("flag-comment").value = "";
      $("flag-comment").focus();
    } else if (id === "name") {
      $("name-input").focus();
    }
  }

  function closeOverlay() {
    if (!S.overlay) return;
    $(S.overlay).hidden = true;
    S.overlay = null;
    document.activeElement && document.activeElement.blur && document.activeElement.blur();
  }

  const pickerRows = new Map();

  function pickerRow(label) {
    const row = el("li", "pick");
    row.setAttribute("role", "option");
    row.dataset.name = label.name;
    row.dataset.search = `${label.name} ${label.description || ""}`.toLowerCase().replace(/[_-]/g, " ");
    row.appendChild(el("span", "name", label.name));
    if (label.description) row.appendChild(el("span", "muted", label.description));
    const p = el("span", "pct");
    row.appendChild(p);
    row.addEventListener("mousedown", (event) => event.preventDefault());
    row.addEventListener("click", () => pick(label.name));
    $("picker-list").appendChild(row);
    pickerRows.set(label.name, row);
  }

  function sortPicker() {
    // the most probable first, then task order; shown probabilities are this item's
    const list = $("picker-list");
    for (const name of orderedLabels()) {
      const row = pickerRows.get(name);
      const p = probabilityOf(name);
      row.lastChild.textContent = p === null ? "" : `${(p * 100).toFixed(p < 0.1 ? 1 : 0)}%`;
      row.classList.toggle("chosen", S.task.kind === "multilabel" && S.chosen.has(name));
      list.appendChild(row);
    }
  }

  function filterPicker() {
    const words = $("picker-input").value.toLowerCase().replace(/[_-]/g, " ").split(/\s+/).filter(Boolean);
    let first = null;
    for (const row of $("picker-list").children) {
      const match = words.every((word) => row.dataset.search.includes(word));
      row.hidden = !match;
      row.classList.remove("active");
      if (match && !first) first = row;
    }
    if (first) first.classList.add("active");
  }

  function movePicker(step) {
    const rows = [...$("picker-list").children].filter((row) => !row.hidden);
    if (!rows.length) return;
    const at = rows.findIndex((row) => row.classList.contains("active"));
    const next = rows[Math.max(0, Math.min(rows.length - 1, at + step))];
    rows.forEach((row) => row.classList.remove("active"));
    next.classList.add("active");
    next.scrollIntoView({ block: "nearest" });
  }

  function pick(name) {
    closeOverlay();
    chooseLabel(name);
  }

  function overlayKeys(event) {
    const key = event.key;
    if (S.overlay === "help") {
      if (key === "Escape" || key === "?") { closeOverlay(); return true; }
      return true;
    }
    if (S.overlay === "picker") {
      if (key === "Escape") { closeOverlay(); return true; }
      if (key === "ArrowDown") { movePicker(1); return true; }
      if (key === "ArrowUp") { movePicker(-1); return true; }
      if (key === "Enter") {
        const active = $("picker-list").querySelector(".pick.active:not([hidden])");
        if (active) pick(active.dataset.name);
        return true;
      }
      return false; // typing goes to the input
    }
    if (S.overlay === "flag") {
      if (key === "Escape") { closeOverlay(); return true; }
      if (key === "Enter" && !event.shiftKey) {
        const comment = $("flag-comment").value.trim();
        closeOverlay();
        send("flag", undefined, comment);
        return true;
      }
      return false;
    }
    if (S.overlay === "name") {
      if (key === "Enter") {
        const name = $("name-input").value.trim();
        if (!name) return true;
        nameReviewer(name).then(() => { closeOverlay(); return loadNext(); }).catch(() => {});
        return true;
      }
      return false;
    }
    return false;
  }

  // ---------------------------------------------------------------------------------------
  // keys

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (S.overlay) {
      if (overlayKeys(event)) event.preventDefault();
      return;
    }
    if (handleKey(event)) event.preventDefault();
  }

  function handleKey(event) {
    const key = event.key;
    if (key === "?") { openOverlay("help"); return true; }
    if (key === "c") { S.mode === "conflicts" ? loadNext() : openConflicts(); return true; }
    if (S.mode === "conflicts" && key === "Escape") { loadNext(); return true; }
    if (key === "Backspace" || key === "z") { if (S.mode === "review") undo(); return true; }
    if (!S.item) return false;
    if (S.task.kind === "spans" && spanKeys(event)) return true;
    if (/^[1-9]$/.test(key)) { numberKey(Number(key) - 1); return true; }
    if (key === "/") { openOverlay("picker"); return true; }
    if (key === "Enter") { accept(); return true; }
    if (key === "a") { acceptSuggestionAsIs(); return true; }
    if (S.mode === "conflicts") {
      if (key === " ") { S.conflictAt = (S.conflictAt + 1) % Math.max(1, S.conflicts.length); renderConflict(); return true; }
      return false;
    }
    if (key === "x") { send("reject"); return true; }
    if (key === " ") { send("skip"); return true; }
    if (key === "f") { openOverlay("flag"); return true; }
    if (key === "g") { S.applySimilar = !S.applySimilar; renderSimilar(S.item.similar); return true; }
    return false;
  }

  function onAction(action) {
    if (action === "help") return openOverlay("help");
    if (action === "conflicts") return S.mode === "conflicts" ? loadNext() : openConflicts();
    if (action === "undo") return undo();
    if (!S.item) return;
    if (action === "accept") return accept();
    if (action === "pick") return openOverlay("picker");
    if (action === "reject") return send("reject");
    if (action === "skip") return send("skip");
    if (action === "flag") return openOverlay("flag");
  }

  // ---------------------------------------------------------------------------------------
  // start

  document.addEventListener("keydown", onKey);
  document.addEventListener("mouseup", onMouseUp);
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) S.hiddenSince = performance.now();
    else if (S.hiddenSince !== null) { S.hiddenFor += performance.now() - S.hiddenSince; S.hiddenSince = null; }
  });
  $("picker-input").addEventListener("input", filterPicker);
  for (const button of document.querySelectorAll("[data-action]")) {
    button.addEventListener("mousedown", (event) => event.preventDefault());
    button.addEventListener("click", () => onAction(button.dataset.action));
  }
  for (const overlay of document.querySelectorAll(".overlay")) {
    overlay.addEventListener("mousedown", (event) => {
      if (event.target === overlay && overlay.id !== "name") closeOverlay();
    });
  }
  start(false).then((ready) => (ready ? loadNext() : null)).then(() => {
    document.body.dataset.ready = "1";
  }).catch(() => {
    document.body.dataset.ready = "1";
  });
})();
