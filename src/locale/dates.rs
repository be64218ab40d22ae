//! Dates as customers read them: in the institution's time zone for the language, with the
//! zone shown (`2026年6月15日 09:00（JST）`, `2026-06-15 09:00 JST`).

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::Lang;

/// `at` (Unix seconds) in `tz`, written for `lang`, zone included.
pub fn format_date_time(at: i64, lang: Lang, tz: &TimeZone) -> String {
    let Ok(ts) = Timestamp::from_second(at) else {
        return at.to_string();
    };
    let t = ts.to_zoned_datetime(tz.clone());
    let info = tz.to_offset_info(ts);
    let zone = info.abbreviation();
    // A zone without a letter abbreviation (`+09`) reads better as an offset from UTC.
    let zone = if zone.chars().any(|c| c.is_ascii_alphabetic()) {
        zone.to_owned()
    } else {
        format!("UTC{}", info.offset())
    };
    match lang {
        Lang::Ja => format!(
            "{}年{}月{}日 {:02}:{:02}（{zone}）",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Lang::En => format!(
            "{}-{:02}-{:02} {:02}:{:02} {zone}",
            t.year(),
            t.month(),
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
    const AT: i64 = 1_781_481_600;

    #[test]
    fn dates_are_written_in_the_zone_with_the_zone_shown() {
        let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
        assert_eq!(
            format_date_time(AT, Lang::Ja, &tokyo),
            "2026年6月15日 09:00（JST）"
        );
        assert_eq!(
            format_date_time(AT, Lang::En, &tokyo),
            "2026-06-15 09:00 JST"
        );
        assert_eq!(
            format_date_time(AT, Lang::En, &TimeZone::UTC),
            "2026-06-15 00:00 UTC"
        );
        let london = TimeZone::get("Europe/London").unwrap();
        assert_eq!(
            format_date_time(AT, Lang::En, &london),
            "2026-06-15 01:00 BST"
        );
    }
}
