//! Test helpers: a Core on 127.0.0.1:0 in a temporary directory, a raw-bytes node client over
//! TLS or TCP, and the PostgreSQL switch.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use apiary_core::{Core, CoreConfig, CoreHandle, NodeTransport, Store};
use apiary_proto::wire::{decode_core_message, encode_node_message};
use apiary_proto::{
    CoreMessage, Frame, FrameDecoder, NodeMessage, NodeRegistration, NodeStatus, NodeStatusUpdate,
    NodeType, RegistrationAck, TotpSecret, UnitStyle,
};
use bytes::BytesMut;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Whether PostgreSQL is reachable; fails the test when it is required but absent.
pub(crate) async fn pg_available() -> bool {
    let ok = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect("127.0.0.1:5432"))
        .await
        .is_ok_and(|r| r.is_ok());
    if !ok {
        assert!(
            std::env::var("APIARY_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "PostgreSQL at 127.0.0.1:5432 is required (APIARY_REQUIRE_SERVICES=1) but not reachable"
        );
        eprintln!("note: PostgreSQL not reachable at 127.0.0.1:5432; skipping the PostgreSQL half");
    }
    ok
}

/// A fresh schema name per test.
pub(crate) fn fresh_schema() -> String {
    format!("apiary_t_{}", uuid::Uuid::now_v7().simple())
}

pub(crate) fn config(dir: &Path) -> CoreConfig {
    CoreConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        registration_timeout: Duration::from_secs(5),
        command_gap: Duration::from_millis(20),
        ..CoreConfig::default()
    }
}

pub(crate) async fn start(cfg: CoreConfig) -> CoreHandle {
    Core::start(cfg).await.unwrap()
}

/// Polls `f` until it returns Some, for at most 20 s.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A node speaking raw bytes.
pub(crate) struct Client {
    io: Box<dyn Io>,
    buf: BytesMut,
    dec: FrameDecoder,
}

impl Client {
    /// Connects over TLS (trusting the Core's CA, verifying `honeybee-manager`) or plain TCP.
    pub(crate) async fn connect(core: &CoreHandle) -> Self {
        let tcp = TcpStream::connect(core.local_addr()).await.unwrap();
        let io: Box<dyn Io> = match core.tls_files() {
            Some(files) => Box::new(tls_connect(tcp, &files.ca_cert).await.unwrap()),
            None => Box::new(tcp),
        };
        Self { io, buf: BytesMut::new(), dec: FrameDecoder::default() }
    }

    /// Connects over TLS presenting a client certificate (`cert_pem`, `key_pem`).
    pub(crate) async fn with_cert(core: &CoreHandle, cert_pem: &str, key_pem: &str) -> Self {
        let tcp = TcpStream::connect(core.local_addr()).await.unwrap();
        let ca = &core.tls_files().unwrap().ca_cert;
        let io = tls_connect_as(tcp, ca, Some((cert_pem, key_pem))).await.unwrap();
        Self { io: Box::new(io), buf: BytesMut::new(), dec: FrameDecoder::default() }
    }

    pub(crate) async fn plain(core: &CoreHandle) -> Self {
        let tcp = TcpStream::connect(core.local_addr()).await.unwrap();
        Self { io: Box::new(tcp), buf: BytesMut::new(), dec: FrameDecoder::default() }
    }

    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
        self.io.flush().await.unwrap();
    }

    pub(crate) async fn send(&mut self, msg: &NodeMessage) {
        let mut out = Vec::new();
        encode_node_message(msg, UnitStyle::EmptyObject, &mut out);
        self.send_raw(&out).await;
    }

    /// The next Core message, or None when the Core closed the connection.
    pub(crate) async fn recv(&mut self) -> Option<CoreMessage> {
        let line = self.recv_line().await?;
        Some(decode_core_message(&line).unwrap().message)
    }

    /// The next Core message's bytes.
    pub(crate) async fn recv_line(&mut self) -> Option<bytes::Bytes> {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Some(Frame::Value(v)) = self.dec.decode(&mut self.buf).unwrap() {
                    return Some(v);
                }
                self.buf.reserve(4096);
                match self.io.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("no message from the Core within 20 s")
    }

    pub(crate) async fn ack(&mut self) -> RegistrationAck {
        match self.recv().await {
            Some(CoreMessage::RegistrationAck(a)) => a,
            other => panic!("expected an ack, got {other:?}"),
        }
    }

    /// Whether the Core closed the connection (reads to end of stream).
    pub(crate) async fn closed(&mut self) -> bool {
        self.recv().await.is_none()
    }

    pub(crate) async fn register(
        &mut self,
        name: &str,
        claimed: u64,
        code: Option<String>,
    ) -> RegistrationAck {
        self.send(&registration(name, claimed, code)).await;
        self.ack().await
    }

    pub(crate) async fn heartbeat(&mut self) {
        self.send(&NodeMessage::NodeStatusUpdate(NodeStatusUpdate {
            node_id: 1,
            status: NodeStatus::Running,
        }))
        .await;
    }
}

pub(crate) fn registration(name: &str, claimed: u64, code: Option<String>) -> NodeMessage {
    NodeMessage::NodeRegistration(NodeRegistration {
        node_id: claimed,
        node_name: name.into(),
        address: "0.0.0.0".into(),
        port: 8080,
        node_type: NodeType::Full,
        totp_code: code,
    })
}

/// The code for `secret` at now + `offset_steps` steps.
pub(crate) fn code(secret: &str, offset_steps: i64) -> String {
    let s = TotpSecret::from_base32(secret).unwrap();
    let t = unix_now() as i64 + offset_steps * 30;
    s.code_at(t as u64)
}

pub(crate) async fn tls_connect(
    tcp: TcpStream,
    ca: &Path,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    tls_connect_as(tcp, ca, None).await
}

/// [`tls_connect`], presenting a client certificate and key (PEM) when given.
pub(crate) async fn tls_connect_as(
    tcp: TcpStream,
    ca: &Path,
    client: Option<(&str, &str)>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    apiary_core::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let cfg = match client {
        Some((cert, key)) => {
            use rustls::pki_types::PrivateKeyDer;
            let chain =
                CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<_, _>>().unwrap();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    connector.connect(ServerName::try_from("honeybee-manager").unwrap(), tcp).await
}

pub(crate) fn plain(mut cfg: CoreConfig) -> CoreConfig {
    cfg.transport = NodeTransport::Plain;
    cfg
}

pub(crate) async fn pg_store() -> Option<Arc<dyn Store>> {
    if !pg_available().await {
        return None;
    }
    Some(apiary_core::store::open(PG_URL, Some(&fresh_schema())).await.unwrap())
}
