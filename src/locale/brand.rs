//! The institution behind the pages (`[branding]`): its names and support contact in each
//! language, the time zone of dates per language, its colours (served as `brand.css`, since
//! the pages' CSP allows no inline style) and its logo (served at a fixed path).

use std::path::Path;

use jiff::tz::TimeZone;
use serde::Serialize;

use super::Lang;
use crate::config::{BrandingConfig, BrandingLang, Rgb};

/// Largest logo file accepted.
pub const MAX_LOGO_BYTES: usize = 256 * 1024;

/// Why the branding cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BrandError {
    #[error("cannot read the logo {0}")]
    LogoRead(String, #[source] std::io::Error),
    #[error("the logo {0} is not usable: {1}")]
    LogoRefused(String, &'static str),
    #[error("[branding.{0}] time_zone {1:?} is not a known IANA time zone")]
    TimeZone(&'static str, String),
}

/// The names of one language, as the catalogs and templates use them.
#[derive(Debug, Clone, Serialize)]
pub struct BrandNames {
    /// The institution's full name; empty when not configured (the header then shows the
    /// service's name only).
    pub name: String,
    /// How sentences refer to it (`当金庫`, `the bank`).
    pub short_name: String,
    /// The service's name (`法人インターネットバンキング`).
    pub service: String,
    /// Whom customers contact, as used in sentences (`お取引店`, `your branch`).
    pub support: String,
    pub support_phone: String,
    pub support_email: String,
    pub support_hours: String,
    /// IANA name of the time zone of dates in this language.
    pub time_zone: String,
    /// Whether a logo is served.
    pub logo: bool,
    #[serde(skip)]
    tz: TimeZone,
}

impl BrandNames {
    fn builtin(lang: Lang) -> Self {
        let s = |ja: &str, en: &str| match lang {
            Lang::Ja => ja.to_owned(),
            Lang::En => en.to_owned(),
        };
        Self {
            name: String::new(),
            short_name: s("当行", "the bank"),
            service: s("法人インターネットバンキング", "Corporate Internet Banking"),
            support: s("お取引店", "your branch"),
            support_phone: String::new(),
            support_email: String::new(),
            support_hours: String::new(),
            time_zone: DEFAULT_TIME_ZONE.into(),
            logo: false,
            tz: default_tz(),
        }
    }

    /// `text` with `{name}`, `{short_name}`, `{service}` and `{support}` filled in. Without a
    /// configured full name, `{name}` is the short name.
    pub fn fill(&self, text: &str) -> String {
        let name = if self.name.is_empty() {
            &self.short_name
        } else {
            &self.name
        };
        text.replace("{name}", name)
            .replace("{short_name}", &self.short_name)
            .replace("{service}", &self.service)
            .replace("{support}", &self.support)
    }

    /// The time zone of dates in this language.
    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }
}

/// The zone of dates in both languages unless configured: the institution is in Japan, and
/// an English-reading customer deals with it on Japan's business days.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Tokyo";

fn default_tz() -> TimeZone {
    // Bundled with the program (jiff's tzdb bundle), so this never falls back in practice.
    TimeZone::get(DEFAULT_TIME_ZONE).unwrap_or_else(|_| TimeZone::fixed(jiff::tz::offset(9)))
}

/// A logo file, checked.
#[derive(Debug, Clone)]
pub struct Logo {
    pub bytes: Vec<u8>,
    /// `image/png` or `image/svg+xml`.
    pub content_type: &'static str,
}

impl Logo {
    /// Checks `bytes` are a PNG or a plain SVG (no script, no event handler, no external
    /// entity or foreign content) of at most [`MAX_LOGO_BYTES`].
    pub fn check(bytes: Vec<u8>) -> Result<Self, &'static str> {
        if bytes.len() > MAX_LOGO_BYTES {
            return Err("larger than 256 KiB");
        }
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Ok(Self {
                bytes,
                content_type: "image/png",
            });
        }
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return Err("neither a PNG nor a UTF-8 SVG");
        };
        let lower = text.to_ascii_lowercase();
        if !lower.contains("<svg") {
            return Err("neither a PNG nor an SVG");
        }
        for (needle, why) in [
            ("<script", "the SVG contains a script"),
            ("<!doctype", "the SVG has a DOCTYPE (entities)"),
            ("<!entity", "the SVG declares entities"),
            ("<foreignobject", "the SVG embeds foreign content"),
            ("javascript:", "the SVG contains a javascript: link"),
            ("<iframe", "the SVG embeds a frame"),
        ] {
            if lower.contains(needle) {
                return Err(why);
            }
        }
        if has_event_handler(&lower) {
            return Err("the SVG has an event handler attribute (on...=)");
        }
        Ok(Self {
            bytes,
            content_type: "image/svg+xml",
        })
    }
}

/// Whether an attribute named `on…` appears (`onload=`, ` onclick =`).
fn has_event_handler(lower: &str) -> bool {
    let b = lower.as_bytes();
    (1..b.len().saturating_sub(2)).any(|i| {
        (b[i - 1].is_ascii_whitespace()
            || b[i - 1] == b'/'
            || b[i - 1] == b'"'
            || b[i - 1] == b'\'')
            && b[i] == b'o'
            && b[i + 1] == b'n'
            && {
                let rest = &b[i + 2..];
                let name_len = rest.iter().take_while(|c| c.is_ascii_alphabetic()).count();
                name_len > 0
                    && rest[name_len..]
                        .iter()
                        .find(|c| !c.is_ascii_whitespace())
                        .is_some_and(|c| *c == b'=')
            }
    })
}

