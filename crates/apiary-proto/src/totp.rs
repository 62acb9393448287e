//! TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30 s steps) for node enrollment, with base32 secrets
//! and `otpauth://` URIs.
//!
//! Hand-written over the `hmac` and `sha1` crates because the whole algorithm is a dozen lines
//! and the Core needs the matched step back (to refuse a code used twice), which is the part
//! libraries tend to hide.

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The step length in seconds.
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Steps accepted either side of the current one (clock drift).
pub const WINDOW: u64 = 1;

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Why a code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TotpError {
    /// Not six ASCII digits.
    #[error("TOTP code must be {DIGITS} digits")]
    Malformed,
    /// No step within the window matches.
    #[error("wrong TOTP code")]
    Mismatch,
    /// The code matches a step that was already used.
    #[error("TOTP code already used")]
    Replayed,
}

/// A shared TOTP secret (raw bytes; base32 on the wire and in storage).
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret itself into logs.
        write!(f, "TotpSecret({} bytes)", self.0.len())
    }
}

impl TotpSecret {
    /// A secret from raw bytes (the Core draws 20 random bytes, 160 bits as RFC 4226 advises).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }

    /// Parses base32 (RFC 4648), ignoring case, spaces and `=` padding.
    pub fn from_base32(s: &str) -> Option<Self> {
        let mut out = Vec::with_capacity(s.len() * 5 / 8);
        let (mut acc, mut bits) = (0u32, 0u32);
        for c in s.bytes().filter(|c| !matches!(c, b' ' | b'=' | b'-')) {
            let c = c.to_ascii_uppercase();
            let v = BASE32.iter().position(|&b| b == c)?;
            acc = (acc << 5) | u32::try_from(v).ok()?;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push(((acc >> bits) & 0xff) as u8);
            }
        }
        if out.is_empty() { None } else { Some(Self(out)) }
    }

    /// Unpadded upper-case base32, as authenticator apps and the Go node expect.
    pub fn to_base32(&self) -> String {
        let mut out = String::with_capacity(self.0.len().div_ceil(5) * 8);
        let (mut acc, mut bits) = (0u32, 0u32);
        for &b in &self.0 {
            acc = (acc << 8) | u32::from(b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out.push(char::from(BASE32[((acc >> bits) & 31) as usize]));
            }
            acc &= 0xff;
        }
        if bits > 0 {
            out.push(char::from(BASE32[((acc << (5 - bits)) & 31) as usize]));
        }
        out
    }

    /// The code for a step number.
    pub fn code_at_step(&self, step: u64) -> u32 {
        // HMAC accepts keys of any length, so this cannot fail; fall back to an impossible code.
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&self.0) else { return u32::MAX };
        mac.update(&step.to_be_bytes());
        let h = mac.finalize().into_bytes();
        let offset = usize::from(h[19] & 0x0f);
        let bin = (u32::from(h[offset] & 0x7f) << 24)
            | (u32::from(h[offset + 1]) << 16)
            | (u32::from(h[offset + 2]) << 8)
            | u32::from(h[offset + 3]);
        bin % 10u32.pow(DIGITS)
    }

    /// The code at Unix time `unix_secs`, zero-padded.
    pub fn code_at(&self, unix_secs: u64) -> String {
        format!("{:06}", self.code_at_step(unix_secs / STEP_SECS))
    }

    /// Checks `code` at `unix_secs` (±[`WINDOW`] steps) and returns the matched step. A step at
    /// or below `last_used` is refused, so each code (and every earlier one) works once.
    pub fn verify(
        &self,
        code: &str,
        unix_secs: u64,
        last_used: Option<u64>,
    ) -> Result<u64, TotpError> {
        let code = code.trim();
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TotpError::Malformed);
        }
        let want: u32 = code.parse().map_err(|_| TotpError::Malformed)?;
        let now = unix_secs / STEP_SECS;
        let mut replayed = false;
        for step in now.saturating_sub(WINDOW)..=now.saturating_add(WINDOW) {
            // Compare every candidate without an early exit on the value.
            if ct_eq(self.code_at_step(step), want) {
                if last_used.is_some_and(|last| step <= last) {
                    replayed = true;
                } else {
                    return Ok(step);
                }
            }
        }
        Err(if replayed { TotpError::Replayed } else { TotpError::Mismatch })
    }

    /// An `otpauth://totp/...` URI for authenticator apps and QR codes.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
            percent(issuer),
            percent(account),
            self.to_base32(),
            percent(issuer)
        )
    }
}

fn ct_eq(a: u32, b: u32) -> bool {
    (a ^ b) == 0
}

fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rfc() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890")
    }

    #[test]
    fn rfc6238_vectors_sha1() {
        // RFC 6238 appendix B, truncated to six digits.
        let s = rfc();
        assert_eq!(s.code_at(59), "287082");
        assert_eq!(s.code_at(1_111_111_109), "081804");
        assert_eq!(s.code_at(1_234_567_890), "005924");
        assert_eq!(s.code_at(2_000_000_000), "279037");
    }

    #[test]
    fn base32_round_trip_and_rfc_secret() {
        let s = rfc();
        assert_eq!(s.to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(TotpSecret::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq"), Some(rfc()));
        for n in 1..=21u8 {
            let raw: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            let s = TotpSecret::from_bytes(&raw);
            assert_eq!(TotpSecret::from_base32(&s.to_base32()).unwrap(), s, "{n}");
        }
        assert_eq!(TotpSecret::from_base32("not base32!"), None);
    }

    #[test]
    fn window_and_replay() {
        let s = rfc();
        let t = 1_234_567_890;
        let step = t / STEP_SECS;
        assert_eq!(s.verify(&s.code_at(t), t, None), Ok(step));
        assert_eq!(s.verify(&s.code_at(t - 30), t, None), Ok(step - 1));
        assert_eq!(s.verify(&s.code_at(t + 30), t, None), Ok(step + 1));
        assert_eq!(s.verify(&s.code_at(t + 60), t, None), Err(TotpError::Mismatch));
        assert_eq!(s.verify(&s.code_at(t), t, Some(step)), Err(TotpError::Replayed));
        assert_eq!(s.verify(&s.code_at(t - 30), t, Some(step)), Err(TotpError::Replayed));
        assert_eq!(s.verify(&s.code_at(t + 30), t, Some(step)), Ok(step + 1));
        assert_eq!(s.verify("12345", t, None), Err(TotpError::Malformed));
        assert_eq!(s.verify("12a456", t, None), Err(TotpError::Malformed));
    }

    #[test]
    fn otpauth_uri_shape() {
        let uri = rfc().otpauth_uri("apiary", "edge 1");
        assert_eq!(
            uri,
            "otpauth://totp/apiary:edge%201?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=apiary&algorithm=SHA1&digits=6&period=30"
        );
    }
}
