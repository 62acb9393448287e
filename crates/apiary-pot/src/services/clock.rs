//! The one calendar of the crate: UTC dates in the formats banners, headers, listings and the
//! fake shell use (HTTP `Date`, SMTP greetings, `ls -l`, `date`), without a calendar dependency.

use std::time::{SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// A UTC date split into its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    /// Days since 1970-01-01 (a Thursday).
    days: i64,
}

impl Civil {
    /// The date of `secs` seconds after the Unix epoch.
    pub(crate) fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Howard Hinnant's days-to-civil algorithm.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            days,
        }
    }

    /// The date of an unsigned Unix time (file times, login times).
    pub(crate) fn from_secs(secs: u64) -> Self {
        Self::from_unix(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    /// Now.
    pub(crate) fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
            .unwrap_or(0);
        Self::from_unix(secs)
    }

    /// `Mon` .. `Sun`.
    pub(crate) fn weekday(&self) -> &'static str {
        DAYS.get(self.days.rem_euclid(7) as usize).copied().unwrap_or("Thu")
    }

    /// `Jan` .. `Dec`.
    pub(crate) fn month_name(&self) -> &'static str {
        MONTHS.get(self.month.saturating_sub(1) as usize).copied().unwrap_or("Jan")
    }

    /// `Tue, 15 Nov 1994 08:12:31 GMT` (RFC 9110 IMF-fixdate).
    pub(crate) fn http(&self) -> String {
        format!(
            "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
            self.weekday(),
            self.day,
            self.month_name(),
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }

    /// `Tue, 15 Nov 1994 08:12:31 +0000` (RFC 5322, as Exim writes it).
    pub(crate) fn rfc5322(&self) -> String {
        format!(
            "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
            self.weekday(),
            self.day,
            self.month_name(),
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Civil;

    #[test]
    fn known_dates() {
        assert_eq!(Civil::from_unix(0).http(), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(Civil::from_unix(784_887_151).http(), "Tue, 15 Nov 1994 08:12:31 GMT");
        assert_eq!(Civil::from_unix(951_782_400).rfc5322(), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(Civil::from_unix(1_700_000_000).http(), "Tue, 14 Nov 2023 22:13:20 GMT");
    }
}
