// The billing dashboard: a period's forecast, usage and anomalies for the
// chosen filters, drawn from the API's answers (the page computes no figures).
import { ApiError, getJson, postJson, saveFile, takeTokenFromAddress, token } from "./api.js";
import { drawCharts } from "./chart.js";
import { h, instant, periodDays, sum } from "./format.js";
import * as views from "./views.js";

takeTokenFromAddress();
const $ = (id) => document.getElementById(id);
let inFlight = null; // the AbortController of the load under way
let shown = null; // the answers on screen, and the filters they answer

const chosen = () => ({
  period: $("period").value || "current",
  workspace_id: $("workspace").value,
  product_area: $("area").value,
});

/** Query parameters: period and workspace for every call, plus `extra`. */
function params(f, extra = {}) {
  const p = new URLSearchParams({ period: f.period });
  if (f.workspace_id) p.set("workspace_id", f.workspace_id);
  for (const [name, v] of Object.entries(extra)) if (v) p.set(name, v);
  return p;
}

const usageParams = (f, groupBy) => params(f, { product_area: f.product_area, group_by: groupBy });
const ofArea = (anomalies, area) => anomalies.filter((a) => !area || a.product_area === area);

async function load() {
  inFlight?.abort();
  clear();
  if (!token.get()) return signIn();
  const controller = (inFlight = new AbortController());
  const { signal } = controller;
  const f = chosen();
  remember(f);
  busy(true);
  const forecast = getJson("/api/billing/forecast", params(f), signal);
  const all = Promise.all([
    forecast,
    getJson("/api/billing/usage", usageParams(f, "day,product_area"), signal),
    getJson("/api/billing/usage", usageParams(f, "workspace,product_area"), signal),
    getJson("/api/billing/anomalies", params(f), signal),
  ]);
  all.catch(() => {}); // a failure is handled below, whichever answer it is
  try {
    const first = await forecast;
    if (signal.aborted) return;
    $("headline").replaceChildren(
      ...views.headline(first, f.product_area, views.anomalyCard(null)),
    );
    performance.mark("headline");
    const [fc, daily, byWorkspace, anomalies] = await all;
    if (signal.aborted) return;
    shown = {
      filters: f,
      forecast: fc,
      daily,
      byWorkspace,
      anomalies: ofArea(anomalies.anomalies, f.product_area),
    };
    render();
    offerChoices(f, daily, byWorkspace);
    $("main").dataset.state = "loaded";
    performance.mark("loaded");
  } catch (error) {
    if (!signal.aborted) failed(error);
  } finally {
    if (inFlight === controller) busy(false);
  }
}

function render() {
  const { filters: f, forecast, daily, byWorkspace, anomalies } = shown;
  const tz = daily.period.timezone;
  $("tenant").textContent = `· ${daily.tenant_id}`;
  $("freshness").textContent = `· usage data through ${instant(daily.as_of, tz)}`;
  $("period-range").textContent = views.periodRange(daily.period);
  $("headline").replaceChildren(
    ...views.headline(forecast, f.product_area, views.anomalyCard(anomalies)),
  );
  $("notes").replaceChildren(...forecast.notes.map((note) => h("li", {}, note)));
  const latest = daily.rows.reduce((m, r) => (r.usage_date > m ? r.usage_date : m), "");
  const { days, soFar } = periodDays(daily.period, daily.as_of, latest);
  const panels = daily.rows.length ? panelsOf(daily, forecast, anomalies, days, soFar) : [];
  drawCharts($("charts"), panels);
  if (!panels.length) $("charts").append(views.empty("No usage recorded in this period yet."));
  $("daily").replaceChildren(views.dailyTable(days.slice(0, soFar), panels));
  $("areas").replaceChildren(views.areaTable(daily, forecast, f.product_area));
  $("workspaces").replaceChildren(views.workspaceTable(byWorkspace));
  $("anomalies").replaceChildren(views.anomalyTable(anomalies));
  $("late").hidden = !daily.late_adjustments.length;
  $("late-list").replaceChildren(views.lateTable(daily.late_adjustments));
  $("download").disabled = false;
}

