// What makes a page "in one language", shared by pages-lang.mjs (against certgate) and
// harness.test.mjs (against the stand-in server): the page's text, with what is marked as
// the other language left out and the texts the page carries for its scripts added, must
// hold no kana or kanji on an English page, and no English sentence or English catalog
// phrase on a Japanese one.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const catalogs = path.resolve(here, "..", "..", "src", "locale");

export const CJK = /[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]/;
// Four or more English words in a row: a sentence, not a product name.
const ENGLISH_RUN = /\b[A-Za-z]{2,}(?:[ ,']+[A-Za-z]{2,}){3,}\b/;

// Texts of the English catalog a Japanese page must never show (whole phrases of at least
// two words, without placeholders).
const phrases = (() => {
  const en = JSON.parse(fs.readFileSync(path.join(catalogs, "en.json"), "utf8"));
  const out = [];
  for (const section of Object.values(en)) {
    for (const value of Object.values(section)) {
      if (!value.includes("{") && /[A-Za-z]+ [A-Za-z]+/.test(value)) out.push(value);
    }
  }
  return out;
})();

async function pageText(page, other) {
  return page.evaluate((other) => {
    const body = document.body.cloneNode(true);
    body.querySelectorAll(`[lang="${other}"], script, noscript`).forEach((e) => e.remove());
    let text = body.textContent.replace(/\s+/g, " ");
    for (const t of document.querySelectorAll("template")) {
      for (const a of t.attributes) if (a.name.startsWith("data-")) text += ` ${a.value}`;
    }
    return text;
  }, other);
}

// The findings (empty when the page is in `lang` only): lang attribute, title, text.
export async function languageFindings(page, lang) {
  const other = lang === "ja" ? "en" : "ja";
  const found = [];
  const htmlLang = await page.getAttribute("html", "lang");
  if (htmlLang !== lang) found.push(`<html lang="${htmlLang}">`);
  const title = await page.title();
  if (lang === "ja" && !CJK.test(title)) found.push(`title is not Japanese: ${title}`);
  if (lang === "en" && CJK.test(title)) found.push(`title is not English: ${title}`);
  const text = await pageText(page, other);
  if (lang === "en") {
    const m = text.match(new RegExp(`.{0,30}${CJK.source}.{0,30}`));
    if (m) found.push(`Japanese on the English page: "${m[0]}"`);
  } else {
    const m = text.match(ENGLISH_RUN);
    if (m) found.push(`English on the Japanese page: "${m[0]}"`);
    const phrase = phrases.find((ph) => text.includes(ph));
    if (phrase) found.push(`English catalog text on the Japanese page: "${phrase}"`);
  }
  return found;
}
