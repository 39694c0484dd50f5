// The replay pages: the start form (/evals/replays) posts to the JSON API with the sign-in
// cookie and the X-Steward-Web header and opens the new replay; a running replay's page
// (/evals/replays/{id}) reloads every two seconds until the replay completes.
"use strict";

(() => {
  const running = document.querySelector("#replay[data-status='running']");
  if (running) {
    window.setTimeout(() => window.location.reload(), 2000);
    return;
  }
  const form = document.getElementById("start-replay-form");
  if (!form) return;
  const outcome = form.querySelector(".outcome");
  const fail = (text) => {
    outcome.className = "outcome error-text";
    outcome.textContent = text;
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = new FormData(form);
    const candidate = String(fields.get("candidate") || "draft").trim();
    const named = String(fields.get("conversations") || "").split(/\s+/).filter(Boolean);
    const body = { agent: fields.get("agent"), candidate: candidate === "draft" ? "draft" : Number(candidate) };
    if (named.length) {
      body.conversations = named;
    } else {
      const filter = {};
      if (fields.get("tool")) filter.tool = fields.get("tool");
      body.conversations = { filter, limit: Number(fields.get("limit") || 20) };
    }
    const evaluators = String(fields.get("evaluators") || "").trim();
    if (evaluators) {
      try {
        body.evaluators = JSON.parse(evaluators);
      } catch (err) {
        fail(`Evaluators are not JSON: ${err.message}`);
        return;
      }
    }
    outcome.className = "outcome busy";
    outcome.textContent = "Starting…";
    try {
      const response = await fetch("/v1/replays", {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-Steward-Web": "1", "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const data = await response.json().catch(() => ({}));
      if (response.ok) {
        window.location.assign(`/evals/replays/${data.id}`);
        return;
      }
      fail((data.error && data.error.message) || `HTTP ${response.status}`);
    } catch (err) {
      fail(`Steward is not reachable (${err.message}).`);
    }
  });
})();
