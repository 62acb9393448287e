//! SIP over UDP (HoneyPy's SIP plugin, fixed): an Asterisk-like registrar and proxy. OPTIONS
//! gets 200, REGISTER and INVITE get a digest challenge and their answers are captured as
//! `auth.attempt`; every response copies Via, From, To, Call-ID and CSeq as RFC 3261 requires,
//! and there is no stray 489 after each answer.
//!
//! Two-phase: [`check_message`] finds the start line and the end of the headers without
//! allocating, [`parse_message`] builds the owned [`SipRequest`].

use std::collections::BTreeMap;
use std::sync::Arc;

use apiary_event::{Auth, AuthMethod, Kind, Transport};
use bytes::Bytes;
use serde::Deserialize;

use super::{Handler, ServiceInfo, UdpService, options};
use crate::{SessionCtx, UdpPeer};

pub(crate) const INFO: ServiceInfo = ServiceInfo {
    name: "sip",
    aliases: &["SIP"],
    protocol: "sip",
    description: "SIP registrar/PBX over UDP: OPTIONS, REGISTER and INVITE with digest capture",
    transports: &[Transport::Udp],
    build,
};

/// Headers kept per request.
const MAX_HEADERS: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// The `Server`/`User-Agent` of the PBX.
    #[serde(default = "default_server")]
    server: String,
    /// The digest realm.
    #[serde(default = "default_realm")]
    realm: String,
}

fn default_server() -> String {
    "Asterisk PBX 13.1.0~dfsg-1.1ubuntu4.1".into()
}

fn default_realm() -> String {
    "asterisk".into()
}

/// A SIP request, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SipRequest {
    /// Method (`REGISTER`).
    pub method: String,
    /// Request-URI.
    pub uri: String,
    /// Headers in order with compact names expanded (`v` → `Via`).
    pub headers: Vec<(String, String)>,
}

impl SipRequest {
    /// Every value of header `name`, ignoring case.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why a datagram is not a SIP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipError {
    /// Not text, or no `METHOD URI SIP/2.0` start line.
    StartLine,
    /// A response (we are not a client) or too many headers.
    NotARequest,
}

fn expand(name: &str) -> &str {
    match name {
        "v" | "V" => "Via",
        "f" | "F" => "From",
        "t" | "T" => "To",
        "i" | "I" => "Call-ID",
        "m" | "M" => "Contact",
        "l" | "L" => "Content-Length",
        "c" | "C" => "Content-Type",
        "k" | "K" => "Supported",
        _ => name,
    }
}

/// Phase one: the byte length of the start line and headers, after checking the start line.
pub fn check_message(data: &[u8]) -> Result<usize, SipError> {
    let head_end =
        data.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4).unwrap_or(data.len());
    let head = data.get(..head_end).ok_or(SipError::StartLine)?;
    let first_end = head.iter().position(|b| *b == b'\n').unwrap_or(head.len());
    let first = head.get(..first_end).ok_or(SipError::StartLine)?;
    if first.starts_with(b"SIP/2.0") {
        return Err(SipError::NotARequest);
    }
    let mut parts = first.split(|b| *b == b' ').filter(|p| !p.is_empty());
    let method = parts.next().ok_or(SipError::StartLine)?;
    let _uri = parts.next().ok_or(SipError::StartLine)?;
    let version = parts.next().ok_or(SipError::StartLine)?;
    if !method.iter().all(|b| b.is_ascii_alphabetic()) || !version.starts_with(b"SIP/2.0") {
        return Err(SipError::StartLine);
    }
    if head.iter().filter(|b| **b == b'\n').count() > MAX_HEADERS + 1 {
        return Err(SipError::NotARequest);
    }
    Ok(head_end)
}

