// Steward inbox: live list with keyboard shortcuts, and the decision form of one item.
//
// Decisions go to the JSON API (POST /v1/approvals/{id}/decision) with the sign-in
// cookie and the X-Steward-Web header; the list refreshes its rows from /inbox/rows.
"use strict";

(() => {
  const JSON_HEADERS = { "Content-Type": "application/json", "X-Steward-Web": "1" };
  const REFRESH_MS = 1500;

  const typing = (el) => el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));

  function show(el, text, kind) {
    el.textContent = text;
    el.className = kind ? `notice ${kind}` : "";
  }

  async function decide(id, body) {
    const response = await fetch(`/v1/approvals/${encodeURIComponent(id)}/decision`, {
      method: "POST", headers: JSON_HEADERS, body: JSON.stringify(body), credentials: "same-origin",
    });
    let payload = null;
    try { payload = await response.json(); } catch (_) { /* an empty or HTML body */ }
    return { status: response.status, payload };
  }

  function conflictText(error) {
    const d = (error && error.details) || {};
    if (error && error.code === "already_decided" && d.decided_by) {
      const when = d.decided_at ? new Date(d.decided_at).toLocaleString() : "earlier";
      return `Already decided by ${d.decided_by} (${d.status}) at ${when}. Nothing was changed.`;
    }
    return (error && error.message) || "Someone else got there first.";
  }

  // ---- the list -------------------------------------------------------------------
  const inbox = document.getElementById("inbox");
  if (inbox) {
    const rows = document.getElementById("rows");
    const feedback = document.getElementById("feedback");
    const canDecide = inbox.dataset.canDecide === "true";
    let selected = null;
    let lastHtml = rows.innerHTML;

    const items = () => Array.from(rows.querySelectorAll("tr.item"));
    function select(id, scroll) {
      selected = id;
      for (const tr of items()) {
        const on = tr.dataset.id === id;
        tr.classList.toggle("selected", on);
        tr.setAttribute("aria-selected", on ? "true" : "false");
        if (on && scroll) tr.scrollIntoView({ block: "nearest" });
      }
    }
    function move(step) {
      const list = items();
      if (!list.length) return;
      const at = list.findIndex((tr) => tr.dataset.id === selected);
      const next = at < 0 ? 0 : Math.min(list.length - 1, Math.max(0, at + step));
      select(list[next].dataset.id, true);
    }

    async function refresh() {
      if (document.hidden) return;
      const query = new URLSearchParams({ status: inbox.dataset.status });
      if (inbox.dataset.agent) query.set("agent", inbox.dataset.agent);
      if (inbox.dataset.escalated) query.set("escalated", "true");
      try {
        const response = await fetch(`/inbox/rows?${query}`, { credentials: "same-origin" });
        if (response.redirected && new URL(response.url).pathname === "/login") {
          window.location.reload();
          return;
        }
        if (!response.ok) return;
        const html = await response.text();
        if (html !== lastHtml) {
          rows.innerHTML = html;
          lastHtml = html;
          if (selected && !items().some((tr) => tr.dataset.id === selected)) selected = null;
          if (selected) select(selected, false);
        }
      } catch (_) { /* offline for a moment: the next tick tries again */ }
    }
    setInterval(refresh, REFRESH_MS);
    document.addEventListener("visibilitychange", refresh);

    rows.addEventListener("click", (event) => {
      const tr = event.target.closest("tr.item");
      if (tr && !event.target.closest("a")) select(tr.dataset.id, false);
    });

    async function approveSelected() {
      const tr = items().find((row) => row.dataset.id === selected);
      if (!tr) return;
      const tool = tr.querySelector("a").textContent;
      show(feedback, `Approving ${tool}…`, "busy");
      const { status, payload } = await decide(selected, { decision: "approve" });
      if (status === 200) show(feedback, `Approved ${tool}.`, "ok");
      else if (status === 409) show(feedback, conflictText(payload && payload.error), "warn");
      else show(feedback, (payload && payload.error && payload.error.message) || `Failed (HTTP ${status}).`, "error");
      await refresh();
    }

    document.addEventListener("keydown", (event) => {
      if (typing(document.activeElement) || event.ctrlKey || event.metaKey || event.altKey) return;
      const open = (hash) => { if (selected) window.location.href = `/inbox/${selected}${hash}`; };
      switch (event.key) {
        case "j": move(1); break;
        case "k": move(-1); break;
        case "Enter": case "o": open(""); break;
        case "a": if (canDecide) approveSelected(); break;
        case "r": if (canDecide) open("#reject"); break;
        case "e": if (canDecide) open("#edit"); break;
        default: return;
      }
      event.preventDefault();
    });
  }

  // ---- one item -------------------------------------------------------------------
  const article = document.getElementById("approval");
  if (article && article.dataset.canDecide === "true") {
    const id = article.dataset.id;
    const feedback = document.getElementById("feedback");
    const fields = Array.from(document.querySelectorAll("#args [name]"));
    const message = document.getElementById("message");
    const comment = document.getElementById("comment");
    const buttons = Array.from(document.querySelectorAll("[data-decision]"));
    const editButton = document.getElementById("edit");
    const initial = new Map(fields.map((f) => [f.name, f.type === "checkbox" ? f.checked : f.value]));

    const changed = () => fields.some((f) => (f.type === "checkbox" ? f.checked : f.value) !== initial.get(f.name));
    const fieldError = (name) => document.getElementById(`error-${name}`);

    function clearErrors() {
      document.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
      fields.forEach((f) => f.removeAttribute("aria-invalid"));
      if (message) message.removeAttribute("aria-invalid");  // a budget item has no message
    }
    function markField(name, text) {
      const el = fieldError(name);
      const input = name === "message" ? message : fields.find((f) => f.name === name);
      if (el) el.textContent = text;
      if (input) { input.setAttribute("aria-invalid", "true"); input.setAttribute("aria-describedby", `error-${name}`); }
      return Boolean(el);
    }
    function validateField(field) {
      const ok = field.checkValidity();
      const el = fieldError(field.name);
      if (el) el.textContent = ok ? "" : field.validationMessage;
      if (ok) field.removeAttribute("aria-invalid"); else field.setAttribute("aria-invalid", "true");
      return ok;
    }
    fields.forEach((field) => field.addEventListener("input", () => {
      validateField(field);
      editButton.disabled = !changed();
    }));

    function args() {
      const out = {};
      for (const f of fields) {
        const type = f.dataset.type;
        if (type === "boolean") { out[f.name] = f.checked; continue; }
        if (f.value === "" && !f.required) continue;
        if (f.type === "datetime-local") out[f.name] = `${f.value}:00Z`;  // the form shows UTC
        else if (type === "integer") out[f.name] = Number.parseInt(f.value, 10);
        else if (type === "number") out[f.name] = Number(f.value);
        else out[f.name] = f.value;
      }
      return out;
    }

    async function submit(decision) {
      clearErrors();
      const body = { decision };
      if (comment.value.trim()) body.comment = comment.value.trim();
      if (decision === "edit") {
        if (!fields.map(validateField).every(Boolean)) {
          show(feedback, "Fix the highlighted arguments first.", "error");
          return;
        }
        body.args = args();
      }
      if (decision === "reject" || decision === "respond") {
        if (message && message.value.trim()) body.message = message.value.trim();
        if (decision === "respond" && !body.message) {
          markField("message", "Write the reply the user will get.");
          message.focus();
          return;
        }
      }
      buttons.forEach((b) => { b.disabled = true; });
      show(feedback, "Sending your decision…", "busy");
      const { status, payload } = await decide(id, body);
      const error = payload && payload.error;
      if (status === 200) {
        show(feedback, `Done: ${payload.status} by ${payload.decided_by}.`, "ok");
        setTimeout(() => window.location.reload(), 600);
        return;
      }
      if (status === 409) {
        show(feedback, conflictText(error), "warn");
        document.getElementById("status").textContent = (error.details && error.details.status) || "decided";
        fields.forEach((f) => { f.disabled = true; });
        return; // the buttons stay disabled: this item is no longer ours to decide
      }
      if (status === 422 && error && Array.isArray(error.details)) {
        let placed = false;
        for (const d of error.details) {
          const name = String(d.field || "").replace(/^args\./, "").replace(/^body$/, "message");
          placed = markField(name, d.message) || placed;
        }
        show(feedback, placed ? "Some values need fixing." : error.message, "error");
      } else {
        show(feedback, (error && error.message) || `Failed (HTTP ${status}). Try again.`, "error");
      }
      buttons.forEach((b) => { b.disabled = false; });
      if (editButton) editButton.disabled = !changed();
    }

    buttons.forEach((b) => b.addEventListener("click", () => submit(b.dataset.decision)));
    document.getElementById("decision-form").addEventListener("submit", (event) => {
      event.preventDefault();
      submit(changed() ? "edit" : "approve");
    });
    document.addEventListener("keydown", (event) => {
      if (typing(document.activeElement) || event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.key === "a") submit("approve");
      else if (event.key === "r") { if (message) message.focus(); else submit("reject"); }
      else if (event.key === "e" && fields.length) fields[0].focus();
      else return;
      event.preventDefault();
    });
    if (window.location.hash === "#reject" && message) message.focus();
    if (window.location.hash === "#edit" && fields.length) fields[0].focus();
  }
})();
