// The dashboard's parts, each drawn from API answers alone. Every number is an
// API value in a <data> element; the page adds nothing up except running
// totals for the chart (exactly, see format.sum).
import { day, dayBefore, grouped, h, instant, money, value } from "./format.js";

const field = (name, decimal, text) => {
  const element = value(decimal, text);
  element.dataset.field = name;
  return element;
};
const dash = () => h("span", { class: "muted" }, "—");
const table = (head, rows, foot = []) =>
  h("table", {},
    h("thead", {}, h("tr", {}, head.map(([text, cls]) => h("th", { scope: "col", class: cls }, text)))),
    h("tbody", {}, rows),
    foot.length ? h("tfoot", {}, foot) : null);

/** What the headline is about: the whole tenant, or the chosen product area's line. */
export function subject(forecast, area) {
  if (!area) return forecast.total && { ...forecast.total, label: "Whole tenant" };
  const line = forecast.lines.find((l) => l.product_area === area && l.priced);
  return line && { ...line, label: `${area[0].toUpperCase()}${area.slice(1)} only` };
}

export function headline(forecast, area, anomalyCard) {
  const s = subject(forecast, area);
  const c = forecast.currency;
  const range = (p) => [field("p10", p.p10, money(p.p10, c)), " – ", field("p90", p.p90, money(p.p90, c))];
  const projected = h("article", { class: "card estimate", "aria-labelledby": "projected-title" },
    h("h2", { id: "projected-title" }, "Projected invoice ", h("span", { class: "tag" }, forecast.kind)),
    s ? [
      h("p", { class: "big" }, field("p50", s.projected_charges.p50, money(s.projected_charges.p50, c))),
      h("p", {}, "80% range ", range(s.projected_charges)),
    ] : h("p", { class: "big" }, dash()),
    h("p", { class: "caveat" }, forecast.caveat, forecast.status === "closed" ? " The period is closed: these are its actuals." : ""));
  const toDate = h("article", { class: "card", "aria-labelledby": "to-date-title" },
    h("h2", { id: "to-date-title" }, "Charges to date"),
    h("p", { class: "big" }, s ? field("charges-to-date", s.charges_to_date, money(s.charges_to_date, c)) : dash()),
    h("p", {}, s ? s.label : forecast.workspace_id ? "Charges are per tenant" : "No priced usage",
      forecast.data_through ? ` · data through ${instant(forecast.data_through, forecast.period.timezone)}` : ""));
  return [projected, toDate, budgetCard(forecast, area), anomalyCard];
}

function budgetCard(forecast, area) {
  const b = forecast.budget;
  const c = forecast.currency;
  const body = !b ? [h("p", { class: "big" }, dash()), h("p", {}, forecast.workspace_id
    ? "Budgets are set for the whole tenant." : "No budget is set for this period.")]
    : [
      h("p", { class: "big" }, field("budget", b.amount, money(b.amount, c))),
      h("p", {}, b.left_to_spend.startsWith("-") ? "Over by " : "Left to spend ",
        field("left-to-spend", b.left_to_spend, money(b.left_to_spend.replace("-", ""), c))),
      h("p", { class: b.projected_breach_date ? "warn" : "" }, b.projected_breach_date
        ? ["Reached (projected) on ", h("time", { datetime: b.projected_breach_date, "data-field": "breach" }, day(b.projected_breach_date))]
        : "Not projected to be reached."),
      area ? h("p", { class: "muted" }, "For the whole tenant.") : null,
    ];
  return h("article", { class: "card", "aria-labelledby": "budget-title" },
    h("h2", { id: "budget-title" }, "Budget"), body);
}

export function anomalyCard(anomalies) {
  const open = anomalies ? anomalies.filter((a) => a.status === "open").length : null;
  return h("article", { class: "card", "aria-labelledby": "anomaly-card-title" },
    h("h2", { id: "anomaly-card-title" }, "Anomalies"),
    h("p", { class: "big" }, open == null ? "…" : h("span", { "data-field": "open-anomalies" }, String(open))),
    h("p", {}, open == null ? "Loading" : `open of ${anomalies.length} flagged`));
}

