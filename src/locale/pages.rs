//! The HTML of certgate's pages and of the gateway's refusals: minijinja templates compiled
//! into the binary (`templates/`), one frame (`base.html`) that every page extends, HTML
//! escaping of every value, and strict lookups, so a text missing from a catalog is an
//! error a test sees rather than an empty line a customer sees.

use std::sync::LazyLock;

use minijinja::{Environment, UndefinedBehavior, Value, context};

use super::{Lang, Locale, format_date_time};

/// A page of certgate's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Landing,
    Obtain,
    Renew,
    /// The contract administrator's user management.
    Admin,
}

impl Page {
    /// Every page.
    pub const ALL: [Page; 4] = [Page::Landing, Page::Obtain, Page::Renew, Page::Admin];

    /// The page's name (its template is `NAME.html`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Landing => "landing",
            Self::Obtain => "obtain",
            Self::Renew => "renew",
            Self::Admin => "admin",
        }
    }
}

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("_enroll.html", include_str!("templates/_enroll.html")),
    ("_password.html", include_str!("templates/_password.html")),
    ("landing.html", include_str!("templates/landing.html")),
    ("obtain.html", include_str!("templates/obtain.html")),
    ("renew.html", include_str!("templates/renew.html")),
    ("admin.html", include_str!("templates/admin.html")),
    ("staff.html", include_str!("templates/staff.html")),
    ("notice.html", include_str!("templates/notice.html")),
    ("refusal.html", include_str!("templates/refusal.html")),
    (
        "interstitial.html",
        include_str!("templates/interstitial.html"),
    ),
];

static ENV: LazyLock<Result<Environment<'static>, minijinja::Error>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // `.html` names escape for HTML (minijinja's default for that extension).
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    Ok(env)
});

fn render(name: &str, ctx: Value) -> Result<String, minijinja::Error> {
    let env = ENV.as_ref().map_err(|e| {
        minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
    })?;
    env.get_template(name)?.render(ctx)
}

/// The renewal notice of a page: whose certificate expires when, and where to renew.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    pub login: &'a str,
    pub not_after: i64,
    pub renew_href: &'a str,
}

/// What a page shows besides its texts.
#[derive(Debug, Clone, Default)]
pub struct PageData<'a> {
    /// The CSRF token of the page's JSON calls.
    pub csrf: &'a str,
    /// The certificate's login ID (renew, admin).
    pub login: &'a str,
    pub notice: Option<Notice<'a>>,
}

/// The values every template of `lang` reads: texts, names, language and home link.
fn frame(locale: &Locale, lang: Lang) -> Value {
    context! {
        lang => lang.as_str(),
        other => lang.other().as_str(),
        t => locale.texts(lang).value().clone(),
        brand => Value::from(minijinja::value::Serde(locale.brand().names(lang))),
        home => home_href(lang),
    }
}

/// The login screen in `lang`.
pub fn home_href(lang: Lang) -> &'static str {
    match lang {
        Lang::Ja => "/certgate/",
        Lang::En => "/certgate/?lang=en",
    }
}

/// `page` in `lang`.
pub fn page(
    locale: &Locale,
    lang: Lang,
    page: Page,
    data: &PageData<'_>,
) -> Result<String, minijinja::Error> {
    let notice = match &data.notice {
        None => String::new(),
        Some(n) => {
            let names = locale.brand().names(lang);
            let date = format_date_time(n.not_after, lang, names.tz());
            let text = locale
                .texts(lang)
                .fill("notice", "text", &[("login", n.login), ("date", &date)])
                .unwrap_or_default();
            render(
                "notice.html",
                context! { ..frame(locale, lang), ..context! { text, href => n.renew_href } },
            )?
        }
    };
    render_page(
        locale,
        lang,
        page,
        data.csrf,
        data.login,
        Value::from_safe_string(notice),
    )
}

