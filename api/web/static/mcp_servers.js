// The MCP servers page: Add (one form), Refresh and Delete. Every button calls the JSON API
// (/v1/mcp-servers) with the sign-in cookie and the X-Steward-Web header. A token typed here
// goes to the API once and is never read back.
"use strict";

(() => {
  const form = document.getElementById("mcp-form");
  const formError = document.getElementById("form-error");
  const actionError = document.getElementById("action-error");
  const save = document.getElementById("save");

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
    form.querySelector(".header-only").hidden = kind !== "header";
    form.querySelector(".secret-only").hidden = kind === "none";
  }

  function body() {
    const value = (name) => form.elements[name].value.trim();
    const out = { name: value("name"), url: value("url") };
    const kind = value("auth_kind");
    if (kind === "bearer") out.auth = { kind, token: form.elements.secret.value };
    if (kind === "header") out.auth = { kind, header: value("header"), value: form.elements.secret.value };
    return out;
  }

  function failed(target, status, data) {
    target.textContent = (data.error && data.error.message) || `HTTP ${status}`;
    target.hidden = false;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError.hidden = true;
    save.disabled = true;
    const { status, data } = await call("POST", "/v1/mcp-servers", body());
    save.disabled = false;
    if (status === 201) window.location.reload();
    else failed(formError, status, data);
  });

  async function act(row, button, method, path, ok) {
    button.disabled = true;
    const { status, data } = await call(method, `/v1/mcp-servers/${encodeURIComponent(row.dataset.server)}${path}`);
    if (status === ok) {
      window.location.reload();
      return;
    }
    button.disabled = false;
    failed(actionError, status, data);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("tr[data-server] button[data-action]");
    if (!button || button.disabled) return;
    const row = button.closest("tr[data-server]");
    if (button.dataset.action === "refresh") act(row, button, "POST", "/refresh", 200);
    else if (window.confirm(`Delete MCP server ${row.dataset.name}? Its token is erased with it.`)) {
      act(row, button, "DELETE", "", 204);
    }
  });

  form.elements.auth_kind.addEventListener("change", showAuth);
  showAuth();
})();
