//! Notice texts: the built-in Japanese and English templates (section `mail` of the message
//! catalogs, `src/locale/*.json`), their replacement from files,
//! and rendering (placeholders, the institution's names, the expiry date in the configured
//! time zone).
//!
//! Owns the wording and the date format. It must not read the store or send anything.
//!
//! A template's first line is the subject, the rest the body. Placeholders: `{login}`,
//! `{contract}` (the contract id), `{contract_name}`, `{expiry}`, `{days}` (whole days left,
//! rounded up), `{renew_url}`, and the names of `[branding]` in the notice's language:
//! `{name}` (the institution), `{short_name}`, `{service}`, `{support}` (whom to contact),
//! `{support_phone}`, `{support_email}`. Unknown `{...}` are left as written.

use std::path::Path;

use time::{OffsetDateTime, UtcOffset};

use super::NotifyError;
use crate::clock::{DAY, UnixTime};
use crate::locale::{self, BrandNames, Lang, Locale};

/// A language notices are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Ja,
    En,
}

impl Language {
    /// `ja` or `en`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ja => "ja",
            Self::En => "en",
        }
    }

    /// Parses `ja` or `en`.
    pub fn parse(s: &str) -> Result<Self, NotifyError> {
        match s {
            "ja" => Ok(Self::Ja),
            "en" => Ok(Self::En),
            other => Err(NotifyError::Config(format!(
                "unknown notice language {other:?}: expected ja or en"
            ))),
        }
    }
}

/// One template: subject line and body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    subject: String,
    body: String,
}

impl Template {
    fn parse(text: &str, origin: &str) -> Result<Self, NotifyError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let (subject, body) = text.split_once('\n').unwrap_or((text, ""));
        let subject = subject.trim();
        if subject.is_empty() {
            return Err(NotifyError::Config(format!(
                "the notice template {origin} must start with a subject line"
            )));
        }
        if body.trim().is_empty() {
            return Err(NotifyError::Config(format!(
                "the notice template {origin} has no body"
            )));
        }
        Ok(Self {
            subject: subject.to_owned(),
            body: body.replace("\r\n", "\n"),
        })
    }
}

/// The values written into a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeFacts<'a> {
    pub login: &'a str,
    pub contract_id: &'a str,
    pub contract_name: &'a str,
    pub not_after: UnixTime,
    pub now: UnixTime,
    pub renew_url: &'a str,
}

/// A rendered e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

/// Where the expiry time of a notice is written.
#[derive(Debug, Clone)]
enum Zone {
    /// A fixed offset from UTC (`[notify] utc_offset_minutes`).
    Fixed(UtcOffset),
    /// The time zone of each language's `[branding]`, as on the pages.
    Branding,
}

/// The templates of both languages, the institution's names and the time zone of dates.
#[derive(Debug, Clone)]
pub struct Templates {
    ja: Template,
    en: Template,
    zone: Zone,
    locale: std::sync::Arc<Locale>,
}

/// The built-in notice of `lang`: `mail.notice_subject` and `mail.notice_body` of the
/// message catalog, as one template text (subject line, then body).
fn builtin(lang: Lang) -> String {
    let mail = locale::Catalog::builtin().sections(lang).get("mail");
    let part = |key: &str| mail.and_then(|m| m.get(key)).map_or("", String::as_str);
    format!("{}\n{}", part("notice_subject"), part("notice_body"))
}

impl Templates {
    /// The built-in texts, or those of `dir` (`notice.ja.txt`, `notice.en.txt`) where the
    /// file exists. Dates are written at `utc_offset_minutes` from UTC; names are those of
    /// the branding in force ([`locale::current`]).
    pub fn load(dir: Option<&Path>, utc_offset_minutes: i32) -> Result<Self, NotifyError> {
        let offset = UtcOffset::from_whole_seconds(utc_offset_minutes.saturating_mul(60))
            .map_err(|_| NotifyError::Config("utc_offset_minutes is out of range".into()))?;
        Self::read(dir, Zone::Fixed(offset), locale::current())
    }

