// Walks certgate's browser flow in a real headless Chromium, with the
// browser's own TLS stack and NSS certificate store (no
// --ignore-certificate-errors, no Playwright clientCertificates):
//   1. fresh HOME and profile under --out; an NSS db that trusts --ca-pem
//      for the server certificate; client-certificate auto-selection for
//      the --base origin;
//   2. /certgate/obtain: fill login ID, issuance code, password; submit;
//      save the PKCS#12 the page offers;
//   3. close Chromium, import the PKCS#12 with pk12util, start Chromium
//      again, open `/` and print {"status":..., "body":...} on stdout;
//   4. with --renew, also open /certgate/renew in that browser (reached
//      with the imported certificate), renew, and save the new PKCS#12 as
//      renewed-<login>.p12 (its path is added to the JSON as "renewed").
// Exits non-zero with a message on stderr on any failure; a screenshot of
// each step is saved in --out. The PKCS#12 password never reaches the logs.
//
// node tests/browser/obtain-and-login.mjs --base https://127.0.0.1:PORT \
//   --login L --code C --ca-pem FILE --out DIR [--lang ja|en] [--renew]
//   [--password-file FILE] [--chromium PATH]
// --password-file writes the (random) PKCS#12 password to FILE, mode 0600,
// so a test can open the saved files with openssl.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const STEP_TIMEOUT_MS = 90_000;

// Flags checked on Debian's chromium (see shared FIELD-NOTES.md).
const CHROMIUM_FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

class StepError extends Error {}

function fail(message) {
  throw new StepError(message);
}

function parse() {
  const { values } = parseArgs({
    options: {
      base: { type: "string" },
      login: { type: "string" },
      code: { type: "string" },
      "ca-pem": { type: "string" },
      out: { type: "string" },
      lang: { type: "string", default: "ja" },
      renew: { type: "boolean", default: false },
      "password-file": { type: "string" },
      chromium: { type: "string", default: "/usr/bin/chromium" },
    },
  });
  for (const name of ["base", "login", "code", "ca-pem", "out"]) {
    if (!values[name]) {
      fail(`missing --${name}\nusage: obtain-and-login.mjs --base https://127.0.0.1:PORT --login L --code C --ca-pem FILE --out DIR [--lang ja|en]`);
    }
  }
  const base = new URL(values.base);
  if (base.protocol !== "https:") fail(`--base must be https, got ${values.base}`);
  return { ...values, origin: base.origin };
}

function log(message) {
  process.stderr.write(`[browser] ${message}\n`);
}

function run(cmd, argv, env, what) {
  try {
    return execFileSync(cmd, argv, { env, stdio: ["ignore", "pipe", "pipe"] }).toString();
  } catch (err) {
    const detail = `${err.stderr || ""}${err.stdout || ""}`.trim();
    return fail(`${what} failed (${cmd} exit ${err.status}): ${detail}`);
  }
}

// A fresh HOME whose NSS db trusts the CA of the gateway's server certificate.
function prepareNss(opts, home) {
  const nssdb = path.join(home, ".pki", "nssdb");
  fs.mkdirSync(nssdb, { recursive: true });
  const env = { ...process.env, HOME: home };
  run("certutil", ["-N", "-d", `sql:${nssdb}`, "--empty-password"], env, "creating the NSS db");
  run("certutil", ["-A", "-d", `sql:${nssdb}`, "-n", "certgate-test-server-ca", "-t", "C,,", "-i", opts["ca-pem"]], env, "trusting the CA");
  return { nssdb, env };
}

// Chromium asks the user to pick a client certificate unless this content
// setting (the per-profile form of AutoSelectCertificateForUrls) matches.
function writePreferences(profile, origin) {
  const dir = path.join(profile, "Default");
  fs.mkdirSync(dir, { recursive: true });
  const prefs = {
    profile: {
      content_settings: {
        exceptions: {
          auto_select_certificate: {
            [`${origin},*`]: { setting: { filters: [{}] } },
          },
        },
      },
    },
    download: { prompt_for_download: false },
  };
  fs.writeFileSync(path.join(dir, "Preferences"), JSON.stringify(prefs));
}

async function launch(opts, profile, env) {
  return chromium.launchPersistentContext(profile, {
    executablePath: opts.chromium,
    headless: true,
    args: CHROMIUM_FLAGS,
    env,
    acceptDownloads: true,
    locale: opts.lang === "en" ? "en-US" : "ja-JP",
    viewport: { width: 1000, height: 800 },
    timeout: STEP_TIMEOUT_MS,
  });
}

async function shot(page, out, name) {
  const file = path.join(out, `${name}.png`);
  try {
    await page.screenshot({ path: file, fullPage: true });
    log(`screenshot ${file}`);
  } catch (err) {
    log(`screenshot ${name} failed: ${err.message}`);
  }
}

function watchPage(page) {
  page.on("console", (msg) => {
    if (msg.type() === "error" || msg.type() === "warning") log(`page console ${msg.type()}: ${msg.text()}`);
  });
  page.on("pageerror", (err) => log(`page error: ${err.message}`));
}

