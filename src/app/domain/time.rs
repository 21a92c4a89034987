//! Wall-clock helpers: milliseconds since the Unix epoch, and the few date
//! formats the query API accepts. Kept here so the rest of the shop never
//! handles calendars.
//!
//! Must never: import anything of the shop (it is a leaf).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parse a point in time given as milliseconds since the epoch (`1714557600000`),
/// a date (`2024-05-01`, midnight UTC) or a UTC date-time
/// (`2024-05-01T10:00:00Z`, `2024-05-01T10:00:00.250Z`).
pub fn parse_instant(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    let day: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(1970..=9999).contains(&year) {
        return None;
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    if let Some(time) = time {
        let time = time.strip_suffix('Z').unwrap_or(time);
        let (hms, frac) = match time.split_once('.') {
            Some((h, f)) => (h, Some(f)),
            None => (time, None),
        };
        let mut fields = hms.splitn(3, ':');
        let hour: i64 = fields.next()?.parse().ok()?;
        let minute: i64 = fields.next()?.parse().ok()?;
        let second: i64 = fields.next().unwrap_or("0").parse().ok()?;
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        ms += ((hour * 60 + minute) * 60 + second) * 1000;
        if let Some(frac) = frac {
            let digits: String = frac.chars().take(3).collect();
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let scale = 10_i64.pow(3 - digits.len() as u32);
            ms += digits.parse::<i64>().ok()? * scale;
        }
    }
    Some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_formats() {
        assert_eq!(parse_instant("0"), Some(0));
        assert_eq!(parse_instant("1714557600000"), Some(1_714_557_600_000));
        assert_eq!(parse_instant("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_instant("2024-05-01"), Some(1_714_521_600_000));
        assert_eq!(
            parse_instant("2024-05-01T10:00:00Z"),
            Some(1_714_557_600_000)
        );
        assert_eq!(
            parse_instant("2024-05-01T10:00:00.25Z"),
            Some(1_714_557_600_250)
        );
        assert_eq!(parse_instant("yesterday"), None);
        assert_eq!(parse_instant("2024-13-01"), None);
    }
}