/// The institution's branding, ready to serve.
#[derive(Debug, Clone)]
pub struct Brand {
    ja: BrandNames,
    en: BrandNames,
    logo: Option<Logo>,
    css: String,
}

impl Default for Brand {
    fn default() -> Self {
        Self {
            ja: BrandNames::builtin(Lang::Ja),
            en: BrandNames::builtin(Lang::En),
            logo: None,
            css: brand_css(None, None, None),
        }
    }
}

impl Brand {
    /// The branding of `cfg` (checked by the configuration already); reads the logo,
    /// `resolve` anchoring its path at the configuration file's folder.
    pub fn from_config(
        cfg: &BrandingConfig,
        resolve: impl Fn(&Path) -> std::path::PathBuf,
    ) -> Result<Self, BrandError> {
        let logo = match &cfg.logo {
            None => None,
            Some(p) => {
                let path = resolve(p);
                let shown = path.display().to_string();
                let bytes =
                    std::fs::read(&path).map_err(|e| BrandError::LogoRead(shown.clone(), e))?;
                Some(Logo::check(bytes).map_err(|why| BrandError::LogoRefused(shown, why))?)
            }
        };
        let names = |lang: Lang, c: &BrandingLang| -> Result<BrandNames, BrandError> {
            let mut n = BrandNames::builtin(lang);
            let set = |slot: &mut String, v: &Option<String>| {
                if let Some(v) = v {
                    *slot = v.trim().to_owned();
                }
            };
            set(&mut n.name, &c.name);
            set(&mut n.short_name, &c.short_name);
            set(&mut n.service, &c.service);
            set(&mut n.support, &c.support);
            set(&mut n.support_phone, &c.support_phone);
            set(&mut n.support_email, &c.support_email);
            set(&mut n.support_hours, &c.support_hours);
            if let Some(zone) = &c.time_zone {
                n.tz = TimeZone::get(zone)
                    .map_err(|_| BrandError::TimeZone(lang.as_str(), zone.clone()))?;
                n.time_zone = zone.clone();
            }
            n.logo = logo.is_some();
            Ok(n)
        };
        Ok(Self {
            ja: names(Lang::Ja, &cfg.ja)?,
            en: names(Lang::En, &cfg.en)?,
            css: brand_css(cfg.primary_color, cfg.primary_dark_color, cfg.link_color),
            logo,
        })
    }

    /// The names of `lang`.
    pub fn names(&self, lang: Lang) -> &BrandNames {
        match lang {
            Lang::Ja => &self.ja,
            Lang::En => &self.en,
        }
    }

    /// The logo, when one is configured.
    pub fn logo(&self) -> Option<&Logo> {
        self.logo.as_ref()
    }

    /// `brand.css`: the colours as the custom properties `style.css` reads.
    pub fn css(&self) -> &str {
        &self.css
    }
}

/// The stylesheet of the configured colours; the dark shade follows the primary colour
/// unless given.
fn brand_css(primary: Option<Rgb>, dark: Option<Rgb>, link: Option<Rgb>) -> String {
    let mut css = String::from("/* certgate: colours of [branding] */\n:root {");
    if let Some(p) = primary {
        css.push_str(&format!(" --navy: {p};"));
        let d = dark.unwrap_or_else(|| p.darker());
        css.push_str(&format!(" --navy-dark: {d};"));
    } else if let Some(d) = dark {
        css.push_str(&format!(" --navy-dark: {d};"));
    }
    if let Some(l) = link {
        css.push_str(&format!(" --link: {l};"));
    }
    css.push_str(" }\n");
    css
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logos_are_png_or_plain_svg() {
        assert_eq!(
            Logo::check(b"\x89PNG\r\n\x1a\n....".to_vec())
                .unwrap()
                .content_type,
            "image/png"
        );
        let svg = br##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><rect width="10" height="10" fill="#123456"/></svg>"##;
        assert_eq!(
            Logo::check(svg.to_vec()).unwrap().content_type,
            "image/svg+xml"
        );
        for bad in [
            &br#"<svg><script>alert(1)</script></svg>"#[..],
            br#"<svg onload="alert(1)"></svg>"#,
            br#"<svg><rect ONCLICK = "x"/></svg>"#,
            br#"<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]><svg>&x;</svg>"#,
            br#"<svg><foreignObject><div/></foreignObject></svg>"#,
            br#"<svg><a href="javascript:alert(1)"/></svg>"#,
            b"GIF89a....",
            b"\xff\xfe<svg>",
        ] {
            assert!(
                Logo::check(bad.to_vec()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // "on" inside a word or value is no handler.
        assert!(Logo::check(br#"<svg><text font="mono">London</text></svg>"#.to_vec()).is_ok());
        assert!(Logo::check(vec![b' '; MAX_LOGO_BYTES + 1]).is_err());
    }

    #[test]
    fn colours_become_custom_properties() {
        let css = brand_css(Some(Rgb([0x11, 0x22, 0x33])), None, Some(Rgb([0, 0, 0xff])));
        assert!(css.contains("--navy: #112233;"), "{css}");
        assert!(css.contains("--navy-dark: #0b1723;"), "{css}");
        assert!(css.contains("--link: #0000ff;"), "{css}");
        assert_eq!(
            brand_css(None, None, None),
            "/* certgate: colours of [branding] */\n:root { }\n"
        );
    }
}
