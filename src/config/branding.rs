//! `[branding]`: the institution's names, support contact and date time zone per language,
//! its colours and its logo, as the customer sees them on pages, refusals and e-mails.
//!
//! Owns the keys of the section and their checks (colours, time zones, lengths). It must not
//! read the logo: `locale::Brand` does that when the gateway starts or reloads.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use super::ConfigError;

/// `[branding]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrandingConfig {
    /// PNG or SVG (at most 256 KiB), served at `/certgate/assets/logo`; relative to the
    /// configuration file.
    #[serde(default)]
    pub logo: Option<PathBuf>,
    /// Header and button colour, `#rrggbb`.
    #[serde(default)]
    pub primary_color: Option<Rgb>,
    /// Borders and hover; darker than `primary_color` when not given.
    #[serde(default)]
    pub primary_dark_color: Option<Rgb>,
    /// Link colour.
    #[serde(default)]
    pub link_color: Option<Rgb>,
    /// `[branding.ja]`
    #[serde(default)]
    pub ja: BrandingLang,
    /// `[branding.en]`
    #[serde(default)]
    pub en: BrandingLang,
}

/// `[branding.ja]` / `[branding.en]`: names in one language. Unset keys keep the built-in
/// wording (`当行` / `the bank`, `お取引店` / `your branch`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrandingLang {
    /// Full name shown in the header (`○○信用金庫`).
    #[serde(default)]
    pub name: Option<String>,
    /// How texts refer to the institution (`当金庫`, `the bank`).
    #[serde(default)]
    pub short_name: Option<String>,
    /// The service's name (`法人インターネットバンキング`).
    #[serde(default)]
    pub service: Option<String>,
    /// Whom customers contact, as used in sentences (`お取引店`, `your branch`).
    #[serde(default)]
    pub support: Option<String>,
    #[serde(default)]
    pub support_phone: Option<String>,
    #[serde(default)]
    pub support_email: Option<String>,
    /// Opening hours of the support contact (`平日 9:00〜17:00`).
    #[serde(default)]
    pub support_hours: Option<String>,
    /// IANA time zone of dates in this language; `Asia/Tokyo` when not set.
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// A colour written `#rrggbb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub [u8; 3]);

impl Rgb {
    /// Parses `#rrggbb` (hex digits of either case) and nothing else.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix('#')?;
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        Some(Self([byte(0)?, byte(2)?, byte(4)?]))
    }

    /// 70 % of each channel: the hover and border shade of a colour.
    pub fn darker(self) -> Self {
        // c * 7 / 10 is at most 178: it fits a u8.
        Self(
            self.0
                .map(|c| u8::try_from(u16::from(c) * 7 / 10).unwrap_or(c)),
        )
    }
}

impl fmt::Display for Rgb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [r, g, b] = self.0;
        write!(f, "#{r:02x}{g:02x}{b:02x}")
    }
}

impl<'de> Deserialize<'de> for Rgb {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a colour #rrggbb")))
    }
}

/// Longest name or contact text accepted.
const MAX_TEXT_CHARS: usize = 120;

impl BrandingConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if let Some(logo) = &self.logo {
            let ext = logo
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            if !matches!(ext.as_deref(), Some("png" | "svg")) {
                return invalid(format!(
                    "[branding] logo must be a .png or .svg file, not {}",
                    logo.display()
                ));
            }
        }
        for (lang, c) in [("ja", &self.ja), ("en", &self.en)] {
            for (key, value) in [
                ("name", &c.name),
                ("short_name", &c.short_name),
                ("service", &c.service),
                ("support", &c.support),
                ("support_phone", &c.support_phone),
                ("support_email", &c.support_email),
                ("support_hours", &c.support_hours),
            ] {
                let Some(v) = value else { continue };
                if v.chars().count() > MAX_TEXT_CHARS || v.chars().any(char::is_control) {
                    return invalid(format!(
                        "[branding.{lang}] {key} must be one line of at most {MAX_TEXT_CHARS} characters"
                    ));
                }
                if v.trim().is_empty() && key != "name" {
                    return invalid(format!("[branding.{lang}] {key} is empty"));
                }
            }
            if let Some(mail) = &c.support_email
                && !looks_like_email(mail)
            {
                return invalid(format!(
                    "[branding.{lang}] support_email {mail:?} is not an e-mail address"
                ));
            }
            if let Some(zone) = &c.time_zone
                && jiff::tz::TimeZone::get(zone).is_err()
            {
                return invalid(format!(
                    "[branding.{lang}] time_zone {zone:?} is not an IANA time zone (e.g. Asia/Tokyo)"
                ));
            }
        }
        Ok(())
    }
}

/// `local@domain.tld`, no spaces or markup: enough to catch a typo or a pasted sentence.
fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@.-_+".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BrandingConfig, String> {
        let b: BrandingConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        b.check().map_err(|e| e.to_string())?;
        Ok(b)
    }

    #[test]
    fn a_full_branding_section_is_read() {
        let b = parse(
            r##"
            logo = "brand/logo.svg"
            primary_color = "#1A5E20"
            link_color = "#0a4ea2"
            [ja]
            name = "さくら信用金庫"
            short_name = "当金庫"
            support = "お取引店"
            support_phone = "0120-000-000"
            support_email = "ib-help@sakura-shinkin.example"
            support_hours = "平日 9:00〜17:00"
            [en]
            name = "Sakura Shinkin Bank"
            time_zone = "UTC"
            "##,
        )
        .unwrap();
        assert_eq!(b.primary_color, Some(Rgb([0x1a, 0x5e, 0x20])));
        assert_eq!(b.primary_color.unwrap().to_string(), "#1a5e20");
        assert_eq!(b.ja.short_name.as_deref(), Some("当金庫"));
        assert_eq!(b.en.time_zone.as_deref(), Some("UTC"));
        assert!(parse("").is_ok());
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            r#"primary_color = "red""#,
            r##"primary_color = "#12345""##,
            r##"primary_color = "#12345g""##,
            r##"link_color = "#1234567""##,
            r#"logo = "logo.gif""#,
            r#"logo = "logo""#,
            "[ja]\ntime_zone = \"Tokyo\"",
            "[en]\ntime_zone = \"JST+9\"",
            "[ja]\nsupport_email = \"call us\"",
            "[ja]\nshort_name = \"  \"",
            "[ja]\nname = \"a\\nb\"",
            "[en]\ncolour = \"x\"",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let long = format!("[en]\nname = \"{}\"", "x".repeat(MAX_TEXT_CHARS + 1));
        assert!(parse(&long).is_err());
    }

    #[test]
    fn darker_shades_each_channel() {
        assert_eq!(Rgb([100, 200, 0]).darker(), Rgb([70, 140, 0]));
        assert_eq!(
            Rgb::parse("#FFFFFF").unwrap().darker().to_string(),
            "#b2b2b2"
        );
    }
}
