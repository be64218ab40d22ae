// The contract administrator's page in headless Chromium: the browser presents the
// administrator's certificate (a PKCS#12 imported into a fresh NSS db), re-issues one
// user's certificate, adds a user and makes that user's issuance code. Prints
// {"reissue_code": ..., "added_code": ...} on stdout; exits 1 with a reason on failure.
//
//   node tests/browser/admin-page.mjs --base https://127.0.0.1:PORT --ca-pem CA.pem \
//     --p12 admin.p12 --p12-password-file PW --reissue LOGIN --add LOGIN --out DIR

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

function nss(cmd, args, env) {
  return execFileSync(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] }).toString();
}

async function main() {
  const { values: o } = parseArgs({
    options: {
      base: { type: "string" }, "ca-pem": { type: "string" }, p12: { type: "string" },
      "p12-password-file": { type: "string" }, reissue: { type: "string" },
      add: { type: "string" }, out: { type: "string" },
    },
  });
  const out = path.resolve(o.out);
  const home = path.join(out, "home");
  const profile = path.join(out, "profile");
  const db = `sql:${path.join(home, ".pki", "nssdb")}`;
  fs.mkdirSync(path.join(home, ".pki", "nssdb"), { recursive: true });
  const env = { ...process.env, HOME: home };
  nss("certutil", ["-N", "-d", db, "--empty-password"], env);
  nss("certutil", ["-A", "-d", db, "-n", "certgate-ca", "-t", "C,,", "-i", o["ca-pem"]], env);
  nss("pk12util", ["-i", o.p12, "-d", db, "-w", o["p12-password-file"]], env);

  const origin = new URL(o.base).origin;
  fs.mkdirSync(path.join(profile, "Default"), { recursive: true });
  fs.writeFileSync(path.join(profile, "Default", "Preferences"), JSON.stringify({
    profile: { content_settings: { exceptions: { auto_select_certificate: {
      [`${origin},*`]: { setting: { filters: [{}] } } } } } },
  }));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium", headless: true, args: FLAGS, env, timeout: 60_000,
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on("dialog", (d) => d.accept());
    const errors = [];
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    const resp = await page.goto(`${origin}/certgate/admin?lang=en`, { timeout: 60_000 });
    if (!resp || resp.status() !== 200) throw new Error(`admin page answered ${resp && resp.status()}`);
    await page.waitForSelector(`tr[data-login="${o.reissue}"] button.reissue`, { timeout: 30_000 });
    await page.screenshot({ path: path.join(out, "admin-1.png"), fullPage: true });

    await page.click(`tr[data-login="${o.reissue}"] button.reissue`);
    await page.waitForSelector("#admin-code:not([hidden])", { timeout: 30_000 });
    const reissueCode = (await page.textContent("#admin-code-value")).trim();

    await page.fill("#add-login", o.add);
    await page.selectOption("#add-role", "general");
    await page.fill("#add-email", `${o.add}@example.com`);
    await page.click("#admin-add button[type=submit]");
    await page.waitForSelector(`tr[data-login="${o.add}"] button.authorize`, { timeout: 30_000 });
    await page.click(`tr[data-login="${o.add}"] button.authorize`);
    await page.waitForFunction(
      (login) => document.getElementById("admin-code-login").textContent === login,
      o.add, { timeout: 30_000 });
    const addedCode = (await page.textContent("#admin-code-value")).trim();
    await page.screenshot({ path: path.join(out, "admin-2.png"), fullPage: true });
    const shown = await page.isVisible("#admin-error");
    if (shown) throw new Error(`the page shows an error: ${await page.textContent("#admin-error")}`);
    if (errors.length) throw new Error(`console errors: ${errors.join("; ")}`);
    process.stdout.write(`${JSON.stringify({ reissue_code: reissueCode, added_code: addedCode })}\n`);
  } finally {
    await context.close();
  }
}

main().catch((err) => {
  process.stderr.write(`admin-page: FAILED: ${err.message}\n`);
  process.exit(1);
});
