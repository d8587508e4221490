//! Times as `show` prints them: UTC calendar date and time, and how long ago.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the epoch (as the records keep times) as [`time_of`] writes them.
pub(crate) fn time(secs: Option<u64>) -> String {
    time_of(secs.map(|s| UNIX_EPOCH + Duration::from_secs(s)))
}

/// `2025-11-26 14:39:03 UTC`: a moment, without how long ago (the live view's clock).
pub(crate) fn clock(t: SystemTime) -> String {
    let full = time_of(Some(t));
    match full.find(" (") {
        Some(i) => full[..i].to_string(),
        None => full,
    }
}

/// `2025-11-26 14:39:03 UTC (5m ago)`, or `never`.
pub(crate) fn time_of(t: Option<SystemTime>) -> String {
    let Some(t) = t else {
        return "never".into();
    };
    let Ok(since_epoch) = t.duration_since(UNIX_EPOCH) else {
        return "before 1970".into();
    };
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let ago = match SystemTime::now().duration_since(t) {
        Ok(a) => format!(" ({} ago)", short(a)),
        Err(_) => String::new(),
    };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC{ago}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