/// `page` with `{{csrf}}`, `{{login}}` and `{{notice}}` left as markers, for the stand-in
/// server of the browser tests (`tests/browser/pages/`).
pub fn page_with_markers(
    locale: &Locale,
    lang: Lang,
    page: Page,
) -> Result<String, minijinja::Error> {
    render_page(
        locale,
        lang,
        page,
        "{{csrf}}",
        "{{login}}",
        Value::from_safe_string("{{notice}}".into()),
    )
}

fn render_page(
    locale: &Locale,
    lang: Lang,
    page: Page,
    csrf: &str,
    login: &str,
    notice: Value,
) -> Result<String, minijinja::Error> {
    let ctx = context! {
        ..frame(locale, lang),
        ..context! { csrf, login, notice, lang_switch => true,
            obtain_api => Value::from_safe_string(CUSTOMER_OBTAIN_API.into()),
            renew_api => Value::from_safe_string(CUSTOMER_RENEW_API.into()) }
    };
    render(&format!("{}.html", page.name()), ctx)
}

/// Where the customers' obtain and renew pages send their calls.
const CUSTOMER_OBTAIN_API: &str = "/certgate/api/obtain";
const CUSTOMER_RENEW_API: &str = "/certgate/api/renew";

/// The renew page for a staff member (on the staff console): the customers' page, its call
/// sent to `renew_api`.
pub fn staff_renew(
    locale: &Locale,
    lang: Lang,
    csrf: &str,
    login: &str,
    renew_api: &str,
) -> Result<String, minijinja::Error> {
    let ctx = context! {
        ..frame(locale, lang),
        ..context! {
            csrf,
            login,
            notice => Value::from_safe_string(String::new()),
            lang_switch => true,
            renew_api => Value::from_safe_string(renew_api.into()),
        }
    };
    render("renew.html", ctx)
}

/// The obtain page for staff (on the staff obtain listener): the customers' page, its
/// call sent to `obtain_api`, where the "login ID" is the staff name.
pub fn staff_obtain(
    locale: &Locale,
    lang: Lang,
    csrf: &str,
    obtain_api: &str,
) -> Result<String, minijinja::Error> {
    let ctx = context! {
        ..frame(locale, lang),
        ..context! {
            csrf,
            login => "",
            notice => Value::from_safe_string(String::new()),
            lang_switch => true,
            // A path of certgate's own, not user input: kept as written (the escaper would
            // turn its slashes into entities).
            obtain_api => Value::from_safe_string(obtain_api.into()),
        }
    };
    render("obtain.html", ctx)
}

/// The staff console's page in `lang` with the CSRF token of its calls. Its script writes
/// dates in the institution's time zone, so the zone's name goes into the page.
pub fn staff_console(locale: &Locale, lang: Lang, csrf: &str) -> Result<String, minijinja::Error> {
    let tz = locale
        .brand()
        .names(lang)
        .tz()
        .iana_name()
        .unwrap_or(super::brand::DEFAULT_TIME_ZONE)
        .to_owned();
    // The script's texts go into an attribute as JSON; attribute escaping keeps it inert.
    let t = locale.texts(lang).value();
    let script = serde_json::json!({
        "t": t.get_attr("staff")?,
        "e": t.get_attr("staff_error")?,
        "lang": lang.as_str(),
        "tz": tz,
    })
    .to_string();
    let ctx = context! {
        ..frame(locale, lang),
        ..context! { csrf, script, lang_switch => true }
    };
    render("staff.html", ctx)
}

/// The refusal page for `code` in `lang`; `second`, when the request named no language,
/// repeats it in the other language (marked with its `lang`).
pub fn refusal(
    locale: &Locale,
    lang: Lang,
    second: bool,
    code: &str,
) -> Result<String, minijinja::Error> {
    let second = second.then(|| {
        let other = lang.other();
        context! { lang => other.as_str(), t => locale.texts(other).value().clone() }
    });
    let ctx = context! {
        ..frame(locale, lang),
        ..context! { code, second, csrf => "", lang_switch => false }
    };
    render("refusal.html", ctx)
}

