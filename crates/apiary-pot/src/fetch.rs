//! The opt-in download fetcher: URLs the fake shell's `wget`/`curl` were pointed at are fetched
//! in the background (http and https only, few at a time, strict timeouts, a size cap per file
//! and for the whole store) and kept as `<dir>/<sha256>`, so one payload is stored once however
//! many bots fetch it.
//!
//! Events: `download.fetched` (url, sha256, size, stored path, HTTP status) or
//! `download.failed` (url and a reason), on the session of the attempt. Off unless the SSH or
//! Telnet service sets `fetch = true`.
//!
//! SSRF: the addresses a name resolves to are checked (not the name), through reqwest's
//! resolver hook, and IP literals (which skip the resolver) are checked before the request and
//! on every redirect; loopback, private, link-local, multicast and similar ranges are refused
//! unless `fetch_private = true`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use apiary_event::{Download, Kind};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::SessionCtx;

/// Fetches running at once per service.
const CONCURRENT: usize = 4;
/// Fetches waiting for a slot; beyond this new URLs are recorded as `busy`, not queued.
const QUEUED: usize = 64;
/// Redirects followed.
const MAX_REDIRECTS: usize = 3;
/// Longest URL fetched.
const MAX_URL: usize = 2048;
/// Name prefix of partial downloads in the store.
const PART: &str = ".part-";

/// `download.fetched`: a URL was fetched and its body stored.
pub(crate) const FETCHED: Kind = Kind::from_static("download.fetched");
/// `download.failed`: a URL was not fetched or not stored, with the reason.
pub(crate) const FAILED: Kind = Kind::from_static("download.failed");

/// The fetcher's options: the `fetch*` keys of the SSH and Telnet services' options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FetchOptions {
    /// Fetch the URLs download tools were pointed at (off: they are only recorded).
    #[serde(default)]
    fetch: bool,
    /// Where fetched files are stored as `<sha256>`.
    #[serde(default = "default_dir")]
    fetch_dir: PathBuf,
    /// Largest file kept; a longer body is cut off and not stored.
    #[serde(default = "default_max_bytes")]
    fetch_max_bytes: u64,
    /// Bytes the store may hold; once full, new files are not stored.
    #[serde(default = "default_store_bytes")]
    fetch_store_bytes: u64,
    /// Whole fetch, connect to last byte.
    #[serde(default = "default_timeout", with = "apiary_event::duration")]
    fetch_timeout: Duration,
    /// TCP (and TLS) connect.
    #[serde(default = "default_connect_timeout", with = "apiary_event::duration")]
    fetch_connect_timeout: Duration,
    /// Allow loopback, private, link-local and similar addresses (SSRF risk: tests only).
    #[serde(default)]
    fetch_private: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            fetch: false,
            fetch_dir: default_dir(),
            fetch_max_bytes: default_max_bytes(),
            fetch_store_bytes: default_store_bytes(),
            fetch_timeout: default_timeout(),
            fetch_connect_timeout: default_connect_timeout(),
            fetch_private: false,
        }
    }
}

