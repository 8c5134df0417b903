"use strict";
// The token stays in this tab (sessionStorage) and is only sent to this API.
const $ = (id) => document.getElementById(id);
const tokenKey = "billing-admin-token";
$("token").value = sessionStorage.getItem(tokenKey) || "";

function params() {
  const p = new URLSearchParams({ period: $("period").value.trim() || "current" });
  if ($("workspace").value.trim()) p.set("workspace_id", $("workspace").value.trim());
  if ($("area").value.trim()) p.set("product_area", $("area").value.trim());
  const groups = [...document.querySelectorAll("input[name=group]:checked")].map((e) => e.value);
  p.set("group_by", groups.join(","));
  return p;
}

async function call(path) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + sessionStorage.getItem(tokenKey) } });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (_) { /* not JSON */ }
    throw new Error(response.status + ": " + detail);
  }
  return response;
}

// Group the digits of an exact decimal string for reading (never via a float).
function grouped(quantity) {
  const [whole, fraction] = String(quantity).split(".");
  const digits = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return fraction === undefined ? digits : `${digits}.${fraction}`;
}

function cell(row, text, cls) {
  const td = row.insertCell(); td.textContent = text ?? "—"; if (cls) td.className = cls;
}

function render(data) {
  const p = data.period;
  $("status").textContent = `${p.start} to ${p.end} (${p.timezone}), period ${p.status}; data as of ${data.as_of}, position ${data.position}`;
  $("totals").replaceChildren(...data.totals.map((t) => {
    const card = document.createElement("div"); card.className = "card";
    const value = document.createElement("b"); value.textContent = grouped(t.quantity); value.title = t.quantity;
    card.append(value, `${t.product_area} · ${t.unit}`);
    return card;
  }));
  const adj = data.late_adjustments;
  $("adjustments").replaceChildren();
  if (adj.length) {
    const title = document.createElement("h2");
    title.textContent = "Late adjustments (recorded after this period closed)";
    const list = document.createElement("ul");
    for (const a of adj) {
      const item = document.createElement("li");
      item.textContent = `${a.usage_date} · ${a.workspace_id} · ${a.product_area}: ${grouped(a.quantity)} ${a.unit} (${a.event_count} events)`;
      list.append(item);
    }
    $("adjustments").append(title, list);
  }
  const body = $("rows").tBodies[0]; body.replaceChildren();
  for (const r of data.rows) {
    const row = body.insertRow(); if (r.late_event_count > 0) row.className = "late";
    cell(row, r.usage_date); cell(row, r.workspace_id); cell(row, r.product_area); cell(row, r.unit);
    cell(row, grouped(r.quantity), "num"); cell(row, r.source_event_count, "num"); cell(row, r.late_event_count, "num");
  }
}

async function show(event) {
  if (event) event.preventDefault();
  try { render(await (await call("/api/billing/usage?" + params())).json()); }
  catch (e) { $("status").textContent = e.message; $("status").className = "error"; return; }
  $("status").className = "muted";
}

async function download() {
  try {
    const response = await call("/api/billing/usage/export?" + params());
    const url = URL.createObjectURL(await response.blob());
    const a = document.createElement("a"); a.href = url; a.download = "usage.csv"; a.click();
    URL.revokeObjectURL(url);
  } catch (e) { $("status").textContent = e.message; $("status").className = "error"; }
}

$("use-token").addEventListener("click", () => { sessionStorage.setItem(tokenKey, $("token").value.trim()); show(); });
$("query").addEventListener("submit", show);
$("export").addEventListener("click", download);
if (sessionStorage.getItem(tokenKey)) show();
