// The staff console in two headless Chromium browsers, each with its own HOME, NSS db and
// staff certificate (a PKCS#12 imported with pk12util) and client-certificate
// auto-selection for the console's origin: the maker and the checker of four-eyes.
//   1. the operator (Japanese page) registers a contract and its administrator,
//      authorizes issuance and reads the code once (screen and print view), sees a
//      duplicate registration refused in Japanese, and asks to revoke --revoke's
//      certificate: pending, with a request number, and no approve button of their own;
//   2. the supervisor (English page) sees the request in the queue and approves it, and
//      reads the audit log;
//   3. the operator sees the request done and the certificate revoked;
//   4. both pages again in the other language.
// Each step is screenshotted into --out and checked to be in its page's language only.
// Prints {"code", "request", "serial", "screenshots"} on stdout; exits 1 with a reason.
//
//   node tests/browser/staff-console.mjs --base https://127.0.0.1:PORT --ca-pem CA.pem \
//     --operator-p12 OP.p12 --supervisor-p12 SUP.p12 --p12-password-file PW \
//     --operator NAME --supervisor NAME --contract ID --admin LOGIN --revoke LOGIN --out DIR

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { CJK, languageFindings } from "./lang-check.mjs";

const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const WAIT = { timeout: 30_000 };

function fail(message) {
  throw new Error(message);
}

function tool(cmd, args, env) {
  try {
    return execFileSync(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] }).toString();
  } catch (err) {
    fail(`${cmd} ${args[0]} failed: ${`${err.stderr || ""}${err.stdout || ""}`.trim()}`);
  }
}

// A browser of its own for one staff member: HOME with an NSS db trusting the CA and
// holding the staff certificate; the profile picks that certificate for the origin.
async function browserFor(who, o, origin) {
  const dir = path.join(o.out, who.name);
  const home = path.join(dir, "home");
  const profile = path.join(dir, "profile");
  const db = `sql:${path.join(home, ".pki", "nssdb")}`;
  fs.mkdirSync(path.join(home, ".pki", "nssdb"), { recursive: true });
  const env = { ...process.env, HOME: home };
  tool("certutil", ["-N", "-d", db, "--empty-password"], env);
  tool("certutil", ["-A", "-d", db, "-n", "certgate-ca", "-t", "C,,", "-i", o["ca-pem"]], env);
  tool("pk12util", ["-i", who.p12, "-d", db, "-w", o["p12-password-file"]], env);
  fs.mkdirSync(path.join(profile, "Default"), { recursive: true });
  fs.writeFileSync(path.join(profile, "Default", "Preferences"), JSON.stringify({
    profile: { content_settings: { exceptions: { auto_select_certificate: {
      [`${origin},*`]: { setting: { filters: [{}] } } } } } },
  }));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium", headless: true, args: FLAGS, env, timeout: 60_000,
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on("dialog", (d) => d.accept());
  const errors = [];
  // A refused call (4xx) is logged by Chromium as a failed load: expected where tested.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(e.message));
  return { context, page, errors, who };
}

async function open(b, origin, lang) {
  const resp = await b.page.goto(`${origin}/staff/?lang=${lang}`, { timeout: 60_000 });
  if (!resp || resp.status() !== 200) fail(`${b.who.name}: /staff/ answered ${resp && resp.status()}`);
  await b.page.waitForSelector("body[data-ready='1']", WAIT);
  const name = (await b.page.textContent("#staff-name")).trim();
  if (name !== b.who.name) fail(`${b.who.name}: the page names ${name}`);
}

const shots = [];

async function shot(b, lang, name, o) {
  const findings = await languageFindings(b.page, lang);
  if (findings.length) fail(`${name}: ${findings.join("; ")}`);
  const file = path.join(o.out, `${name}.png`);
  await b.page.screenshot({ path: file, fullPage: true });
  shots.push(file);
}

async function noErrorShown(b, step) {
  if (await b.page.isVisible("#staff-error")) {
    fail(`${b.who.name} ${step}: the page shows an error: ${await b.page.textContent("#staff-error")}`);
  }
}

