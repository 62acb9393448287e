//! Typed kind-specific data carried by an [`Event`](crate::Event): payloads, credentials,
//! commands, HTTP requests, flows and the rest.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Bytes seen on the wire: the first bytes kept as evidence, with the full length and hash.
///
/// Attackers send megabytes; the recorded part is capped by the caller while `len` and
/// `sha256` always describe everything that was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The recorded bytes (a prefix of the original when `truncated`).
    pub data: Bytes,
    /// Length of the original bytes.
    pub len: u64,
    /// SHA-256 of the original bytes.
    pub sha256: [u8; 32],
}

impl Payload {
    /// Records `data`, keeping at most `keep` bytes of it.
    pub fn new(data: &[u8], keep: usize) -> Self {
        let kept = data.get(..keep.min(data.len())).unwrap_or_default();
        Self {
            data: Bytes::copy_from_slice(kept),
            len: data.len() as u64,
            sha256: Sha256::digest(data).into(),
        }
    }

    /// Records `data` whole, without copying it.
    pub fn full(data: Bytes) -> Self {
        let sha256 = Sha256::digest(&data).into();
        Self { len: data.len() as u64, data, sha256 }
    }

    /// Whether the recorded bytes are shorter than the original.
    pub fn truncated(&self) -> bool {
        (self.data.len() as u64) < self.len
    }

    /// The SHA-256 as lower-case hex.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut v = Vec::with_capacity(bytes.len() * 2);
    hex_into(bytes, &mut v);
    // Only ASCII hex digits were written.
    String::from_utf8(v).unwrap_or_default()
}

/// The two lower-case hex digits of `b`.
fn hex_pair(b: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]]
}

/// Appends the lower-case hex of `bytes` to `out`.
pub(crate) fn hex_into(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.extend_from_slice(&hex_pair(b));
    }
}

/// The lower-case hex of a SHA-256, on the stack.
fn hex32(bytes: &[u8; 32]) -> [u8; 64] {
    let mut out = [b'0'; 64];
    for (dst, &b) in out.chunks_exact_mut(2).zip(bytes) {
        dst.copy_from_slice(&hex_pair(b));
    }
    out
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let v = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        *out.get_mut(i)? = v(*pair.first()?)? << 4 | v(*pair.get(1)?)?;
    }
    Some(out)
}

#[derive(Serialize, Deserialize)]
struct PayloadWire<'a> {
    len: u64,
    sha256: std::borrow::Cow<'a, str>,
    b64: std::borrow::Cow<'a, str>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Same fields as `PayloadWire`, with the hash and the base64 text formatted without a
        // heap string (HTTP bodies and any serde encoder of an event come through here).
        use serde::ser::SerializeStruct as _;
        let truncated = self.truncated();
        let mut st = s.serialize_struct("PayloadWire", if truncated { 4 } else { 3 })?;
        st.serialize_field("len", &self.len)?;
        st.serialize_field("sha256", &Hex32(&self.sha256))?;
        st.serialize_field("b64", &Base64Str(&self.data))?;
        if truncated {
            st.serialize_field("truncated", &true)?;
        } else {
            st.skip_field("truncated")?;
        }
        st.end()
    }
}

/// A SHA-256 serialised as lower-case hex from a stack buffer.
struct Hex32<'a>(&'a [u8; 32]);

impl Serialize for Hex32<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = hex32(self.0);
        // Only ASCII hex digits were written.
        s.serialize_str(std::str::from_utf8(&text).unwrap_or_default())
    }
}

/// Bytes serialised as standard base64 through `collect_str`, which serde_json streams into
/// its output without building the string first.
struct Base64Str<'a>(&'a [u8]);

impl Serialize for Base64Str<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&base64::display::Base64Display::new(self.0, &B64))
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let w = PayloadWire::deserialize(d)?;
        let data = B64.decode(w.b64.as_bytes()).map_err(D::Error::custom)?;
        let sha256 = unhex32(&w.sha256).ok_or_else(|| D::Error::custom("bad sha256"))?;
        Ok(Self { data: data.into(), len: w.len, sha256 })
    }
}

/// How a session ended, written on `session.close`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Close {
    /// Session length in milliseconds.
    pub duration_ms: u64,
    /// Bytes received from the peer.
    pub bytes_in: u64,
    /// Bytes sent to the peer.
    pub bytes_out: u64,
    /// Why it ended: `peer`, `server`, `idle`, `timeout`, `limit`, `shutdown` or `error`.
    pub reason: String,
}

