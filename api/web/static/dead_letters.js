// Dead letters: the count beside the nav link on every page, and the Retry / Discard
// buttons of /dead-letters. Both call the JSON API (/v1/dead-letters) with the sign-in
// cookie; changes also send the X-Steward-Web header, as the other pages' buttons do.
"use strict";

(() => {
  const count = document.getElementById("dead-letter-count");

  function showCount(n) {
    if (!count) return;
    count.dataset.count = String(n);
    count.textContent = n > 0 ? String(n) : "";
    if (n > 0) {
      const words = document.createElement("span");
      words.className = "visually-hidden";
      words.textContent = " undelivered";
      count.append(words);
    }
    count.hidden = n <= 0;
  }

  // The dead-letters page counts on the server; other pages ask the API once.
  if (count && count.dataset.count === undefined) {
    fetch("/v1/dead-letters?limit=1", { credentials: "same-origin" })
      .then((response) => (response.ok ? response.json() : null))
      .then((page) => { if (page) showCount(page.total); })
      // Only a hint beside a link: the page works the same without it.
      .catch(() => {});
  }

  const DONE = {
    retry: ["retrying", "Sent again. It comes back here if it fails again."],
    discard: ["discarded", "Discarded: it will not be sent."],
  };

  async function act(button) {
    const row = button.closest("tr[data-dead-letter]");
    const { action } = button.dataset;
    const buttons = Array.from(row.querySelectorAll("button[data-action]"));
    const outcome = row.querySelector(".outcome");
    for (const b of buttons) b.disabled = true;
    outcome.className = "outcome busy";
    outcome.textContent = action === "retry" ? "Retrying…" : "Discarding…";
    let status = 0;
    let body = {};
    try {
      const response = await fetch(`/v1/dead-letters/${encodeURIComponent(row.dataset.deadLetter)}/${action}`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-Steward-Web": "1", "Content-Type": "application/json" },
        body: "{}",
      });
      status = response.status;
      body = await response.json().catch(() => ({}));
    } catch (err) {
      body = { error: { message: `Steward is not reachable (${err.message}).` } };
    }
    if (status >= 200 && status < 300) {
      const [badge, text] = DONE[action];
      row.dataset.outcome = badge;
      row.querySelector(".buttons").remove();
      const mark = document.createElement("span");
      mark.className = `badge ${badge}`;
      mark.textContent = badge;
      outcome.className = "outcome";
      outcome.replaceChildren(mark, ` ${text}`);
      if (count && count.dataset.count) showCount(Number(count.dataset.count) - 1);
      return;
    }
    outcome.className = "outcome error-text";
    outcome.textContent = (body.error && body.error.message) || `HTTP ${status}`;
    // 404 and 409: it is no longer a dead letter here, so the buttons could only fail again.
    if (status !== 404 && status !== 409) for (const b of buttons) b.disabled = false;
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("tr[data-dead-letter] button[data-action]");
    if (button && !button.disabled) act(button);
  });
})();
