// The overview's figures and the conversation list's first page keep themselves current:
// each region marked data-refresh fetches its fragment again every few seconds (with the
// page's own query string, so the list keeps its filters). A region the reader is working
// in (focus inside it) or a hidden tab is left alone until the next round.
"use strict";

(() => {
  const EVERY_MS = 5000;

  for (const region of document.querySelectorAll("[data-refresh]")) {
    const path = region.dataset.refresh;
    if (!path) continue; // an older page of the list: it does not move under the reader
    const url = `${path}${window.location.search}`;
    let busy = false;
    let shown = region.innerHTML;
    setInterval(async () => {
      if (busy || document.hidden || region.contains(document.activeElement)) return;
      busy = true;
      try {
        const response = await fetch(url, { credentials: "same-origin" });
        if (!response.ok) return;
        const html = await response.text();
        if (html !== shown) {
          region.innerHTML = html;
          shown = region.innerHTML;
          region.dataset.refreshed = String(Date.now());
        }
      } catch (_) {
        // Steward is briefly unreachable: the figures stay as they were until the next round.
      } finally {
        busy = false;
      }
    }, EVERY_MS);
  }
})();
