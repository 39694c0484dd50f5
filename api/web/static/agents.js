// Agent studio: the draft form, what a publish would change, publish and rollback, the version
// history, and a test panel that streams the draft's reply.
//
// Everything goes through the JSON API (/v1/agents/...) with the sign-in cookie and the
// X-Steward-Web header. The form's inputs say where their value goes (`data-path`) and how to
// read it (`data-kind`), so a new agent field needs no change here; an API error naming a field
// (422 `details[].field`) is shown next to the input whose `data-error-for` matches it.
"use strict";

(() => {
  const WEB = { "Content-Type": "application/json", "X-Steward-Web": "1" };
  const DURATIONS = [["d", 86400], ["h", 3600], ["m", 60]];

  async function call(method, url, body) {
    const init = { method, headers: WEB, credentials: "same-origin" };
    if (body !== undefined) init.body = JSON.stringify(body);
    let response;
    try {
      response = await fetch(url, init);
    } catch (_) {
      return { status: 0, ok: false, payload: { error: { code: "offline", message: "Steward could not be reached; try again." } } };
    }
    let payload = null;
    try { payload = await response.json(); } catch (_) { /* an empty or HTML body */ }
    return { status: response.status, ok: response.ok, payload };
  }
  const errorOf = (r) => (r.payload && r.payload.error) || { code: `http_${r.status}`, message: `HTTP ${r.status}` };
  const el = (tag, props = {}, ...children) => {
    const node = Object.assign(document.createElement(tag), props);
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  };

  function duration(seconds) {
    if (typeof seconds !== "number") return String(seconds);
    for (const [unit, size] of DURATIONS) if (seconds >= size && seconds % size === 0) return `${seconds / size}${unit}`;
    return `${seconds}s`;
  }

  // ---- reading the form and showing what the API said about it -----------------------------
  function setAt(target, path, value) {
    const parts = path.split(".");
    let node = target;
    for (const part of parts.slice(0, -1)) node = node[part] = node[part] || {};
    node[parts[parts.length - 1]] = value;
  }

  function valueOf(input) {
    const raw = input.value;
    switch (input.dataset.kind) {
      case "number": case "integer": return raw.trim() === "" ? null : Number(raw);
      case "duration": { const t = raw.trim(); return /^\d+(\.\d+)?$/.test(t) ? Number(t) : t; }
      case "url": case "provider": return raw.trim() === "" ? null : raw.trim();
      case "json": case "json_list": {
        const t = raw.trim();
        if (t === "") return input.dataset.kind === "json_list" ? [] : {};
        try { return JSON.parse(t); } catch { return t; } // the API names what is wrong with it
      }
      case "text": return raw.trim();
      default: return raw;
    }
  }

  function readForm(form) {
    const body = {};
    form.querySelectorAll("[data-path]").forEach((input) => setAt(body, input.dataset.path, valueOf(input)));
    body.tools = Array.from(form.querySelectorAll("[data-tool-pick]:checked"), (box) => box.value);
    body.tool_policies = {};
    form.querySelectorAll("li.tool").forEach((li) => {
      const name = li.dataset.tool;
      const mode = li.querySelector("[data-policy-mode]").value;
      if (!mode) return; // the tool's default
      const policy = { ...JSON.parse(li.dataset.extra || "{}"), mode };
      const when = li.querySelector("[data-policy-when]").value.trim();
      if (mode === "require_approval" && when) policy.when = when;
      body.tool_policies[name] = policy;
    });
    return body;
  }

  function clearErrors(form) {
    form.querySelectorAll("[data-error-for]").forEach((slot) => { slot.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((input) => input.removeAttribute("aria-invalid"));
  }

  // The error slot for an API field name: the field itself, or the nearest one above it
  // (`tools.3` is shown at `tools`).
  function slotFor(form, field) {
    let name = String(field || "");
    while (name) {
      const slot = form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
      if (slot) return slot;
      name = name.includes(".") ? name.slice(0, name.lastIndexOf(".")) : "";
    }
    return null;
  }

  function markError(slot, message) {
    slot.textContent = slot.textContent ? `${slot.textContent} ${message}` : message;
    // The input that names this slot as its description (every input of the form does).
    const input = slot.id ? document.querySelector(`[aria-describedby~="${CSS.escape(slot.id)}"]`) : null;
    if (input) input.setAttribute("aria-invalid", "true");
    return input;
  }

  // Shows an API error next to the fields it names; what names no field goes in `banner`.
  function showApiError(form, banner, response) {
    const error = errorOf(response);
    const details = Array.isArray(error.details) ? error.details : [];
    let first = null;
    let placed = 0;
    for (const d of details) {
      const slot = slotFor(form, d.field);
      if (!slot) continue;
      const input = markError(slot, String(d.message || "").replace(/^Value error, /, ""));
      first = first || input || slot;
      placed += 1;
    }
    if (error.code === "agent_exists") {
      const slot = slotFor(form, "slug");
      if (slot) { first = markError(slot, error.message); placed += 1; }
    }
    banner.textContent = placed ? `Not saved: ${placed === 1 ? "one field needs" : `${placed} fields need`} fixing.` : `Not saved: ${error.message}`;
    banner.hidden = false;
    if (first && first.focus) first.focus();
  }

  // The browser's own checks (required, bounds, patterns), shown in the same places.
  function checkLocally(form, banner) {
    let first = null;
    form.querySelectorAll("[data-path]").forEach((input) => {
      if (input.checkValidity()) return;
      const slot = slotFor(form, input.dataset.path);
      if (slot) markError(slot, input.validationMessage);
      first = first || input;
    });
    if (first) {
      banner.textContent = "Not saved: fix the highlighted fields.";
      banner.hidden = false;
      first.focus();
    }
    return !first;
  }

  // Editing a field takes its error away; the banner goes with the last one.
  function wireErrors(form, banner) {
    const forget = (event) => {
      const input = event.target;
      if (!input.hasAttribute || !input.hasAttribute("aria-invalid")) return;
      input.removeAttribute("aria-invalid");
      (input.getAttribute("aria-describedby") || "").split(/\s+/).forEach((id) => {
        const slot = id && document.getElementById(id);
        if (slot && slot.hasAttribute("data-error-for")) slot.textContent = "";
      });
      if (!form.querySelector("[aria-invalid]")) banner.hidden = true;
    };
    form.addEventListener("input", forget);
    form.addEventListener("change", forget);
  }

  function wireTools(form) {
    form.querySelectorAll("li.tool").forEach((li) => {
      const pick = li.querySelector("[data-tool-pick]");
      const mode = li.querySelector("[data-policy-mode]");
      const when = li.querySelector(".when");
      pick.addEventListener("change", () => li.classList.toggle("chosen", pick.checked));
      mode.addEventListener("change", () => { when.hidden = mode.value !== "require_approval"; });
    });
  }

  // ---- /agents/new ----------------------------------------------------------------------------
  const newForm = document.getElementById("new-agent-form");
  if (newForm) {
    const banner = document.getElementById("form-error");
    const button = document.getElementById("create");
    wireTools(newForm);
    wireErrors(newForm, banner);
    newForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(newForm);
      banner.hidden = true;
      if (!checkLocally(newForm, banner)) return;
      button.disabled = true;
      button.textContent = "Creating…";
      const body = readForm(newForm);
      const response = await call("POST", "/v1/agents", body);
      if (response.status === 201) {
        window.location.href = `/agents/${encodeURIComponent(response.payload.slug)}`;
        return;
      }
      showApiError(newForm, banner, response);
      button.disabled = false;
      button.textContent = "Create agent";
    });
  }

  // ---- /agents/{slug} -------------------------------------------------------------------------
  const page = document.getElementById("agent-page");
  if (!page) return;

  const slug = page.dataset.slug;
  const api = `/v1/agents/${encodeURIComponent(slug)}`;
  const canEdit = page.dataset.canEdit === "true";
  const data = JSON.parse(document.getElementById("agent-data").textContent);
  let agent = data.agent;
  let versions = data.versions;
  let conversations = data.conversations || {};

  const form = document.getElementById("draft-form");
  const banner = document.getElementById("form-error");
  const saveButton = document.getElementById("save");
  const saveState = document.getElementById("save-state");
  const diffBox = document.getElementById("diff");
  const diffTitle = document.getElementById("diff-title");
  const diffBack = document.getElementById("diff-back");
  const publishButton = document.getElementById("publish");
  const discardButton = document.getElementById("discard");
  const publishHint = document.getElementById("publish-hint");

  let saved = JSON.stringify(readForm(form));
  const dirty = () => canEdit && JSON.stringify(readForm(form)) !== saved;

  function setSaveState(state, text) {
    saveState.dataset.state = state;
    saveState.textContent = text;
  }

  function showBadges() {
    document.getElementById("agent-name").textContent = agent.name;
    document.getElementById("live-badge").textContent = agent.live_version ? `live v${agent.live_version}` : "not published";
    document.getElementById("draft-badge").hidden = !agent.draft_changed;
  }

  function updateButtons() {
    const unsaved = dirty();
    if (saveButton) saveButton.disabled = !unsaved;
    if (saveState.dataset.state !== "saving") {
      if (unsaved) setSaveState("unsaved", "Unsaved changes");
      else if (saveState.dataset.state !== "saved") setSaveState("saved", "All changes saved");
    }
    if (!publishButton) return;
    const next = Math.max(0, ...versions.map((v) => v.n)) + 1;
    // Only when it changes: replacing the text under a pressed mouse would cancel the click.
    if (publishButton.textContent !== `Publish as v${next}…`) publishButton.textContent = `Publish as v${next}…`;
    publishButton.disabled = unsaved || !agent.draft_changed;
    discardButton.disabled = unsaved || !agent.draft_changed || !agent.live_version;
    publishHint.textContent = unsaved ? "Save the draft first: a publish freezes the saved draft."
      : agent.draft_changed ? "" : `Nothing to publish: the draft is the same as live v${agent.live_version}.`;
  }

  async function save() {
    clearErrors(form);
    banner.hidden = true;
    if (!checkLocally(form, banner)) {
      setSaveState("error", "Not saved");
      return false;
    }
    const body = readForm(form);
    setSaveState("saving", "Saving…");
    if (saveButton) saveButton.disabled = true;
    const response = await call("PATCH", api, body);
    if (!response.ok) {
      setSaveState("error", "Not saved");
      showApiError(form, banner, response);
      if (saveButton) saveButton.disabled = false;
      return false;
    }
    agent = response.payload;
    saved = JSON.stringify(body);
    setSaveState("saved", "Saved just now");
    showBadges();
    updateButtons();
    await showDiff();
    return true;
  }

  // ---- the diff -------------------------------------------------------------------------------
  const TOP_LABELS = { tools: "Tools", tool_policies: "Tool policies", approvals: "Approvals" };
  function labelOf(path) {
    if (path === "provider_id") path = "provider"; // a version names its provider by id
    const label = form.querySelector(`[data-field="${CSS.escape(path)}"] > label`);
    if (label) return label.firstChild.textContent.trim();
    const parts = path.split(".");
    if (parts[0] === "tool_policies") return `Policy › ${parts.slice(1).join(".")}`; // a tool's own name
    if (parts.length > 1) return `${TOP_LABELS[parts[0]] || parts[0]} › ${parts.slice(1).join(".").replaceAll("_", " ")}`;
    return TOP_LABELS[path] || path.replaceAll("_", " ");
  }

  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

  function policyText(policy) {
    if (policy === undefined || policy === null) return "(default)";
    const mode = policy.mode === "auto" ? "run at once" : "ask for approval";
    const extra = Object.entries(policy).filter(([k]) => k !== "mode" && k !== "when")
      .map(([k, v]) => `${k.replaceAll("_", " ")} ${duration(v)}`);
    return [mode, policy.when ? `when ${policy.when}` : null, ...extra].filter(Boolean).join(", ");
  }

  function shown(field, value) {
    if (field.startsWith("tool_policies.")) return document.createTextNode(policyText(value));
    if (field === "provider_id") {
      if (value === null || value === undefined) return el("span", { className: "hint", textContent: "built-in" });
      return el("span", { className: "text", textContent: (data.providers || {})[value] || `${value} (deleted)` });
    }
    if (value === undefined) return el("span", { className: "hint", textContent: "(not set)" });
    if (/_after$/.test(field) && typeof value === "number") return el("code", { textContent: duration(value) });
    if (value === null) return el("span", { className: "hint", textContent: "(none)" });
    if (value === "") return el("span", { className: "hint", textContent: "(empty)" });
    if (typeof value === "string") return el("span", { className: "text", textContent: value });
    return el("code", { textContent: JSON.stringify(value) });
  }

  function listCell(items, other, kind) {
    const cell = el("td", { className: "list" });
    if (!items.length) cell.append(el("span", { className: "hint", textContent: "(none)" }));
    items.forEach((item) => {
      const changed = !other.includes(item);
      cell.append(el(changed ? kind : "span", { className: "item" }, el("code", { textContent: item })), " ");
    });
    return cell;
  }

  // A line diff (longest common subsequence) of two texts; each line marked same, del or ins.
  function lineDiff(a, b) {
    const x = a.split("\n");
    const y = b.split("\n");
    if (x.length * y.length > 250000) return [...x.map((t) => ["del", t]), ...y.map((t) => ["ins", t])];
    const n = x.length; const m = y.length;
    const lcs = Array.from({ length: n + 1 }, () => new Int32Array(m + 1));
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
    const out = [];
    let i = 0; let j = 0;
    while (i < n && j < m) {
      if (x[i] === y[j]) { out.push(["same", x[i]]); i++; j++; } else if (lcs[i + 1][j] >= lcs[i][j + 1]) { out.push(["del", x[i++]]); } else { out.push(["ins", y[j++]]); }
    }
    while (i < n) out.push(["del", x[i++]]);
    while (j < m) out.push(["ins", y[j++]]);
    return out;
  }

  function textDiffRow(field, from, to) {
    const pre = el("pre", { className: "text-diff" });
    for (const [kind, line] of lineDiff(from || "", to || "")) {
      const tag = kind === "same" ? "span" : kind;
      pre.append(el(tag, { className: `line ${kind}`, textContent: `${kind === "del" ? "−" : kind === "ins" ? "+" : " "} ${line}` }), "\n");
    }
    return el("tr", { className: "text" }, el("th", { scope: "row", textContent: labelOf(field) }), Object.assign(el("td", {}, pre), { colSpan: 2 }));
  }

  // One table row per changed value: objects (approvals, tool policies) by key, tools as lists,
  // long or multi-line text as a line diff.
  function diffRows(change) {
    const { field, from, to } = change;
    let rows;
    if (isObject(from) || isObject(to)) {
      const a = isObject(from) ? from : {};
      const b = isObject(to) ? to : {};
      const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => !same(a[k], b[k]));
      rows = keys.map((k) => el("tr", {}, el("th", { scope: "row", textContent: labelOf(`${field}.${k}`) }),
        el("td", { className: "from" }, shown(`${field}.${k}`, a[k])), el("td", { className: "to" }, shown(`${field}.${k}`, b[k]))));
    } else if (Array.isArray(from) || Array.isArray(to)) {
      const a = from || []; const b = to || [];
      rows = [el("tr", {}, el("th", { scope: "row", textContent: labelOf(field) }), listCell(a, b, "del"), listCell(b, a, "ins"))];
    } else if (typeof from === "string" && typeof to === "string" && (from.includes("\n") || to.includes("\n") || from.length + to.length > 120)) {
      rows = [textDiffRow(field, from, to)];
    } else {
      rows = [el("tr", {}, el("th", { scope: "row", textContent: labelOf(field) }),
        el("td", { className: "from" }, shown(field, from)), el("td", { className: "to" }, shown(field, to)))];
    }
    rows.forEach((row) => { row.dataset.field = field; });
    return rows;
  }

  const refName = (ref) => (ref === "draft" ? "Draft" : `v${ref}${ref === agent.live_version ? " (live)" : ""}`);

  async function showDiff(a, b) {
    const comparing = a !== undefined;
    diffBack.hidden = !comparing;
    if (!comparing) {
      if (!agent.live_version) { diffBox.replaceChildren(el("p", { className: "hint", textContent: "Not published yet: publish to make the draft live." })); return; }
      a = agent.live_version; b = "draft";
    }
    diffTitle.textContent = comparing ? `Changes from v${a} to v${b}` : `What a publish would change (live v${a} → draft)`;
    const response = await call("GET", `${api}/versions/${a}/diff/${b}`);
    if (!response.ok) { diffBox.replaceChildren(el("p", { className: "error", textContent: errorOf(response).message })); return; }
    const { changes } = response.payload;
    if (!changes.length) {
      diffBox.replaceChildren(el("p", { className: "same", id: "no-changes",
        textContent: comparing ? `v${b} is the same as v${a}.` : `The draft is the same as live v${a}: nothing to publish.` }));
      return;
    }
    const table = el("table", { className: "diff", id: "diff-table" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col", textContent: "Field" }),
        el("th", { scope: "col", textContent: refName(a) }), el("th", { scope: "col", textContent: refName(b) }))),
      el("tbody", {}, ...changes.flatMap(diffRows)));
    diffBox.replaceChildren(table);
    if (comparing) diffBox.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  // ---- versions -------------------------------------------------------------------------------
  const versionRows = document.querySelector("#versions tbody");
  const testVersion = document.getElementById("test-version");

  function renderVersions() {
    versionRows.replaceChildren(...versions.map((v) => {
      const when = new Date(v.published_at);
      const label = el("td", { className: "n" }, el("b", { textContent: `v${v.n}` }),
        v.live ? el("span", { className: "badge version live", textContent: "live" }) : null);
      const how = v.source === "rollback" ? el("span", { className: "tag rollback", textContent: `rollback of v${v.rolled_back_to}` }) : null;
      const published = el("td", { className: "by" }, how, how ? " " : null,
        el("span", { textContent: `by ${v.published_by || "unknown"}` }), el("br"),
        el("time", { dateTime: v.published_at, className: "hint small", textContent: when.toLocaleString() }));
      const note = el("td", { className: "note", textContent: v.note || "" });
      if (!v.note) note.append(el("span", { className: "hint", textContent: "—" }));
      const count = conversations[`v${v.n}`] || 0;
      const used = el("td", { className: "used", textContent: count ? String(count) : "" });
      if (!count) used.append(el("span", { className: "hint", textContent: "0" }));
      const actions = el("td", { className: "actions" });
      if (v.n > 1) {
        const link = el("button", { type: "button", className: "link", textContent: `changes from v${v.n - 1}` });
        link.dataset.diff = `${v.n - 1}:${v.n}`;
        actions.append(link);
      }
      if (canEdit && !v.live) {
        const back = el("button", { type: "button", className: "secondary small", textContent: `Roll back to v${v.n}…` });
        back.dataset.rollback = String(v.n);
        actions.append(back);
      }
      const row = el("tr", {}, label, published, note, used, actions);
      row.dataset.version = String(v.n);
      if (v.live) row.classList.add("live");
      return row;
    }));
    const chosen = testVersion.value;
    testVersion.replaceChildren(el("option", { value: "draft", textContent: "the draft" }),
      ...versions.map((v) => el("option", { value: String(v.n), textContent: `v${v.n}${v.live ? " (live)" : ""}` })));
    testVersion.value = [...testVersion.options].some((o) => o.value === chosen) ? chosen : "draft";
  }

  async function countConversations() {
    const response = await call("GET", `/agents/${encodeURIComponent(slug)}/conversations`);
    if (response.ok && response.payload) conversations = response.payload;
  }

  async function refresh() {
    const [a, v] = await Promise.all([call("GET", api), call("GET", `${api}/versions`), countConversations()]);
    if (a.ok) agent = a.payload;
    if (v.ok) versions = v.payload.items;
    showBadges();
    renderVersions();
    updateButtons();
    await showDiff();
  }

  // ---- confirmations: publish, rollback, discard ----------------------------------------------
  const dialog = document.getElementById("confirm");
  const confirmNote = document.getElementById("confirm-note");
  const confirmError = document.getElementById("confirm-error");
  const confirmOk = document.getElementById("confirm-ok");
  let onConfirm = null;

  function ask({ title, text, ok, note = true, action }) {
    document.getElementById("confirm-title").textContent = title;
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-note-field").hidden = !note;
    confirmNote.value = "";
    confirmError.textContent = "";
    confirmOk.textContent = ok;
    confirmOk.disabled = false;
    onConfirm = action;
    dialog.showModal();
    (note ? confirmNote : confirmOk).focus();
  }

  if (dialog) {
    document.getElementById("confirm-cancel").addEventListener("click", () => dialog.close());
    document.getElementById("confirm-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!onConfirm) return;
      confirmOk.disabled = true;
      const response = await onConfirm(confirmNote.value.trim());
      if (response.ok && response.reload) { window.location.reload(); return; }
      if (response.ok) { dialog.close(); await refresh(); return; }
      confirmError.textContent = errorOf(response).message;
      confirmOk.disabled = false;
    });
  }

  // What stays where it is: every pinned conversation keeps its version; `latest` ones move.
  function others() {
    const pinned = Object.entries(conversations).filter(([label]) => /^v\d+$/.test(label))
      .reduce((sum, [, count]) => sum + count, 0);
    const latest = conversations.latest || 0;
    const parts = [];
    if (pinned) parts.push(`${pinned} conversation${pinned === 1 ? " pinned to its version stays" : "s pinned to their versions stay"} there`);
    if (latest) parts.push(`${latest} following the live version switch at their next turn`);
    return parts.length ? ` ${parts.join("; ")}.` : "";
  }

  if (publishButton) {
    publishButton.addEventListener("click", async () => {
      await countConversations();
      const next = Math.max(0, ...versions.map((v) => v.n)) + 1;
      ask({
        title: `Publish the draft as v${next}?`,
        text: `New conversations will start on v${next}.${others()}`,
        ok: `Publish v${next}`,
        action: (note) => call("POST", `${api}/publish`, { note }),
      });
    });
    discardButton.addEventListener("click", () => ask({
      title: "Discard the draft's changes?",
      text: `The form goes back to live v${agent.live_version}. Name and double texting are not versioned and stay as saved.`,
      ok: "Discard changes",
      note: false,
      action: async () => {
        const live = await call("GET", `${api}/versions/${agent.live_version}`);
        if (!live.ok) return live;
        // A version freezes what the draft refers to: its templates' text (kept as resources of
        // their own, not the agent's) and its provider's id (the draft names the provider).
        const { templates, default_template, provider_id, ...fields } = live.payload.definition;
        if (!provider_id) {
          fields.provider = null;
        } else {
          const listed = await call("GET", "/v1/providers");
          const provider = listed.ok ? listed.payload.items.find((p) => p.id === provider_id) : null;
          if (provider) fields.provider = provider.name;
        }
        const response = await call("PATCH", api, fields);
        return response.ok ? { ...response, reload: true } : response; // the form is drawn by the server
      },
    }));
  }

  versionRows.addEventListener("click", async (event) => {
    const diff = event.target.closest("[data-diff]");
    if (diff) {
      const [a, b] = diff.dataset.diff.split(":").map(Number);
      showDiff(a, b);
      return;
    }
    const back = event.target.closest("[data-rollback]");
    if (!back) return;
    const n = Number(back.dataset.rollback);
    await countConversations();
    const next = Math.max(0, ...versions.map((v) => v.n)) + 1;
    ask({
      title: `Roll back to v${n}?`,
      text: `v${n}'s definition becomes live again as v${next}; new conversations start on it.${others()} The draft is not changed.`,
      ok: `Roll back to v${n}`,
      action: (note) => call("POST", `${api}/rollback`, { version: n, note }),
    });
  });
  diffBack.addEventListener("click", () => showDiff());

  // ---- the form's state -----------------------------------------------------------------------
  if (canEdit) {
    wireTools(form);
    wireErrors(form, banner);
    form.addEventListener("input", updateButtons);
    form.addEventListener("change", updateButtons);
    form.addEventListener("submit", (event) => { event.preventDefault(); save(); });
    document.addEventListener("keydown", (event) => {
      if ((event.ctrlKey || event.metaKey) && event.key === "s") { event.preventDefault(); if (dirty()) save(); }
    });
    window.addEventListener("beforeunload", (event) => { if (dirty()) { event.preventDefault(); event.returnValue = ""; } });
  }

  // ---- the test panel -------------------------------------------------------------------------
  // Each send is one new test run of every message in the panel so far (the test contract takes
  // the messages at once), so what the panel shows is always one coherent run of the saved draft.
  const testLog = document.getElementById("test-log");
  const testForm = document.getElementById("test-form");
  const testText = document.getElementById("test-text");
  const testSend = document.getElementById("test-send");
  const testRerun = document.getElementById("test-rerun");
  const testClear = document.getElementById("test-clear");
  const testStatus = document.getElementById("test-status");
  const testSummary = document.getElementById("test-summary");
  let messages = [];
  let run = null;

  const seconds = (ms) => (ms === null || ms === undefined ? "" : `${(ms / 1000).toFixed(1)} s`);
  const tokens = (p, c) => `${p} + ${c} tokens`;

  function bubble(key, className, text) {
    let li = testLog.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (!li) {
      li = el("li", { className });
      li.dataset.key = key;
      testLog.append(li);
    }
    if (text !== undefined) li.textContent = text;
    li.scrollIntoView({ block: "nearest" });
    return li;
  }

  function toolLine(call) {
    const li = el("li", { className: "tool" });
    li.dataset.tool = call.name;
    const args = typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments);
    li.append(el("div", { className: "call-line", textContent: `→ ${call.name}(${args})` }));
    const badges = el("div", { className: "badges" });
    if (call.simulated) badges.append(el("span", { className: "badge simulated", title: "It did not run: this is what it would have said", textContent: "simulated" }));
    if (call.would_need_approval) badges.append(el("span", { className: "badge needs-approval", title: "Outside a test this call would wait for an operator", textContent: "would need approval" }));
    if (badges.childElementCount) li.append(badges);
    if (call.result !== undefined && call.result !== null) {
      const text = JSON.stringify(call.result);
      li.append(el("details", { className: "result" }, el("summary", { textContent: `← ${text.length > 70 ? `${text.slice(0, 70)}…` : text}` }),
        el("pre", { textContent: JSON.stringify(call.result, null, 2) })));
    }
    return li;
  }

  function renderResult(result) {
    testLog.replaceChildren();
    for (const t of result.turns) {
      testLog.append(el("li", { className: "user", textContent: t.message }));
      t.tool_calls.forEach((c) => testLog.append(toolLine(c)));
      if (t.reply) testLog.append(el("li", { className: "assistant", textContent: t.reply }));
      if (t.error) testLog.append(el("li", { className: "failed", textContent: `Turn ${t.turn} failed: ${t.error}` }));
      const meta = el("li", { className: "turn-meta" });
      meta.dataset.turn = String(t.turn);
      meta.textContent = [`turn ${t.turn}`, t.status, seconds(t.latency_ms), tokens(t.tokens_prompt, t.tokens_completion)].filter(Boolean).join(" · ");
      testLog.append(meta);
    }
    testSummary.hidden = false;
    testSummary.dataset.status = result.status;
    testSummary.textContent = `${result.status} on ${result.version === "draft" ? "the draft" : `v${result.version}`} · ${seconds(result.latency_ms) || "—"} · ${tokens(result.tokens_prompt, result.tokens_completion)} · `;
    // The scratch conversation is an ordinary one, readable by id: its timeline shows every step.
    testSummary.append(el("a", { href: `/conversations/${encodeURIComponent(result.conversation_id)}`, textContent: "transcript" }));
    testLog.lastElementChild && testLog.lastElementChild.scrollIntoView({ block: "nearest" });
  }

  async function finish(current) {
    for (let tries = 0; tries < 60 && run === current; tries++) {
      const response = await call("GET", `${api}/tests/${encodeURIComponent(current.id)}`);
      if (run !== current) return;
      if (response.ok && response.payload.status !== "running") {
        renderResult(response.payload);
        testStatus.textContent = "";
        break;
      }
      if (!response.ok && response.status !== 404) { testStatus.textContent = errorOf(response).message; break; }
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    if (run === current) { run = null; setBusy(false); }
  }

  function stream(current, expected) {
    const replies = new Map();
    let ended = 0;
    const source = new EventSource(`/v1/conversations/${encodeURIComponent(current.id)}/events?after=0`);
    current.source = source;
    const reply = (d) => {
      const key = `a:${d.turn}:${d.round}`;
      if (!replies.has(key)) replies.set(key, { text: "", attempt: 0, done: false });
      return [key, replies.get(key)];
    };
    const on = {
      "turn.started": (d) => { (d.messages || []).forEach((m) => bubble(`u:${d.turn}:${m.number}`, "user", m.text)); testStatus.textContent = `turn ${d.turn} of ${expected}…`; },
      "message.delta": (d) => {
        const [key, r] = reply(d);
        if (r.done || d.attempt < r.attempt) return;
        if (d.attempt > r.attempt) { r.text = ""; r.attempt = d.attempt; }
        r.text += d.text;
        bubble(key, "assistant streaming", r.text);
      },
      "message.reset": (d) => { const [key, r] = reply(d); if (!r.done) { r.text = ""; bubble(key, "assistant streaming", ""); } },
      "message.completed": (d) => {
        const [key, r] = reply(d);
        r.text = d.text; r.done = true;
        const li = bubble(key, "assistant", d.text);
        li.className = "assistant";
        li.hidden = !d.text;
      },
      "tool.call": (d) => bubble(`t:${d.turn}:${d.id}`, "tool", `→ ${d.name}(${d.arguments})`),
      "turn.completed": () => { ended += 1; },
      "turn.failed": (d) => { ended += 1; bubble(`f:${d.turn}`, "failed", `Turn ${d.turn} failed (${d.code}): ${d.message}`); },
    };
    Object.entries(on).forEach(([kind, handle]) => source.addEventListener(kind, (event) => {
      if (run !== current) return;
      handle(JSON.parse(event.data));
      if (ended >= expected) { source.close(); finish(current); }
    }));
    source.onerror = () => { if (run === current && source.readyState === EventSource.CLOSED) finish(current); };
  }

  function setBusy(busy) {
    testSend.disabled = busy || !canEdit;
    testRerun.disabled = busy || !messages.length;
    testClear.disabled = busy || !messages.length;
  }

  function stop() {
    if (run && run.source) run.source.close();
    run = null;
  }

  async function start(list) {
    stop();
    if (dirty()) {
      testStatus.textContent = "Saving the draft first…";
      if (!(await save())) { testStatus.textContent = "Not run: the draft could not be saved."; return false; }
    }
    testLog.replaceChildren();
    testSummary.hidden = true;
    setBusy(true);
    testStatus.textContent = "Starting the test…";
    const version = testVersion.value === "draft" ? "draft" : Number(testVersion.value);
    const response = await call("POST", `${api}/test`, { messages: list, version, wait: false });
    if (!response.ok) {
      const error = errorOf(response);
      testStatus.textContent = response.status === 404 && error.code !== "agent_not_found" && error.code !== "version_not_found"
        ? "This server cannot run tests yet." : `Not run: ${error.message}`;
      setBusy(false);
      return false;
    }
    run = { id: response.payload.conversation_id };
    stream(run, list.length);
    return true;
  }

  testForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = testText.value.trim();
    if (!text || !canEdit || run) return;
    const list = [...messages, text];
    testText.value = "";
    if (await start(list)) messages = list; else testText.value = text;
    setBusy(Boolean(run));
  });
  testText.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); testForm.requestSubmit(); }
  });
  testRerun.addEventListener("click", () => { if (messages.length) start(messages); });
  testClear.addEventListener("click", () => {
    stop();
    messages = [];
    testLog.replaceChildren();
    testSummary.hidden = true;
    testStatus.textContent = "";
    setBusy(false);
  });

  renderVersions();
  updateButtons();
  showDiff();
})();
