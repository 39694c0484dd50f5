// Schedules and reports pages: buttons call the JSON API with the sign-in cookie.
"use strict";

async function act(button) {
  const error = document.getElementById("action-error");
  const { action, schedule, report } = button.dataset;
  const url = report ? `/v1/reports/${report}/ack` : `/v1/schedules/${schedule}/${action}`;
  button.disabled = true;
  try {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-Steward-Web": "1", "Content-Type": "application/json" },
      body: "{}",
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
    }
    // A trigger's run starts in the background: give it a moment before showing the page again.
    if (action === "trigger") await new Promise((resolve) => setTimeout(resolve, 500));
    window.location.reload();
  } catch (err) {
    if (error) {
      error.textContent = `Could not ${action}: ${err.message}`;
      error.hidden = false;
    }
    button.disabled = false;
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (button) act(button);
});
