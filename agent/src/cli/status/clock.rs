//! Reading the agent's RFC 3339 timestamps back, and ages for humans.
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch, now.
pub fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` as seconds since the epoch;
/// None for anything else.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let s = s.trim();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes().all(|b| b.is_ascii_digit()).then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let sep = |i: usize, c: &[u8]| s.as_bytes().get(i).is_some_and(|b| c.contains(b));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        frac = format!("0.{}", &r[..digits]).parse().ok()?;
        rest = &r[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = rest[1..].split_once(':')?;
            if oh.len() != 2 || om.len() != 2 {
                return None;
            }
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some(secs as f64 + frac)
}

/// A duration in seconds, short: `850ms`, `42s`, `3m05s`, `2h10m`, `4d03h`.
pub fn human(secs: f64) -> String {
    if secs < 1.0 {
        return format!("{}ms", (secs.max(0.0) * 1000.0).round() as u64);
    }
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// How long before `now` the timestamp `at` was, or None when `at` does
/// not parse. Clamped at 0 (a clock a little ahead).
pub fn age(at: &str, now: f64) -> Option<f64> {
    parse_rfc3339(at).map(|t| (now - t).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::time::rfc3339;

    #[test]
    fn parses_what_the_agent_writes() {
        for (secs, nanos) in [(0, 0), (1_795_000_000, 5_000_000), (951_782_400, 0), (4_102_444_800, 999_000_000)] {
            let text = rfc3339(secs, nanos);
            let back = parse_rfc3339(&text).unwrap_or_else(|| panic!("{text}"));
            assert!((back - (secs as f64 + nanos as f64 / 1e9)).abs() < 1e-6, "{text}: {back}");
        }
    }

    #[test]
    fn parses_kubernetes_times_and_offsets() {
        assert_eq!(parse_rfc3339("2026-11-18T11:06:40Z"), Some(1_795_000_000.0));
        assert_eq!(parse_rfc3339("2026-11-18T12:06:40+01:00"), Some(1_795_000_000.0));
        assert_eq!(parse_rfc3339("2026-11-18T10:06:40-01:00"), Some(1_795_000_000.0));
        for bad in ["", "2026-11-18", "2026-13-18T11:06:40Z", "2026-11-18T11:06:40", "2026-11-18T11:06:40.Z", "x026-11-18T11:06:40Z"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(0.25), "250ms");
        assert_eq!(human(42.0), "42s");
        assert_eq!(human(185.0), "3m05s");
        assert_eq!(human(7800.0), "2h10m");
        assert_eq!(human(356_400.0), "4d03h");
    }
}
