// The custom actions page: Import (one form), Check and Delete. Every button calls the JSON API
// (/v1/actions) with the sign-in cookie and the X-Steward-Web header. A secret typed here goes to
// the API once and is never read back: the page only shows the auth's kind and where it goes.
"use strict";

(() => {
  const form = document.getElementById("action-form");
  const formError = document.getElementById("form-error");
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

  function showAuth() {
    const kind = form.elements.auth_kind.value;
    for (const field of form.querySelectorAll(".auth-field")) {
      field.hidden = !field.dataset.for.split(" ").includes(kind);
    }
  }

  function body() {
    const value = (name) => form.elements[name].value.trim();
    const spec = value("spec");
    const out = {
      name: value("name"),
      operations: value("operations").split(",").map((s) => s.trim()).filter(Boolean),
    };
    if (/^https?:\/\/\S+$/.test(spec)) out.spec_url = spec; else out.spec = spec;
    if (value("base_url")) out.base_url = value("base_url");
    const kind = value("auth_kind");
    const secret = form.elements.secret.value;
    if (kind === "bearer") out.auth = { kind, token: secret };
    else if (kind === "api_key") out.auth = { kind, header: value("header"), key: secret };
    else if (kind === "basic") out.auth = { kind, username: value("username"), password: secret };
    return out;
  }

  function showError(target, data) {
    const error = data.error || {};
    const where = (error.details || []).map((d) => d.location ? `${d.field} at ${d.location}` : d.field);
    target.textContent = error.message || "Something went wrong.";
    if (where.length && !error.message?.includes(where[0])) target.textContent += ` (${where.join(", ")})`;
    target.hidden = false;
  }

  form.elements.auth_kind.addEventListener("change", showAuth);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError.hidden = true;
    const { status, data } = await call("POST", "/v1/actions", body());
    if (status === 201) {
      window.location.reload();
      return;
    }
    showError(formError, data);
  });

  for (const row of document.querySelectorAll("tr[data-action-id]")) {
    const id = row.dataset.actionId;
    row.querySelector('[data-act="check"]').addEventListener("click", async (event) => {
      const button = event.currentTarget;
      button.disabled = true;
      const cell = row.querySelector("td.check");
      cell.textContent = "checking…";
      const { status, data } = await call("POST", `/v1/actions/${id}/check`, {});
      button.disabled = false;
      if (status !== 200) {
        cell.textContent = "";
        showError(actionError, data);
        return;
      }
      const parts = [data.ok ? "ok" : "failed", data.operation];
      if (data.status !== null) parts.push(`HTTP ${data.status}`);
      if (data.latency_ms !== null) parts.push(`${data.latency_ms} ms`);
      cell.textContent = parts.join(" · ") + (data.message ? ` — ${data.message}` : "");
    });
    row.querySelector('[data-act="delete"]').addEventListener("click", async () => {
      if (!window.confirm(`Delete the action ${row.dataset.name}? Agents stop being offered its tools.`)) return;
      const { status, data } = await call("DELETE", `/v1/actions/${id}`);
      if (status === 204) row.remove(); else showError(actionError, data);
    });
  }
  showAuth();
})();
