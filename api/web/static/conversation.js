// One conversation, live. The page follows the conversation's event stream
// (GET /v1/conversations/{id}/events, with the sign-in cookie, resuming after the newest
// event the page was rendered with); on each event it fetches the page's changing parts
// again (/conversations/{id}/live) and swaps them in, so what it shows is always what the
// server renders. Streamed text is shown as it comes, until the stored message replaces it.
//
// Operators' buttons call the JSON API with the X-Steward-Web header; a refusal's
// {"error": {"code", "message"}} is shown beside them.
"use strict";

(() => {
  const root = document.getElementById("conversation");
  if (!root) return;
  const id = root.dataset.id;
  const api = `/v1/conversations/${encodeURIComponent(id)}`;
  const statusLine = document.getElementById("stream-status");
  const typing = document.getElementById("typing");
  const PARTS = ["facts", "transcript", "approvals", "timeline"];
  let last = Number(root.dataset.after) || 0;

  // --- the page's parts ----------------------------------------------------------------

  let timer = null;
  let inFlight = null;
  let again = false;

  function refreshSoon() {
    if (!timer) timer = setTimeout(refresh, 120);
  }

  async function refresh() {
    timer = null;
    if (inFlight) { again = true; return inFlight; }
    inFlight = (async () => {
      try {
        const response = await fetch(`/conversations/${encodeURIComponent(id)}/live`, { credentials: "same-origin" });
        if (response.ok) swap(await response.text());
      } catch (_) {
        // Unreachable for a moment: the next event (or the reconnect) refreshes again.
      }
    })();
    await inFlight;
    inFlight = null;
    if (again) { again = false; refreshSoon(); }
  }

  function swap(html) {
    const fresh = document.createElement("template");
    fresh.innerHTML = html;
    const open = new Set(Array.from(root.querySelectorAll("details[open][id]"), (d) => d.id));
    for (const part of PARTS) {
      const next = fresh.content.getElementById(part);
      const old = document.getElementById(part);
      if (next && old) old.replaceWith(next);
    }
    for (const details of root.querySelectorAll("details[id]")) if (open.has(details.id)) details.open = true;
    typing.hidden = true;
    typing.textContent = "";
    showControls();
  }

  // --- the event stream ----------------------------------------------------------------

  let streamed = "";
  let streamKey = "";

  function onEvent(event) {
    const n = Number(event.lastEventId);
    if (Number.isInteger(n)) {
      if (n <= last) return; // already shown
      last = n;
    }
    if (event.type === "message.delta") {
      const d = JSON.parse(event.data);
      const key = `${d.turn}:${d.round}:${d.attempt}`;
      if (key !== streamKey) { streamKey = key; streamed = ""; }
      streamed += d.text;
      typing.textContent = streamed;
      typing.hidden = false;
      return;
    }
    refreshSoon();
  }

  function connect() {
    const source = new EventSource(`${api}/events?after=${last}`);
    for (const kind of root.dataset.kinds.split(",")) source.addEventListener(kind, onEvent);
    source.addEventListener("message.reset", () => { streamed = ""; typing.textContent = ""; });
    source.onopen = () => { statusLine.textContent = "live"; statusLine.dataset.state = "live"; };
    source.onerror = () => {
      const closed = source.readyState === EventSource.CLOSED;
      statusLine.textContent = closed ? "disconnected: reload to follow again" : "reconnecting…";
      statusLine.dataset.state = closed ? "closed" : "reconnecting";
    };
  }

  // --- operator controls ---------------------------------------------------------------

  const controls = document.getElementById("controls");
  const feedback = document.getElementById("control-feedback");
  const web = { "X-Steward-Web": "1", "Content-Type": "application/json" };
  const newKey = () =>
    (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`);

  function showControls() {
    if (!controls) return;
    const state = document.getElementById("conversation-state").dataset;
    const person = state.status === "handed_off";
    const mine = state.heldByMe === "true";
    const other = !mine && Boolean(state.heldBy);
    for (const el of controls.querySelectorAll("[data-when=agent]")) el.hidden = person;
    for (const el of controls.querySelectorAll("[data-when=person]")) el.hidden = !person;
    document.getElementById("claim").hidden = mine;
    // Only the holder lets go of a hold, but an admin may release anyone's.
    document.getElementById("release").hidden = !(mine || (other && root.dataset.releasesAny === "true"));
    const hint = document.getElementById("person-hint");
    hint.textContent = other
      ? `${state.heldBy} holds this conversation: they answer the user until they release it or hand it back.`
      : "A person has this conversation; the agent stays silent until it is handed back.";
  }

  function tell(kind, text, code) {
    feedback.hidden = false;
    feedback.className = `notice ${kind}`;
    feedback.dataset.kind = kind;
    feedback.textContent = text;
    if (code) {
      const tag = document.createElement("code");
      tag.textContent = code;
      feedback.append(" ", tag);
    }
  }

  async function call(path, body, busy) {
    const buttons = Array.from(controls.querySelectorAll("button"));
    for (const b of buttons) b.disabled = true;
    tell("busy", busy);
    let status = 0;
    let answer = {};
    try {
      const response = await fetch(`${api}/${path}`, {
        method: "POST", credentials: "same-origin", headers: web, body: JSON.stringify(body),
      });
      status = response.status;
      answer = await response.json().catch(() => ({}));
    } catch (err) {
      answer = { error: { message: `Steward is not reachable (${err.message}).` } };
    } finally {
      for (const b of buttons) b.disabled = false;
    }
    if (status >= 200 && status < 300) return answer;
    const error = answer.error || {};
    tell("error", error.message || `HTTP ${status}`, error.code);
    // Refused because the conversation moved on (another tab, another operator): show it as it is now.
    if (status === 409) refresh();
    return null;
  }

  const DONE = {
    claim: ["Claiming…", "Claimed: the conversation is yours to answer."],
    release: ["Releasing…", "Released: another operator can claim it."],
    handback: ["Handing back…", "Handed back: the agent answers the next message."],
  };

  if (controls) {
    document.getElementById("takeover-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const reason = document.getElementById("takeover-reason").value.trim();
      if (await call("takeover", reason ? { reason } : {}, "Taking over…")) {
        document.getElementById("takeover-reason").value = "";
        tell("ok", "You have the conversation: the agent is paused until you hand it back.");
        await refresh();
      }
    });

    for (const action of Object.keys(DONE)) {
      document.getElementById(action).addEventListener("click", async () => {
        const [busy, done] = DONE[action];
        if (await call(action, {}, busy)) {
          tell("ok", done);
          await refresh();
        }
      });
    }

    const replyForm = document.getElementById("reply-form");
    const replyText = document.getElementById("reply-text");
    // One key per composed reply: sending it again (its answer was lost, a second click,
    // Ctrl+Enter twice) is the same message, stored and sent once. Editing it makes a new one.
    let replyKey = newKey();
    let sending = false;
    replyText.addEventListener("input", () => { replyKey = newKey(); });
    replyForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (sending) return;
      const text = replyText.value.trim();
      if (!text) { tell("error", "Write a reply first."); replyText.focus(); return; }
      sending = true;
      try {
        if (await call("operator-messages", { text, idempotency_key: replyKey }, "Sending…")) {
          replyText.value = "";
          replyKey = newKey();
          tell("ok", "Sent to the user.");
          await refresh();
        }
      } finally {
        sending = false;
      }
    });
    replyText.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) replyForm.requestSubmit();
    });
  }

  showControls();
  connect();
})();