// Submits the page's form and returns the saved PKCS#12 path; fails if the
// page shows an error instead of offering the file.
async function submitAndSave(opts, page, saveAs, shotName) {
  const error = page.locator("#certgate-error");
  const download = page.waitForEvent("download", { timeout: STEP_TIMEOUT_MS });
  const refused = error.waitFor({ state: "visible", timeout: STEP_TIMEOUT_MS }).then(async () => {
    fail(`the page shows an error: ${(await error.textContent()) || ""}`.trim());
  });
  refused.catch(() => {});
  await page.click('button[type="submit"]');
  const file = await Promise.race([download, refused]);
  const suggested = file.suggestedFilename();
  if (suggested !== `${opts.login}.p12`) fail(`download is named ${suggested}, expected ${opts.login}.p12`);
  const saved = path.join(opts.out, saveAs);
  await file.saveAs(saved);
  await page.locator("#certgate-done").waitFor({ state: "visible", timeout: STEP_TIMEOUT_MS });
  await shot(page, opts.out, shotName);
  const size = fs.statSync(saved).size;
  if (size < 200) fail(`the PKCS#12 file is only ${size} bytes`);
  log(`saved ${saved} (${size} bytes)`);
  return saved;
}

// Network and TLS failures (e.g. net::ERR_CERT_AUTHORITY_INVALID when
// --ca-pem is not the server's CA) as one readable line.
async function goto(page, url) {
  try {
    return await page.goto(url, { timeout: STEP_TIMEOUT_MS });
  } catch (err) {
    return fail(`GET ${url} failed: ${String(err.message).split("\n")[0]}`);
  }
}

async function open(opts, page, pathname, shotName) {
  const url = `${opts.origin}${pathname}?lang=${encodeURIComponent(opts.lang)}`;
  const resp = await goto(page, url);
  if (!resp || resp.status() !== 200) fail(`GET ${url} answered ${resp ? resp.status() : "nothing"}`);
  await shot(page, opts.out, shotName);
}

async function obtain(opts, page, password) {
  await open(opts, page, "/certgate/obtain", "1-obtain-page");
  await page.fill("#login", opts.login);
  await page.fill("#code", opts.code);
  await page.fill("#password", password);
  await page.fill("#password2", password);
  await shot(page, opts.out, "2-obtain-filled");
  return submitAndSave(opts, page, `${opts.login}.p12`, "3-obtain-done");
}

async function renew(opts, page, password) {
  await open(opts, page, "/certgate/renew", "5-renew-page");
  await page.fill("#password", password);
  await page.fill("#password2", password);
  return submitAndSave(opts, page, `renewed-${opts.login}.p12`, "6-renew-done");
}

function importPkcs12(nss, p12, password, out) {
  // pk12util takes the password only on the command line or in a file;
  // use a private file so it does not show in the process list.
  const pwFile = path.join(out, ".p12-password");
  fs.writeFileSync(pwFile, password, { mode: 0o600 });
  try {
    run("pk12util", ["-i", p12, "-d", `sql:${nss.nssdb}`, "-w", pwFile], nss.env, "importing the PKCS#12 (pk12util)");
  } finally {
    fs.rmSync(pwFile, { force: true });
  }
  const keys = run("certutil", ["-K", "-d", `sql:${nss.nssdb}`], nss.env, "listing NSS keys");
  if (!/ec\s/i.test(keys)) fail(`no EC private key in the NSS db after import:\n${keys}`);
  log(`NSS db now holds:\n${run("certutil", ["-L", "-d", `sql:${nss.nssdb}`], nss.env, "listing NSS certificates").trim()}`);
}

async function login(opts, page) {
  const url = `${opts.origin}/`;
  const resp = await goto(page, url);
  if (!resp) fail(`GET ${url} gave no answer`);
  await shot(page, opts.out, "4-login");
  const body = await resp.text();
  return { status: resp.status(), body };
}

async function main() {
  const opts = parse();
  opts.out = path.resolve(opts.out);
  fs.mkdirSync(opts.out, { recursive: true });
  const home = path.join(opts.out, "home");
  const profile = path.join(opts.out, "profile");
  fs.rmSync(home, { recursive: true, force: true });
  fs.rmSync(profile, { recursive: true, force: true });

  const nss = prepareNss(opts, home);
  writePreferences(profile, opts.origin);
  const password = randomBytes(12).toString("base64url");
  if (opts["password-file"]) fs.writeFileSync(opts["password-file"], password, { mode: 0o600 });

  log(`obtaining a certificate for ${opts.login} at ${opts.origin}`);
  let context = await launch(opts, profile, nss.env);
  let p12;
  try {
    const page = context.pages()[0] || (await context.newPage());
    watchPage(page);
    p12 = await obtain(opts, page, password);
  } finally {
    await context.close();
  }

  importPkcs12(nss, p12, password, opts.out);

  log("logging in with the imported certificate");
  context = await launch(opts, profile, nss.env);
  let result;
  try {
    const page = context.pages()[0] || (await context.newPage());
    watchPage(page);
    result = await login(opts, page);
    if (opts.renew && result.status === 200) {
      log("renewing with the imported certificate");
      result.renewed = await renew(opts, page, password);
    }
  } finally {
    await context.close();
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
  if (result.status !== 200) fail(`GET / with the certificate answered ${result.status}`);
}

main().catch((err) => {
  const message = err instanceof StepError ? err.message : err.stack || String(err);
  process.stderr.write(`obtain-and-login: FAILED: ${message}\n`);
  process.exit(1);
});
