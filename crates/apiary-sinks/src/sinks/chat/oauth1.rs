//! OAuth 1.0a request signing (RFC 5849, HMAC-SHA1), as the X (Twitter) API requires.

use std::fmt::Write as _;

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha1::Sha1;

/// RFC 3986 percent-encoding: everything but `A-Z a-z 0-9 - . _ ~`, upper-case hex.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Consumer and token credentials.
#[derive(Debug, Clone)]
pub struct OAuth1 {
    /// Consumer (API) key.
    pub consumer_key: String,
    /// Consumer secret.
    pub consumer_secret: String,
    /// Access token.
    pub token: String,
    /// Access token secret.
    pub token_secret: String,
}

impl OAuth1 {
    /// The signature of a request: `method`, `url` without query, and every parameter
    /// (query, form body and `oauth_*` except the signature).
    pub fn signature(&self, method: &str, url: &str, params: &[(&str, &str)]) -> String {
        let mut enc: Vec<(String, String)> =
            params.iter().map(|(k, v)| (percent_encode(k), percent_encode(v))).collect();
        enc.sort();
        let joined: Vec<String> = enc.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let base = format!(
            "{}&{}&{}",
            method.to_ascii_uppercase(),
            percent_encode(url),
            percent_encode(&joined.join("&"))
        );
        let key = format!(
            "{}&{}",
            percent_encode(&self.consumer_secret),
            percent_encode(&self.token_secret)
        );
        // HMAC accepts keys of any length.
        let mut mac = match Hmac::<Sha1>::new_from_slice(key.as_bytes()) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(base.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    /// The `Authorization: OAuth ...` header for a request whose body is not form-encoded
    /// (the X API v2 takes JSON, which is not signed).
    pub fn header(&self, method: &str, url: &str, nonce: &str, timestamp: u64) -> String {
        let ts = timestamp.to_string();
        let oauth = [
            ("oauth_consumer_key", self.consumer_key.as_str()),
            ("oauth_nonce", nonce),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", ts.as_str()),
            ("oauth_token", self.token.as_str()),
            ("oauth_version", "1.0"),
        ];
        let sig = self.signature(method, url, &oauth);
        let mut parts: Vec<String> =
            oauth.iter().map(|(k, v)| format!("{k}=\"{}\"", percent_encode(v))).collect();
        parts.push(format!("oauth_signature=\"{}\"", percent_encode(&sig)));
        parts.sort();
        format!("OAuth {}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of Twitter's "Creating a signature" documentation.
    #[test]
    fn twitter_documentation_vector() {
        let o = OAuth1 {
            consumer_key: "xvz1evFS4wEEPTGEFPHBog".into(),
            consumer_secret: "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw".into(),
            token: "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb".into(),
            token_secret: "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE".into(),
        };
        let sig = o.signature(
            "POST",
            "https://api.twitter.com/1.1/statuses/update.json",
            &[
                ("status", "Hello Ladies + Gentlemen, a signed OAuth request!"),
                ("include_entities", "true"),
                ("oauth_consumer_key", "xvz1evFS4wEEPTGEFPHBog"),
                ("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"),
                ("oauth_signature_method", "HMAC-SHA1"),
                ("oauth_timestamp", "1318622958"),
                ("oauth_token", "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb"),
                ("oauth_version", "1.0"),
            ],
        );
        assert_eq!(sig, "hCtSmYh+iHYCEqBWrE7C7hYmtUk=");
    }

    #[test]
    fn percent_encoding_is_rfc3986() {
        assert_eq!(percent_encode("Ladies + Gentlemen"), "Ladies%20%2B%20Gentlemen");
        assert_eq!(percent_encode("An encoded string!"), "An%20encoded%20string%21");
        assert_eq!(percent_encode("Dogs, Cats & Mice"), "Dogs%2C%20Cats%20%26%20Mice");
        assert_eq!(percent_encode("☃"), "%E2%98%83");
    }
}
