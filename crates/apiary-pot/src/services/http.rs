//! HTTP/1.x for the web-facing emulators (Web, Elasticsearch): a capped request reader over
//! [`Conn`] (httparse for the head, Content-Length and chunked bodies), and the response writer.
//!
//! Parsing is two-phase: [`check_head`] only says whether a complete head is buffered (and how
//! long it is), [`parse_head`] then builds the owned request. Bodies are checked the same way
//! by [`check_chunked`] before [`decode_chunked`] copies them.

use apiary_event::{Http, Kind, Payload};
use bytes::{Bytes, BytesMut};

use crate::{Conn, SessionError};

/// Longest request head (request line and headers).
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// Most headers in one request.
pub(crate) const MAX_HEADERS: usize = 100;
/// Largest request body read; a longer declared body is refused with 413.
pub(crate) const MAX_BODY: usize = 1024 * 1024;
/// Body bytes copied into the `http.request` event.
pub(crate) const RECORDED_BODY: usize = 8 * 1024;

/// One parsed request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Request {
    /// Method as sent.
    pub(crate) method: String,
    /// Request target as sent.
    pub(crate) target: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor: u8,
    /// Headers in order, names as sent.
    pub(crate) headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub(crate) body: Bytes,
}

impl Request {
    /// The first header named `name`, ignoring case.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The path without the query string.
    pub(crate) fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }

    /// Whether the client asked to keep the connection open (HTTP/1.1 default).
    pub(crate) fn keep_alive(&self) -> bool {
        let conn = self.header("connection").map(str::to_ascii_lowercase);
        match conn.as_deref() {
            Some(c) if c.contains("close") => false,
            Some(c) if c.contains("keep-alive") => true,
            _ => self.minor >= 1,
        }
    }

    /// `HTTP/1.0` or `HTTP/1.1`.
    pub(crate) fn version(&self) -> &'static str {
        if self.minor == 0 { "HTTP/1.0" } else { "HTTP/1.1" }
    }

    /// The `http.request` event data of this request, answered with `status`.
    pub(crate) fn to_event(&self, status: u16) -> Http {
        Http {
            method: self.method.clone(),
            target: self.target.clone(),
            version: self.version().into(),
            host: self.header("host").map(str::to_owned),
            user_agent: self.header("user-agent").map(str::to_owned),
            headers: self.headers.clone(),
            body: (!self.body.is_empty()).then(|| Payload::new(&self.body, RECORDED_BODY)),
            status: Some(status),
        }
    }
}

/// Why a request could not be read; each maps to the status a real Apache would send.
#[non_exhaustive]
#[derive(Debug)]
pub enum ReadError {
    /// Malformed head or body framing: 400.
    Bad(&'static str),
    /// Head longer than [`MAX_HEAD`]: 400 (Apache's "exceeds server limit").
    HeadTooLong,
    /// Declared or chunked body over [`MAX_BODY`]: 413.
    BodyTooLarge,
    /// The session ended (EOF mid-request, timeout, socket error).
    Session(SessionError),
}

impl From<SessionError> for ReadError {
    fn from(e: SessionError) -> Self {
        Self::Session(e)
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bad(what) => write!(f, "bad request: {what}"),
            Self::HeadTooLong => f.write_str("request head too long"),
            Self::BodyTooLarge => f.write_str("request body too large"),
            Self::Session(e) => write!(f, "{e}"),
        }
    }
}

/// Method, target and headers of a request head.
pub type HeadParts = (String, String, Vec<(String, String)>);

/// For fuzzing: parses a head [`check_head`] accepted into its parts.
pub fn parse_head_owned(buf: &[u8]) -> Option<HeadParts> {
    parse_head(buf).ok().map(|r| (r.method, r.target, r.headers))
}

/// Phase one: `Ok(Some(len))` when `buf` starts with a complete head of `len` bytes,
/// `Ok(None)` when more bytes are needed.
pub fn check_head(buf: &[u8]) -> Result<Option<usize>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => Err(ReadError::HeadTooLong),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(ReadError::HeadTooLong),
        Err(_) => Err(ReadError::Bad("malformed request head")),
    }
}

/// Phase two: the owned request head of a buffer [`check_head`] accepted.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Request, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(ReadError::Bad("malformed request head")),
    }
    Ok(Request {
        method: req.method.unwrap_or("").to_owned(),
        target: req.path.unwrap_or("").to_owned(),
        minor: req.version.unwrap_or(1),
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
            .collect(),
        body: Bytes::new(),
    })
}