/** Usage and charges per product area and unit; the API's total charges below. */
export function areaTable(usage, forecast, area) {
  const keyOf = (x) => `${x.product_area}\u0000${x.unit}`;
  const lines = new Map(forecast.lines.map((l) => [keyOf(l), l]));
  const c = forecast.currency;
  const rows = usage.totals.map((t) => {
    const l = lines.get(keyOf(t));
    const p = l?.projected_charges;
    return h("tr", { "data-area": t.product_area, "data-unit": t.unit },
      h("th", { scope: "row" }, t.product_area), h("td", {}, t.unit),
      h("td", { class: "num" }, field("quantity", t.quantity)),
      h("td", { class: "num" }, l ? field("projected-quantity", l.projected_quantity.p50) : dash()),
      h("td", { class: "num" }, l?.charges_to_date ? field("charges-to-date", l.charges_to_date, money(l.charges_to_date, c))
        : h("span", { class: "muted" }, !l ? "—" : forecast.workspace_id ? "per tenant" : "unpriced")),
      h("td", { class: "num" }, p ? field("p50", p.p50, money(p.p50, c)) : dash()),
      h("td", { class: "num" }, p ? [field("p10", p.p10, grouped(p.p10)), " – ", field("p90", p.p90, grouped(p.p90))] : dash()));
  });
  const total = !area && forecast.total;
  const foot = total ? [h("tr", { "data-total": "" },
    h("th", { scope: "row" }, "Total"), h("td", { colspan: 3, class: "muted" }, "units are not added together"),
    h("td", { class: "num" }, field("charges-to-date", total.charges_to_date, money(total.charges_to_date, c))),
    h("td", { class: "num" }, field("p50", total.projected_charges.p50, money(total.projected_charges.p50, c))),
    h("td", { class: "num" }, field("p10", total.projected_charges.p10, grouped(total.projected_charges.p10)), " – ",
      field("p90", total.projected_charges.p90, grouped(total.projected_charges.p90))))] : [];
  if (!rows.length) return empty("No usage in this period.");
  return table([["Product area"], ["Unit"], ["Usage to date", "num"], ["Projected usage (p50)", "num"],
    ["Charges to date", "num"], ["Projected charges (p50)", "num"], ["80% range", "num"]], rows, foot);
}

/** Quantities per workspace (rows) and product area (columns), the API's totals below. */
export function workspaceTable(usage) {
  if (!usage.rows.length) return empty("No usage in this period.");
  const columns = usage.totals.map((t) => [t.product_area, t.unit]);
  const cells = new Map(usage.rows.map((r) => [`${r.workspace_id}/${r.product_area}/${r.unit}`, r.quantity]));
  const workspaces = [...new Set(usage.rows.map((r) => r.workspace_id))];
  const rows = workspaces.map((w) => h("tr", { "data-workspace": w }, h("th", { scope: "row" }, w),
    columns.map(([a, u]) => {
      const q = cells.get(`${w}/${a}/${u}`);
      return h("td", { class: "num", "data-area": a, "data-unit": u }, q == null ? dash() : field("quantity", q));
    })));
  const foot = [h("tr", { "data-total": "" }, h("th", { scope: "row" }, "Total"),
    usage.totals.map((t) => h("td", { class: "num", "data-area": t.product_area, "data-unit": t.unit }, field("quantity", t.quantity))))];
  return table([["Workspace"], ...columns.map(([a, u]) => [`${a} (${u})`, "num"])], rows, foot);
}

