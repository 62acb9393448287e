//! Small text helpers of the fake shell: clock, calendar formatting (no time-zone database:
//! the fake machine runs in UTC, as most cloud images do), truncation.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::services::clock::Civil;

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub(crate) fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos().into()).unwrap_or(0)
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// Broken-down UTC time of a Unix time.
pub(crate) fn tm(t: u64) -> Civil {
    Civil::from_secs(t)
}

/// `Wed May  1 10:12:01 2024` (`last`, the login banner).
pub(crate) fn ctime(t: u64) -> String {
    let x = tm(t);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        x.weekday(),
        x.month_name(),
        x.day,
        x.hour,
        x.minute,
        x.second,
        x.year
    )
}

/// `date`: `Wed May  1 10:12:01 UTC 2024`.
pub(crate) fn date(t: u64) -> String {
    let x = tm(t);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} UTC {}",
        x.weekday(),
        x.month_name(),
        x.day,
        x.hour,
        x.minute,
        x.second,
        x.year
    )
}

/// `ls -l` time: `May  1 10:12` within six months, else `May  1  2023`.
pub(crate) fn ls_time(t: u64, now: u64) -> String {
    let x = tm(t);
    if now.saturating_sub(t) < 182 * 86_400 && t <= now + 3600 {
        format!("{} {:2} {:02}:{:02}", x.month_name(), x.day, x.hour, x.minute)
    } else {
        format!("{} {:2}  {}", x.month_name(), x.day, x.year)
    }
}

/// `2024-05-01 10:12:01` (wget).
pub(crate) fn iso(t: u64) -> String {
    let x = tm(t);
    format!("{}-{:02}-{:02} {:02}:{:02}:{:02}", x.year, x.month, x.day, x.hour, x.minute, x.second)
}

/// `up 23 days,  4:05` part of uptime and w.
pub(crate) fn up(secs: u64) -> String {
    let days = secs / 86_400;
    let h = secs % 86_400 / 3600;
    let m = secs % 3600 / 60;
    let hm = if h == 0 { format!("{m} min") } else { format!("{h:2}:{m:02}") };
    match days {
        0 => format!("up {hm}"),
        1 => format!("up 1 day, {hm}"),
        d => format!("up {d} days, {hm}"),
    }
}

/// `ls -h`, `df -h`, `free -h` sizes: 4.0K, 1.2M, 23G.
pub(crate) fn human(bytes: u64, si_suffix: bool) -> String {
    let units = ["", "K", "M", "G", "T"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    let u = units.get(i).copied().unwrap_or("");
    let u = if si_suffix && i > 0 { format!("{u}i") } else { u.to_owned() };
    if i == 0 {
        format!("{bytes}{}", if si_suffix { "B" } else { "" })
    } else if v < 10.0 {
        format!("{:.1}{u}", (v * 10.0).ceil() / 10.0)
    } else {
        format!("{}{u}", v.ceil() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(iso(0), "1970-01-01 00:00:00");
        assert_eq!(date(1_714_558_321), "Wed May  1 10:12:01 UTC 2024");
        assert_eq!(ls_time(1_714_558_321, 1_714_558_400), "May  1 10:12");
        assert_eq!(ls_time(1_614_558_321, 1_714_558_400), "Mar  1  2021");
        assert_eq!(up(23 * 86_400 + 4 * 3600 + 300), "up 23 days,  4:05");
        assert_eq!(up(300), "up 5 min");
        assert_eq!(human(4096, false), "4.0K");
        assert_eq!(human(1_500_000_000, true), "1.4Gi");
        assert_eq!(truncate("héllo", 2), "h");
    }
}
