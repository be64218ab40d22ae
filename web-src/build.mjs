// Bundles src/main.js and its libraries into ../src/web/assets/certgate.js,
// the one script the obtain and renew pages load. Run with `npm run build`
// after `npm ci`; the output is committed so the Rust build needs no npm.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));

await build({
  entryPoints: [path.join(here, "src", "main.js")],
  outfile: path.join(here, "..", "src", "web", "assets", "certgate.js"),
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2020",
  platform: "browser",
  legalComments: "eof",
  charset: "utf8",
  logLevel: "info",
  banner: {
    js: "/* certgate page script. Built from web-src/ by `npm ci && npm run build`; third-party licenses: web-src/THIRD-PARTY.md */",
  },
});