/** One row per day of the period so far: the chart's numbers. */
export function dailyTable(days, panels) {
  if (!panels.length) return empty("No usage in this period.");
  const rows = days.map((d, i) => h("tr", { "data-day": d }, h("th", { scope: "row" }, h("time", { datetime: d }, day(d))),
    panels.map((p) => h("td", { class: "num" }, field("quantity", p.daily[i])))));
  return table([["Day"], ...panels.map((p) => [`${p.area} (${p.unit})`, "num"])], rows);
}

const KINDS = { spike: "Spike", drop: "Drop", level_shift: "Level shift" };

export function anomalyTable(anomalies) {
  if (!anomalies.length) return empty("Nothing unusual was flagged in this period.");
  const rows = anomalies.map((a) => h("tr", { "data-anomaly-id": a.id, "data-status": a.status, "data-workspace": a.workspace_id, "data-area": a.product_area },
    h("td", {}, dates(a)), h("td", {}, a.workspace_id), h("td", {}, `${a.product_area} (${a.unit})`),
    h("td", {}, KINDS[a.kind] ?? a.kind, a.direction === "up" ? " ▲" : " ▼"),
    h("td", { class: "num" }, field("observed", a.observed), " vs usual ", field("expected", a.expected)),
    h("td", {}, h("span", { class: `status ${a.status}` }, a.status)),
    h("td", {}, h("button", { type: "button", "data-open": a.id, "aria-label": `Details: ${anomalyTitle(a)}` }, "Details"))));
  return table([["Day"], ["Workspace"], ["Product area"], ["Kind"], ["Observed", "num"], ["Status"], [""]], rows);
}

const dates = (a) => (a.days > 1
  ? [h("time", { datetime: a.usage_date }, day(a.usage_date)), " – ", h("time", { datetime: a.last_date }, day(a.last_date)), ` (${a.days} days)`]
  : h("time", { datetime: a.usage_date }, day(a.usage_date)));

export const anomalyTitle = (a) =>
  `${KINDS[a.kind] ?? a.kind}: ${a.workspace_id}, ${a.product_area}, ${day(a.usage_date)}`;

/** The contents of the anomaly dialog. */
export function anomalyDetails(a, timeZone) {
  const facts = [
    ["Workspace", a.workspace_id], ["Product area", `${a.product_area} (${a.unit})`],
    ["Observed", field("observed", a.observed)], ["Usual", field("expected", a.expected)],
    ["Usual range", [field("low", a.band.low), " – ", field("high", a.band.high)]],
    ["Score", String(a.score)], ["Status", h("span", { class: `status ${a.status}`, "data-field": "status" }, a.status)],
  ];
  if (a.reason) facts.push(["Why cleared", a.reason]);
  if (a.acknowledgement) {
    const ack = a.acknowledgement;
    facts.push(["Acknowledged", `by ${ack.by}, ${instant(ack.at, timeZone)}: “${ack.note}”`]);
  }
  return [h("p", { class: "explanation" }, a.explanation),
    h("dl", {}, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))];
}

export function lateTable(adjustments) {
  const rows = adjustments.map((a) => h("tr", {}, h("td", {}, h("time", { datetime: a.usage_date }, day(a.usage_date))),
    h("td", {}, a.workspace_id), h("td", {}, `${a.product_area} (${a.unit})`),
    h("td", { class: "num" }, field("quantity", a.quantity)), h("td", { class: "num" }, String(a.event_count))));
  return table([["Day"], ["Workspace"], ["Product area"], ["Quantity", "num"], ["Events", "num"]], rows);
}

export const empty = (text) => h("p", { class: "empty" }, text);

/** "1 Nov – 30 Nov 2026 (UTC), open until 4 Dec, 00:00 UTC". */
export function periodRange(period) {
  const last = dayBefore(period.end);
  const state = period.status === "open"
    ? `open, closes ${instant(period.closes_at, period.timezone)}` : "closed";
  return `${day(period.start)} – ${day(last)} ${last.slice(0, 4)} (${period.timezone}), ${state}`;
}
