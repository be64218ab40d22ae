// A stand-in for certgate's web side, for testing the pages and the Chromium
// harness before (and apart from) the Rust gateway. It serves the pages as
// certgate renders them (tests/browser/pages/, written and checked by the unit
// test locale::pages::tests::browser_test_pages_match_the_templates) with the
// markers filled, the assets of src/web/assets/, and signs posted CSRs with a
// throwaway CA through the openssl CLI, and answers `/` with the client
// certificate's CN. Listens on 127.0.0.1 only. Not a model of certgate's
// rules: one login, one code, no store.
//
// node tests/browser/fake-server.mjs --dir DIR --login L --code C [--port N] [--notice]
// Prints one JSON line {"port":N,"caPem":"DIR/ca.pem"} on stdout when ready.
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes, randomUUID, X509Certificate } from "node:crypto";
import fs from "node:fs";
import https from "node:https";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = path.dirname(fileURLToPath(import.meta.url));
const assets = path.resolve(here, "..", "..", "src", "web", "assets");
const pages = path.join(here, "pages");

const { values: args } = parseArgs({
  options: {
    dir: { type: "string" },
    login: { type: "string" },
    code: { type: "string" },
    port: { type: "string", default: "0" },
    notice: { type: "boolean", default: false },
  },
});
if (!args.dir || !args.login || !args.code) {
  process.stderr.write("usage: fake-server.mjs --dir DIR --login L --code C [--port N] [--notice]\n");
  process.exit(2);
}

const dir = path.resolve(args.dir);
fs.mkdirSync(dir, { recursive: true });
const file = (name) => path.join(dir, name);

function openssl(argv, input) {
  return execFileSync("openssl", argv, { input, stdio: ["pipe", "pipe", "pipe"] }).toString();
}

// A throwaway CA that signs both the server certificate and client certificates.
function makeCa() {
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", file("ca.key")]);
  openssl([
    "req", "-x509", "-new", "-key", file("ca.key"), "-sha256", "-days", "30",
    "-subj", "/CN=certgate fake test CA/O=Example Bank",
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    "-out", file("ca.pem"),
  ]);
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", file("server.key")]);
  openssl(["req", "-new", "-key", file("server.key"), "-subj", "/CN=127.0.0.1", "-out", file("server.csr")]);
  fs.writeFileSync(
    file("server.ext"),
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
  );
  openssl([
    "x509", "-req", "-in", file("server.csr"), "-CA", file("ca.pem"), "-CAkey", file("ca.key"),
    "-set_serial", `0x${randomBytes(8).toString("hex")}`, "-days", "30", "-sha256",
    "-extfile", file("server.ext"), "-out", file("server.pem"),
  ]);
  fs.writeFileSync(
    file("client.ext"),
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
  );
}

// Like certgate: check the CSR's own signature, keep only its public key,
// take the subject from our records (here: the login).
function signCsr(csrPem, login) {
  const id = randomUUID();
  const csrFile = file(`${id}.csr`);
  const certFile = file(`${id}.pem`);
  fs.writeFileSync(csrFile, csrPem);
  const verify = spawnSync("openssl", ["req", "-in", csrFile, "-verify", "-noout"], { encoding: "utf8" });
  // OpenSSL 3.0 exits 0 even on a bad signature: read what it says (on stderr).
  if (verify.status !== 0 || !/verify OK/i.test(`${verify.stdout}${verify.stderr}`)) {
    throw new Error("CSR signature does not verify");
  }
  openssl([
    "x509", "-req", "-in", csrFile, "-CA", file("ca.pem"), "-CAkey", file("ca.key"),
    "-set_serial", `0x${randomBytes(16).toString("hex").replace(/^[89a-f]/, "1")}`,
    "-days", "365", "-sha256", "-subj", `/CN=${login}/O=Example Bank`,
    "-extfile", file("client.ext"), "-out", certFile,
  ]);
  return fs.readFileSync(certFile, "utf8");
}

makeCa();
const caPem = fs.readFileSync(file("ca.pem"), "utf8");
const csrf = randomBytes(24).toString("base64url");
let codeUsed = false;

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function langOf(req, url) {
  const q = url.searchParams.get("lang");
  if (q === "ja" || q === "en") return q;
  const accept = String(req.headers["accept-language"] || "");
  return accept.toLowerCase().startsWith("en") ? "en" : "ja";
}

function peerCn(req) {
  if (!req.socket.authorized) return null;
  const cert = req.socket.getPeerCertificate();
  return cert && cert.subject ? cert.subject.CN : null;
}

const NOTICE = {
  ja: "<p>電子証明書の有効期限が近づいています（有効期限: 2025年12月24日）。「電子証明書を更新する」から更新してください。</p>",
  en: "<p>Your certificate expires soon (on 24 December 2025). Please renew it with \"Renew certificate\".</p>",
};