/** One chart panel per product area and unit of the usage answer. */
function panelsOf(usage, forecast, anomalies, days, soFar) {
  return usage.totals.map(({ product_area: area, unit }) => {
    const same = (x) => x.product_area === area && x.unit === unit;
    const byDay = new Map(usage.rows.filter(same).map((r) => [r.usage_date, r.quantity]));
    const daily = days.slice(0, soFar).map((d) => byDay.get(d) ?? "0"); // no row: nothing used
    let total = "0";
    const running = daily.map((q) => (total = sum([total, q])));
    const line = forecast.status === "open" ? forecast.lines.find(same) : null;
    const flagged = new Set(
      anomalies.filter((a) => same(a) && a.status !== "cleared").map((a) => a.usage_date),
    );
    const fan = line && { to_date: line.quantity_to_date, ...line.projected_quantity };
    return { area, unit, days, soFar, daily, running, flagged, fan };
  });
}

/** The workspaces and product areas the unfiltered answers list, as choices. */
function offerChoices(f, daily, byWorkspace) {
  if (!f.workspace_id)
    offer(
      $("workspace"),
      byWorkspace.rows.map((r) => r.workspace_id),
    );
  if (!f.product_area)
    offer(
      $("area"),
      daily.totals.map((t) => t.product_area),
    );
}

function offer(select, values) {
  const keep = select.value;
  const all = select.options[0];
  const options = [...new Set([...values, keep].filter(Boolean))].sort();
  select.replaceChildren(all, ...options.map((v) => h("option", { value: v }, v)));
  select.value = keep;
}

/** Keep the filters in the address (not the token): a reload shows the same view. */
function remember(f) {
  const p = new URLSearchParams();
  if (f.period !== "current") p.set("period", f.period);
  if (f.workspace_id) p.set("workspace", f.workspace_id);
  if (f.product_area) p.set("area", f.product_area);
  history.replaceState(null, "", `${location.pathname}${p.size ? `?${p}` : ""}`);
}

function restore() {
  const p = new URLSearchParams(location.search);
  for (const [id, name] of [
    ["period", "period"],
    ["workspace", "workspace"],
    ["area", "area"],
  ]) {
    const v = p.get(name);
    if (!v) continue;
    if (![...$(id).options].some((o) => o.value === v)) $(id).append(h("option", { value: v }, v));
    $(id).value = v;
  }
}

function periodChoices() {
  const choices = [
    ["current", "Current period"],
    ["previous", "Previous period"],
  ];
  const month = new Date();
  for (let i = 0; i < 12; i++) {
    const label = `${month.getFullYear()}-${String(month.getMonth() + 1).padStart(2, "0")}`;
    choices.push([label, label]);
    month.setDate(1);
    month.setMonth(month.getMonth() - 1);
  }
  $("period").replaceChildren(...choices.map(([v, text]) => h("option", { value: v }, text)));
}

function clear() {
  shown = null;
  for (const id of [
    "headline",
    "notes",
    "charts",
    "daily",
    "areas",
    "workspaces",
    "anomalies",
    "late-list",
  ]) {
    $(id).replaceChildren();
  }
  for (const id of ["tenant", "freshness", "period-range"]) $(id).textContent = "";
  $("late").hidden = true;
  $("problem").hidden = true;
  $("download").disabled = true;
}

function busy(on) {
  $("main").setAttribute("aria-busy", String(on));
  if (on) $("main").dataset.state = "loading";
  if (on) $("headline").replaceChildren(views.empty("Loading…"));
  $("status").textContent = on ? "Loading…" : "";
  if (!on && shown) {
    const f = shown.filters;
    $("status").textContent =
      `Showing ${f.workspace_id || "all workspaces"},` +
      ` ${f.product_area || "all product areas"}.`;
  }
}

/** A failed request: nothing stale stays on screen; say what happened. */
function failed(error) {
  clear();
  $("main").dataset.state = "failed";
  if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
    token.clear();
    const text =
      error.status === 401
        ? "Your sign-in was not accepted: the token has expired or is not valid. Open a new dashboard link or paste a new token."
        : "This token may not see billing: it needs the admin role of its tenant. Sign in with an admin token.";
    problem(String(error.status), error.status === 401 ? "Signed out" : "Not allowed", text, error);
    signIn(false);
  } else if (error instanceof ApiError) {
    problem(String(error.status), "Could not load", "The service could not answer.", error, true);
  } else {
    problem(
      "network",
      "Could not load",
      "The billing service did not answer. Check the connection and retry.",
      null,
      true,
    );
  }
}