/// The mechanism of a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthMethod {
    /// A user name and password typed or sent in clear (telnet, FTP, Redis AUTH, ...).
    Password,
    /// An SSH public key offer.
    PublicKey,
    /// SSH keyboard-interactive.
    KeyboardInteractive,
    /// A login form posted over HTTP.
    HttpForm,
    /// HTTP Basic authentication.
    HttpBasic,
    /// SASL PLAIN (SMTP, ...).
    Plain,
    /// SASL LOGIN (SMTP).
    Login,
    /// A digest challenge response (SIP, HTTP Digest), the response hash kept in `extra`.
    Digest,
    /// A database's hashed password exchange (MySQL, PostgreSQL MD5 or SCRAM).
    Hashed,
    /// A token or API key.
    Token,
    /// Anything else (named in the event's `fields`).
    #[serde(other)]
    Other,
}

/// Credentials offered in a login attempt (`auth.attempt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    /// The mechanism used.
    pub method: AuthMethod,
    /// The user name offered, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password offered, if the mechanism reveals it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Whether the honeypot let the login succeed.
    pub success: bool,
    /// Mechanism details (key fingerprint, digest response, salt, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// A command line typed or sent (`command.input`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The input as received, lossily decoded as UTF-8.
    pub input: String,
    /// Which interpreter saw it: `shell`, `redis`, `sql`, `smtp`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    /// Whether the emulator knew the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known: Option<bool>,
}

/// A parsed HTTP request (`http.request`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Http {
    /// Request method as sent.
    pub method: String,
    /// Request target as sent (path and query).
    pub target: String,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: String,
    /// The `Host` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The `User-Agent` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Every header in order, names as sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// The request body, capped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Payload>,
    /// The status the honeypot answered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// A DNS question (`dns.query`, and payload matches of the sensor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// The queried name without the trailing dot.
    pub qname: String,
    /// Query type mnemonic (`A`, `AAAA`, `ANY`, ...) or `TYPEnnn`.
    pub qtype: String,
    /// Message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u16>,
}

/// A download the attacker asked for, or an upload it made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Download {
    /// The URL (for downloads) or the file name (for uploads).
    pub url: String,
    /// SHA-256 of the content, when apiary has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// PokieStream's connection states, plus ICMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FlowState {
    /// First packet of a flow.
    New,
    /// The responder answered.
    Established,
    /// FIN seen.
    Close,
    /// RST seen.
    Abort,
    /// Idle timeout, or evicted from a full table.
    Expired,
}

/// A sensor record about one flow (`flow.*`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Flow {
    /// The PokieStream state; absent for ICMP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<FlowState>,
    /// IP protocol number of the packet (6, 17, 1, 58, ...).
    pub protocol_num: u8,
    /// Payload filter matches, by filter name (`dns`, `sni`, `http_host`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub payload: BTreeMap<String, String>,
    /// Packets from the initiator (summary records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_packets: Option<u64>,
    /// Bytes from the initiator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_bytes: Option<u64>,
    /// Packets from the responder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp_packets: Option<u64>,
    /// Bytes from the responder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp_bytes: Option<u64>,
    /// Flow duration in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// Zeek-style history string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
    /// Community ID v1 (`1:...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community_id: Option<String>,
    /// ICMP type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// ICMP code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    /// Why a flow ended early (`evicted` when the table was full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// TLS details of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tls {
    /// Server name indication from the ClientHello.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Negotiated or offered version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// ALPN protocols offered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
}

/// What an external honeypot or a HoneyBee node said about a pot.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PotInfo {
    /// Pot type (`cowrie`, `honeypot`, `sensor`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pot_type: Option<String>,
    /// The pot's own event name (Cowrie `eventid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// A status (`Running`, `Stopped`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The original record as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_keeps_prefix_and_hashes_all() {
        let p = Payload::new(b"hello world", 5);
        assert_eq!(&p.data[..], b"hello");
        assert_eq!(p.len, 11);
        assert!(p.truncated());
        assert_eq!(
            p.sha256_hex(),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"len":11,"sha256":"b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9","b64":"aGVsbG8=","truncated":true}"#
        );
        assert_eq!(serde_json::from_str::<Payload>(&json).unwrap(), p);
    }

    #[test]
    fn payload_rejects_bad_hash_and_base64() {
        assert!(serde_json::from_str::<Payload>(r#"{"len":1,"sha256":"zz","b64":""}"#).is_err());
        let bad64 = format!(r#"{{"len":1,"sha256":"{}","b64":"!!"}}"#, "0".repeat(64));
        assert!(serde_json::from_str::<Payload>(&bad64).is_err());
    }
}
