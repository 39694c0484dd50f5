// Steward playground: chat with an agent over the conversation's event stream.
//
// Everything shown is built from the event log (GET /v1/conversations/{id}/events). The
// rendered items and the last event id are kept in sessionStorage, so a reload shows what
// was there and resumes the stream right after the last event seen: no gap, no repeat.
// The one thing no event carries is the holding message the user gets while a call waits
// for approval: it is a `notice` in the transcript, read when `approval.requested` arrives.
// The list of past conversations is an HTML fragment (/playground/conversations), fetched
// again when the agent changes and when a turn starts or ends.
"use strict";

(() => {
  const root = document.getElementById("playground");
  const log = document.getElementById("log");
  const statusLine = document.getElementById("stream-status");
  const agentSelect = document.getElementById("agent");
  const composer = document.getElementById("composer");
  const textBox = document.getElementById("text");
  const canSend = root.dataset.canSend === "true";
  const web = { "X-Steward-Web": "1", "Content-Type": "application/json" };

  const historyBox = document.getElementById("history");
  const historyList = document.getElementById("history-list");

  // How a decided approval reads, by the approval's status: the words and the banner's tone.
  const OUTCOMES = {
    approved: ["approved", "ok"],
    edited: ["approved with edits", "ok"],
    rejected: ["rejected", "refused"],
    responded: ["answered by an operator instead", "ok"],
    expired: ["expired, not run", "ended"],
    cancelled: ["cancelled: the turn ended", "ended"],
  };

  let conversation = root.dataset.conversation || null;
  let state = { last: 0, seq: 0, items: [] };
  let source = null;
  const nodes = new Map();

  const storageKey = (id) => `steward.playground.${id}`;
  const newKey = () =>
    (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`);

  function save() {
    if (conversation) sessionStorage.setItem(storageKey(conversation), JSON.stringify(state));
  }

  function load(id) {
    try {
      const saved = JSON.parse(sessionStorage.getItem(storageKey(id)) || "null");
      if (saved && Array.isArray(saved.items) && Number.isInteger(saved.last)) return { seq: 0, ...saved };
    } catch (_) { /* a damaged entry: start from the beginning of the log */ }
    return { last: 0, seq: 0, items: [] };
  }

  function setStatus(text) { statusLine.textContent = text; }

  function render(item) {
    let li = nodes.get(item.key);
    if (!li) {
      li = document.createElement("li");
      nodes.set(item.key, li);
      log.appendChild(li);
    }
    li.className = item.kind;
    li.dataset.kind = item.kind;
    li.dataset.turn = String(item.turn);
    li.replaceChildren();
    if (item.kind === "user" || item.kind === "assistant") {
      li.textContent = item.text;
      li.classList.toggle("streaming", item.kind === "assistant" && !item.done);
      li.hidden = item.kind === "assistant" && item.done && !item.text;
    } else if (item.kind === "tool") {
      const call = document.createElement("div");
      call.textContent = `→ ${item.name}(${item.arguments})`;
      li.appendChild(call);
      if (item.result !== undefined) {
        // Results can be long: a one-line summary, the whole result a click away.
        const result = document.createElement("details");
        result.className = item.ok ? "result" : "result failed";
        const summary = document.createElement("summary");
        const text = JSON.stringify(item.result);
        summary.textContent = `← ${item.ok ? "result" : "failed"}: ${text.length > 80 ? `${text.slice(0, 80)}…` : text}`;
        const full = document.createElement("pre");
        full.textContent = JSON.stringify(item.result, null, 2);
        result.append(summary, full);
        li.appendChild(result);
      }
    } else if (item.kind === "approval") {
      li.setAttribute("role", "note");
      const title = document.createElement("strong");
      const tool = item.tool || "an action";
      const outcome = item.outcome && (OUTCOMES[item.outcome.status] || [item.outcome.status || "decided", "ok"]);
      if (outcome) {
        const by = item.outcome.by && item.outcome.by !== "system" ? ` by ${item.outcome.by}` : "";
        title.textContent = `${tool}: ${outcome[0]}${by}`;
        li.classList.add("resolved", outcome[1]);
        li.dataset.outcome = item.outcome.status || "";
      } else {
        title.textContent = `Paused for approval: ${tool}`;
      }
      li.appendChild(title);
      if (outcome && item.outcome.comment) li.appendChild(document.createTextNode(` “${item.outcome.comment}”`));
      if (item.approvalId) {
        li.appendChild(document.createTextNode(" — "));
        const link = document.createElement("a");
        link.href = `/inbox/${encodeURIComponent(item.approvalId)}`;
        link.textContent = outcome ? "see it in the inbox" : "open in the inbox";
        li.appendChild(link);
      }
    } else if (item.kind === "notice") {
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = "Holding message · sent to the user while an operator decides";
      li.append(label, document.createTextNode(item.text));
    } else {
      li.textContent = item.text;
    }
  }

  function renderAll() {
    log.replaceChildren();
    nodes.clear();
    state.items.forEach(render);
  }

  function find(key) { return state.items.find((i) => i.key === key); }

  function upsert(item) {
    const existing = find(item.key);
    if (existing) Object.assign(existing, item); else state.items.push(item);
    render(find(item.key));
  }

  // The holding messages of a paused turn, placed before its approval banner.
  async function showNotices() {
    const id = conversation;
    for (;;) {
      let page;
      try {
        const response = await fetch(
          `/v1/conversations/${encodeURIComponent(id)}/messages?after=${state.seq}&limit=500`,
          { headers: { "X-Steward-Web": "1" }, credentials: "same-origin" });
        if (!response.ok) return;
        page = (await response.json()).items || [];
      } catch (_) { return; /* offline for a moment: the next pause reads them */ }
      if (id !== conversation) return; // another conversation was opened meanwhile
      for (const m of page) {
        state.seq = Math.max(state.seq, m.seq);
        if (m.role !== "notice" || find(`n:${m.seq}`)) continue;
        const notice = { key: `n:${m.seq}`, kind: "notice", turn: m.turn, text: m.content };
        const at = state.items.findIndex((i) => i.kind === "approval" && i.turn === m.turn);
        if (at < 0) state.items.push(notice); else state.items.splice(at, 0, notice);
      }
      renderAll();
      save();
      if (page.length < 500) return;
    }
  }

  let refreshing = null;
  async function refreshHistory() {
    if (!historyList || !agentSelect.value) return;
    const query = new URLSearchParams({ agent: agentSelect.value });
    if (conversation) query.set("current", conversation);
    const asked = refreshing = query.toString();
    try {
      const response = await fetch(`/playground/conversations?${query}`, { credentials: "same-origin" });
      const html = await response.text();
      if (asked === refreshing && (response.headers.get("content-type") || "").startsWith("text/html")) {
        historyList.innerHTML = html;
      }
    } catch (_) { /* keep the list shown; the next turn refreshes it */ }
  }

  function reply(turn, round) {
    const key = `a:${turn}:${round}`;
    let item = find(key);
    if (!item) {
      item = { key, kind: "assistant", turn, round, text: "", attempt: 0, done: false };
      state.items.push(item);
    }
    return item;
  }

  // What each kind of event does to the page; see README "Streaming" for the rules.
  const handlers = {
    "turn.started": (d) => {
      (d.messages || []).forEach((m) =>
        upsert({ key: `u:${m.number}`, kind: "user", turn: d.turn, text: m.text }));
    },
    "message.delta": (d) => {
      const item = reply(d.turn, d.round);
      if (item.done || d.attempt < item.attempt) return; // a stale attempt's text
      if (d.attempt > item.attempt) { item.text = ""; item.attempt = d.attempt; }
      item.text += d.text;
      render(item);
    },
    "message.reset": (d) => {
      const item = reply(d.turn, d.round);
      if (item.done) return;
      item.text = "";
      item.attempt = Math.max(item.attempt, d.attempt);
      render(item);
    },
    "message.completed": (d) => {
      const item = reply(d.turn, d.round);
      item.text = d.text;
      item.done = true;
      render(item);
    },
    "tool.call": (d) => upsert({ key: `t:${d.turn}:${d.id}`, kind: "tool", turn: d.turn, name: d.name, arguments: d.arguments }),
    "tool.result": (d) => upsert({ key: `t:${d.turn}:${d.id}`, kind: "tool", turn: d.turn, name: d.name, ok: d.ok, result: d.result }),
    "approval.requested": (d) => {
      upsert({
        key: `ap:${d.approval_id || d.turn}`, kind: "approval", turn: d.turn,
        tool: d.tool || d.tool_name || d.name, approvalId: d.approval_id,
      });
      showNotices();
    },
    // The banner itself says how it ended: approved, edited, rejected or answered, by whom.
    "approval.decided": (d) => upsert({
      key: `ap:${d.approval_id || d.turn}`, kind: "approval", turn: d.turn,
      tool: d.tool || (find(`ap:${d.approval_id || d.turn}`) || {}).tool, approvalId: d.approval_id,
      outcome: { status: d.status || d.decision, by: d.decided_by, comment: d.comment },
    }),
    "turn.completed": (d) => {
      if (d.status !== "completed") {
        upsert({ key: `end:${d.turn}`, kind: "note", turn: d.turn, text: `Turn ${d.turn} ${d.status.replace("_", " ")}.` });
      }
      refreshHistory();
    },
    "turn.failed": (d) => {
      upsert({ key: `end:${d.turn}`, kind: "failed", turn: d.turn, text: `Turn ${d.turn} failed (${d.code}): ${d.message}` });
      refreshHistory();
    },
  };

  function onEvent(event) {
    const id = Number(event.lastEventId);
    if (!Number.isInteger(id) || id <= state.last) return; // already shown
    const handle = handlers[event.type];
    if (handle) handle(JSON.parse(event.data));
    state.last = id;
    save();
  }

  function connect() {
    if (source) source.close();
    // The browser resends Last-Event-ID itself when it reconnects; `after` covers a reload.
    source = new EventSource(`/v1/conversations/${encodeURIComponent(conversation)}/events?after=${state.last}`);
    Object.keys(handlers).forEach((kind) => source.addEventListener(kind, onEvent));
    source.onopen = () => setStatus("live");
    source.onerror = () => setStatus(source.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…");
  }

  function open(id) {
    conversation = id;
    state = load(id);
    renderAll();
    const label = document.getElementById("conversation-label");
    label.replaceChildren(document.createTextNode("Conversation "), Object.assign(document.createElement("code"), { textContent: id }));
    const url = new URL(window.location.href);
    url.searchParams.set("conversation", id);
    history.replaceState(null, "", url);
    connect();
    refreshHistory();
  }

  async function failure(response) {
    try {
      const body = await response.json();
      return body.error ? `${body.error.code}: ${body.error.message}` : response.statusText;
    } catch (_) { return `HTTP ${response.status}`; }
  }

  document.getElementById("new-conversation").addEventListener("click", async () => {
    const response = await fetch("/v1/conversations", {
      method: "POST", headers: web, body: JSON.stringify({ agent: agentSelect.value }),
    });
    if (!response.ok) { setStatus(await failure(response)); return; }
    open((await response.json()).id);
  });

  async function send() {
    const text = textBox.value.trim();
    if (!text || !canSend) return;
    if (!conversation) {
      document.getElementById("new-conversation").click();
      await new Promise((resolve) => setTimeout(resolve, 0));
      for (let i = 0; i < 50 && !conversation; i++) await new Promise((r) => setTimeout(r, 100));
      if (!conversation) return;
    }
    textBox.value = "";
    const response = await fetch(`/v1/conversations/${encodeURIComponent(conversation)}/messages`, {
      method: "POST", headers: web, body: JSON.stringify({ text, idempotency_key: newKey() }),
    });
    if (!response.ok) { textBox.value = text; setStatus(await failure(response)); }
  }

  agentSelect.addEventListener("change", refreshHistory);
  // On a phone the list folds away above the chat; open it with a tap.
  if (historyBox && window.matchMedia("(max-width: 50rem)").matches) historyBox.open = false;

  composer.addEventListener("submit", (e) => { e.preventDefault(); send(); });
  textBox.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); }
  });

  if (conversation) open(conversation);
})();
