// The metrics page: asks GET /v1/metrics/summary (with the sign-in cookie) for the figures of
// the chosen agent and window, and draws one uPlot chart per panel. Refreshes every 30 s.
"use strict";

(() => {
  const totals = document.getElementById("metric-totals");
  const charts = document.getElementById("charts");
  if (!totals || !charts || typeof uPlot === "undefined") return;

  const COLORS = { blue: "#2454c5", red: "#a61b1b", green: "#17663a", amber: "#b7791f", grey: "#5b6475" };
  const percent = (v) => (v == null ? null : Math.round(v * 1000) / 10);

  // Each panel: its series (name in the summary, label, colour, transform) and the y unit.
  const PANELS = {
    turns: { unit: "", series: [["turns", "turns", COLORS.blue], ["failed", "failed", COLORS.red]] },
    latency: { unit: "s", series: [["latency_p50", "p50", COLORS.blue], ["latency_p95", "p95", COLORS.amber]] },
    rates: {
      unit: "%",
      series: [["failure_rate", "failure rate", COLORS.red, percent], ["handoff_rate", "handoff rate", COLORS.amber, percent]],
    },
    approvals: {
      unit: "",
      series: [["approvals_requested", "requested", COLORS.blue], ["approvals_decided", "decided", COLORS.green]],
    },
    decision: { unit: "s", series: [["decision_p95", "p95", COLORS.amber]] },
    tools: { unit: "", series: [["tool_ok", "ok", COLORS.green], ["tool_error", "error", COLORS.red]] },
    tokens: { unit: "", series: [["tokens_prompt", "prompt", COLORS.blue], ["tokens_completion", "completion", COLORS.green]] },
    deliveries: {
      unit: "",
      series: [["deliveries_sent", "sent", COLORS.green], ["deliveries_failed", "dead letters", COLORS.red]],
    },
  };

  const plots = new Map();

  function options(panel, width) {
    const unit = panel.unit;
    return {
      width,
      height: 220,
      // The page says times are UTC: draw them so whatever the browser's own zone.
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max || 0, 1) * 1.1] } },
      axes: [
        { stroke: COLORS.grey, grid: { stroke: "#eceef2" } },
        { stroke: COLORS.grey, size: 60, grid: { stroke: "#eceef2" }, values: (u, ticks) => ticks.map((t) => `${+t.toFixed(2)}${unit ? " " + unit : ""}`) },
      ],
      series: [
        { label: "time (UTC)" },
        ...panel.series.map(([, label, color]) => ({
          label,
          stroke: color,
          width: 2,
          fill: `${color}22`,
          points: { show: true, size: 5 },
          value: (u, v) => (v == null ? "—" : `${+v.toFixed(2)}${unit ? " " + unit : ""}`),
        })),
      ],
    };
  }

  function draw(summary) {
    const xs = summary.buckets.map((b) => Date.parse(b) / 1000);
    for (const section of charts.querySelectorAll("[data-chart]")) {
      const name = section.dataset.chart;
      const panel = PANELS[name];
      const target = section.querySelector(".plot");
      const data = [xs, ...panel.series.map(([key, , , f]) => summary.series[key].map((v) => (f ? f(v) : v)))];
      const width = Math.max(target.clientWidth, 280);
      const existing = plots.get(name);
      if (existing) {
        existing.setData(data);
        continue;
      }
      target.replaceChildren();
      plots.set(name, new uPlot(options(panel, width), data, target));
      section.dataset.drawn = "true";
    }
    charts.dataset.drawn = String(Date.now());
  }

  async function load() {
    const params = new URLSearchParams({ window: totals.dataset.window });
    if (totals.dataset.agent) params.set("agent", totals.dataset.agent);
    try {
      const response = await fetch(`/v1/metrics/summary?${params}`, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      draw(await response.json());
      charts.removeAttribute("data-error");
    } catch (err) {
      charts.dataset.error = err.message;
    }
  }

  window.addEventListener("resize", () => {
    for (const [name, plot] of plots) {
      const target = charts.querySelector(`[data-chart="${name}"] .plot`);
      plot.setSize({ width: Math.max(target.clientWidth, 280), height: 220 });
    }
  });
  load();
  setInterval(load, 30000);
})();
