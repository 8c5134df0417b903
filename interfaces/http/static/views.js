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
const num = (...content) => h("td", { class: "num" }, ...content);
const card = (id, title, ...body) =>
  h("article", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), ...body);
/** "p10 – p90" of a forecast's percentiles, each the API's value. */
const range = (p, show = grouped) => [
  field("p10", p.p10, show(p.p10)),
  " – ",
  field("p90", p.p90, show(p.p90)),
];
const table = (head, rows, foot = []) =>
  h(
    "table",
    {},
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        head.map(([text, cls]) => h("th", { scope: "col", class: cls }, text)),
      ),
    ),
    h("tbody", {}, rows),
    foot.length ? h("tfoot", {}, foot) : null,
  );

/** What the headline is about: the whole tenant, or the chosen product area's line. */
export function subject(forecast, area) {
  if (!area) return forecast.total && { ...forecast.total, label: "Whole tenant" };
  const line = forecast.lines.find((l) => l.product_area === area && l.priced);
  return line && { ...line, label: `${area[0].toUpperCase()}${area.slice(1)} only` };
}

export function headline(forecast, area, anomalyCard) {
  const s = subject(forecast, area);
  const inCurrency = (amount) => money(amount, forecast.currency);
  const closed =
    forecast.status === "closed" ? " The period is closed: these are its actuals." : "";
  const projected = card(
    "projected-title",
    ["Projected invoice ", h("span", { class: "tag" }, forecast.kind)],
    s
      ? [
          h(
            "p",
            { class: "big" },
            field("p50", s.projected_charges.p50, inCurrency(s.projected_charges.p50)),
          ),
          h("p", {}, "80% range ", range(s.projected_charges, inCurrency)),
        ]
      : h("p", { class: "big" }, dash()),
    h("p", { class: "caveat" }, forecast.caveat, closed),
  );
  projected.classList.add("estimate");
  const through = forecast.data_through
    ? ` · data through ${instant(forecast.data_through, forecast.period.timezone)}`
    : "";
  const toDate = card(
    "to-date-title",
    "Charges to date",
    h(
      "p",
      { class: "big" },
      s ? field("charges-to-date", s.charges_to_date, inCurrency(s.charges_to_date)) : dash(),
    ),
    h(
      "p",
      {},
      s ? s.label : forecast.workspace_id ? "Charges are per tenant" : "No priced usage",
      through,
    ),
  );
  return [projected, toDate, budgetCard(forecast, area), anomalyCard];
}

function budgetCard(forecast, area) {
  const b = forecast.budget;
  const inCurrency = (amount) => money(amount, forecast.currency);
  if (!b) {
    const why = forecast.workspace_id
      ? "Budgets are set for the whole tenant."
      : "No budget is set for this period.";
    return card("budget-title", "Budget", h("p", { class: "big" }, dash()), h("p", {}, why));
  }
  const over = b.left_to_spend.startsWith("-");
  const breach = b.projected_breach_date;
  return card(
    "budget-title",
    "Budget",
    h("p", { class: "big" }, field("budget", b.amount, inCurrency(b.amount))),
    h(
      "p",
      {},
      over ? "Over by " : "Left to spend ",
      field("left-to-spend", b.left_to_spend, inCurrency(b.left_to_spend.replace("-", ""))),
    ),
    breach
      ? h(
          "p",
          { class: "warn" },
          "Reached (projected) on ",
          h("time", { datetime: breach, "data-field": "breach" }, day(breach)),
        )
      : h("p", {}, "Not projected to be reached."),
    area ? h("p", { class: "muted" }, "For the whole tenant.") : null,
  );
}

export function anomalyCard(anomalies) {
  const open = anomalies?.filter((a) => a.status === "open").length;
  return card(
    "anomaly-card-title",
    "Anomalies",
    h(
      "p",
      { class: "big" },
      anomalies ? h("span", { "data-field": "open-anomalies" }, String(open)) : "…",
    ),
    h("p", {}, anomalies ? `open of ${anomalies.length} flagged` : "Loading"),
  );
}

/** Usage and charges per product area and unit; the API's total charges below. */
export function areaTable(usage, forecast, area) {
  if (!usage.totals.length) return empty("No usage in this period.");
  const keyOf = (x) => `${x.product_area}\u0000${x.unit}`;
  const lines = new Map(forecast.lines.map((l) => [keyOf(l), l]));
  const inCurrency = (amount) => money(amount, forecast.currency);
  const charges = (to_date, p) => [
    num(field("charges-to-date", to_date, inCurrency(to_date))),
    num(field("p50", p.p50, inCurrency(p.p50))),
    num(range(p)),
  ];
  const rows = usage.totals.map((t) => {
    const l = lines.get(keyOf(t));
    const missing = !l ? "—" : forecast.workspace_id ? "per tenant" : "unpriced";
    return h(
      "tr",
      { "data-area": t.product_area, "data-unit": t.unit },
      h("th", { scope: "row" }, t.product_area),
      h("td", {}, t.unit),
      num(field("quantity", t.quantity)),
      num(l ? field("projected-quantity", l.projected_quantity.p50) : dash()),
      l?.charges_to_date
        ? charges(l.charges_to_date, l.projected_charges)
        : [num(h("span", { class: "muted" }, missing)), num(dash()), num(dash())],
    );
  });
  const total = !area && forecast.total;
  const foot = total
    ? [
        h(
          "tr",
          { "data-total": "" },
          h("th", { scope: "row" }, "Total"),
          h("td", { colspan: 3, class: "muted" }, "units are not added together"),
          charges(total.charges_to_date, total.projected_charges),
        ),
      ]
    : [];
  const head = [
    "Usage to date",
    "Projected usage (p50)",
    "Charges to date",
    "Projected charges (p50)",
    "80% range",
  ];
  return table([["Product area"], ["Unit"], ...head.map((text) => [text, "num"])], rows, foot);
}