/// Phase one for a chunked body: `Ok(Some(len))` once the whole encoded body (through the
/// trailer's blank line) is in `buf`, with its decoded size within [`MAX_BODY`].
pub fn check_chunked(buf: &[u8]) -> Result<Option<usize>, ReadError> {
    let mut pos = 0usize;
    let mut total = 0usize;
    loop {
        let Some(rest) = buf.get(pos..) else { return Ok(None) };
        let Some(eol) = find_crlf(rest) else {
            return if rest.len() > 1024 {
                Err(ReadError::Bad("chunk size line"))
            } else {
                Ok(None)
            };
        };
        let line = rest.get(..eol).unwrap_or_default();
        let size_text = line.split(|b| *b == b';').next().unwrap_or_default();
        let size_text = std::str::from_utf8(size_text).map_err(|_| ReadError::Bad("chunk size"))?;
        let size = usize::from_str_radix(size_text.trim(), 16)
            .map_err(|_| ReadError::Bad("chunk size"))?;
        pos += eol + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            loop {
                let Some(rest) = buf.get(pos..) else { return Ok(None) };
                let Some(eol) = find_crlf(rest) else {
                    return if rest.len() > MAX_HEAD {
                        Err(ReadError::HeadTooLong)
                    } else {
                        Ok(None)
                    };
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some(pos));
                }
            }
        }
        total = total.saturating_add(size);
        if total > MAX_BODY {
            return Err(ReadError::BodyTooLarge);
        }
        let end = pos.saturating_add(size);
        match buf.get(end..end.saturating_add(2)) {
            None => return Ok(None),
            Some(b"\r\n") => pos = end + 2,
            Some(_) if buf.len() < end + 2 => return Ok(None),
            Some(_) => return Err(ReadError::Bad("chunk not followed by CRLF")),
        }
    }
}

/// Phase two: the decoded body of a chunked encoding [`check_chunked`] accepted.
pub fn decode_chunked(buf: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    let mut pos = 0usize;
    while let Some(rest) = buf.get(pos..) {
        let Some(eol) = find_crlf(rest) else { break };
        let line = rest.get(..eol).unwrap_or_default();
        let size_text = line.split(|b| *b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size_text)
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        pos += eol + 2;
        if size == 0 {
            break;
        }
        out.extend_from_slice(buf.get(pos..pos.saturating_add(size)).unwrap_or_default());
        pos = pos.saturating_add(size + 2);
    }
    out.freeze()
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// Reads the next request from `conn`. `Ok(None)` means the peer closed cleanly between
/// requests. Bytes after the request (pipelining) are put back into `conn`.
pub(crate) async fn read_request(conn: &mut Conn) -> Result<Option<Request>, ReadError> {
    let mut buf = BytesMut::new();
    let head_len = loop {
        // Clients send stray CRLFs between requests (RFC 9112 section 2.2).
        while buf.starts_with(b"\r\n") {
            let _ = buf.split_to(2);
        }
        if !buf.is_empty()
            && let Some(n) = check_head(&buf)?
        {
            break n;
        }
        match conn.rx().await? {
            Some(chunk) => buf.extend_from_slice(&chunk),
            None if buf.is_empty() => return Ok(None),
            None => return Err(ReadError::Bad("connection closed mid-request")),
        }
    };
    let head = buf.split_to(head_len);
    let mut req = parse_head(&head)?;
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let len = loop {
            if let Some(n) = check_chunked(&buf)? {
                break n;
            }
            match conn.rx().await? {
                Some(chunk) => buf.extend_from_slice(&chunk),
                None => return Err(ReadError::Bad("connection closed mid-body")),
            }
        };
        let encoded = buf.split_to(len);
        req.body = decode_chunked(&encoded);
    } else if let Some(cl) = req.header("content-length") {
        let len: usize = cl.trim().parse().map_err(|_| ReadError::Bad("content-length"))?;
        if len > MAX_BODY {
            return Err(ReadError::BodyTooLarge);
        }
        while buf.len() < len {
            match conn.rx().await? {
                Some(chunk) => buf.extend_from_slice(&chunk),
                None => return Err(ReadError::Bad("connection closed mid-body")),
            }
        }
        req.body = buf.split_to(len).freeze();
    }
    if !buf.is_empty() {
        conn.unread(&buf);
    }
    Ok(Some(req))
}

