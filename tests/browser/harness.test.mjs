// Runs the pages and the Chromium harness against fake-server.mjs (node --test).
// Needs /usr/bin/chromium, certutil/pk12util (libnss3-tools) and openssl; with
// CI=true a missing one fails the test, otherwise it is skipped with the reason.
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { languageFindings } from "./lang-check.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CERTGATE_CHROMIUM || "/usr/bin/chromium";
const LOGIN = "acme-general1";
const CODE = "K7QX-M2PD-9WTR-4HZA";

function missingTool() {
  if (!fs.existsSync(CHROMIUM)) return `${CHROMIUM} not found (apt-get install chromium)`;
  for (const tool of ["certutil", "pk12util", "openssl"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return `${tool} not found (apt-get install libnss3-tools openssl)`;
  }
  return null;
}
const missing = missingTool();
if (missing && process.env.CI === "true") {
  throw new Error(`browser tests cannot run: ${missing}`);
}
const skip = missing ? `skipped: ${missing}` : false;

function tmpdir(name) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `certgate-${name}-`));
}

// Starts fake-server.mjs and resolves with {port, caPem, stop}.
function startFake(dir, extra = []) {
  const child = spawn(process.execPath, [path.join(here, "fake-server.mjs"), "--dir", dir, "--login", LOGIN, "--code", CODE, ...extra], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const line = out.split("\n")[0];
      if (out.includes("\n")) {
        const info = JSON.parse(line);
        resolve({
          ...info,
          stop: () =>
            new Promise((done) => {
              child.once("exit", done);
              child.kill("SIGTERM");
            }),
        });
      }
    });
    child.once("exit", (code) => reject(new Error(`fake server exited ${code}: ${stderr}`)));
  });
}

function harness(server, out, extra = []) {
  return spawnSync(
    process.execPath,
    [path.join(here, "obtain-and-login.mjs"), "--base", `https://127.0.0.1:${server.port}`, "--ca-pem", server.caPem, "--out", out, ...extra],
    { encoding: "utf8", timeout: 300_000 },
  );
}

// `openssl pkcs12 -info` prints the algorithms on stderr, the bags on stdout.
function pkcs12Info(file, passwordFile) {
  const r = spawnSync("openssl", ["pkcs12", "-in", file, "-info", "-nokeys", "-passin", `file:${passwordFile}`], { encoding: "utf8" });
  assert.equal(r.status, 0, `openssl pkcs12 -info failed: ${r.stderr}`);
  return `${r.stderr}${r.stdout}`;
}

function leafOf(file, passwordFile) {
  const pem = execFileSync("openssl", ["pkcs12", "-in", file, "-clcerts", "-nokeys", "-passin", `file:${passwordFile}`], { encoding: "utf8" });
  return execFileSync("openssl", ["x509", "-noout", "-subject", "-serial", "-pubkey"], { input: pem, encoding: "utf8" });
}