fn default_dir() -> PathBuf {
    PathBuf::from("apiary-data/downloads")
}
fn default_max_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_store_bytes() -> u64 {
    1024 * 1024 * 1024
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Splits the `fetch*` keys off a service's options (serde cannot flatten into a struct that
/// denies unknown keys) and builds the fetcher they ask for; returns the other options.
pub(crate) fn split(table: &toml::Table) -> Result<(toml::Table, Option<Arc<Fetcher>>), String> {
    let (mine, rest): (toml::Table, toml::Table) =
        table.clone().into_iter().partition(|(k, _)| k.starts_with("fetch"));
    let o: FetchOptions = crate::services::options(&mine)?;
    Ok((rest, Fetcher::from_options(&o)?))
}

/// Hands the download attempts among `events` to the fetcher, if there is one.
pub(crate) fn shell_events(
    fetcher: Option<&Arc<Fetcher>>,
    events: &[crate::shell::ShellEvent],
    ctx: &SessionCtx,
) {
    let Some(f) = fetcher else { return };
    for ev in events {
        if let crate::shell::ShellEvent::Download { url, tool } = ev {
            f.spawn(url, tool, ctx);
        }
    }
}

/// Whether `ip` is somewhere a honeypot must not be made to connect to: loopback, private
/// (RFC 1918, ULA), link-local, multicast, unspecified, broadcast, shared (CGNAT),
/// documentation, benchmarking and reserved ranges, and IPv4 inside IPv6 forms of those.
pub(crate) fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return private_v4(v4);
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 site-local.
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                // 2001:db8::/32 documentation, 64:ff9b::/96 NAT64 (may reach IPv4 anywhere).
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0064 && s[1] == 0xff9b)
                // ::/96 IPv4-compatible (deprecated) and 2002::/16 6to4 carry IPv4 inside.
                || (s[..6] == [0; 6])
                || (s[0] == 0x2002 && private_v4(Ipv4Addr::new(
                    (s[1] >> 8) as u8,
                    s[1] as u8,
                    (s[2] >> 8) as u8,
                    s[2] as u8,
                )))
        }
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || ip.is_documentation()
        || o[0] == 0
        // 100.64.0.0/10 shared address space (CGNAT).
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        // 192.0.0.0/24 protocol assignments, 198.18.0.0/15 benchmarking, 240/4 reserved.
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        || o[0] >= 240
}

