// The providers page: Add / Edit (one form), Check and Delete. Every button calls the JSON API
// (/v1/providers) with the sign-in cookie and the X-Steward-Web header. A key typed here goes
// to the API once and is never read back: the page only ever shows whether one is set.
"use strict";

(() => {
  const form = document.getElementById("provider-form");
  const formError = document.getElementById("form-error");
  const actionError = document.getElementById("action-error");
  const title = document.getElementById("form-title");
  const save = document.getElementById("save");
  const cancel = document.getElementById("cancel-edit");
  const removeKey = form.querySelector(".remove-key");
  const keyHint = document.getElementById("api-key-hint");
  const urlHint = document.getElementById("base-url-hint");

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

  function showKind() {
    const kind = form.elements.kind.value;
    form.querySelector(".azure-only").hidden = kind !== "azure_openai";
    urlHint.textContent = kind === "openai"
      ? "Optional: empty means https://api.openai.com/v1."
      : kind === "azure_openai"
        ? "The resource's endpoint, such as https://my-resource.openai.azure.com."
        : "The API root, ending in /v1 (Ollama: http://127.0.0.1:11434/v1).";
  }

  function reset() {
    form.reset();
    form.elements.id.value = "";
    title.textContent = "Add a provider";
    save.textContent = "Add provider";
    cancel.hidden = true;
    removeKey.hidden = true;
    keyHint.textContent = "Leave empty for a local server that takes none.";
    clearErrors();
    showKind();
  }

  function clearErrors() {
    formError.hidden = true;
    for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  }

  function edit(row) {
    reset();
    const d = row.dataset;
    form.elements.id.value = d.provider;
    form.elements.name.value = d.name;
    form.elements.kind.value = d.kind;
    form.elements.base_url.value = d.baseUrl;
    form.elements.api_version.value = d.apiVersion;
    form.elements.default_model.value = d.defaultModel;
    title.textContent = `Edit ${d.name}`;
    save.textContent = "Save changes";
    cancel.hidden = false;
    removeKey.hidden = d.hasKey !== "true";
    keyHint.textContent = d.hasKey === "true" ? "Leave empty to keep the current key." : "None is set.";
    showKind();
    form.scrollIntoView({ behavior: "smooth", block: "start" });
    form.elements.name.focus();
  }

  function body(editing) {
    const value = (name) => form.elements[name].value.trim();
    const kind = value("kind");
    const out = { name: value("name"), kind };
    for (const name of ["base_url", "api_version", "default_model"]) {
      const given = name === "api_version" && kind !== "azure_openai" ? "" : value(name);
      if (given) out[name] = given;
      else if (editing) out[name] = null;
    }
    const key = form.elements.api_key.value;
    if (key) out.api_key = key;
    else if (editing && form.elements.remove_key.checked) out.api_key = null;
    return out;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const id = form.elements.id.value;
    save.disabled = true;
    const { status, data } = id
      ? await call("PATCH", `/v1/providers/${encodeURIComponent(id)}`, body(true))
      : await call("POST", "/v1/providers", body(false));
    save.disabled = false;
    if (status >= 200 && status < 300) {
      window.location.reload();
      return;
    }
    const error = data.error || {};
    formError.textContent = error.message || `HTTP ${status}`;
    formError.hidden = false;
    for (const detail of Array.isArray(error.details) ? error.details : []) {
      const input = form.elements[String(detail.field || "").split(".")[0]];
      if (input && input.setAttribute) input.setAttribute("aria-invalid", "true");
    }
  });

  cancel.addEventListener("click", reset);
  form.elements.kind.addEventListener("change", showKind);

  function badge(kind, text) {
    const span = document.createElement("span");
    span.className = `badge ${kind}`;
    span.textContent = text;
    return span;
  }

  function showCheck(cell, check) {
    const parts = [];
    if (check.ok) {
      const n = check.models.length;
      parts.push(badge("completed", "ok"), ` ${n} model${n === 1 ? "" : "s"} · ${check.latency_ms} ms`);
      if (n) {
        const details = document.createElement("details");
        details.className = "models";
        const summary = document.createElement("summary");
        summary.textContent = "models";
        const list = document.createElement("p");
        for (const model of check.models.slice(0, 50)) {
          const code = document.createElement("code");
          code.textContent = model;
          list.append(code, " ");
        }
        details.append(summary, list);
        parts.push(details);
      }
    } else {
      const words = document.createElement("span");
      words.className = "error-text";
      words.textContent = check.message || "";
      parts.push(badge("failed", check.reason || "failed"), " ", words);
    }
    const when = document.createElement("time");
    when.className = "hint";
    when.dateTime = check.checked_at;
    when.textContent = "just now";
    parts.push(document.createElement("br"), when);
    cell.replaceChildren(...parts);
  }

  async function check(row, button) {
    const cell = row.querySelector("td.check");
    button.disabled = true;
    cell.replaceChildren(badge("busy", "checking…"));
    const { status, data } = await call("POST", `/v1/providers/${encodeURIComponent(row.dataset.provider)}/check`, {});
    button.disabled = false;
    if (status === 200) showCheck(cell, data);
    else cell.replaceChildren(badge("failed", "error"), ` ${(data.error && data.error.message) || `HTTP ${status}`}`);
  }

  async function remove(row, button) {
    if (!window.confirm(`Delete provider ${row.dataset.name}? Its key is erased with it.`)) return;
    button.disabled = true;
    const { status, data } = await call("DELETE", `/v1/providers/${encodeURIComponent(row.dataset.provider)}`);
    if (status === 204) {
      window.location.reload();
      return;
    }
    button.disabled = false;
    actionError.textContent = `Could not delete ${row.dataset.name}: ${(data.error && data.error.message) || `HTTP ${status}`}`;
    actionError.hidden = false;
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("tr[data-provider] button[data-action]");
    if (!button || button.disabled) return;
    const row = button.closest("tr[data-provider]");
    const { action } = button.dataset;
    if (action === "check") check(row, button);
    else if (action === "edit") edit(row);
    else if (action === "delete") remove(row, button);
  });

  showKind();
})();
