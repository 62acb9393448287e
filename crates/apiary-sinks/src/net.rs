//! Connections shared by the stream sinks (syslog, Logstash, hpfeeds, Redis, SMTP): TCP with a
//! connect timeout, optionally wrapped in TLS (rustls with aws-lc-rs, never the process-wide
//! provider, so no other crate's choice can make it panic).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::SinkError;

/// A byte stream, plain or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

/// Debian's bundle of system roots, used when a sink names no `ca_file`.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A TLS client configuration trusting `ca_file` (PEM), or the system roots.
pub(crate) fn tls_connector(ca_file: Option<&Path>) -> Result<TlsConnector, SinkError> {
    let path = ca_file.unwrap_or(Path::new(SYSTEM_ROOTS));
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| SinkError::Config(format!("cannot read CA file {}: {e}", path.display())))?
        .filter_map(Result::ok)
        .collect();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(SinkError::Config(format!("no certificates in {}", path.display())));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SinkError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Connects to `host:port` within `timeout`, with TLS when `tls` is given.
pub(crate) async fn connect(
    host: &str,
    port: u16,
    tls: Option<&TlsConnector>,
    timeout: Duration,
) -> Result<Box<dyn Io>, SinkError> {
    let fut = async {
        let tcp = TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        match tls {
            None => Ok::<Box<dyn Io>, SinkError>(Box::new(tcp)),
            Some(c) => handshake(c, host, Box::new(tcp)).await,
        }
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| SinkError::Timeout(timeout))?
}

/// Runs the TLS client handshake on an open stream, checking the certificate against `host`
/// (implicit TLS at connect, and STARTTLS after the upgrade command).
pub(crate) async fn handshake(
    tls: &TlsConnector,
    host: &str,
    stream: Box<dyn Io>,
) -> Result<Box<dyn Io>, SinkError> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| SinkError::Config(format!("bad TLS server name {host}: {e}")))?;
    Ok(Box::new(tls.connect(name, stream).await?))
}

/// Whether a connection the peer never writes to is still open: a pending read means yes; EOF,
/// an error or unexpected bytes mean the peer closed or is confused, so reconnect rather than
/// write into a socket whose data would be lost. Catches the common case (the peer closed
/// while idle); a cut during the write itself is covered by the pipeline's retry only where
/// the protocol acknowledges.
pub(crate) async fn still_open(conn: &mut Box<dyn Io>) -> bool {
    let mut byte = [0u8; 64];
    std::future::poll_fn(|cx| {
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        match std::pin::Pin::new(&mut **conn).poll_read(cx, &mut buf) {
            std::task::Poll::Pending => std::task::Poll::Ready(true),
            std::task::Poll::Ready(_) => std::task::Poll::Ready(false),
        }
    })
    .await
}