/// A response being built.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// Status code.
    pub(crate) status: u16,
    /// Headers after `Date` and `Server`, in order.
    pub(crate) headers: Vec<(&'static str, String)>,
    /// The body.
    pub(crate) body: Bytes,
    /// Whether to send a body (false for HEAD).
    pub(crate) send_body: bool,
}

impl Response {
    /// A response with `content_type` and `body`.
    pub(crate) fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type", content_type.to_owned())],
            body: body.into(),
            send_body: true,
        }
    }

    /// Adds a header.
    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Serialises the response as Netty (Elasticsearch 1.x) does: only `Content-Type` and
    /// `Content-Length`, whatever the connection's fate.
    pub(crate) fn encode_netty(&self, version: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        out.extend_from_slice(
            format!("{version} {} {}\r\n", self.status, reason(self.status)).as_bytes(),
        );
        for (k, v) in &self.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        if self.send_body {
            out.extend_from_slice(&self.body);
        }
        out
    }

    /// Serialises the response. `server` is the `Server` header (none when empty); `keep`
    /// says whether the connection stays open, and how Apache words it.
    pub(crate) fn encode(&self, version: &str, server: &str, keep: Option<u32>) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        let reason = reason(self.status);
        out.extend_from_slice(format!("{version} {} {reason}\r\n", self.status).as_bytes());
        out.extend_from_slice(
            format!("Date: {}\r\n", super::clock::Civil::now().http()).as_bytes(),
        );
        if !server.is_empty() {
            out.extend_from_slice(format!("Server: {server}\r\n").as_bytes());
        }
        // Apache lists Content-Type last; hold it back.
        for (k, v) in self.headers.iter().filter(|(k, _)| *k != "Content-Type") {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        match keep {
            Some(left) => out.extend_from_slice(
                format!("Keep-Alive: timeout=5, max={left}\r\nConnection: Keep-Alive\r\n")
                    .as_bytes(),
            ),
            None => out.extend_from_slice(b"Connection: close\r\n"),
        }
        for (k, v) in self.headers.iter().filter(|(k, _)| *k == "Content-Type") {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if self.send_body {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The reason phrase Apache uses.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "Unknown",
    }
}

/// Escapes text for HTML, as Apache does for URLs in its error pages.
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Decodes `%XX` escapes and `+` (form encoding), lossily as UTF-8.
pub(crate) fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The fields of an `application/x-www-form-urlencoded` body or query, decoded.
pub(crate) fn form_fields(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .take(256)
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

/// Emits the `http.request` event of `req` answered with `status`.
pub(crate) fn record(conn: &Conn, req: &Request, status: u16) {
    let mut e = conn.event(Kind::HTTP_REQUEST);
    e.http = Some(Box::new(req.to_event(status)));
    conn.emit(e);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_is_checked_then_parsed() {
        assert!(matches!(check_head(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None)));
        let full = b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: curl\r\n\r\nrest";
        let n = check_head(full).unwrap().unwrap();
        assert_eq!(&full[n..], b"rest");
        let r = parse_head(&full[..n]).unwrap();
        assert_eq!((r.method.as_str(), r.path()), ("GET", "/x"));
        assert_eq!(r.header("HOST"), Some("a"));
        assert!(r.keep_alive());
        assert!(matches!(check_head(b"\x00\x01garbage\r\n\r\n"), Err(ReadError::Bad(_))));
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(check_head(long.as_bytes()), Err(ReadError::HeadTooLong)));
    }

    #[test]
    fn chunked_bodies() {
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let n = check_chunked(body).unwrap().unwrap();
        assert_eq!(&body[n..], b"NEXT");
        assert_eq!(&decode_chunked(&body[..n])[..], b"Wikipedia");
        assert!(matches!(check_chunked(b"4\r\nWik"), Ok(None)));
        assert!(matches!(check_chunked(b"zz\r\n"), Err(ReadError::Bad(_))));
        assert!(matches!(check_chunked(b"fffffffff\r\n"), Err(ReadError::BodyTooLarge)));
        assert!(matches!(check_chunked(b"1\r\nab\r\n"), Err(ReadError::Bad(_))));
    }

    #[test]
    fn forms_and_escapes() {
        assert_eq!(
            form_fields("log=admin&pwd=p%40ss+word&x"),
            [
                ("log".into(), "admin".into()),
                ("pwd".into(), "p@ss word".into()),
                ("x".into(), String::new())
            ]
        );
        assert_eq!(url_decode("%zz%4"), "%zz%4");
        assert_eq!(html_escape("<a href=\"x\">"), "&lt;a href=&quot;x&quot;&gt;");
    }
}
