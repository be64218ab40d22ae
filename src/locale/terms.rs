//! The scheme's numbers that customer texts state: when renewal opens, how long a
//! certificate is valid, when expiry notices are sent. Taken from the configuration, so a
//! page never states a rule the gateway does not apply.

use super::Lang;

/// See the module comment. Texts say them as `{renewal_days}`, `{validity}` and
/// `{notice_days}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemeTerms {
    /// `[renewal] window_days`.
    pub renewal_days: u32,
    /// `[ca] validity_days`.
    pub validity_days: u32,
    /// `[notify] notice_days`, largest first; empty when no notices are sent.
    pub notice_days: Vec<u32>,
}

impl Default for SchemeTerms {
    /// The defaults of the configuration.
    fn default() -> Self {
        Self {
            renewal_days: 30,
            validity_days: 365,
            notice_days: vec![30, 10],
        }
    }
}

impl SchemeTerms {
    /// The terms `cfg` applies.
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        let mut notice_days = cfg
            .notify
            .as_ref()
            .map(|n| n.notice_days.clone())
            .unwrap_or_default();
        notice_days.sort_unstable_by(|a, b| b.cmp(a));
        notice_days.dedup();
        Self {
            renewal_days: cfg.renewal.window_days,
            validity_days: cfg.ca.validity_days,
            notice_days,
        }
    }

    /// `text` with the terms filled in. A text about notices is empty when none are sent.
    pub fn fill(&self, lang: Lang, text: &str) -> String {
        if text.contains("{notice_days}") && self.notice_days.is_empty() {
            return String::new();
        }
        text.replace("{renewal_days}", &self.renewal_days.to_string())
            .replace("{validity}", &self.validity(lang))
            .replace("{notice_days}", &self.notices(lang))
    }

    fn validity(&self, lang: Lang) -> String {
        let days = self.validity_days;
        match (lang, days.is_multiple_of(365), days / 365) {
            (Lang::Ja, true, years) => format!("{years}年間"),
            (Lang::Ja, false, _) => format!("{days}日間"),
            (Lang::En, true, 1) => "one year".into(),
            (Lang::En, true, years) => format!("{years} years"),
            (Lang::En, false, _) => format!("{days} days"),
        }
    }

    fn notices(&self, lang: Lang) -> String {
        let each: Vec<String> = self
            .notice_days
            .iter()
            .map(|d| match lang {
                Lang::Ja => format!("{d}日前"),
                Lang::En => format!("{d} days"),
            })
            .collect();
        match (lang, each.as_slice()) {
            (_, [one]) => one.clone(),
            (Lang::Ja, [rest @ .., last]) => format!("{}と{last}", rest.join("、")),
            (Lang::En, [rest @ .., last]) => format!("{} and {last}", rest.join(", ")),
            (_, []) => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_say_what_the_texts_said() {
        let t = SchemeTerms::default();
        assert_eq!(
            t.fill(Lang::Ja, "{validity}、{notice_days}、{renewal_days}日前"),
            "1年間、30日前と10日前、30日前"
        );
        assert_eq!(
            t.fill(Lang::En, "{validity}, {notice_days}, {renewal_days}"),
            "one year, 30 days and 10 days, 30"
        );
    }

    #[test]
    fn other_terms_are_said_as_configured() {
        let t = SchemeTerms {
            renewal_days: 45,
            validity_days: 90,
            notice_days: vec![60, 30, 7],
        };
        assert_eq!(
            t.fill(Lang::Ja, "{validity}・{notice_days}・{renewal_days}"),
            "90日間・60日前、30日前と7日前・45"
        );
        assert_eq!(
            t.fill(Lang::En, "{validity}; {notice_days}"),
            "90 days; 60 days, 30 days and 7 days"
        );
        let two_years = SchemeTerms {
            validity_days: 730,
            ..SchemeTerms::default()
        };
        assert_eq!(two_years.fill(Lang::En, "{validity}"), "2 years");
        let none = SchemeTerms {
            notice_days: vec![],
            ..SchemeTerms::default()
        };
        assert_eq!(none.fill(Lang::En, " We send {notice_days}."), "");
    }
}