/// Phase two: the owned request of a datagram [`check_message`] accepted.
pub fn parse_message(data: &[u8]) -> Result<SipRequest, SipError> {
    let end = check_message(data)?;
    let head = String::from_utf8_lossy(data.get(..end).unwrap_or_default());
    let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
    let first = lines.next().unwrap_or("");
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or("").to_ascii_uppercase();
    let uri = parts.next().unwrap_or("").to_owned();
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            // Folded continuation of the previous header.
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((expand(k.trim()).to_owned(), v.trim().to_owned()));
        }
    }
    Ok(SipRequest { method, uri, headers })
}

/// The `key="value"` parameters of a `Digest` credentials header, keys lower-cased.
pub fn digest_params(value: &str) -> BTreeMap<String, String> {
    let rest = value.trim();
    let rest = rest.strip_prefix("Digest").or_else(|| rest.strip_prefix("digest")).unwrap_or(rest);
    let mut out = BTreeMap::new();
    let mut s = rest.trim_start();
    while !s.is_empty() && out.len() < 32 {
        let Some((key, after)) = s.split_once('=') else { break };
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            match q.split_once('"') {
                Some((v, n)) => (v, n),
                None => (q, ""),
            }
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v.trim(), n),
                None => (after.trim(), ""),
            }
        };
        out.insert(key, val.to_owned());
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

struct Sip {
    server: String,
    realm: String,
}

