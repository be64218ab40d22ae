// JSON calls to certgate's API. Owns the request shape (CSRF header, JSON
// content type, the page's language so errors come back in it) and turns
// error answers into ApiError; it must not build UI.
import { pageLang } from "./messages.js";

export class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function csrfToken() {
  const meta = document.querySelector('meta[name="certgate-csrf"]');
  return meta ? meta.getAttribute("content") || "" : "";
}

export async function postJson(path, body) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "X-CSRF-Token": csrfToken(),
        "Accept-Language": pageLang(),
      },
      body: JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError("network", "");
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch (err) {
    payload = null;
  }
  if (!response.ok) {
    const code = payload && typeof payload.error === "string" ? payload.error : `http_${response.status}`;
    const message = payload && typeof payload.message === "string" ? payload.message : "";
    throw new ApiError(code, message);
  }
  if (!payload || typeof payload.certificate !== "string") {
    throw new ApiError("bad_answer", "");
  }
  const chain = Array.isArray(payload.chain) ? payload.chain.filter((p) => typeof p === "string") : [];
  return { certificate: payload.certificate, chain };
}