function page(res, name, lang, fields) {
  let html = fs.readFileSync(path.join(pages, `${name}.${lang}.html`), "utf8");
  html = html
    .replaceAll("{{lang}}", lang)
    .replaceAll("{{csrf}}", escapeHtml(csrf))
    .replaceAll("{{login}}", escapeHtml(fields.login || ""))
    // The notice is HTML rendered by the server itself.
    .replaceAll("{{notice}}", fields.notice || "");
  res.writeHead(200, {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "Cache-Control": "no-store",
  });
  res.end(html);
}

function json(res, status, body) {
  res.writeHead(status, { "Content-Type": "application/json", "Cache-Control": "no-store" });
  res.end(JSON.stringify(body));
}

const ERR = {
  csrf: { ja: "画面の有効期限が切れました。ページを再読み込みしてください。", en: "This page has expired. Please reload it." },
  code: { ja: "ログインIDまたは発行コードが正しくありません。", en: "The login ID or the issuance code is not correct." },
  csr: { ja: "証明書の申請を処理できませんでした。", en: "The certificate request could not be processed." },
  cert: { ja: "電子証明書で接続してください。", en: "Please connect with your certificate." },
};

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error("body too large");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

async function api(req, res, url, lang) {
  if (req.method !== "POST") return json(res, 405, { error: "method", message: "" });
  const origin = req.headers.origin;
  const sameOrigin = !origin || origin === `https://${req.headers.host}`;
  const jsonType = String(req.headers["content-type"] || "").startsWith("application/json");
  if (!sameOrigin || !jsonType || req.headers["x-csrf-token"] !== csrf) {
    return json(res, 403, { error: "csrf", message: ERR.csrf[lang] });
  }
  let body;
  try {
    body = JSON.parse(await readBody(req));
  } catch {
    return json(res, 400, { error: "bad_request", message: ERR.csr[lang] });
  }
  let login;
  if (url.pathname === "/certgate/api/obtain") {
    if (body.login !== args.login || body.code !== args.code || codeUsed) {
      return json(res, 403, { error: "invalid_code", message: ERR.code[lang] });
    }
    login = body.login;
  } else {
    login = peerCn(req);
    if (!login) return json(res, 403, { error: "certificate_required", message: ERR.cert[lang] });
  }
  try {
    const certificate = signCsr(String(body.csr || ""), login);
    if (url.pathname === "/certgate/api/obtain") codeUsed = true;
    process.stderr.write(`fake-server: issued ${new X509Certificate(certificate).subject.replace(/\n/g, ",")}\n`);
    return json(res, 200, { certificate, chain: [caPem] });
  } catch (err) {
    process.stderr.write(`fake-server: CSR refused: ${err.message}\n`);
    return json(res, 400, { error: "bad_csr", message: ERR.csr[lang] });
  }
}

const server = https.createServer(
  {
    key: fs.readFileSync(file("server.key")),
    cert: fs.readFileSync(file("server.pem")),
    ca: [caPem],
    requestCert: true,
    rejectUnauthorized: false,
  },
  async (req, res) => {
    const url = new URL(req.url, "https://127.0.0.1");
    const lang = langOf(req, url);
    try {
      if (url.pathname === "/certgate" || url.pathname === "/certgate/") {
        return page(res, "landing", lang, { notice: args.notice ? NOTICE[lang] : "" });
      }
      if (url.pathname === "/certgate/obtain") return page(res, "obtain", lang, {});
      if (url.pathname === "/certgate/renew") {
        const cn = peerCn(req);
        if (!cn) {
          res.writeHead(403, { "Content-Type": "text/plain; charset=utf-8" });
          return res.end(ERR.cert[lang]);
        }
        return page(res, "renew", lang, { login: cn, notice: args.notice ? NOTICE[lang] : "" });
      }
      if (url.pathname.startsWith("/certgate/api/")) return await api(req, res, url, lang);
      const asset = url.pathname.match(/^\/certgate\/assets\/([a-z0-9.-]+\.(css|js))$/);
      if (asset) {
        const type = asset[2] === "css" ? "text/css; charset=utf-8" : "text/javascript; charset=utf-8";
        res.writeHead(200, { "Content-Type": type, "X-Content-Type-Options": "nosniff" });
        // brand.css is made from [branding]: the built-in branding's copy is beside the pages.
        const dir = asset[1] === "brand.css" ? pages : assets;
        return res.end(fs.readFileSync(path.join(dir, asset[1])));
      }
      if (url.pathname === "/") {
        const cn = peerCn(req);
        if (!cn) {
          res.writeHead(403, { "Content-Type": "text/plain; charset=utf-8" });
          return res.end("client certificate required\n");
        }
        res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
        return res.end(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Banking app</title></head><body><h1>Banking app</h1><p id="user">${escapeHtml(cn)}</p></body></html>`);
      }
      res.writeHead(404, { "Content-Type": "text/plain" });
      res.end("not found\n");
    } catch (err) {
      process.stderr.write(`fake-server: ${err.stack}\n`);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    }
  },
);

server.listen(Number(args.port), "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port, caPem: file("ca.pem") })}\n`);
});
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