/// The resolver reqwest uses: system resolution, private addresses dropped (and, if nothing
/// is left, an error the fetcher reports as `private_address`).
struct Guarded {
    allow_private: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{0} resolves only to refused (private) addresses")]
struct Refused(String);

impl reqwest::dns::Resolve for Guarded {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let allow = self.allow_private;
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ok: Vec<SocketAddr> =
                all.into_iter().filter(|a| allow || !is_private(a.ip())).collect();
            if ok.is_empty() {
                return Err(Box::new(Refused(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Why a URL was not stored (`fields.reason` of `download.failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Scheme,
    BadUrl,
    PrivateAddress,
    Timeout,
    TooLarge,
    StoreFull,
    HttpStatus,
    Busy,
    Error,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Scheme => "scheme",
            Self::BadUrl => "bad_url",
            Self::PrivateAddress => "private_address",
            Self::Timeout => "timeout",
            Self::TooLarge => "too_large",
            Self::StoreFull => "store_full",
            Self::HttpStatus => "http_status",
            Self::Busy => "busy",
            Self::Error => "error",
        }
    }
}

struct Failure {
    reason: Reason,
    detail: String,
    status: Option<u16>,
    bytes: u64,
}

impl Failure {
    fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into(), status: None, bytes: 0 }
    }
}

struct Stored {
    sha256: String,
    size: u64,
    path: PathBuf,
    status: u16,
    duplicate: bool,
}

/// A service's fetcher: one HTTP client, the store and its accounting.
pub(crate) struct Fetcher {
    client: reqwest::Client,
    dir: PathBuf,
    max_bytes: u64,
    store_bytes: u64,
    timeout: Duration,
    allow_private: bool,
    /// Bytes in the store (counted at start, then added to).
    used: AtomicU64,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Held from "is it stored already" to the rename, so two fetches of one payload store it
    /// (and count it) once.
    store: tokio::sync::Mutex<()>,
}

impl Fetcher {
    /// The fetcher the options ask for; `None` when fetching is off. Creates the store and
    /// counts what it already holds.
    pub(crate) fn from_options(o: &FetchOptions) -> Result<Option<Arc<Self>>, String> {
        if !o.fetch {
            return Ok(None);
        }
        if o.fetch_max_bytes == 0 || o.fetch_timeout.is_zero() || o.fetch_connect_timeout.is_zero()
        {
            return Err(
                "fetch_max_bytes, fetch_timeout and fetch_connect_timeout must be > 0".into()
            );
        }
        std::fs::create_dir_all(&o.fetch_dir)
            .map_err(|e| format!("fetch_dir {}: {e}", o.fetch_dir.display()))?;
        let mut used = 0;
        let entries = std::fs::read_dir(&o.fetch_dir)
            .map_err(|e| format!("fetch_dir {}: {e}", o.fetch_dir.display()))?;
        for entry in entries.filter_map(Result::ok) {
            if entry.file_name().to_string_lossy().starts_with(PART) {
                // Left by a process that stopped mid-download.
                let _ = std::fs::remove_file(entry.path());
            } else if let Some(m) = entry.metadata().ok().filter(std::fs::Metadata::is_file) {
                used += m.len();
            }
        }
        let allow_private = o.fetch_private;
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error("too many redirects");
            }
            let url = attempt.url().clone();
            if !matches!(url.scheme(), "http" | "https") {
                return attempt.error("redirect to another scheme");
            }
            if !allow_private && literal_private(&url) {
                return attempt.error(Refused(url.host_str().unwrap_or_default().to_owned()));
            }
            attempt.follow()
        });
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(Guarded { allow_private }))
            .redirect(redirect)
            .no_proxy()
            .connect_timeout(o.fetch_connect_timeout)
            .timeout(o.fetch_timeout)
            .pool_max_idle_per_host(0)
            .http1_only()
            // Payload hosts often have self-signed certificates; nothing secret is sent and the
            // body is hostile whatever the certificate says, so verification would only lose
            // samples.
            .tls_danger_accept_invalid_certs(true)
            // What a bot's wget sends; a server that serves bots by user agent serves us too.
            .user_agent("Wget/1.21.3")
            .build()
            .map_err(|e| format!("fetch: {e}"))?;
        Ok(Some(Arc::new(Self {
            client,
            dir: o.fetch_dir.clone(),
            max_bytes: o.fetch_max_bytes,
            store_bytes: o.fetch_store_bytes,
            timeout: o.fetch_timeout,
            allow_private,
            used: AtomicU64::new(used),
            slots: Arc::new(Semaphore::new(CONCURRENT)),
            waiting: AtomicUsize::new(0),
            store: tokio::sync::Mutex::new(()),
        })))
    }

    /// Fetches `url` in the background and emits the outcome on `ctx`'s session; returns at
    /// once (the attacker's session never waits for it).
    pub(crate) fn spawn(self: &Arc<Self>, url: &str, tool: &'static str, ctx: &SessionCtx) {
        let ctx = ctx.clone();
        // What can be refused without the network is, at once, without taking a slot.
        let parsed = match self.precheck(url) {
            Ok(p) => p,
            Err(f) => return ctx.emit(failed_event(&ctx, url, tool, &f)),
        };
        let url = url.to_owned();
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= QUEUED {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            let f = Failure::new(Reason::Busy, "too many fetches pending");
            ctx.emit(failed_event(&ctx, &url, tool, &f));
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let permit = Arc::clone(&me.slots).acquire_owned().await;
            me.waiting.fetch_sub(1, Ordering::AcqRel);
            let Ok(_permit) = permit else { return };
            // The client's own timeout covers the request; this one also bounds the disk work.
            let outcome =
                tokio::time::timeout(me.timeout + Duration::from_secs(1), me.fetch(parsed))
                    .await
                    .unwrap_or_else(|_| Err(Failure::new(Reason::Timeout, "fetch timed out")));
            let e = match outcome {
                Ok(s) => fetched_event(&ctx, &url, tool, &s),
                Err(f) => failed_event(&ctx, &url, tool, &f),
            };
            ctx.emit(e);
        });
    }

    /// The checks that need no network: length, scheme, IP literals.
    fn precheck(&self, url: &str) -> Result<reqwest::Url, Failure> {
        if url.len() > MAX_URL {
            return Err(Failure::new(Reason::BadUrl, "URL too long"));
        }
        let parsed =
            reqwest::Url::parse(url).map_err(|e| Failure::new(Reason::BadUrl, e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Failure::new(
                Reason::Scheme,
                format!("{} is not fetched (http and https only)", parsed.scheme()),
            ));
        }
        if !self.allow_private && literal_private(&parsed) {
            return Err(Failure::new(
                Reason::PrivateAddress,
                format!("{} is a refused (private) address", parsed.host_str().unwrap_or_default()),
            ));
        }
        Ok(parsed)
    }

    async fn fetch(&self, parsed: reqwest::Url) -> Result<Stored, Failure> {
        if self.used.load(Ordering::Acquire) >= self.store_bytes {
            return Err(Failure::new(Reason::StoreFull, "the download store is full"));
        }
        let mut resp = self.client.get(parsed).send().await.map_err(from_reqwest)?;
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            let mut f = Failure::new(Reason::HttpStatus, format!("HTTP {status}"));
            f.status = Some(status);
            return Err(f);
        }
        if resp.content_length().is_some_and(|n| n > self.max_bytes) {
            let mut f = Failure::new(
                Reason::TooLarge,
                format!("Content-Length over the {} byte cap", self.max_bytes),
            );
            f.status = Some(status);
            return Err(f);
        }
        let tmp = TempFile(self.dir.join(format!("{PART}{}", uuid::Uuid::now_v7())));
        // On failure, or when the timeout drops this future mid-stream, `tmp` removes the file.
        self.stream(&mut resp, &tmp.0, status).await
    }

    /// Streams the body into `tmp`, hashing as it goes, then moves it to `<dir>/<sha256>`.
    async fn stream(
        &self,
        resp: &mut reqwest::Response,
        tmp: &Path,
        status: u16,
    ) -> Result<Stored, Failure> {
        let io = |e: std::io::Error| Failure::new(Reason::Error, format!("store: {e}"));
        let mut file = tokio::fs::File::create(tmp).await.map_err(io)?;
        let mut hash = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(from_reqwest)? {
            size += chunk.len() as u64;
            if size > self.max_bytes {
                let mut f = Failure::new(
                    Reason::TooLarge,
                    format!("body cut off after the {} byte cap", self.max_bytes),
                );
                f.status = Some(status);
                f.bytes = size;
                return Err(f);
            }
            hash.update(&chunk);
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        drop(file);
        let sha256: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let path = self.dir.join(&sha256);
        let _store = self.store.lock().await;
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            let _ = tokio::fs::remove_file(tmp).await;
            return Ok(Stored { sha256, size, path, status, duplicate: true });
        }
        // Reserve the space before the rename so concurrent fetches cannot overshoot the cap.
        let reserved = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
            (u.saturating_add(size) <= self.store_bytes).then_some(u + size)
        });
        if reserved.is_err() {
            let mut f = Failure::new(Reason::StoreFull, "the download store is full");
            f.status = Some(status);
            f.bytes = size;
            return Err(f);
        }
        if let Err(e) = tokio::fs::rename(tmp, &path).await {
            self.used.fetch_sub(size, Ordering::AcqRel);
            return Err(io(e));
        }
        Ok(Stored { sha256, size, path, status, duplicate: false })
    }
}

/// A partial download, removed when dropped (a no-op once it was renamed into the store).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether the URL's host is an IP literal in a refused range (literals skip the resolver).
fn literal_private(url: &reqwest::Url) -> bool {
    // The URL parser has already normalised IPv4 forms (decimal, hex, short) to dotted quads.
    match url.host_str() {
        Some(h) => h.trim_start_matches('[').trim_end_matches(']').parse().is_ok_and(is_private),
        None => true,
    }
}

fn from_reqwest(e: reqwest::Error) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refused>() {
            return Failure::new(Reason::PrivateAddress, r.to_string());
        }
        source = s.source();
    }
    let reason = if e.is_timeout() { Reason::Timeout } else { Reason::Error };
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    let mut f = Failure::new(reason, crate::shell::text::truncate(&detail, 512));
    f.status = e.status().map(|s| s.as_u16());
    f
}

fn fetched_event(ctx: &SessionCtx, url: &str, tool: &str, s: &Stored) -> apiary_event::Event {
    let mut e = ctx.event(FETCHED);
    e.download = Some(Box::new(Download {
        url: url.to_owned(),
        sha256: Some(s.sha256.clone()),
        size: Some(s.size),
    }));
    e.message = Some(tool.to_owned());
    e.fields.insert("path".into(), s.path.display().to_string().into());
    e.fields.insert("status".into(), s.status.into());
    e.fields.insert("duplicate".into(), s.duplicate.into());
    e
}

fn failed_event(ctx: &SessionCtx, url: &str, tool: &str, f: &Failure) -> apiary_event::Event {
    let mut e = ctx.event(FAILED);
    e.download = Some(Box::new(Download { url: url.to_owned(), sha256: None, size: None }));
    e.message = Some(format!("{tool}: {}", f.detail));
    e.fields.insert("reason".into(), f.reason.as_str().into());
    if let Some(s) = f.status {
        e.fields.insert("status".into(), s.into());
    }
    if f.bytes > 0 {
        e.fields.insert("bytes".into(), f.bytes.into());
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_ranges_are_refused() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "192.0.0.8",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:0101::1",
            "2001:db8::1",
        ] {
            assert!(is_private(ip(a)), "{a} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "2002:0808:0808::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_private(ip(a)), "{a} should be allowed");
        }
    }

    #[test]
    fn literal_hosts_are_checked() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(literal_private(&u("http://127.0.0.1:8080/x")));
        assert!(literal_private(&u("http://[::1]/x")));
        // The URL parser normalises decimal and hex forms, so these are caught too.
        assert!(literal_private(&u("http://2130706433/x")));
        assert!(literal_private(&u("http://0x7f.1/x")));
        assert!(!literal_private(&u("http://203.0.114.5/x")));
        assert!(!literal_private(&u("http://example.com/x")));
    }

    #[test]
    fn refused_without_the_network() {
        let dir = tempfile::tempdir().unwrap();
        let mut o =
            FetchOptions { fetch: true, fetch_dir: dir.path().into(), ..Default::default() };
        let f = Fetcher::from_options(&o).unwrap().unwrap();
        let reason = |u: &str| f.precheck(u).err().map(|e| e.reason);
        assert_eq!(reason("tftp://203.0.114.5/bins.sh"), Some(Reason::Scheme));
        assert_eq!(reason("ftp://203.0.114.5/a"), Some(Reason::Scheme));
        assert_eq!(reason("http://127.0.0.1:8080/x.sh"), Some(Reason::PrivateAddress));
        assert_eq!(reason("http://[fe80::1]/x.sh"), Some(Reason::PrivateAddress));
        assert_eq!(reason("http://"), Some(Reason::BadUrl));
        let long = format!("http://example.com/{}", "a".repeat(MAX_URL));
        assert_eq!(reason(&long), Some(Reason::BadUrl));
        assert_eq!(reason("https://example.com/x.sh"), None);
        o.fetch_private = true;
        let f = Fetcher::from_options(&o).unwrap().unwrap();
        assert!(f.precheck("http://127.0.0.1:8080/x.sh").is_ok());
    }

    #[test]
    fn off_by_default_and_caps_checked() {
        assert!(Fetcher::from_options(&FetchOptions::default()).unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let mut o =
            FetchOptions { fetch: true, fetch_dir: dir.path().join("d"), ..Default::default() };
        o.fetch_max_bytes = 0;
        assert!(Fetcher::from_options(&o).is_err());
        o.fetch_max_bytes = 10;
        std::fs::create_dir_all(&o.fetch_dir).unwrap();
        std::fs::write(o.fetch_dir.join("old"), b"12345").unwrap();
        std::fs::write(o.fetch_dir.join(".part-x"), b"cut off by a crash").unwrap();
        let f = Fetcher::from_options(&o).unwrap().unwrap();
        assert_eq!(f.used.load(Ordering::Acquire), 5, "existing files count against the cap");
        assert!(!o.fetch_dir.join(".part-x").exists(), "partial files are removed at start");
    }
}
