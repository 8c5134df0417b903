// The daily chart: one uPlot panel per product area and unit (quantities of
// different units are never added together), on one shared day axis. Every
// value drawn is the API's; legends show the API's strings.
import uPlot from "./vendor/uPlot.esm.js";
import { day, grouped, h } from "./format.js";

export const COLORS = [
  "#2f6fb3",
  "#c2571a",
  "#2e8b57",
  "#8a4fbf",
  "#b8860b",
  "#1f8a99",
  "#c23b6e",
  "#5b6b2e",
  "#6b5b95",
  "#7a6a58",
];
const FLAG = "#b3261e";
const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
const plots = [];
const resize = new ResizeObserver(() => {
  for (const plot of plots) plot.setSize({ width: widthOf(plot.root.parentElement), height: 200 });
});

const widthOf = (element) => Math.max(280, element.clientWidth);
const seconds = (isoDate) => Date.parse(`${isoDate}T00:00:00Z`) / 1000;
const shown = (labels) => (u, v, s, i) => (i == null ? "—" : (labels[i] ?? "—"));

/** Replace the panels in `container`, one per entry of `panels`. */
export function drawCharts(container, panels) {
  plots.splice(0).forEach((plot) => plot.destroy());
  resize.disconnect();
  container.replaceChildren(...panels.map((panel, i) => figure(panel, COLORS[i % COLORS.length])));
  resize.observe(container);
}

function figure(panel, color) {
  const plotBox = h("div", {
    class: "plot",
    role: "img",
    "aria-label":
      `${panel.area} in ${panel.unit}: usage per day for ${panel.soFar} days` +
      " (the table below lists the numbers)",
  });
  const element = h(
    "figure",
    {
      class: "panel",
      "data-area": panel.area,
      "data-unit": panel.unit,
      "data-days": panel.soFar,
    },
    h("figcaption", {}, h("b", {}, panel.area), ` · ${panel.unit}`),
    plotBox,
  );
  // Drawn once the figure is in the page (so it knows its width), unless
  // newer answers replaced it first.
  requestAnimationFrame(() => element.isConnected && plots.push(plot(panel, color, plotBox)));
  return element;
}

function plot(panel, color, target) {
  const { x, series, labels } = columns(panel);
  const total = { scale: "total", points: { show: true, size: 5 }, spanGaps: true };
  const options = {
    width: widthOf(target),
    height: 200,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    cursor: { sync: { key: "days" } },
    legend: { live: true },
    scales: {
      x: { time: true, range: [x[0] - 43200, x[x.length - 1] + 43200] },
      day: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] },
      total: { range: (u, min, max) => [0, max > 0 ? max * 1.05 : 1] },
    },
    axes: [
      { values: "{D} {MMM}", space: 60 },
      { scale: "day", size: 52, values: (u, splits) => splits.map((v) => compact.format(v)) },
      {
        scale: "total",
        side: 1,
        size: 52,
        grid: { show: false },
        values: (u, splits) => splits.map((v) => compact.format(v)),
      },
    ],
    series: [
      {
        label: "Day",
        value: (u, ts) => (ts == null ? "—" : day(new Date(ts * 1000).toISOString().slice(0, 10))),
      },
      {
        label: "Per day",
        scale: "day",
        stroke: color,
        fill: `${color}99`,
        paths: uPlot.paths.bars({ size: [0.75, 36] }),
        points: { show: false },
        value: shown(labels.daily),
      },
      {
        label: "Flagged",
        scale: "day",
        stroke: FLAG,
        paths: () => null,
        points: { show: true, size: 11, width: 2.5, stroke: FLAG, fill: "#fff" },
        value: shown(labels.flagged),
      },
      {
        label: "Running total",
        scale: "total",
        stroke: "#1d2330",
        width: 1.5,
        points: { show: false },
        value: shown(labels.running),
      },
      { ...total, label: "p10", stroke: "#6b7280", dash: [3, 3], value: shown(labels.p10) },
      { ...total, label: "p50", stroke: "#1d2330", dash: [6, 4], value: shown(labels.p50) },
      { ...total, label: "p90", stroke: "#6b7280", dash: [3, 3], value: shown(labels.p90) },
    ],
    bands: [{ series: [6, 4], fill: "rgba(47, 111, 179, 0.15)" }],
    // Away from the cursor, the legend shows the latest day's values.
    hooks: { ready: [latest], setLegend: [latest] },
  };
  return new uPlot(options, [x, ...series], target);
}

function latest(u) {
  if (u.legend.idx == null) u.setLegend({ idx: u.data[1].findLastIndex((v) => v != null) }, false);
}

/** The panel's columns (numbers to draw) and the API strings they came from. */
function columns(panel) {
  const n = panel.days.length;
  const labels = { daily: [], flagged: [], running: [], p10: [], p50: [], p90: [] };
  panel.days.forEach((d, i) => {
    if (i >= panel.soFar) return;
    labels.daily[i] = panel.daily[i];
    labels.running[i] = panel.running[i];
    if (panel.flagged.has(d)) labels.flagged[i] = panel.daily[i];
  });
  if (panel.fan) {
    const start = panel.soFar - 1;
    for (const p of ["p10", "p50", "p90"]) {
      if (start >= 0 && start < n - 1) labels[p][start] = panel.fan.to_date;
      labels[p][n - 1] = panel.fan[p];
    }
  }
  const numbers = (strings) =>
    panel.days.map((_, i) => (strings[i] == null ? null : Number(strings[i])));
  const series = ["daily", "flagged", "running", "p10", "p50", "p90"].map((k) =>
    numbers(labels[k]),
  );
  for (const k of Object.keys(labels)) labels[k] = labels[k].map((s) => s && grouped(s));
  return { x: panel.days.map(seconds), series, labels };
}