/// The "renew now / later" page shown before an app while renewal is due: `login`'s
/// certificate expires at `not_after`; "later" goes to `later_href`.
pub fn interstitial(
    locale: &Locale,
    lang: Lang,
    notice: &Notice<'_>,
    later_href: &str,
) -> Result<String, minijinja::Error> {
    let names = locale.brand().names(lang);
    let date = format_date_time(notice.not_after, lang, names.tz());
    let text = locale
        .texts(lang)
        .fill(
            "interstitial",
            "text",
            &[("login", notice.login), ("date", &date)],
        )
        .unwrap_or_default();
    let ctx = context! {
        ..frame(locale, lang),
        ..context! {
            text,
            renew_href => notice.renew_href,
            later_href,
            csrf => "",
            lang_switch => false,
        }
    };
    render("interstitial.html", ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locale::Brand;

    fn locale() -> Locale {
        Locale::new(Brand::default())
    }

    #[test]
    fn pages_state_the_configured_terms() {
        let terms = crate::locale::SchemeTerms {
            renewal_days: 45,
            validity_days: 730,
            notice_days: vec![60, 14],
        };
        let l = Locale::with_terms(Brand::default(), &terms);
        let data = PageData {
            csrf: "t",
            login: "",
            notice: None,
        };
        let ja = page(&l, Lang::Ja, Page::Landing, &data).expect("ja");
        for said in [
            "45日前から更新",
            "取得した日から2年間",
            "有効期限の60日前と14日前に",
        ] {
            assert!(ja.contains(said), "{said} in {ja}");
        }
        let en = page(&l, Lang::En, Page::Landing, &data).expect("en");
        for said in [
            "renewal opens 45 days",
            "valid for 2 years",
            "e-mail 60 days and 14 days before",
        ] {
            assert!(en.contains(said), "{said} in {en}");
        }
        // Without notices, the page promises none.
        let quiet = Locale::with_terms(
            Brand::default(),
            &crate::locale::SchemeTerms {
                notice_days: vec![],
                ..terms
            },
        );
        let en = page(&quiet, Lang::En, Page::Landing, &data).expect("en");
        assert!(!en.contains("We send you an e-mail"), "{en}");
    }

    #[test]
    fn every_page_renders_in_both_languages_and_escapes() {
        let l = locale();
        for p in Page::ALL {
            for lang in Lang::ALL {
                let data = PageData {
                    csrf: "tok\"en",
                    login: "<b>x</b>",
                    notice: Some(Notice {
                        login: "<i>y</i>",
                        not_after: 1_781_481_600,
                        renew_href: "/certgate/renew",
                    }),
                };
                let html =
                    page(&l, lang, p, &data).unwrap_or_else(|e| panic!("{p:?} {lang:?}: {e:#}"));
                assert!(html.starts_with("<!DOCTYPE html>"), "{p:?} {lang:?}");
                assert!(html.contains(&format!("<html lang=\"{}\">", lang.as_str())));
                assert!(
                    !html.contains("<b>x</b>") && !html.contains("<i>y</i>"),
                    "{p:?} {lang:?}"
                );
                assert!(!html.contains("tok\"en"), "{p:?} {lang:?}");
                assert!(
                    !html.contains('{') || p == Page::Admin || html.contains("{}"),
                    "{p:?}"
                );
                assert!(html.contains("/certgate/assets/brand.css"));
            }
        }
        let ja = page(
            &l,
            Lang::Ja,
            Page::Landing,
            &PageData {
                notice: Some(Notice {
                    login: "carol",
                    not_after: 1_781_481_600,
                    renew_href: "/certgate/renew",
                }),
                ..PageData::default()
            },
        )
        .unwrap();
        assert!(ja.contains("2026年6月15日 09:00（JST）"), "{ja}");
        assert!(
            ja.contains("<title>ログイン | 法人インターネットバンキング</title>"),
            "{ja}"
        );
    }

    #[test]
    fn the_staff_console_renders_in_both_languages_and_escapes_its_data() {
        let l = locale();
        for lang in Lang::ALL {
            let html = staff_console(&l, lang, "tok\"en").unwrap_or_else(|e| panic!("{e:#}"));
            assert!(html.contains(&format!("<html lang=\"{}\">", lang.as_str())));
            assert!(!html.contains("tok\"en"));
            assert!(html.contains("/staff/assets/staff.js"));
            // The hand-over sheet names the institution.
            assert!(html.contains("class=\"handover-bank\">"), "{html}");
        }
    }

    /// The stand-in server of the browser tests serves these copies; they must be what
    /// certgate renders. `CERTGATE_UPDATE_PAGES=1` rewrites them after a template change.
    #[test]
    fn browser_test_pages_match_the_templates() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/pages");
        let update = std::env::var_os("CERTGATE_UPDATE_PAGES").is_some();
        let l = locale();
        let mut files = vec![("brand.css".to_owned(), l.brand().css().to_owned())];
        for p in Page::ALL {
            for lang in Lang::ALL {
                let html = page_with_markers(&l, lang, p).unwrap();
                files.push((format!("{}.{}.html", p.name(), lang.as_str()), html));
            }
        }
        for (name, text) in files {
            let path = dir.join(&name);
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            } else {
                let kept = std::fs::read_to_string(&path).unwrap_or_default();
                assert!(
                    kept == text,
                    "tests/browser/pages/{name} is stale: run the test with CERTGATE_UPDATE_PAGES=1"
                );
            }
        }
    }

    #[test]
    fn the_renewal_interstitial_speaks_one_language_and_escapes() {
        let l = locale();
        let n = Notice {
            login: "<x>",
            not_after: 1_781_481_600,
            renew_href: "https://ib.bank.example/certgate/renew?a=1&b=2",
        };
        let ja = interstitial(&l, Lang::Ja, &n, "/certgate/renew-later?next=%2Fib").unwrap();
        assert!(
            ja.contains("<html lang=\"ja\">") && ja.contains("2026年6月15日 09:00（JST）"),
            "{ja}"
        );
        assert!(ja.contains("id=\"renew-now\"") && ja.contains("id=\"renew-later\""));
        assert!(!ja.contains("<x>") && !ja.contains("Renew now"), "{ja}");
        assert!(ja.contains("a=1&amp;b=2"), "{ja}");
        let en = interstitial(&l, Lang::En, &n, "/certgate/renew-later?next=%2Fib").unwrap();
        assert!(
            en.contains("2026-06-15 09:00 JST") && en.contains("Renew now"),
            "{en}"
        );
    }

    #[test]
    fn refusals_are_titled_in_their_language() {
        let l = locale();
        let ja = refusal(&l, Lang::Ja, false, "no_certificate").unwrap();
        assert!(ja.contains("<html lang=\"ja\">") && ja.contains("<title>ご利用いただけません | "));
        assert!(ja.contains("/certgate/assets/style.css"));
        assert!(!ja.contains("No client certificate"), "{ja}");
        let en = refusal(&l, Lang::En, false, "no_certificate").unwrap();
        assert!(
            en.contains("<html lang=\"en\">") && en.contains("<title>This page cannot be shown | ")
        );
        assert!(en.contains("No client certificate") && en.contains("Code: no_certificate"));
        let both = refusal(&l, Lang::Ja, true, "path_refused").unwrap();
        assert!(
            both.contains("<div class=\"second\" lang=\"en\">")
                && both.contains("Code: path_refused"),
            "{both}"
        );
        assert!(refusal(&l, Lang::En, false, "no_such_code").is_err());
    }
}
