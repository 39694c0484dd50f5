// Prompt template editor: line numbers, saving through /v1/templates, and a refused
// template's error shown at its line (the 422's `details[0].line`).
"use strict";

const form = document.getElementById("template-form");
const body = document.getElementById("body");
const gutter = document.getElementById("gutter");
const backdrop = document.getElementById("backdrop");
const problem = document.getElementById("body-problem");
const saved = document.getElementById("saved");
let badLine = null;

function escapeHtml(text) {
  return text.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

// The gutter numbers each line; the backdrop behind the transparent textarea marks the bad one.
function paint() {
  const lines = body.value.split("\n");
  gutter.innerHTML = lines
    .map((_, i) => (i + 1 === badLine ? `<span class="bad" data-line="${i + 1}">${i + 1}</span>` : `${i + 1}`))
    .join("\n");
  backdrop.innerHTML =
    lines.map((line, i) => (i + 1 === badLine ? `<mark>${escapeHtml(line) || " "}</mark>` : escapeHtml(line))).join("\n") + "\n";
  gutter.scrollTop = body.scrollTop;
  backdrop.scrollTop = body.scrollTop;
  backdrop.scrollLeft = body.scrollLeft;
}

function goToLine(line) {
  const lines = body.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
  body.focus();
  body.setSelectionRange(start, start + (lines[line - 1] || "").length);
}

function showProblem(error) {
  const detail = Array.isArray(error.details) ? error.details[0] || {} : {};
  badLine = Number.isInteger(detail.line) ? detail.line : null;
  problem.innerHTML = "";
  if (badLine) {
    const where = document.createElement("span");
    where.className = "where";
    where.textContent = `Line ${badLine}` + (detail.template && detail.template !== form.name.value ? ` of ${detail.template}` : "");
    problem.append(where);
  }
  problem.append(document.createTextNode(detail.message || error.message));
  if (badLine) {
    const jump = document.createElement("button");
    jump.type = "button";
    jump.className = "link";
    jump.textContent = "go to line";
    const line = badLine;
    jump.addEventListener("click", () => goToLine(line));
    problem.append(jump);
  }
  problem.hidden = false;
  paint();
}

function clearProblem() {
  problem.hidden = true;
  badLine = null;
  paint();
}

async function call(method, url, payload) {
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: { "X-Steward-Web": "1", "Content-Type": "application/json" },
    body: payload === undefined ? undefined : JSON.stringify(payload),
  });
  const data = response.status === 204 ? {} : await response.json().catch(() => ({}));
  return { ok: response.ok, status: response.status, data };
}

async function save(event) {
  event.preventDefault();
  saved.textContent = "";
  saved.classList.remove("ok");
  const id = form.dataset.id;
  const payload = { name: form.name.value, body: body.value, is_default: form.is_default.checked };
  if (!id && form.agent.value) payload.agent = form.agent.value;
  const button = document.getElementById("save");
  button.disabled = true;
  try {
    const result = await call(id ? "PATCH" : "POST", id ? `/v1/templates/${id}` : "/v1/templates", payload);
    if (!result.ok) {
      showProblem(result.data.error || { message: `HTTP ${result.status}` });
      return;
    }
    clearProblem();
    if (!id) {
      window.location.assign(`/templates/${result.data.id}`);
      return;
    }
    saved.textContent = "Saved";
    saved.classList.add("ok");
  } finally {
    button.disabled = false;
  }
}

async function remove() {
  if (!window.confirm(`Delete template "${form.name.value}"? Published versions keep their copy.`)) return;
  const result = await call("DELETE", `/v1/templates/${form.dataset.id}`);
  if (result.ok) window.location.assign("/templates");
  else showProblem(result.data.error || { message: `HTTP ${result.status}` });
}

if (form) {
  body.addEventListener("input", () => {
    if (badLine) clearProblem();
    else paint();
  });
  body.addEventListener("scroll", paint);
  new ResizeObserver(paint).observe(body);
  form.addEventListener("submit", save);
  form.name.addEventListener("blur", () => form.name.setAttribute("data-touched", ""));
  const del = document.getElementById("delete");
  if (del) del.addEventListener("click", remove);
  paint();
}