function problem(kind, title, text, error, retry = false) {
  const box = $("problem");
  box.dataset.kind = kind;
  box.replaceChildren(
    h("h2", {}, title),
    h("p", {}, text),
    error
      ? h("p", { class: "muted" }, `The service answered ${error.status}: ${error.message}`)
      : "",
    retry ? h("button", { type: "button", id: "retry" }, "Retry") : "",
  );
  box.hidden = false;
  $("retry")?.addEventListener("click", load);
}

function signIn(focus = true) {
  $("sign-in").hidden = false;
  $("main").hidden = $("filters").hidden = $("sign-out").hidden = true;
  if (focus) $("token").focus();
}

function signedIn() {
  $("sign-in").hidden = true;
  $("main").hidden = $("filters").hidden = $("sign-out").hidden = false;
}

async function download() {
  if (!shown) return;
  const f = shown.filters; // exactly what is on screen
  $("status").textContent = "Preparing the CSV…";
  try {
    const { name, rows } = await saveFile(
      "/api/billing/usage/export",
      usageParams(f, "day,product_area"),
    );
    $("status").textContent = `Saved ${name}: ${rows} rows, the daily usage on screen.`;
  } catch (error) {
    if (error instanceof ApiError && error.status >= 500) {
      $("status").textContent = `The CSV could not be made (${error.status}: ${error.message}).`;
    } else failed(error);
  }
}

function openAnomaly(id) {
  const a = shown.anomalies.find((x) => x.id === id);
  const dialog = $("anomaly");
  dialog.dataset.id = id;
  $("anomaly-title").textContent = views.anomalyTitle(a);
  $("anomaly-body").replaceChildren(...views.anomalyDetails(a, shown.daily.period.timezone));
  $("ack-form").hidden = a.status !== "open";
  $("ack-note").value = "";
  $("ack-status").textContent = "";
  dialog.showModal();
}

async function acknowledge(event) {
  event.preventDefault();
  const id = $("anomaly").dataset.id;
  const note = $("ack-note").value.trim();
  if (!note) return;
  $("ack-submit").disabled = true;
  $("ack-status").textContent = "Acknowledging…";
  try {
    const path = `/api/billing/anomalies/${encodeURIComponent(id)}/acknowledge`;
    const answer = await postJson(path, { note });
    const f = shown.filters;
    const fresh = await getJson(
      "/api/billing/anomalies",
      params(f, { min_positions: answer.min_positions }),
    );
    shown.anomalies = ofArea(fresh.anomalies, f.product_area);
    render();
    openAnomaly(id); // the flag as the API now has it
    $("ack-status").textContent = "Acknowledged.";
    $("anomaly-close").focus();
  } catch (error) {
    $("ack-status").textContent = `Not acknowledged: ${error.message}`;
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      $("anomaly").close();
      failed(error);
    }
  } finally {
    $("ack-submit").disabled = false;
  }
}

periodChoices();
restore();
for (const id of ["period", "workspace", "area"]) $(id).addEventListener("change", load);
$("filters").addEventListener("submit", (event) => event.preventDefault());
$("download").addEventListener("click", download);
$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token.set($("token").value.trim());
  $("token").value = "";
  signedIn();
  load();
});
$("sign-out").addEventListener("click", () => {
  token.clear();
  inFlight?.abort();
  clear();
  signIn();
});
$("anomalies").addEventListener("click", (event) => {
  const id = event.target.closest("[data-open]")?.dataset.open;
  if (id) openAnomaly(id);
});
$("ack-form").addEventListener("submit", acknowledge);
$("anomaly-close").addEventListener("click", () => $("anomaly").close());
$("anomaly").addEventListener("close", () => {
  document.querySelector(`[data-open="${$("anomaly").dataset.id}"]`)?.focus();
});
if (token.get()) {
  signedIn();
  load();
} else signIn();
