// The obtain / renew flow behind one form: validate, make the key and CSR,
// call the API, check the answer, hand the customer a PKCS#12 file. Owns
// the page's state changes; the private key lives only in local variables
// here and leaves the page only inside the encrypted PKCS#12.
import { ApiError, postJson } from "./api.js";
import { buildCsrPem, generateKeyPair } from "./keys.js";
import { text } from "./messages.js";
import { pemToDer } from "./pem.js";
import { buildPkcs12, certificateMatchesKey, commonNameOf } from "./pkcs12.js";

const MIN_PASSWORD = 8;

function field(form, name) {
  return form.querySelector(`[name="${name}"]`);
}

function byId(id) {
  return document.getElementById(id);
}

function showStatus(message) {
  const status = byId("certgate-status");
  if (status) {
    status.textContent = message;
  }
}

function showError(message) {
  const box = byId("certgate-error");
  if (box) {
    box.textContent = message;
    box.hidden = !message;
    if (message) {
      box.focus();
    }
  }
}

// Login IDs are plain, but the file name must be safe on every PC.
function fileNameFor(login) {
  const safe = (login || "certificate").replace(/[^A-Za-z0-9._@-]/g, "_");
  return `${safe}.p12`;
}

function validate(form, flow) {
  const values = {
    login: field(form, "login") ? field(form, "login").value.trim() : "",
    code: field(form, "code") ? field(form, "code").value.trim() : "",
    password: field(form, "password").value,
    confirm: field(form, "password2").value,
  };
  if (flow === "obtain" && !values.login) {
    return { error: text("needLogin"), focus: "login" };
  }
  if (flow === "obtain" && !values.code) {
    return { error: text("needCode"), focus: "code" };
  }
  if (values.password.length < MIN_PASSWORD) {
    return { error: text("passwordShort"), focus: "password" };
  }
  if (values.password !== values.confirm) {
    return { error: text("passwordMismatch"), focus: "password2" };
  }
  return { values };
}

function offerDownload(der, fileName) {
  const blob = new Blob([der], { type: "application/x-pkcs12" });
  const link = byId("certgate-download");
  if (link.href && link.href.startsWith("blob:")) {
    URL.revokeObjectURL(link.href);
  }
  link.href = URL.createObjectURL(blob);
  link.download = fileName;
  document.querySelectorAll(".certgate-filename").forEach((el) => {
    el.textContent = fileName;
  });
  const done = byId("certgate-done");
  done.hidden = false;
  link.click();
  // The code is spent and the key is gone: a second submit could only fail.
  const form = document.querySelector("form[data-certgate-flow]");
  if (form) {
    form.hidden = true;
  }
  const title = done.querySelector("h2");
  if (title) {
    title.setAttribute("tabindex", "-1");
    title.focus();
  }
}

async function run(form, flow, values) {
  showStatus(text("generating"));
  const keys = await generateKeyPair();
  const pageLogin = form.getAttribute("data-login") || "";
  const csrName = flow === "obtain" ? values.login : pageLogin;
  const csr = await buildCsrPem(keys, csrName);

  showStatus(text("requesting"));
  const body = flow === "obtain" ? { login: values.login, code: values.code, csr } : { csr };
  const answer = await postJson(form.getAttribute("data-api"), body);

  let certificateDer;
  let chainDers;
  try {
    certificateDer = pemToDer(answer.certificate, "CERTIFICATE");
    chainDers = answer.chain.map((pem) => pemToDer(pem, "CERTIFICATE"));
  } catch (err) {
    throw new ApiError("bad_answer", text("badAnswer"));
  }
  const spki = await crypto.subtle.exportKey("spki", keys.publicKey);
  if (!certificateMatchesKey(certificateDer, spki)) {
    throw new ApiError("key_mismatch", text("keyMismatch"));
  }

  showStatus(text("packaging"));
  const login = flow === "obtain" ? values.login : pageLogin || commonNameOf(certificateDer) || "";
  const p12 = await buildPkcs12({
    privateKey: keys.privateKey,
    certificateDer,
    chainDers,
    friendlyName: login || "certgate",
    password: values.password,
  });
  offerDownload(p12, fileNameFor(login));
  showStatus(text("done"));
}

function errorText(err) {
  if (err instanceof ApiError) {
    if (err.message) {
      return err.message;
    }
    if (err.code === "network") {
      return text("network");
    }
    // The rate limit answers in plain text, before any page logic.
    if (err.code === "http_429") {
      return text("busy");
    }
    return text("badAnswer");
  }
  return text("failed");
}

export function wireForm(form) {
  const flow = form.getAttribute("data-certgate-flow");
  const submit = form.querySelector('button[type="submit"]');
  let busy = false;

  if (!window.crypto || !window.crypto.subtle) {
    showError(text("noCrypto"));
    if (submit) {
      submit.disabled = true;
    }
    return;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) {
      return;
    }
    showError("");
    const checked = validate(form, flow);
    if (checked.error) {
      showError(checked.error);
      const target = field(form, checked.focus);
      if (target) {
        target.setAttribute("aria-invalid", "true");
      }
      return;
    }
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
    busy = true;
    form.setAttribute("aria-busy", "true");
    if (submit) {
      submit.disabled = true;
    }
    try {
      await run(form, flow, checked.values);
      field(form, "password").value = "";
      field(form, "password2").value = "";
    } catch (err) {
      showStatus("");
      showError(errorText(err));
      if (!(err instanceof ApiError)) {
        console.error("certgate:", err);
      }
    } finally {
      busy = false;
      form.removeAttribute("aria-busy");
      if (submit) {
        submit.disabled = false;
      }
    }
  });
}