/** Quantities per workspace (rows) and product area (columns), the API's totals below. */
export function workspaceTable(usage) {
  if (!usage.rows.length) return empty("No usage in this period.");
  const columns = usage.totals.map((t) => [t.product_area, t.unit]);
  const cells = new Map(
    usage.rows.map((r) => [`${r.workspace_id}/${r.product_area}/${r.unit}`, r.quantity]),
  );
  const workspaces = [...new Set(usage.rows.map((r) => r.workspace_id))];
  const rows = workspaces.map((w) =>
    h(
      "tr",
      { "data-workspace": w },
      h("th", { scope: "row" }, w),
      columns.map(([a, u]) => {
        const q = cells.get(`${w}/${a}/${u}`);
        const cell = num(q == null ? dash() : field("quantity", q));
        Object.assign(cell.dataset, { area: a, unit: u });
        return cell;
      }),
    ),
  );
  const foot = [
    h(
      "tr",
      { "data-total": "" },
      h("th", { scope: "row" }, "Total"),
      usage.totals.map((t) => {
        const cell = num(field("quantity", t.quantity));
        Object.assign(cell.dataset, { area: t.product_area, unit: t.unit });
        return cell;
      }),
    ),
  ];
  return table([["Workspace"], ...columns.map(([a, u]) => [`${a} (${u})`, "num"])], rows, foot);
}

/** One row per day of the period so far: the chart's numbers. */
export function dailyTable(days, panels) {
  if (!panels.length) return empty("No usage in this period.");
  const rows = days.map((d, i) =>
    h(
      "tr",
      { "data-day": d },
      h("th", { scope: "row" }, h("time", { datetime: d }, day(d))),
      panels.map((p) => num(field("quantity", p.daily[i]))),
    ),
  );
  return table([["Day"], ...panels.map((p) => [`${p.area} (${p.unit})`, "num"])], rows);
}

const KINDS = { spike: "Spike", drop: "Drop", level_shift: "Level shift" };

export function anomalyTable(anomalies) {
  if (!anomalies.length) return empty("Nothing unusual was flagged in this period.");
  const rows = anomalies.map((a) =>
    h(
      "tr",
      {
        "data-anomaly-id": a.id,
        "data-status": a.status,
        "data-workspace": a.workspace_id,
        "data-area": a.product_area,
      },
      h("td", {}, dates(a)),
      h("td", {}, a.workspace_id),
      h("td", {}, `${a.product_area} (${a.unit})`),
      h("td", {}, KINDS[a.kind] ?? a.kind, a.direction === "up" ? " ▲" : " ▼"),
      num(field("observed", a.observed), " vs usual ", field("expected", a.expected)),
      h("td", {}, h("span", { class: `status ${a.status}` }, a.status)),
      h(
        "td",
        {},
        h(
          "button",
          { type: "button", "data-open": a.id, "aria-label": `Details: ${anomalyTitle(a)}` },
          "Details",
        ),
      ),
    ),
  );
  return table(
    [["Day"], ["Workspace"], ["Product area"], ["Kind"], ["Observed", "num"], ["Status"], [""]],
    rows,
  );
}

const dates = (a) =>
  a.days > 1
    ? [
        h("time", { datetime: a.usage_date }, day(a.usage_date)),
        " – ",
        h("time", { datetime: a.last_date }, day(a.last_date)),
        ` (${a.days} days)`,
      ]
    : h("time", { datetime: a.usage_date }, day(a.usage_date));

export const anomalyTitle = (a) =>
  `${KINDS[a.kind] ?? a.kind}: ${a.workspace_id}, ${a.product_area}, ${day(a.usage_date)}`;

/** The contents of the anomaly dialog. */
export function anomalyDetails(a, timeZone) {
  const facts = [
    ["Workspace", a.workspace_id],
    ["Product area", `${a.product_area} (${a.unit})`],
    ["Observed", field("observed", a.observed)],
    ["Usual", field("expected", a.expected)],
    ["Usual range", [field("low", a.band.low), " – ", field("high", a.band.high)]],
    ["Score", String(a.score)],
    ["Status", h("span", { class: `status ${a.status}`, "data-field": "status" }, a.status)],
  ];
  if (a.reason) facts.push(["Why cleared", a.reason]);
  if (a.acknowledgement) {
    const ack = a.acknowledgement;
    facts.push(["Acknowledged", `by ${ack.by}, ${instant(ack.at, timeZone)}: “${ack.note}”`]);
  }
  return [
    h("p", { class: "explanation" }, a.explanation),
    h(
      "dl",
      {},
      facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
    ),
  ];
}

export function lateTable(adjustments) {
  const rows = adjustments.map((a) =>
    h(
      "tr",
      {},
      h("td", {}, h("time", { datetime: a.usage_date }, day(a.usage_date))),
      h("td", {}, a.workspace_id),
      h("td", {}, `${a.product_area} (${a.unit})`),
      num(field("quantity", a.quantity)),
      num(String(a.event_count)),
    ),
  );
  return table(
    [["Day"], ["Workspace"], ["Product area"], ["Quantity", "num"], ["Events", "num"]],
    rows,
  );
}

export const empty = (text) => h("p", { class: "empty" }, text);

/** "1 Nov – 30 Nov 2026 (UTC), open until 4 Dec, 00:00 UTC". */
export function periodRange(period) {
  const last = dayBefore(period.end);
  const state =
    period.status === "open"
      ? `open, closes ${instant(period.closes_at, period.timezone)}`
      : "closed";
  return `${day(period.start)} – ${day(last)} ${last.slice(0, 4)} (${period.timezone}), ${state}`;
}
