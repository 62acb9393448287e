//! Payload extractors for the payload filters: the first DNS question name (UDP and TCP), the
//! TLS ClientHello server name and the HTTP `Host` header.
//!
//! Each works on the bytes seen so far from the initiator and answers [`Extract::NeedMore`]
//! while a longer prefix could still change the answer, so the tracker can reassemble a few
//! segments (capped) before deciding. None of them panics or indexes on packet bytes.

pub mod dns;
pub mod glob;
pub mod http;
pub mod tls;

/// What an extractor found in a prefix of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extract {
    /// A name was found (as sent; compare lower-cased, without a trailing dot).
    Name(String),
    /// The bytes are complete enough to say there is no name (or not this protocol).
    NoName,
    /// Too short to decide yet.
    NeedMore,
}

/// Which payload filter an extraction belongs to; also the key in the record's `payload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadKind {
    /// A DNS question name (`payload.dns`, PokieStream's key).
    Dns,
    /// A TLS server name (`payload.sni`).
    Sni,
    /// An HTTP Host header (`payload.host`, the key PokieStream's `plain` plugin reads).
    Host,
}

impl PayloadKind {
    /// The key written into the record's `payload` map.
    pub fn key(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Sni => "sni",
            Self::Host => "host",
        }
    }
}

/// Lower-cases `name` and strips one trailing dot, for wildcard matching.
pub(crate) fn normalize(name: &str) -> String {
    let n = name.strip_suffix('.').unwrap_or(name);
    n.to_lowercase()
}
