// The incidents pages' buttons: open one by hand (/incidents), and Acknowledge, Comment and
// Resolve (/incidents/{id}). Each calls the JSON API with the sign-in cookie and the
// X-Steward-Web header, then reloads the page so it shows what the server now holds.
"use strict";

(() => {
  async function post(path, body, outcome) {
    outcome.className = "outcome busy";
    outcome.textContent = "Saving…";
    try {
      const response = await fetch(path, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-Steward-Web": "1", "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const data = await response.json().catch(() => ({}));
      if (response.ok) return data;
      outcome.className = "outcome error-text";
      outcome.textContent = (data.error && data.error.message) || `HTTP ${response.status}`;
    } catch (err) {
      outcome.className = "outcome error-text";
      outcome.textContent = `Steward is not reachable (${err.message}).`;
    }
    return null;
  }

  const actions = document.getElementById("incident-actions");
  if (actions) {
    const outcome = actions.querySelector(".outcome");
    actions.addEventListener("click", async (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button) return;
      const text = actions.querySelector("textarea").value.trim();
      const { action } = button.dataset;
      if (action === "comment" && !text) {
        outcome.className = "outcome error-text";
        outcome.textContent = "Write a comment first.";
        return;
      }
      const body = action === "comment" ? { text } : text ? { comment: text } : {};
      const done = await post(`/v1/incidents/${encodeURIComponent(actions.dataset.incident)}/${action}`, body, outcome);
      if (done) window.location.reload();
    });
  }

  const form = document.getElementById("open-incident-form");
  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const fields = new FormData(form);
      const body = { title: fields.get("title"), severity: fields.get("severity") };
      if (fields.get("agent")) body.agent = fields.get("agent");
      const done = await post("/v1/incidents", body, form.querySelector(".outcome"));
      if (done) window.location.assign(`/incidents/${done.id}`);
    });
  }
})();
