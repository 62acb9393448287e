//! TLS in front of any TCP service: a self-signed certificate shaped like a distribution's
//! default (Debian's `ssl-cert-snakeoil`: RSA 2048, subject and SAN the host name and nothing
//! else, ten years), kept on disk so it survives restarts, and the client's hello recorded
//! (`tls.handshake`) before the emulator runs inside the encrypted stream.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use apiary_event::Kind;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;

use crate::session::{SessionCtx, Stream};

/// Where a generated certificate goes when the service names none: one per install, like the
/// snakeoil pair every TLS service of a Debian host shares.
const DEFAULT_DIR: &str = "apiary-data/tls";

/// The TLS keys of a service's `[service.options]`, which every emulator accepts.
#[derive(Debug, Default, serde::Deserialize)]
struct Settings {
    #[serde(default)]
    tls: bool,
    /// PEM certificate (chain); generated there when it and the key are missing.
    tls_cert: Option<PathBuf>,
    /// PEM private key.
    tls_key: Option<PathBuf>,
    /// Host name in a generated certificate; default: this machine's.
    tls_hostname: Option<String>,
}

const KEYS: &[&str] = &["tls", "tls_cert", "tls_key", "tls_hostname"];

/// The options the emulator itself sees: the table without the TLS keys.
pub(crate) fn emulator_options(options: &toml::Table) -> toml::Table {
    let mut t = options.clone();
    for k in KEYS {
        t.remove(*k);
    }
    t
}

/// The rustls config of a service whose options say `tls = true` (certificate loaded, or
/// generated first); none without TLS.
pub(crate) fn from_options(
    options: &toml::Table,
) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let mut t = toml::Table::new();
    for k in KEYS {
        if let Some(v) = options.get(*k) {
            t.insert((*k).to_owned(), v.clone());
        }
    }
    let s: Settings = t.try_into().map_err(|e| format!("tls options: {e}"))?;
    if s.tls { server_config(&s).map(Some) } else { Ok(None) }
}

fn host_name(cfg: &Settings) -> String {
    cfg.tls_hostname.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "localhost".into())
    })
}

fn server_config(cfg: &Settings) -> Result<Arc<rustls::ServerConfig>, String> {
    let dir = PathBuf::from(DEFAULT_DIR);
    let cert = cfg.tls_cert.clone().unwrap_or_else(|| dir.join("ssl-cert-snakeoil.pem"));
    let key = cfg.tls_key.clone().unwrap_or_else(|| dir.join("ssl-cert-snakeoil.key"));
    if !cert.exists() && !key.exists() {
        generate(&cert, &key, &host_name(cfg))?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| format!("tls certificate {}: {e}", cert.display()))?;
    let key_der = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| format!("tls key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| format!("tls certificate and key: {e}"))?;
    Ok(Arc::new(config))
}

fn generate(cert: &Path, key: &Path, host: &str) -> Result<(), String> {
    let err = |e: rcgen::Error| format!("generating the tls certificate: {e}");
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).map_err(err)?;
    let mut params = rcgen::CertificateParams::new(vec![host.to_owned()]).map_err(err)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, host);
    params.distinguished_name = dn;
    let now = crate::services::clock::Civil::from_secs(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    let (y, m, d) = (now.year as i32, now.month as u8, (now.day as u8).min(28));
    params.not_before = rcgen::date_time_ymd(y, m, d);
    params.not_after = rcgen::date_time_ymd(y + 10, m, d);
    let mut serial = [0u8; 20];
    rand::Rng::fill(&mut rand::rng(), &mut serial[..]);
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let c = params.self_signed(&pair).map_err(err)?;
    for (path, text, mode) in [(cert, c.pem(), 0o644), (key, pair.serialize_pem(), 0o600)] {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("tls dir {}: {e}", parent.display()))?;
        }
        write_mode(path, text.as_bytes(), mode)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

fn write_mode(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?;
    f.write_all(data)
}

/// Runs the handshake, records it, and returns the decrypted stream (none: the client did
/// not complete a handshake, which is recorded too).
pub(crate) async fn accept(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    ctx: &SessionCtx,
    wait: Duration,
) -> Option<Box<dyn Stream>> {
    let mut e = ctx.event(Kind::new("tls.handshake"));
    let lazy = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
    let start = match tokio::time::timeout(wait, lazy).await {
        Ok(Ok(s)) => s,
        Ok(Err(err)) => {
            e.message = Some(format!("no TLS client hello: {err}"));
            ctx.emit(e);
            return None;
        }
        Err(_) => {
            e.message = Some("no TLS client hello: timeout".into());
            ctx.emit(e);
            return None;
        }
    };
    let hello = start.client_hello();
    let sni = hello.server_name().map(str::to_owned);
    let alpn: Vec<String> = hello
        .alpn()
        .map(|i| i.map(|p| String::from_utf8_lossy(p).into_owned()).collect())
        .unwrap_or_default();
    let offered: Vec<String> = hello.cipher_suites().iter().map(|c| format!("{c:?}")).collect();
    if let Some(s) = &sni {
        e.fields.insert("sni".into(), s.clone().into());
    }
    e.fields.insert("alpn".into(), alpn.into());
    e.fields.insert("client_ciphers".into(), offered.into());
    match tokio::time::timeout(wait, start.into_stream(config)).await {
        Ok(Ok(tls)) => {
            let conn = tls.get_ref().1;
            let version = conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
            let cipher = conn
                .negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite()))
                .unwrap_or_default();
            e.message = Some(format!("{version} {cipher} sni={}", sni.as_deref().unwrap_or("-")));
            e.fields.insert("version".into(), version.into());
            e.fields.insert("cipher".into(), cipher.into());
            ctx.emit(e);
            Some(Box::new(tls))
        }
        Ok(Err(err)) => {
            e.message = Some(format!("handshake failed: {err}"));
            ctx.emit(e);
            None
        }
        Err(_) => {
            e.message = Some("handshake failed: timeout".into());
            ctx.emit(e);
            None
        }
    }
}
