// "Add to dataset" on a conversation's page: lists the team's datasets (GET /v1/datasets) and
// makes a case of the chosen turn (POST /v1/datasets/{id}/cases with from_turn).
"use strict";

(() => {
  const box = document.getElementById("add-to-dataset");
  if (!box) return;
  const form = document.getElementById("add-to-dataset-form");
  const select = document.getElementById("add-dataset");
  const result = document.getElementById("add-to-dataset-result");
  const headers = { "X-Steward-Web": "1", "Content-Type": "application/json" };

  fetch("/v1/datasets", { credentials: "same-origin", headers })
    .then((response) => response.json())
    .then((data) => {
      for (const dataset of data.items || []) {
        const option = document.createElement("option");
        option.value = dataset.id;
        option.textContent = `${dataset.name} (${dataset.cases} cases)`;
        select.append(option);
      }
      if (!select.options.length) result.textContent = "No datasets yet: make one on the Evals page.";
    })
    .catch(() => { result.textContent = "Datasets could not be listed."; });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { from_turn: { conversation: box.dataset.conversation, turn: Number(form.elements.turn.value) } };
    try {
      const response = await fetch(`/v1/datasets/${select.value}/cases`, {
        method: "POST", credentials: "same-origin", headers, body: JSON.stringify(body),
      });
      const data = await response.json().catch(() => ({}));
      result.textContent = response.status === 201
        ? `Added as case #${data.seq} (${data.messages.length} message(s)).`
        : (data.error && data.error.message) || `Refused (${response.status}).`;
    } catch (err) {
      result.textContent = `Steward is not reachable (${err.message}).`;
    }
  });
})();