fn build(_transport: Transport, table: &toml::Table) -> Result<Handler, String> {
    let o: Options = options(table)?;
    Ok(Handler::Udp(Arc::new(Sip { server: o.server, realm: o.realm })))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sip {
    /// A response to `req` copying its dialog headers (RFC 3261 section 8.2.6).
    fn response(
        &self,
        ctx: &SessionCtx,
        req: &SipRequest,
        code: u16,
        reason: &str,
        extra: &[String],
    ) -> Bytes {
        let mut out = format!("SIP/2.0 {code} {reason}\r\n");
        for (i, via) in req.all("Via").enumerate() {
            if i == 0 {
                // The top Via learns where the request really came from (RFC 3581).
                let ip = ctx.peer.ip().to_canonical();
                let mut v = via.replace(";rport;", &format!(";rport={};", ctx.peer.port()));
                if v.ends_with(";rport") {
                    v = format!("{}={}", v, ctx.peer.port());
                }
                out.push_str(&format!("Via: {v};received={ip}\r\n"));
            } else {
                out.push_str(&format!("Via: {via}\r\n"));
            }
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = req.header(name) {
                if name == "To" && code > 100 && !v.contains(";tag=") {
                    let tag = hex(&super::random_bytes(4));
                    out.push_str(&format!("To: {v};tag=as{tag}\r\n"));
                } else {
                    out.push_str(&format!("{name}: {v}\r\n"));
                }
            }
        }
        out.push_str(&format!("Server: {}\r\n", self.server));
        out.push_str(
            "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PUBLISH, MESSAGE\r\n\
             Supported: replaces, timer\r\n",
        );
        for h in extra {
            out.push_str(h);
            out.push_str("\r\n");
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        Bytes::from(out)
    }

    fn challenge(&self, ctx: &SessionCtx, req: &SipRequest) -> Bytes {
        let nonce = hex(&super::random_bytes(4));
        let header = format!(
            "WWW-Authenticate: Digest algorithm=MD5, realm=\"{}\", nonce=\"{nonce}\"",
            self.realm
        );
        self.response(ctx, req, 401, "Unauthorized", &[header])
    }

    fn capture(&self, ctx: &SessionCtx, req: &SipRequest, header: &str) {
        let params = digest_params(header);
        let mut extra = BTreeMap::new();
        for key in ["realm", "nonce", "uri", "response", "algorithm", "cnonce", "qop", "nc"] {
            if let Some(v) = params.get(key) {
                extra.insert(key.to_owned(), v.clone());
            }
        }
        extra.insert("sip_method".into(), req.method.clone());
        let mut e = ctx.event(Kind::AUTH_ATTEMPT);
        e.auth = Some(Box::new(Auth {
            method: AuthMethod::Digest,
            username: params.get("username").cloned(),
            password: None,
            success: false,
            extra,
        }));
        ctx.emit(e);
    }

    /// The responses to one request, in order.
    fn respond(&self, ctx: &SessionCtx, req: &SipRequest) -> Vec<Bytes> {
        let auth = req.header("Authorization").or_else(|| req.header("Proxy-Authorization"));
        match req.method.as_str() {
            "OPTIONS" => {
                let contact = format!(
                    "Contact: <sip:{}:{}>",
                    ctx.local.ip().to_canonical(),
                    ctx.local.port()
                );
                vec![self.response(
                    ctx,
                    req,
                    200,
                    "OK",
                    &[contact, "Accept: application/sdp".into()],
                )]
            }
            "REGISTER" | "INVITE" => match auth {
                None => {
                    let mut out = Vec::new();
                    if req.method == "INVITE" {
                        out.push(self.response(ctx, req, 100, "Trying", &[]));
                    }
                    out.push(self.challenge(ctx, req));
                    out
                }
                Some(a) => {
                    self.capture(ctx, req, a);
                    vec![self.response(ctx, req, 403, "Forbidden", &[])]
                }
            },
            "BYE" | "CANCEL" => vec![self.response(ctx, req, 200, "OK", &[])],
            "ACK" => Vec::new(),
            "SUBSCRIBE" => vec![self.response(ctx, req, 489, "Bad Event", &[])],
            _ => vec![self.response(ctx, req, 501, "Not Implemented", &[])],
        }
    }
}

#[async_trait::async_trait]
impl UdpService for Sip {
    async fn datagram(&self, peer: &mut UdpPeer, data: &[u8]) -> Vec<Bytes> {
        // Keep-alive pings (CRLF) are answered by nothing.
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return Vec::new();
        }
        match parse_message(data) {
            Ok(req) => {
                let mut e = peer.ctx.event(Kind::new("sip.request"));
                e.fields.insert("method".into(), req.method.clone().into());
                e.fields.insert("uri".into(), req.uri.clone().into());
                for (field, header) in [
                    ("from", "From"),
                    ("to", "To"),
                    ("user_agent", "User-Agent"),
                    ("call_id", "Call-ID"),
                ] {
                    if let Some(v) = req.header(header) {
                        e.fields.insert(field.into(), v.to_owned().into());
                    }
                }
                peer.ctx.emit(e);
                self.respond(&peer.ctx, &req)
            }
            Err(err) => {
                let mut e = peer.ctx.event(Kind::PROTOCOL_ERROR);
                e.message = Some(format!("sip: {err:?}"));
                peer.ctx.emit(e);
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compact_headers_and_rejects_responses() {
        let msg = b"OPTIONS sip:100@10.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bK1\r\nf: <sip:a@b>;tag=1\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let r = parse_message(msg).unwrap();
        assert_eq!(r.method, "OPTIONS");
        assert_eq!(r.header("via"), Some("SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bK1"));
        assert_eq!(parse_message(b"SIP/2.0 200 OK\r\n\r\n"), Err(SipError::NotARequest));
        assert_eq!(parse_message(b"\x00\x01\x02"), Err(SipError::StartLine));
        assert_eq!(parse_message(b"GET / HTTP/1.1\r\n\r\n"), Err(SipError::StartLine));
    }

    #[test]
    fn digest_parameters() {
        let p = digest_params(
            "Digest username=\"1001\",realm=\"asterisk\", nonce=\"abc\", uri=\"sip:x\", response=\"0123\", algorithm=MD5",
        );
        assert_eq!(p.get("username").map(String::as_str), Some("1001"));
        assert_eq!(p.get("response").map(String::as_str), Some("0123"));
        assert_eq!(p.get("algorithm").map(String::as_str), Some("MD5"));
        assert!(digest_params("Digest username=\"unterminated").contains_key("username"));
    }
}
