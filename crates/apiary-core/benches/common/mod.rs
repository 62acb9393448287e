//! Shared pieces of the Core benchmarks: a raw node client over TLS or TCP.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connects to the Core, over TLS when `ca` is given.
pub(crate) async fn connect(
    addr: std::net::SocketAddr,
    ca: Option<&Path>,
) -> std::io::Result<Box<dyn Io>> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let Some(ca) = ca else { return Ok(Box::new(tcp)) };
    apiary_core::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(std::io::Error::other)? {
        roots.add(cert.map_err(std::io::Error::other)?).map_err(std::io::Error::other)?;
    }
    let cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let name = ServerName::try_from("honeybee-manager").map_err(std::io::Error::other)?;
    Ok(Box::new(connector.connect(name, tcp).await?))
}

/// Reads until one full line (the ack) has arrived.
pub(crate) async fn read_line(io: &mut Box<dyn Io>) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if io.read(&mut b).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if b[0] == b'\n' {
            return Ok(out);
        }
        out.push(b[0]);
    }
}

pub(crate) fn registration(name: &str, id: u64, code: &str) -> String {
    format!(
        "{{\"version\":2,\"message\":{{\"NodeRegistration\":{{\"node_id\":{id},\"node_name\":\"{name}\",\"address\":\"0.0.0.0\",\"port\":8080,\"node_type\":\"Full\",\"totp_code\":\"{code}\"}}}}}}\n"
    )
}

pub(crate) const HEARTBEAT: &str =
    "{\"version\":2,\"message\":{\"NodeStatusUpdate\":{\"node_id\":1,\"status\":\"Running\"}}}\n";