    /// These templates with names (not the zone) from `locale` (a fixed offset is set).
    pub fn with_locale(mut self, locale: std::sync::Arc<Locale>) -> Self {
        self.locale = locale;
        self
    }

    /// Like [`Self::load`], with names and the time zone of each language from `locale`'s
    /// `[branding]`, so an e-mail gives the same date and zone as the pages.
    pub fn load_branded(
        dir: Option<&Path>,
        locale: std::sync::Arc<Locale>,
    ) -> Result<Self, NotifyError> {
        Self::read(dir, Zone::Branding, locale)
    }

    fn read(
        dir: Option<&Path>,
        zone: Zone,
        locale: std::sync::Arc<Locale>,
    ) -> Result<Self, NotifyError> {
        let pick = |lang: Lang| -> Result<Template, NotifyError> {
            let Some(dir) = dir else {
                return Template::parse(&builtin(lang), "built-in");
            };
            let path = dir.join(format!("notice.{}.txt", lang.as_str()));
            match std::fs::read_to_string(&path) {
                Ok(text) => Template::parse(&text, &path.display().to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Template::parse(&builtin(lang), "built-in")
                }
                Err(e) => Err(NotifyError::Template(path.display().to_string(), e)),
            }
        };
        Ok(Self {
            ja: pick(Lang::Ja)?,
            en: pick(Lang::En)?,
            zone,
            locale,
        })
    }

    /// Renders the notice in `lang`.
    pub fn render(&self, lang: Language, facts: &NoticeFacts<'_>) -> Rendered {
        let (t, l) = match lang {
            Language::Ja => (&self.ja, Lang::Ja),
            Language::En => (&self.en, Lang::En),
        };
        let names: &BrandNames = self.locale.brand().names(l);
        let left = facts.not_after.saturating_sub(facts.now).max(0);
        let days = (left + DAY - 1) / DAY;
        let expiry = match &self.zone {
            Zone::Fixed(offset) => format_expiry(facts.not_after, *offset, lang),
            Zone::Branding => locale::format_date_time(facts.not_after, l, names.tz()),
        };
        // The institution's names first: a customer's value must not be read as one.
        let branded = |s: &str| {
            names
                .fill(s)
                .replace("{support_phone}", &names.support_phone)
                .replace("{support_email}", &names.support_email)
        };
        let fill = |s: &str| {
            branded(s)
                .replace("{login}", facts.login)
                .replace("{contract_name}", facts.contract_name)
                .replace("{contract}", facts.contract_id)
                .replace("{expiry}", &expiry)
                .replace("{days}", &days.to_string())
                .replace("{renew_url}", facts.renew_url)
        };
        // A subject is one header line: values with line breaks must not split it.
        let subject = fill(&t.subject).replace(['\r', '\n'], " ");
        Rendered {
            subject,
            body: fill(&t.body),
        }
    }
}

