// The billing API, called with the admin's token. The token is kept for this
// tab only (sessionStorage) and sent only to this origin.

const KEY = "billing-admin-token";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

/** Move a `#token=<JWT>` from the address bar into this tab's storage. */
export function takeTokenFromAddress() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (!fragment.get("token")) return;
  token.set(fragment.get("token"));
  history.replaceState(null, "", location.pathname + location.search);
}

/** An answer other than 2xx: its status and the API's `detail`. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function call(path, { method = "GET", body, signal } = {}) {
  const headers = { Authorization: `Bearer ${token.get()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const init = { method, headers, signal, body: body && JSON.stringify(body) };
  const response = await fetch(path, init);
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail ?? detail;
    } catch {
      // not JSON: keep the status text
    }
    throw new ApiError(response.status, detail);
  }
  return response;
}

export const getJson = async (path, params, signal) =>
  (await call(`${path}?${params}`, { signal })).json();

export const postJson = async (path, body) => (await call(path, { method: "POST", body })).json();

/** Fetch a file with the token and save it through a blob link. */
export async function saveFile(path, params) {
  const response = await call(`${path}?${params}`);
  const disposition = response.headers.get("Content-Disposition") ?? "";
  const name = /filename="([^"]+)"/.exec(disposition)?.[1] ?? "usage.csv";
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return { name, rows: response.headers.get("X-Row-Count") };
}
