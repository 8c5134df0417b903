// Showing the API's values for reading. Money and quantities stay the API's
// decimal strings: grouped for the eye, never turned into floats.

/** An element with attributes and children (strings become text). */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value == null) continue;
    if (name === "class") element.className = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children.flat(Infinity).filter((c) => c != null && c !== false));
  return element;
}

/** "1234567.5" -> "1,234,567.5", digit for digit. */
export function grouped(decimal) {
  const [whole, fraction] = String(decimal).split(".");
  const digits = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return fraction === undefined ? digits : `${digits}.${fraction}`;
}

export const money = (amount, currency) =>
  currency ? `${currency} ${grouped(amount)}` : grouped(amount);

/** A <data> element: the API's exact value, shown grouped. */
export const value = (decimal, text = grouped(decimal)) => h("data", { value: decimal }, text);

/** Exact sum of decimal strings (for display only: running totals). */
export function sum(decimals) {
  const scale = Math.max(0, ...decimals.map((d) => (String(d).split(".")[1] ?? "").length));
  const units = decimals.reduce((acc, d) => {
    const [whole, fraction = ""] = String(d).split(".");
    const sign = whole.startsWith("-") ? -1n : 1n;
    const digits = whole.replace("-", "") + fraction.padEnd(scale, "0");
    return acc + sign * BigInt(digits || "0");
  }, 0n);
  if (scale === 0) return units.toString();
  const text = (units < 0n ? -units : units).toString().padStart(scale + 1, "0");
  const out = `${text.slice(0, -scale)}.${text.slice(-scale)}`.replace(/\.?0+$/, "");
  return units < 0n ? `-${out}` : out;
}

const UTC = "UTC";
const dayFormat = new Intl.DateTimeFormat("en-GB", {
  weekday: "short",
  day: "numeric",
  month: "short",
  timeZone: UTC,
});

/** "2026-11-27" -> "Fri 27 Nov" (a calendar day: no timezone shift). */
export const day = (isoDate) => dayFormat.format(new Date(`${isoDate}T00:00:00Z`));

/** The ISO date of the day before. */
export function dayBefore(isoDate) {
  const d = new Date(`${isoDate}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() - 1);
  return d.toISOString().slice(0, 10);
}

/** "30 Nov, 12:43 UTC": an instant on the tenant's clock. */
export function instant(iso, timeZone) {
  return new Intl.DateTimeFormat("en-GB", {
    day: "numeric",
    month: "short",
    hour: "2-digit",
    minute: "2-digit",
    timeZone,
    timeZoneName: "short",
  }).format(new Date(iso));
}

/** The calendar date (YYYY-MM-DD) of an instant in a timezone. */
export const localDate = (iso, timeZone) =>
  new Intl.DateTimeFormat("en-CA", { timeZone }).format(new Date(iso));

/** Every day of the period, and how many of them have begun by `asOf` (or
 * hold usage: an event may be a few minutes ahead of the clock). */
export function periodDays(period, asOf, latestUsage = "") {
  const days = [];
  for (let d = period.start; d < period.end;) {
    days.push(d);
    const next = new Date(`${d}T00:00:00Z`);
    next.setUTCDate(next.getUTCDate() + 1);
    d = next.toISOString().slice(0, 10);
  }
  const today = localDate(asOf, period.timezone);
  const last = latestUsage > today ? latestUsage : today;
  return { days, soFar: days.filter((d) => d <= last).length };
}
