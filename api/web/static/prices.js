// The prices page: set or reset a model's price, and save the team's budget. Every button calls
// the JSON API (/v1/prices/{model}, /v1/budgets) with the sign-in cookie and the X-Steward-Web header.
"use strict";

(() => {
  const actionError = document.getElementById("action-error");

  async function call(method, url, body) {
    try {
      const response = await fetch(url, {
        method,
        credentials: "same-origin",
        headers: { "X-Steward-Web": "1", "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const data = response.status === 204 ? {} : await response.json().catch(() => ({}));
      return { status: response.status, data };
    } catch (err) {
      return { status: 0, data: { error: { message: `Steward is not reachable (${err.message}).` } } };
    }
  }
  const messageOf = (data, status) => (data && data.error && data.error.message) || `Failed (HTTP ${status}).`;
  const priceUrl = (model) => `/v1/prices/${model.split("/").map(encodeURIComponent).join("/")}`;

  const form = document.getElementById("price-form");
  const priceError = document.getElementById("price-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    priceError.textContent = "";
    if (!form.checkValidity()) { priceError.textContent = "Give a model and two prices of 0 or more."; return; }
    const body = {
      prompt_per_mtok: Number(form.elements.prompt.value),
      completion_per_mtok: Number(form.elements.completion.value),
    };
    const { status, data } = await call("PUT", priceUrl(form.elements.model.value.trim()), body);
    if (status === 200) { window.location.reload(); return; }
    priceError.textContent = messageOf(data, status);
  });

  document.querySelectorAll("#prices [data-action]").forEach((button) => button.addEventListener("click", async () => {
    const row = button.closest("tr");
    if (button.dataset.action === "edit") {
      form.elements.model.value = row.dataset.model;
      form.elements.prompt.value = row.dataset.prompt;
      form.elements.completion.value = row.dataset.completion;
      form.elements.prompt.focus();
      return;
    }
    const { status, data } = await call("DELETE", priceUrl(row.dataset.model));
    if (status === 204) { window.location.reload(); return; }
    actionError.hidden = false;
    actionError.textContent = messageOf(data, status);
  }));

  const budgetForm = document.getElementById("team-budget-form");
  const budgetError = document.getElementById("team-budget-error");
  const budgetStatus = document.getElementById("team-budget-status");
  budgetForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    budgetError.textContent = "";
    let body;
    try { body = JSON.parse(document.getElementById("team-budget-json").value || "{}"); } catch (err) {
      budgetError.textContent = `Not JSON: ${err.message}`;
      return;
    }
    const { status, data } = await call("PUT", "/v1/budgets", body);
    if (status === 200) { budgetStatus.textContent = "Saved."; return; }
    const details = data && data.error && Array.isArray(data.error.details) ? data.error.details : [];
    budgetError.textContent = details.length
      ? details.map((d) => `${d.field}: ${d.message}`).join("; ")
      : messageOf(data, status);
  });
})();
