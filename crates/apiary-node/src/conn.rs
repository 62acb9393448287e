//! The connection to the Core: TCP, then TLS verified by a CA file, a pinned certificate or
//! both (or plain TCP for a lab Core), and line framing on top.

use std::sync::Arc;
use std::time::Duration;

use apiary_proto::wire::decode_core_message;
use apiary_proto::{CoreMessage, Frame, FrameDecoder, MAX_MESSAGE};
use bytes::BytesMut;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::NodeError;
use crate::config::{NodeConfig, split_host_port};

/// Any byte stream the session runs on.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Parses a SHA-256 pin: 64 hex digits, colons and case ignored.
pub(crate) fn parse_pin(s: &str) -> Option<[u8; 32]> {
    let hex: Vec<u8> = s.bytes().filter(|b| *b != b':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        *out.get_mut(i)? = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// SHA-256 (hex, lower case) of a certificate in a PEM file: what `pin_sha256` expects.
pub fn pin_of_pem_file(path: &std::path::Path) -> Result<String, NodeError> {
    let cert = CertificateDer::pem_file_iter(path)
        .map_err(|e| NodeError::Tls(format!("{}: {e}", path.display())))?
        .next()
        .ok_or_else(|| NodeError::Tls(format!("{}: no certificate", path.display())))?
        .map_err(|e| NodeError::Tls(format!("{}: {e}", path.display())))?;
    Ok(Sha256::digest(cert.as_ref()).iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks the pin on the end-entity certificate, then (with a CA) the chain; handshake
/// signatures are always verified with the provider's algorithms.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    chain: Option<Arc<dyn ServerCertVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        // Not secret, so no constant-time compare is needed; the pin is public knowledge.
        if got != self.pin {
            return Err(rustls::Error::General("server certificate does not match the pin".into()));
        }
        match &self.chain {
            Some(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// How to reach the Core, prepared once from the configuration.
#[derive(Clone)]
pub(crate) struct Connector {
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Connector {
    pub(crate) fn new(cfg: &NodeConfig) -> Result<Self, NodeError> {
        let (host, port) = split_host_port(&cfg.core)
            .ok_or_else(|| NodeError::Config(format!("core {:?}: expected host:port", cfg.core)))?;
        if cfg.plain {
            tracing::warn!(core = %cfg.core, "PLAIN TCP to the Core: TOTP codes and events cross unencrypted");
            return Ok(Self { host, port, tls: None });
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let chain: Option<Arc<dyn ServerCertVerifier>> = match &cfg.ca_file {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| NodeError::Tls(format!("ca_file {}: {e}", path.display())))?;
                for c in certs {
                    let c =
                        c.map_err(|e| NodeError::Tls(format!("ca_file {}: {e}", path.display())))?;
                    roots
                        .add(c)
                        .map_err(|e| NodeError::Tls(format!("ca_file {}: {e}", path.display())))?;
                }
                if roots.is_empty() {
                    return Err(NodeError::Tls(format!(
                        "ca_file {}: no certificate",
                        path.display()
                    )));
                }
                let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| NodeError::Tls(format!("ca_file {}: {e}", path.display())))?;
                Some(v)
            }
            None => None,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match (&cfg.pin_sha256, chain) {
            (Some(pin), chain) => {
                let pin = parse_pin(pin).ok_or_else(|| {
                    NodeError::Config("pin_sha256: expected 64 hex digits".into())
                })?;
                Arc::new(PinVerifier { pin, chain, provider: provider.clone() })
            }
            (None, Some(chain)) => chain,
            (None, None) => {
                return Err(NodeError::Config(
                    "set ca_file or pin_sha256 (or plain = true for a lab Core)".into(),
                ));
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| NodeError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let tls = match (&cfg.client_cert, &cfg.client_key) {
            (Some(cert), Some(key)) => {
                let bad = |what: &str, p: &std::path::Path, e: &dyn std::fmt::Display| {
                    NodeError::Tls(format!("{what} {}: {e}", p.display()))
                };
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| bad("client_cert", cert, &e))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad("client_cert", cert, &e))?;
                let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| bad("client_key", key, &e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| NodeError::Tls(format!("client certificate: {e}")))?
            }
            _ => builder.with_no_client_auth(),
        };
        let name = ServerName::try_from(cfg.server_name.clone())
            .map_err(|e| NodeError::Config(format!("server_name: {e}")))?;
        Ok(Self { host, port, tls: Some((TlsConnector::from(Arc::new(tls)), name)) })
    }

    /// The Core's address as configured.
    pub(crate) fn target(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Connects (TCP and, unless plain, TLS).
    pub(crate) async fn connect(&self) -> Result<Box<dyn Io>, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect {}: {e}", self.target()))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some((tls, name)) => {
                let s = tls
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS with {}: {e}", self.target()))?;
                Ok(Box::new(s))
            }
        }
    }
}

/// Reads Core messages from a byte stream: capped, incremental, malformed lines skipped.
pub(crate) struct Lines<R> {
    rd: R,
    buf: BytesMut,
    dec: FrameDecoder,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    pub(crate) fn new(rd: R) -> Self {
        Self { rd, buf: BytesMut::with_capacity(8 * 1024), dec: FrameDecoder::new(MAX_MESSAGE) }
    }

    /// The next message; `Ok(None)` at end of stream. Unknown or malformed messages are logged
    /// and skipped, as the protocol's error rule asks.
    pub(crate) async fn next(&mut self) -> Result<Option<CoreMessage>, String> {
        loop {
            match self.dec.decode(&mut self.buf).map_err(|e| e.to_string())? {
                Some(Frame::Value(bytes)) => match decode_core_message(&bytes) {
                    Ok(m) => return Ok(Some(m.message)),
                    Err(e) => tracing::debug!(error = %e, "skipped a message from the Core"),
                },
                Some(Frame::Garbage { len }) => {
                    tracing::debug!(len, "skipped a malformed line from the Core");
                }
                None => {
                    self.buf.reserve(8 * 1024);
                    let n = self.rd.read_buf(&mut self.buf).await.map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

/// Writes all of `bytes` within `limit`.
pub(crate) async fn write_all<W: AsyncWrite + Unpin>(
    wr: &mut W,
    bytes: &[u8],
    limit: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(limit, async {
        wr.write_all(bytes).await?;
        wr.flush().await
    })
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write: {e}")),
        Err(_) => Err(format!("write took longer than {limit:?}")),
    }
}
