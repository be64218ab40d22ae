//! What a customer reads: the language of a page, e-mail or refusal, the message catalog of
//! each language, the institution's names and colours (`[branding]`), and dates in the
//! institution's time zone.
//!
//! Owns wording and names only. It must not do I/O after start-up (the logo is read once,
//! when a [`Locale`] is made) and must not know HTTP: `web` and `proxy` pick the language
//! from the request and render with what this module gives them.

mod brand;
mod catalog;
mod dates;
pub mod pages;
mod terms;

use std::sync::{Arc, LazyLock, PoisonError, RwLock};

pub use brand::{Brand, BrandError, BrandNames, Logo};
pub use catalog::{Catalog, Texts};
pub use dates::format_date_time;
pub use terms::SchemeTerms;

/// A language certgate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    Ja,
    En,
}

impl Lang {
    /// Every language, in catalog order.
    pub const ALL: [Lang; 2] = [Lang::Ja, Lang::En];

    /// `ja` or `en` (the HTML `lang` value).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ja => "ja",
            Self::En => "en",
        }
    }

    /// The other language (for the language switch).
    pub fn other(self) -> Self {
        match self {
            Self::Ja => Self::En,
            Self::En => Self::Ja,
        }
    }

    /// A language tag such as `ja`, `ja-JP` or `en-US`.
    pub fn from_tag(tag: &str) -> Option<Self> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or_default();
        if primary.eq_ignore_ascii_case("ja") {
            Some(Self::Ja)
        } else if primary.eq_ignore_ascii_case("en") {
            Some(Self::En)
        } else {
            None
        }
    }

    /// The most preferred language of an `Accept-Language` value that certgate speaks:
    /// highest `q` first, then the order given; `q=0` means "not this one".
    pub fn from_accept_language(value: &str) -> Option<Self> {
        let mut best: Option<(u16, Self)> = None;
        for item in value.split(',') {
            let mut parts = item.split(';');
            let Some(lang) = parts.next().and_then(Self::from_tag) else {
                continue;
            };
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(1000, parse_q);
            if q > 0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l)
    }
}

/// An HTTP quality value in thousandths (`0.8` is 800); unreadable counts as 0.
fn parse_q(q: &str) -> u16 {
    let q = q.trim();
    let (int, frac) = q.split_once('.').unwrap_or((q, ""));
    let whole = match int {
        "1" => return 1000,
        "0" => 0u16,
        _ => return 0,
    };
    let digits: String = frac.chars().take(3).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return 0;
    }
    let padded = format!("{digits:0<3}");
    whole + padded.parse::<u16>().unwrap_or(0)
}

/// The catalogs of both languages with the institution's names filled in, and the brand.
#[derive(Debug)]
pub struct Locale {
    brand: Brand,
    ja: Texts,
    en: Texts,
}

impl Locale {
    /// The catalogs filled with `brand`'s names and the default terms of the scheme.
    pub fn new(brand: Brand) -> Self {
        Self::with_terms(brand, &SchemeTerms::default())
    }

    /// The catalogs filled with `brand`'s names and `terms`.
    pub fn with_terms(brand: Brand, terms: &SchemeTerms) -> Self {
        let catalog = Catalog::builtin();
        Self {
            ja: catalog.texts(Lang::Ja, brand.names(Lang::Ja), terms),
            en: catalog.texts(Lang::En, brand.names(Lang::En), terms),
            brand,
        }
    }

    /// The locale of `cfg`: `[branding]` (the logo is read) and the terms its `[renewal]`,
    /// `[ca]` and `[notify]` apply.
    pub fn from_config(cfg: &crate::config::Config) -> Result<Self, BrandError> {
        let brand = Brand::from_config(&cfg.branding, |p| cfg.resolve(p))?;
        Ok(Self::with_terms(brand, &SchemeTerms::from_config(cfg)))
    }

    /// The texts of `lang`.
    pub fn texts(&self, lang: Lang) -> &Texts {
        match lang {
            Lang::Ja => &self.ja,
            Lang::En => &self.en,
        }
    }

    /// The institution's names, colours, logo and time zones.
    pub fn brand(&self) -> &Brand {
        &self.brand
    }
}

static CURRENT: LazyLock<RwLock<Arc<Locale>>> =
    LazyLock::new(|| RwLock::new(Arc::new(Locale::new(Brand::default()))));

/// The locale in force: the one [`install`]ed last, or the built-in branding.
pub fn current() -> Arc<Locale> {
    Arc::clone(&CURRENT.read().unwrap_or_else(PoisonError::into_inner))
}

/// Makes `locale` the one in force for every page, refusal and API message of this process
/// (at start and on each reload of the configuration).
pub fn install(locale: Locale) {
    *CURRENT.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(locale);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_language_spoken() {
        let l = |v| Lang::from_accept_language(v);
        assert_eq!(l("ja"), Some(Lang::Ja));
        assert_eq!(l("en-US,en;q=0.9,ja;q=0.8"), Some(Lang::En));
        assert_eq!(l("fr-FR,fr;q=0.9,ja;q=0.8,en;q=0.5"), Some(Lang::Ja));
        assert_eq!(l("en;q=0.5, ja-JP"), Some(Lang::Ja));
        assert_eq!(l("ja;q=0, en;q=0.1"), Some(Lang::En));
        assert_eq!(l("fr, de"), None);
        assert_eq!(l(""), None);
        assert_eq!(l("ja;q=abc"), None);
    }
}
