//! UTC timestamps with microsecond precision, formatted as RFC 3339 without a time-zone library.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, in microseconds since the Unix epoch, always UTC.
///
/// Stored as one integer so events stay small and compare cheaply; the sensor builds these
/// from packet timestamps so a replay is deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

/// Why a timestamp string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {input:?}: {reason}")]
pub struct TimestampError {
    input: String,
    reason: &'static str,
}

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(0);

    /// The current wall-clock time.
    pub fn now() -> Self {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Self(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }

    /// A timestamp from microseconds since the epoch.
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// A timestamp from whole seconds and microseconds (a pcap record header).
    pub const fn from_secs_micros(secs: i64, micros: u32) -> Self {
        Self(secs.saturating_mul(1_000_000).saturating_add(micros as i64))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (floor).
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// Microseconds between `earlier` and `self`, never negative.
    pub fn micros_since(self, earlier: Self) -> u64 {
        u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0)
    }

    /// Calendar fields `(year, month, day, hour, minute, second, micros)` in UTC.
    pub fn to_parts(self) -> (i64, u32, u32, u32, u32, u32, u32) {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u32;
        let (y, m, d) = civil_from_days(days);
        (y, m, d, sod / 3600, sod / 60 % 60, sod % 60, micros)
    }

    /// The 26 bytes `YYYY-MM-DDTHH:MM:SS.ffffff`, or `None` when the year has no four-digit form.
    ///
    /// Hand-rolled, on the stack, because the JSONL sink formats a million of these a second.
    fn digits(self) -> Option<[u8; 26]> {
        let (y, mo, d, h, mi, s, us) = self.to_parts();
        if !(0..=9999).contains(&y) {
            return None;
        }
        let mut buf = [0u8; 26];
        put(&mut buf[0..4], y as u32, 4);
        buf[4] = b'-';
        put(&mut buf[5..7], mo, 2);
        buf[7] = b'-';
        put(&mut buf[8..10], d, 2);
        buf[10] = b'T';
        put(&mut buf[11..13], h, 2);
        buf[13] = b':';
        put(&mut buf[14..16], mi, 2);
        buf[16] = b':';
        put(&mut buf[17..19], s, 2);
        buf[19] = b'.';
        put(&mut buf[20..26], us, 6);
        Some(buf)
    }

    /// The text of an out-of-range year; only hostile input gets here, so it may allocate.
    fn wide(self, zone: &str) -> String {
        let (y, mo, d, h, mi, s, us) = self.to_parts();
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{us:06}{zone}")
    }

    /// Writes `YYYY-MM-DDTHH:MM:SS.ffffff` followed by `zone` (for example `"Z"` or `""`).
    pub fn write_rfc3339(self, out: &mut String, zone: &str) {
        match self.digits() {
            Some(buf) => {
                // Every byte of `digits` is an ASCII digit or separator.
                out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
                out.push_str(zone);
            }
            None => out.push_str(&self.wide(zone)),
        }
    }

    /// Appends `YYYY-MM-DDTHH:MM:SS.ffffffZ` to a byte buffer (the native JSON encoder).
    pub fn write_rfc3339_bytes(self, out: &mut Vec<u8>) {
        match self.digits() {
            Some(buf) => {
                out.extend_from_slice(&buf);
                out.push(b'Z');
            }
            None => out.extend_from_slice(self.wide("Z").as_bytes()),
        }
    }

    /// Parses RFC 3339 (`Z` or `±HH:MM`), with 0 to 9 fraction digits; a missing zone means UTC
    /// (PokieStream writes its timestamps without one).
    pub fn parse(s: &str) -> Result<Self, TimestampError> {
        let err = |reason| TimestampError { input: s.chars().take(64).collect(), reason };
        let b = s.as_bytes();
        if b.len() < 19 {
            return Err(err("too short"));
        }
        let num = |r: std::ops::Range<usize>| -> Result<i64, TimestampError> {
            let part = b.get(r).ok_or_else(|| err("too short"))?;
            if !part.iter().all(u8::is_ascii_digit) {
                return Err(err("expected digits"));
            }
            Ok(part.iter().fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0')))
        };
        if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || b.get(13) != Some(&b':') {
            return Err(err("expected YYYY-MM-DDTHH:MM:SS"));
        }
        if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(16) != Some(&b':') {
            return Err(err("expected YYYY-MM-DDTHH:MM:SS"));
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
            return Err(err("field out of range"));
        }
        let mut i = 19;
        let mut micros = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                if i - start < 6 {
                    micros = micros * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            let digits = i - start;
            if digits == 0 || digits > 9 {
                return Err(err("bad fraction"));
            }
            for _ in digits..6 {
                micros *= 10;
            }
        }
        let offset = match b.get(i..) {
            Some([] | [b'Z' | b'z']) => 0,
            Some([sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]) => {
                let digits = [*h1, *h2, *m1, *m2];
                if !digits.iter().all(u8::is_ascii_digit) {
                    return Err(err("bad zone"));
                }
                let v = |x: u8, y: u8| i64::from(x - b'0') * 10 + i64::from(y - b'0');
                let off = v(*h1, *h2) * 3600 + v(*m1, *m2) * 60;
                if *sign == b'+' { off } else { -off }
            }
            _ => return Err(err("bad zone")),
        };
        let days = days_from_civil(y, mo as u32, d as u32);
        let secs = days * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset;
        let t = Self(secs * 1_000_000 + micros);
        // A zone offset can push year 0000 or 9999 out of the four-digit range we write.
        if !(0..=9999).contains(&t.to_parts().0) {
            return Err(err("year out of range"));
        }
        Ok(t)
    }
}

fn put(dst: &mut [u8], mut v: u32, width: usize) {
    for i in (0..width).rev() {
        if let Some(slot) = dst.get_mut(i) {
            *slot = b'0' + (v % 10) as u8;
        }
        v /= 10;
    }
}

// Howard Hinnant's civil calendar algorithms (public domain), valid for the proleptic Gregorian
// calendar over the whole i64 day range we can reach from microseconds.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(27);
        self.write_rfc3339(&mut s, "Z");
        f.write_str(&s)
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.digits() {
            Some(digits) => {
                let mut buf = [b'Z'; 27];
                if let Some(head) = buf.get_mut(..26) {
                    head.copy_from_slice(&digits);
                }
                s.serialize_str(std::str::from_utf8(&buf).unwrap_or_default())
            }
            None => s.serialize_str(&self.wide("Z")),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_micros_and_zone() {
        let t = Timestamp::from_micros(1_700_000_000_123_456);
        assert_eq!(t.to_string(), "2023-11-14T22:13:20.123456Z");
        assert_eq!(Timestamp::EPOCH.to_string(), "1970-01-01T00:00:00.000000Z");
        assert_eq!(Timestamp::from_micros(-1).to_string(), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn parses_what_it_writes_and_common_variants() {
        for micros in [0, 1, 951_782_400_000_000, 1_700_000_000_123_456, 4_102_444_799_999_999] {
            let t = Timestamp::from_micros(micros);
            assert_eq!(Timestamp::parse(&t.to_string()), Ok(t));
        }
        let t = Timestamp::from_micros(1_700_000_000_123_456);
        assert_eq!(Timestamp::parse("2023-11-14T22:13:20.123456"), Ok(t));
        assert_eq!(Timestamp::parse("2023-11-14T23:13:20.123456789+01:00"), Ok(t));
        assert_eq!(
            Timestamp::parse("2023-11-14T22:13:20Z"),
            Ok(Timestamp::from_micros(1_700_000_000_000_000))
        );
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            "",
            "2023",
            "2023-13-14T22:13:20Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+1",
            "２０２３-11-14T22:13:20Z",
            "2023-11-14X22:13:20Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }
}