async function main() {
  const { values: o } = parseArgs({
    options: Object.fromEntries(["base", "ca-pem", "operator-p12", "supervisor-p12",
      "p12-password-file", "operator", "supervisor", "contract", "admin", "revoke", "out"]
      .map((k) => [k, { type: "string" }])),
  });
  for (const [k, v] of Object.entries(o)) if (!v) fail(`missing --${k}`);
  o.out = path.resolve(o.out);
  const origin = new URL(o.base).origin;
  const op = await browserFor({ name: o.operator, p12: o["operator-p12"] }, o, origin);
  const sup = await browserFor({ name: o.supervisor, p12: o["supervisor-p12"] }, o, origin);
  try {
    // 1. The operator, in Japanese.
    const p = op.page;
    await open(op, origin, "ja");
    if (await p.isVisible("#audit")) fail("the operator is offered the audit log");
    await shot(op, "ja", "operator-ja-1-start", o);
    await p.fill("#reg-contract", o.contract);
    await p.fill("#reg-name", "ブラウザ試験株式会社");
    await p.fill("#reg-login", o.admin);
    await p.fill("#reg-email", `${o.admin}@example.com`);
    await p.click("#staff-register button[type=submit]");
    await p.waitForSelector(`#staff-users tr[data-login="${o.admin}"] button.authorize`, WAIT);
    await noErrorShown(op, "register");
    await p.click(`#staff-users tr[data-login="${o.admin}"] button.authorize`);
    await p.waitForSelector("#staff-code:not([hidden])", WAIT);
    const code = (await p.textContent("#staff-code-value")).trim();
    const codeLogin = (await p.textContent("#staff-code-login")).trim();
    if (codeLogin !== o.admin || code.length < 16) fail(`code shown for ${codeLogin}: ${code}`);
    // Dates as the server writes them, in the institution's zone.
    const expires = (await p.textContent("#staff-code-expires")).trim();
    if (!/^\d{4}年\d{1,2}月\d{1,2}日 \d\d:\d\d（JST）$/.test(expires)) fail(`code expiry shown as ${expires}`);
    await shot(op, "ja", "operator-ja-2-code", o);
    // The printed sheet: the bank, the login ID, the code, its expiry; nothing else.
    await p.emulateMedia({ media: "print" });
    if (!(await p.isVisible("#handover")) || (await p.isVisible("#staff-register"))
      || (await p.isVisible(".site-header"))) fail("the print view shows more than the hand-over sheet");
    const sheet = await p.textContent("#handover");
    if (!sheet.includes(code) || !sheet.includes(o.admin) || !CJK.test(sheet)) fail(`hand-over sheet: ${sheet}`);
    const printed = path.join(o.out, "operator-ja-3-handover-print.png");
    await p.screenshot({ path: printed, fullPage: true });
    shots.push(printed);
    await p.emulateMedia({ media: "screen" });
    // Shown once: closing forgets it.
    await p.click("#staff-code-close");
    if ((await p.textContent("#staff-code-value")) !== "" || (await p.textContent("#handover-code")) !== "") {
      fail("the code is still in the page after closing");
    }
    // An API error in the page's language, by its code.
    await p.fill("#reg-contract", o.contract);
    await p.fill("#reg-name", "重複");
    await p.fill("#reg-login", `${o.admin}x`);
    await p.fill("#reg-email", `${o.admin}x@example.com`);
    await p.click("#staff-register button[type=submit]");
    await p.waitForSelector("#staff-error:not([hidden])", WAIT);
    const errCode = await p.getAttribute("#staff-error", "data-code");
    const errText = await p.textContent("#staff-error");
    if (errCode !== "contract_exists" || !CJK.test(errText)) fail(`duplicate contract: ${errCode} ${errText}`);
    await shot(op, "ja", "operator-ja-4-error", o);
    // Ask to revoke: four eyes, so a pending request.
    await p.fill("#search-q", o.revoke);
    await p.click("#staff-search button[type=submit]");
    const current = `#staff-users tr[data-login="${o.revoke}"] li[data-status="current"]`;
    await p.waitForSelector(`${current} button.revoke`, WAIT);
    const serial = await p.getAttribute(current, "data-serial");
    await p.selectOption(`${current} select.reason`, "keyCompromise");
    await p.click(`${current} button.revoke`);
    await p.waitForSelector("#staff-status[data-request]", WAIT);
    await noErrorShown(op, "revoke");
    const request = await p.getAttribute("#staff-status", "data-request");
    const said = await p.textContent("#staff-status");
    if (!said.includes(request) || !CJK.test(said)) fail(`pending message: ${said}`);
    const own = `#staff-requests tr[data-request="${request}"]`;
    await p.waitForSelector(`${own} button.withdraw`, WAIT);
    if (await p.$(`${own} button.approve`)) fail("the maker is offered to approve their own request");
    if (await p.$(`${current} button.revoke`) === null) fail("revoked before approval");
    await shot(op, "ja", "operator-ja-5-pending", o);

    // 2. The supervisor, in English, approves.
    const s = sup.page;
    await open(sup, origin, "en");
    const queued = `#staff-requests tr[data-request="${request}"]`;
    await s.waitForSelector(`${queued} button.approve`, WAIT);
    const maker = (await s.textContent(`${queued} td:nth-child(4)`)).trim();
    if (maker !== o.operator) fail(`the queue names the maker ${maker}`);
    const until = (await s.textContent(`${queued} td:nth-child(5)`)).trim();
    if (!/^\d{4}-\d\d-\d\d \d\d:\d\d JST$/.test(until)) fail(`request expiry shown as ${until}`);
    await shot(sup, "en", "supervisor-en-1-queue", o);
    await s.click(`${queued} button.approve`);
    await s.waitForSelector(`${queued}`, { state: "detached", ...WAIT });
    await noErrorShown(sup, "approve");
    await s.fill("#audit-subject", serial);
    await s.click("#staff-audit button[type=submit]");
    await s.waitForFunction(() => [...document.querySelectorAll("#staff-audit-log tbody tr td:nth-child(4)")]
      .some((td) => td.textContent === "cert.revoke"), null, WAIT);
    await shot(sup, "en", "supervisor-en-2-audit", o);

    // 3. The operator sees it done, and the certificate revoked.
    await p.click("#requests-refresh");
    await p.waitForSelector(`#staff-mine tr[data-request="${request}"][data-state="done"]`, WAIT);
    await p.click("#staff-search button[type=submit]");
    await p.waitForSelector(`#staff-users tr[data-login="${o.revoke}"] li[data-serial="${serial}"][data-status="revoked"]`, WAIT);
    await shot(op, "ja", "operator-ja-6-done", o);

    // 4. Each page in the other language.
    await open(op, origin, "en");
    await shot(op, "en", "operator-en-7", o);
    await open(sup, origin, "ja");
    await shot(sup, "ja", "supervisor-ja-3", o);
    const errors = [...op.errors, ...sup.errors];
    if (errors.length) fail(`console errors: ${errors.join("; ")}`);
    process.stdout.write(`${JSON.stringify({ code, request: Number(request), serial, screenshots: shots })}\n`);
  } finally {
    await op.context.close();
    await sup.context.close();
  }
}

main().catch((err) => {
  process.stderr.write(`staff-console: FAILED: ${err.message}\n`);
  process.exit(1);
});