describe("obtain, import, log in and renew in headless Chromium", { skip }, () => {
  let server;
  let work;
  before(async () => {
    work = tmpdir("flow");
    server = await startFake(path.join(work, "server"));
  });
  after(async () => {
    if (server) await server.stop();
  });

  test("the walk succeeds and the app sees the certificate's login ID", () => {
    const out = path.join(work, "run");
    const pw = path.join(work, "p12-password");
    const r = harness(server, out, ["--login", LOGIN, "--code", CODE, "--renew", "--password-file", pw]);
    assert.equal(r.status, 0, `harness failed:\n${r.stderr}`);
    const result = JSON.parse(r.stdout.trim().split("\n").pop());
    assert.equal(result.status, 200);
    assert.match(result.body, new RegExp(`<p id="user">${LOGIN}</p>`));
    for (const shot of ["1-obtain-page", "2-obtain-filled", "3-obtain-done", "4-login", "5-renew-page", "6-renew-done"]) {
      assert.ok(fs.existsSync(path.join(out, `${shot}.png`)), `${shot}.png missing`);
    }

    // The file is the format Windows, macOS and NSS import: PBES2 with
    // PBKDF2-HMAC-SHA256 and AES-256-CBC, MAC with SHA-256.
    const p12 = path.join(out, `${LOGIN}.p12`);
    const info = pkcs12Info(p12, pw);
    assert.match(info, /MAC: sha256, Iteration 100000/);
    assert.match(info, /Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 100000, PRF hmacWithSHA256/);
    assert.match(info, /PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC, Iteration 100000, PRF hmacWithSHA256/);
    assert.match(info, new RegExp(`friendlyName: ${LOGIN}`));
    assert.match(info, /localKeyID:/);
    assert.equal((info.match(/BEGIN CERTIFICATE/g) || []).length, 2, "leaf and CA certificate expected");

    // The key in the file belongs to the certificate.
    const key = execFileSync("openssl", ["pkcs12", "-in", p12, "-nocerts", "-nodes", "-passin", `file:${pw}`], { encoding: "utf8" });
    const keyPub = execFileSync("openssl", ["pkey", "-pubout"], { input: key, encoding: "utf8" });
    const first = leafOf(p12, pw);
    assert.ok(first.includes(keyPub.trim()), "private key does not match the certificate");

    // Renewal gave a new certificate with a new key for the same login.
    const renewed = leafOf(result.renewed, pw);
    assert.match(renewed, new RegExp(`CN = ${LOGIN}`));
    const serial = (s) => s.match(/serial=(\w+)/)[1];
    const pub = (s) => s.slice(s.indexOf("-----BEGIN PUBLIC KEY-----"));
    assert.notEqual(serial(renewed), serial(first));
    assert.notEqual(pub(renewed), pub(first));
  });

  test("a refused code shows the server's message and the harness fails", () => {
    const out = path.join(work, "refused");
    const r = harness(server, out, ["--login", LOGIN, "--code", "WRONG-CODE", "--lang", "en"]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /FAILED: the page shows an error: The login ID or the issuance code is not correct\./);
    assert.equal(fs.existsSync(path.join(out, `${LOGIN}.p12`)), false);
  });
});

describe("pages in both languages under CSP default-src 'self'", { skip }, () => {
  let server;
  let browser;
  let work;
  before(async () => {
    work = tmpdir("pages");
    server = await startFake(path.join(work, "server"), ["--notice"]);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--ignore-certificate-errors", "--disable-quic", "--no-first-run"],
    });
  });
  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  for (const lang of ["ja", "en"]) {
    for (const name of ["landing", "obtain"]) {
      test(`${name} (${lang}) loads its assets with no CSP violation or script error`, async () => {
        const page = await browser.newPage();
        const problems = [];
        page.on("console", (m) => {
          if (m.type() === "error" && !/favicon/.test(m.location().url || "")) problems.push(m.text());
        });
        page.on("pageerror", (e) => problems.push(e.message));
        const pathname = name === "landing" ? "/certgate/" : `/certgate/${name}`;
        const resp = await page.goto(`https://127.0.0.1:${server.port}${pathname}?lang=${lang}`);
        assert.equal(resp.status(), 200);
        assert.equal(await page.getAttribute("html", "lang"), lang);
        const other = lang === "ja" ? "en" : "ja";
        assert.equal(await page.getAttribute(`nav.lang a[hreflang="${other}"]`, "href"), `?lang=${other}`);
        const bg = await page.evaluate(() => getComputedStyle(document.querySelector(".site-header")).backgroundColor);
        assert.equal(bg, "rgb(11, 58, 110)", "style.css not applied");
        if (name === "landing") {
          assert.ok(await page.isVisible(".notice-slot"), "notice not shown");
          assert.equal(await page.getAttribute('a[href="/"]', "class"), "button");
          assert.ok(await page.isVisible('a[href="/certgate/obtain"]'));
          assert.ok(await page.isVisible('a[href="/certgate/renew"]'));
        } else {
          assert.equal(await page.isVisible("#certgate-done"), false);
          // Client-side checks answer before anything is sent.
          let posted = false;
          page.on("request", (req) => {
            if (req.method() === "POST") posted = true;
          });
          await page.fill("#login", LOGIN);
          await page.fill("#code", CODE);
          await page.fill("#password", "correct horse");
          await page.fill("#password2", "correct horsf");
          await page.click('button[type="submit"]');
          await page.locator("#certgate-error").waitFor({ state: "visible" });
          assert.match(await page.textContent("#certgate-error"), lang === "ja" ? /一致しません/ : /do not match/);
          assert.equal(await page.getAttribute("#password2", "aria-invalid"), "true");
          assert.equal(posted, false);
        }
        await page.screenshot({ path: path.join(work, `${name}.${lang}.png`), fullPage: true });
        assert.deepEqual(await languageFindings(page, lang), [], "a message in the other language");
        assert.deepEqual(problems, []);
        await page.close();
      });
    }
  }
});
