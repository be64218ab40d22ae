//! The message catalogs: one JSON file per language (`ja.json`, `en.json`) with every text
//! a customer sees on the pages, in the page script, on refusals, in API errors and in the
//! expiry e-mail (`mail`), grouped by section. `{name}`, `{short_name}`, `{service}` and `{support}` in a text are the
//! institution's names of `[branding]`, filled in once when a [`super::Locale`] is made.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use super::{BrandNames, Lang, SchemeTerms};

type Sections = BTreeMap<String, BTreeMap<String, String>>;

/// Both built-in catalogs, as written.
#[derive(Debug)]
pub struct Catalog {
    ja: Sections,
    en: Sections,
}

static BUILTIN: LazyLock<Catalog> = LazyLock::new(|| Catalog {
    ja: parse(include_str!("ja.json")),
    en: parse(include_str!("en.json")),
});

/// The built-in files are part of the program; the unit tests parse them.
fn parse(text: &str) -> Sections {
    serde_json::from_str(text).unwrap_or_default()
}

impl Catalog {
    /// The catalogs compiled into certgate.
    pub fn builtin() -> &'static Catalog {
        &BUILTIN
    }

    /// The raw sections of `lang`, placeholders unfilled.
    pub fn sections(&self, lang: Lang) -> &BTreeMap<String, BTreeMap<String, String>> {
        match lang {
            Lang::Ja => &self.ja,
            Lang::En => &self.en,
        }
    }

    /// The texts of `lang` with the institution's names and the scheme's terms filled in.
    pub fn texts(&self, lang: Lang, names: &BrandNames, terms: &SchemeTerms) -> Texts {
        let sections = self
            .sections(lang)
            .iter()
            .map(|(s, keys)| {
                let keys = keys
                    .iter()
                    .map(|(k, v)| (k.clone(), terms.fill(lang, &names.fill(v))))
                    .collect::<BTreeMap<_, _>>();
                (s.clone(), keys)
            })
            .collect::<Sections>();
        let value = minijinja::Value::from(minijinja::value::Serde(&sections));
        Texts { sections, value }
    }
}

/// The texts of one language, ready to show: by section and key, and as a template value.
#[derive(Debug)]
pub struct Texts {
    sections: Sections,
    value: minijinja::Value,
}

impl Texts {
    /// The text at `section.key`, if the catalog has it.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections.get(section)?.get(key).map(String::as_str)
    }

    /// The text at `section.key` with `{name}` placeholders replaced by `values` (as plain
    /// text: the caller escapes for its output).
    pub fn fill(&self, section: &str, key: &str, values: &[(&str, &str)]) -> Option<String> {
        let mut text = self.get(section, key)?.to_owned();
        for (name, value) in values {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        Some(text)
    }

    /// All sections, for templates (`t.section.key`).
    pub fn value(&self) -> &minijinja::Value {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_kana_or_kanji(s: &str) -> bool {
        s.chars().any(|c| {
            matches!(c,
                '\u{3040}'..='\u{30ff}' | '\u{3400}'..='\u{4dbf}' | '\u{4e00}'..='\u{9fff}' | '\u{ff66}'..='\u{ff9f}')
        })
    }

    #[test]
    fn both_catalogs_parse_and_have_the_same_keys() {
        let ja: Sections = serde_json::from_str(include_str!("ja.json")).unwrap();
        let en: Sections = serde_json::from_str(include_str!("en.json")).unwrap();
        assert!(ja.len() >= 10, "catalog looks empty");
        let keys = |s: &Sections| {
            s.iter()
                .flat_map(|(sec, k)| k.keys().map(move |k| format!("{sec}.{k}")))
                .collect::<Vec<_>>()
        };
        let (kj, ke) = (keys(&ja), keys(&en));
        let only_ja: Vec<_> = kj.iter().filter(|k| !ke.contains(k)).collect();
        let only_en: Vec<_> = ke.iter().filter(|k| !kj.contains(k)).collect();
        assert!(
            only_ja.is_empty() && only_en.is_empty(),
            "only in ja: {only_ja:?}; only in en: {only_en:?}"
        );
        for (sec, keys) in ja.iter().chain(en.iter()) {
            for (k, v) in keys {
                assert!(!v.trim().is_empty(), "{sec}.{k} is empty");
            }
        }
    }

    /// A Japanese text in plain ASCII is an English text left untranslated; an English text
    /// with kana or kanji is a Japanese one. The language switch names the other language
    /// in that language on purpose.
    #[test]
    fn no_text_is_in_the_other_language() {
        let c = Catalog::builtin();
        const ALLOWED_JA: &[&str] = &["common.other_lang"];
        const ALLOWED_EN: &[&str] = &["common.other_lang"];
        for (sec, keys) in c.sections(Lang::Ja) {
            for (k, v) in keys {
                let id = format!("{sec}.{k}");
                if !ALLOWED_JA.contains(&id.as_str()) {
                    assert!(has_kana_or_kanji(v), "ja {id} reads as English: {v:?}");
                }
            }
        }
        for (sec, keys) in c.sections(Lang::En) {
            for (k, v) in keys {
                let id = format!("{sec}.{k}");
                if !ALLOWED_EN.contains(&id.as_str()) {
                    assert!(!has_kana_or_kanji(v), "en {id} has Japanese: {v:?}");
                }
            }
        }
    }

    #[test]
    fn placeholders_are_only_the_brand_names_and_known_values() {
        let known = [
            "{name}",
            "{short_name}",
            "{service}",
            "{support}",
            "{login}",
            "{date}",
            "{renewal_days}",
            "{validity}",
            "{notice_days}",
        ];
        // The e-mail notice has its own values (`notify::template`).
        let mail = [
            "{support_phone}",
            "{support_email}",
            "{contract}",
            "{contract_name}",
            "{expiry}",
            "{days}",
            "{renew_url}",
        ];
        for lang in Lang::ALL {
            for (sec, keys) in Catalog::builtin().sections(lang) {
                for (k, v) in keys {
                    let mut rest = v.as_str();
                    while let Some(start) = rest.find('{') {
                        let end = rest[start..]
                            .find('}')
                            .map_or(rest.len(), |e| start + e + 1);
                        let p = &rest[start..end];
                        assert!(
                            known.contains(&p) || (sec == "mail" && mail.contains(&p)),
                            "{lang:?} {sec}.{k}: unknown placeholder {p}"
                        );
                        rest = &rest[end..];
                    }
                }
            }
        }
    }
}
