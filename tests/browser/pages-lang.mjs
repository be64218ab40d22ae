// certgate's pages and the gateway's refusal page in Japanese and English, in headless
// Chromium against a running gateway: each page is opened in both languages (`?lang=` and
// the browser's Accept-Language), screenshotted into --out, and checked for a message in
// the other language, its <html lang> and <title>, the configured branding (names, colour,
// logo) and dates in the branding's time zone. Prints {"pages": [...]} on stdout; exits 1
// with every finding on stderr.
//
//   node tests/browser/pages-lang.mjs --base https://127.0.0.1:PORT --cert C.pem --key K.pem \
//     --out DIR --name-ja NAME --name-en NAME --primary "rgb(r, g, b)" --refusal-path /ib/top
//
// The client certificate is presented through Playwright's clientCertificates (TLS in
// Node): these checks are about the pages, the browser's own TLS is the harness's concern.
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { languageFindings } from "./lang-check.mjs";

const catalog = Object.fromEntries(["ja", "en"].map((l) => [l,
  JSON.parse(fs.readFileSync(new URL(`../../src/locale/${l}.json`, import.meta.url), "utf8"))]));
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--ignore-certificate-errors",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

async function main() {
  const { values: o } = parseArgs({
    options: {
      base: { type: "string" }, cert: { type: "string" }, key: { type: "string" }, out: { type: "string" },
      "name-ja": { type: "string" }, "name-en": { type: "string" }, primary: { type: "string" },
      "refusal-path": { type: "string", default: "/" },
    },
  });
  const out = path.resolve(o.out);
  fs.mkdirSync(path.join(out, "home"), { recursive: true });
  const origin = new URL(o.base).origin;
  const findings = [];
  const results = [];
  const browser = await chromium.launch({
    executablePath: process.env.CERTGATE_CHROMIUM || "/usr/bin/chromium", headless: true, args: FLAGS,
    env: { ...process.env, HOME: path.join(out, "home") }, timeout: 60_000,
  });
  try {
    for (const lang of ["ja", "en"]) {
      const locale = lang === "ja" ? "ja-JP" : "en-US";
      const anonymous = await browser.newContext({ locale, ignoreHTTPSErrors: true });
      const withCert = await browser.newContext({
        locale, ignoreHTTPSErrors: true,
        clientCertificates: [{ origin, certPath: o.cert, keyPath: o.key }],
      });
      const pages = [
        { name: "landing", ctx: withCert, url: `/certgate/?lang=${lang}`, status: 200, notice: true },
        { name: "obtain", ctx: anonymous, url: `/certgate/obtain?lang=${lang}`, status: 200 },
        { name: "renew", ctx: withCert, url: `/certgate/renew?lang=${lang}`, status: 200, notice: true },
        { name: "admin", ctx: withCert, url: `/certgate/admin?lang=${lang}`, status: 200, wait: "#admin-users tbody tr" },
        { name: "refusal", ctx: anonymous, url: o["refusal-path"], status: 401 },
      ];
      for (const p of pages) {
        const where = `${p.name} (${lang})`;
        const fail = (m) => findings.push(`${where}: ${m}`);
        const page = await p.ctx.newPage();
        const errors = [];
        const address = `${origin}${p.url}`;
        page.on("console", (m) => {
          const from = m.location().url || "";
          // The refusal page's own status (401) is logged as a failed load: expected.
          if (m.type() !== "error" || /favicon/.test(from) || (p.status !== 200 && from === address)) return;
          // The wrong issuance code sent on purpose answers 401.
          if (p.name === "obtain" && from.endsWith("/certgate/api/obtain")) return;
          errors.push(`${m.text()} (${from})`);
        });
        page.on("pageerror", (e) => errors.push(e.message));
        const resp = await page.goto(address, { timeout: 60_000 });
        if (!resp || resp.status() !== p.status) fail(`answered ${resp && resp.status()}, expected ${p.status}`);
        if (p.wait) await page.waitForSelector(p.wait, { timeout: 30_000 }).catch(() => fail(`${p.wait} never appeared`));
        await page.evaluate(() => document.fonts.ready);
        const shot = path.join(out, `${p.name}.${lang}.png`);
        await page.screenshot({ path: shot, fullPage: true });

        for (const f of await languageFindings(page, lang)) fail(f);
        const title = await page.title();
        const name = await page.textContent(".brand-name").catch(() => null);
        const expected = lang === "ja" ? o["name-ja"] : o["name-en"];
        if (name !== expected) fail(`institution name ${JSON.stringify(name)}, expected ${JSON.stringify(expected)}`);
        const bg = await page.evaluate(() => getComputedStyle(document.querySelector(".site-header")).backgroundColor);
        if (bg !== o.primary) fail(`header colour ${bg}, expected ${o.primary} (brand.css)`);
        const logo = await page.evaluate(() => {
          const img = document.querySelector("img.logo");
          return img ? img.complete && img.naturalWidth > 0 : null;
        });
        if (logo !== true) fail(`logo not shown (${logo})`);
        if (p.notice) {
          const notice = (await page.textContent(".notice-slot")) || "";
          const zone = lang === "ja" ? "（JST）" : " JST";
          if (!notice.includes(zone)) fail(`renewal notice without the date in JST: ${notice}`);
        }
        if (p.name === "admin") {
          const cell = (await page.textContent("#admin-users tbody tr td:nth-child(3)").catch(() => "")) || "";
          const zone = lang === "ja" ? "（JST）" : " JST";
          if (!cell.includes(zone)) fail(`admin date not in JST: ${cell}`);
        }
        if (p.name === "obtain") {
          // A server error (a wrong issuance code) is shown in the page's language.
          await page.fill("#login", "nobody");
          await page.fill("#code", "AAAA-BBBB-CCCC-DDDD");
          await page.fill("#password", "correct horse");
          await page.fill("#password2", "correct horse");
          await page.click('button[type="submit"]');
          await page.locator("#certgate-error").waitFor({ state: "visible", timeout: 30_000 });
          const shown = (await page.textContent("#certgate-error")) || "";
          const expected = catalog[lang].api.bad_code;
          if (shown.trim() !== expected) fail(`server error shown as ${JSON.stringify(shown)}, expected ${JSON.stringify(expected)}`);
          await page.screenshot({ path: path.join(out, `obtain-error.${lang}.png`), fullPage: true });
        }
        if (p.name === "refusal") {
          const second = await page.$(".second");
          if (second) fail("the refusal repeats itself in the other language although the browser named one");
        }
        if (errors.length) fail(`console: ${errors.join("; ")}`);
        results.push({ page: p.name, lang, title, screenshot: shot });
        await page.close();
      }
      await anonymous.close();
      await withCert.close();
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(`${JSON.stringify({ pages: results })}\n`);
  if (findings.length) {
    process.stderr.write(`pages-lang: FAILED:\n${findings.join("\n")}\n`);
    process.exit(1);
  }
}

main().catch((err) => {
  process.stderr.write(`pages-lang: FAILED: ${err.stack || err.message}\n`);
  process.exit(1);
});
