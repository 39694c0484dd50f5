// The evals pages: new dataset, import, add a case, start a run, compare, and a running run's live
// progress. Every button calls the JSON API (/v1/datasets, /v1/evals) with the sign-in cookie and
// the X-Steward-Web header; a run's page polls GET /v1/evals/runs/{id} until it completes.
"use strict";

(() => {
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

  function show(id, answer) {
    const box = document.getElementById(id);
    if (!box) return;
    const error = answer.data.error || {};
    const where = (error.details || [])[0];
    const line = where && where.line ? ` (line ${where.line}, ${where.column})` : "";
    box.textContent = (error.message || `Refused (${answer.status}).`) + (line && !String(error.message).includes("line ") ? line : "");
    box.hidden = false;
  }

  const datasetForm = document.getElementById("dataset-form");
  if (datasetForm) {
    datasetForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const answer = await call("POST", "/v1/datasets", { name: datasetForm.elements.name.value });
      if (answer.status === 201) window.location.href = `/evals/datasets/${answer.data.id}`;
      else show("dataset-error", answer);
    });
  }

  const datasetId = document.getElementById("dataset")?.dataset.id;
  const sandboxForm = document.getElementById("sandbox-form");
  if (sandboxForm) {
    sandboxForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      document.getElementById("sandbox-error").hidden = true;
      const answer = await call("PATCH", `/v1/datasets/${datasetId}`, { sandbox: sandboxForm.elements.sandbox.checked });
      if (answer.status === 200) {
        document.getElementById("sandbox-mode").textContent = answer.data.sandbox ? "run for real in a sandbox team per run" : "simulated";
        document.getElementById("sandbox-saved").hidden = false;
      } else show("sandbox-error", answer);
    });
  }
  const importForm = document.getElementById("import-form");
  if (importForm) {
    importForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const answer = await call("POST", `/v1/datasets/${datasetId}/import`, {
        format: importForm.elements.format.value,
        content: importForm.elements.content.value,
      });
      if (answer.status === 201) window.location.reload();
      else show("import-error", answer);
    });
  }

  const caseForm = document.getElementById("case-form");
  if (caseForm) {
    caseForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const messages = caseForm.elements.messages.value.split("\n").map((m) => m.trim()).filter(Boolean);
      const contains = caseForm.elements.reply_contains.value.trim();
      const body = { name: caseForm.elements.name.value, messages, evaluators: [] };
      if (contains) body.evaluators.push({ kind: "contains", value: contains });
      const answer = await call("POST", `/v1/datasets/${datasetId}/cases`, body);
      if (answer.status === 201) window.location.reload();
      else show("case-error", answer);
    });
  }

  const runForm = document.getElementById("run-form");
  if (runForm) {
    runForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const version = runForm.elements.version.value.trim();
      const body = {
        dataset: runForm.elements.dataset.value,
        agent: runForm.elements.agent.value,
        version: /^\d+$/.test(version) ? Number(version) : version,
      };
      const concurrency = runForm.elements.concurrency.value;
      if (concurrency) body.concurrency = Number(concurrency);
      const answer = await call("POST", "/v1/evals/runs", body);
      if (answer.status === 201) window.location.href = `/evals/runs/${answer.data.id}`;
      else show("run-error", answer);
    });
  }

  const compareForm = document.getElementById("compare-form");
  if (compareForm) {
    compareForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const picked = [...document.querySelectorAll("input.pick:checked")].map((box) => box.value);
      if (picked.length === 2) window.location.href = `/evals/compare/${picked[1]}/${picked[0]}`;
    });
  }
  const compareWith = document.getElementById("compare-with");
  if (compareWith) {
    compareWith.addEventListener("submit", (event) => {
      event.preventDefault();
      const run = document.getElementById("eval-run").dataset.run;
      window.location.href = `/evals/compare/${document.getElementById("compare-other").value}/${run}`;
    });
  }

  function paint(progress, run) {
    const bar = progress.querySelector("progress");
    bar.max = run.total;
    bar.value = run.done;
    progress.querySelector(".done").textContent = `${run.done}/${run.total}`;
    progress.querySelector(".rate").textContent =
      run.pass_rate === null ? "–" : `${Math.round(run.pass_rate * 100)}% pass`;
    const badge = progress.querySelector(".badge");
    badge.textContent = run.status;
    badge.className = `badge status-${run.status}`;
    progress.dataset.status = run.status;
  }

  // A run's page: follow its counters, and reload once it completes to show every case.
  const page = document.getElementById("eval-run");
  async function follow() {
    const runId = page.dataset.run;
    const answer = await call("GET", `/v1/evals/runs/${runId}`);
    if (answer.status !== 200) return setTimeout(follow, 2000);
    const run = answer.data;
    paint(page.querySelector(".eval-progress"), run);
    document.getElementById("run-passed").textContent = run.passed;
    document.getElementById("run-failed").textContent = run.failed;
    document.getElementById("run-errored").textContent = run.errored;
    document.getElementById("run-tokens").textContent = run.tokens_prompt + run.tokens_completion;
    if (run.sandbox && !run.sandbox.cleared_at) {
      const sandbox = document.getElementById("run-sandbox");
      sandbox.querySelector(".sandbox-bookings").textContent = run.sandbox.bookings;
      sandbox.querySelector(".sandbox-tickets").textContent = run.sandbox.tickets;
    }
    const shown = document.querySelectorAll("#results .case-result").length;
    if (run.status === "completed" || run.done > shown + 5) {
      if (run.status === "completed" && shown === run.done) return;
      window.location.reload();
      return;
    }
    setTimeout(follow, 700);
  }
  if (page && page.dataset.status === "running") setTimeout(follow, 500);

  // The lists: refresh running rows' progress.
  const running = [...document.querySelectorAll("#runs .eval-progress[data-status='running']")];
  async function refresh() {
    let still = 0;
    for (const progress of running) {
      if (progress.dataset.status !== "running") continue;
      const answer = await call("GET", `/v1/evals/runs/${progress.dataset.run}`);
      if (answer.status === 200) paint(progress, answer.data);
      if (progress.dataset.status === "running") still += 1;
    }
    if (still) setTimeout(refresh, 1000);
  }
  if (running.length) setTimeout(refresh, 1000);
})();