/// `2026年6月15日 09:00（JST）` or `2026-06-15 09:00 JST`.
fn format_expiry(at: UnixTime, offset: UtcOffset, lang: Language) -> String {
    let Ok(t) = OffsetDateTime::from_unix_timestamp(at) else {
        return at.to_string();
    };
    let t = t.to_offset(offset);
    let zone = match offset.whole_minutes() {
        540 => "JST".to_owned(),
        0 => "UTC".to_owned(),
        m => {
            let sign = if m < 0 { '-' } else { '+' };
            format!("UTC{sign}{:02}:{:02}", m.abs() / 60, m.abs() % 60)
        }
    };
    match lang {
        Language::Ja => format!(
            "{}年{}月{}日 {:02}:{:02}（{zone}）",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Language::En => format!(
            "{}-{:02}-{:02} {:02}:{:02} {zone}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-06-15 00:00:00 UTC
    const EXPIRY: UnixTime = 1_781_481_600;

    fn facts() -> NoticeFacts<'static> {
        NoticeFacts {
            login: "alice01",
            contract_id: "C-1001",
            contract_name: "山田商事株式会社",
            not_after: EXPIRY,
            now: EXPIRY - 10 * DAY + 3600,
            renew_url: "https://ib.bank.example/certgate/renew",
        }
    }

    #[test]
    fn builtin_japanese_names_everything_the_customer_needs() {
        let t = Templates::load(None, 540).unwrap();
        let r = t.render(Language::Ja, &facts());
        assert!(r.subject.contains("alice01"), "{}", r.subject);
        assert!(r.subject.contains("有効期限"));
        for needle in [
            "alice01",
            "C-1001",
            "山田商事株式会社",
            "2026年6月15日 09:00（JST）",
            "残り10日",
            "https://ib.bank.example/certgate/renew",
            "ログイン画面",
        ] {
            assert!(r.body.contains(needle), "missing {needle:?} in {}", r.body);
        }
        assert!(!r.body.contains('{'), "unfilled placeholder: {}", r.body);
    }

    #[test]
    fn builtin_english_names_everything_the_customer_needs() {
        let t = Templates::load(None, 0).unwrap();
        let r = t.render(Language::En, &facts());
        assert!(r.subject.contains("alice01"));
        for needle in [
            "C-1001",
            "2026-06-15 00:00 UTC",
            "10 days left",
            "/certgate/renew",
            "login screen",
        ] {
            assert!(r.body.contains(needle), "missing {needle:?} in {}", r.body);
        }
    }

    #[test]
    fn files_replace_the_builtin_text_per_language() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("notice.en.txt"),
            "Renew {login}\r\nExpires {expiry}; {unknown} stays\r\n",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path()), -300).unwrap();
        let r = t.render(Language::En, &facts());
        assert_eq!(r.subject, "Renew alice01");
        assert_eq!(
            r.body,
            "Expires 2026-06-14 19:00 UTC-05:00; {unknown} stays\n"
        );
        // No Japanese file in the folder: the built-in one is used.
        assert!(t.render(Language::Ja, &facts()).body.contains("ログインID"));
    }

    #[test]
    fn a_template_without_a_body_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notice.ja.txt"), "件名だけ\n").unwrap();
        let err = Templates::load(Some(dir.path()), 540).unwrap_err();
        assert!(err.to_string().contains("no body"), "{err}");
    }

    #[test]
    fn names_and_zone_come_from_the_branding() {
        let cfg: crate::config::BrandingConfig = toml::from_str(
            "[ja]\nname = \"さくら信用金庫\"\nsupport = \"さくら信用金庫 IBサポート\"\n[en]\ntime_zone = \"Europe/London\"",
        )
        .unwrap();
        let brand = crate::locale::Brand::from_config(&cfg, |p| p.to_path_buf()).unwrap();
        let t = Templates::load_branded(None, std::sync::Arc::new(Locale::new(brand))).unwrap();
        let ja = t.render(Language::Ja, &facts());
        assert!(ja.body.contains("さくら信用金庫 IBサポート"), "{}", ja.body);
        assert!(
            ja.body.contains("2026年6月15日 09:00（JST）"),
            "{}",
            ja.body
        );
        assert!(!ja.body.contains("お取引店"), "{}", ja.body);
        let en = t.render(Language::En, &facts());
        assert!(en.body.contains("2026-06-15 01:00 BST"), "{}", en.body);
        assert!(!en.body.contains('{'), "{}", en.body);
    }

    #[test]
    fn line_breaks_in_values_cannot_split_the_subject() {
        let t = Templates::load(None, 540).unwrap();
        let mut f = facts();
        f.login = "a\r\nBcc: x@evil.example";
        let r = t.render(Language::En, &f);
        assert!(!r.subject.contains('\n') && !r.subject.contains('\r'));
    }
}
