//! TLS for the node port: a Core CA and server certificate generated on first start, loaded
//! afterwards, served with rustls on the aws-lc-rs provider.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::CoreError;

/// Names every generated server certificate carries: the seed page verifies
/// `honeybee-manager`, the Go node `honeybee-core`.
pub const DEFAULT_NAMES: &[&str] = &["honeybee-manager", "honeybee-core", "localhost"];

/// Where the Core's certificate files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate nodes trust (give this to nodes).
    pub ca_cert: PathBuf,
    /// The CA key (stays on the Core, mode 0600).
    pub ca_key: PathBuf,
    /// The server certificate chain.
    pub server_cert: PathBuf,
    /// The server key (mode 0600).
    pub server_key: PathBuf,
    /// Whether this start created them.
    pub created: bool,
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "apiary core CA");
    dn.push(DnType::OrganizationName, "apiary");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> CoreError {
    CoreError::Tls(format!("{what}: {e}"))
}

/// The CA certificate [`ensure_certificates`] keeps in `dir` (the file nodes are given).
pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

/// Creates the CA and server certificate in `dir` unless they exist; returns their paths.
/// A missing server certificate is re-issued from the existing CA.
pub fn ensure_certificates(dir: &Path, extra_names: &[String]) -> Result<TlsFiles, CoreError> {
    fs::create_dir_all(dir).map_err(|e| tls_err("creating the TLS directory", e))?;
    let files = TlsFiles {
        ca_cert: ca_cert_path(dir),
        ca_key: dir.join("ca.key"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        created: false,
    };
    if files.server_cert.exists() && files.server_key.exists() && files.ca_cert.exists() {
        return Ok(files);
    }
    let (ca_key, created_ca) = if files.ca_key.exists() && files.ca_cert.exists() {
        let pem =
            fs::read_to_string(&files.ca_key).map_err(|e| tls_err("reading the CA key", e))?;
        (KeyPair::from_pem(&pem).map_err(|e| tls_err("parsing the CA key", e))?, false)
    } else {
        let key = KeyPair::generate().map_err(|e| tls_err("generating the CA key", e))?;
        let cert = ca_params()
            .and_then(|p| p.self_signed(&key))
            .map_err(|e| tls_err("signing the CA", e))?;
        write_private(&files.ca_key, &key.serialize_pem())
            .map_err(|e| tls_err("writing the CA key", e))?;
        fs::write(&files.ca_cert, cert.pem()).map_err(|e| tls_err("writing the CA", e))?;
        (key, true)
    };
    let issuer = Issuer::new(ca_params().map_err(|e| tls_err("CA parameters", e))?, ca_key);
    let mut names: Vec<String> = DEFAULT_NAMES.iter().map(|s| (*s).to_owned()).collect();
    names.extend(["127.0.0.1".to_owned(), "::1".to_owned()]);
    for n in extra_names {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let mut params = CertificateParams::new(names).map_err(|e| tls_err("certificate names", e))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "honeybee-manager");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(|e| tls_err("generating the server key", e))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| tls_err("signing the server certificate", e))?;
    write_private(&files.server_key, &key.serialize_pem())
        .map_err(|e| tls_err("writing the server key", e))?;
    fs::write(&files.server_cert, cert.pem())
        .map_err(|e| tls_err("writing the server certificate", e))?;
    Ok(TlsFiles { created: true, ..files }).inspect(|_| {
        if created_ca {
            tracing::info!(dir = %dir.display(), "created a new Core CA");
        }
    })
}

/// A client certificate issued to one node at enrollment (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCert {
    /// The certificate (PEM), signed by the Core CA.
    pub cert: PathBuf,
    /// Its private key (PEM, mode 0600): copy both to the node, then delete them here.
    pub key: PathBuf,
    /// SHA-256 (hex) of the certificate's DER: the Core binds it to the node id.
    pub sha256: String,
    /// Valid from (Unix seconds).
    pub not_before: i64,
    /// Valid until (Unix seconds); the Core refuses it afterwards.
    pub not_after: i64,
}

/// How far back a new node certificate's validity starts, for clocks running a little behind.
const BACKDATE_SECS: i64 = 3600;

/// SHA-256 (lower-case hex) of a DER certificate.
pub fn cert_sha256(der: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect()
}

/// Issues a client certificate for node `name` (id `node_id`) from the CA in `dir` (created if
/// missing), valid from an hour ago for `validity`, written to `dir/nodes/NAME.pem` and
/// `NAME.key`. The name is checked by enrollment to be `[A-Za-z0-9._-]`, so it is safe as a
/// file name.
pub fn issue_node_cert(
    dir: &Path,
    extra_names: &[String],
    node_id: i64,
    name: &str,
    validity: std::time::Duration,
) -> Result<NodeCert, CoreError> {
    let now = crate::now_micros() / 1_000_000;
    let secs = i64::try_from(validity.as_secs()).unwrap_or(i64::MAX);
    issue_node_cert_between(
        dir,
        extra_names,
        node_id,
        name,
        now - BACKDATE_SECS,
        now.saturating_add(secs),
    )
}

/// [`issue_node_cert`] with an explicit validity window (Unix seconds, inclusive).
pub fn issue_node_cert_between(
    dir: &Path,
    extra_names: &[String],
    node_id: i64,
    name: &str,
    not_before: i64,
    not_after: i64,
) -> Result<NodeCert, CoreError> {
    crate::enroll::validate_name(name)?;
    let files = ensure_certificates(dir, extra_names)?;
    let pem = fs::read_to_string(&files.ca_key).map_err(|e| tls_err("reading the CA key", e))?;
    let ca_key = KeyPair::from_pem(&pem).map_err(|e| tls_err("parsing the CA key", e))?;
    let issuer = Issuer::new(ca_params().map_err(|e| tls_err("CA parameters", e))?, ca_key);
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| tls_err("certificate parameters", e))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationalUnitName, format!("apiary node {node_id}"));
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    // Unix seconds as rcgen's date type, clamped to what X.509 can express (9999-12-31).
    let at = |secs: i64| {
        let secs = u64::try_from(secs.clamp(0, 253_402_300_799)).unwrap_or(0);
        rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(secs)
    };
    params.not_before = at(not_before);
    params.not_after = at(not_after);
    let key = KeyPair::generate().map_err(|e| tls_err("generating the node key", e))?;
    let cert =
        params.signed_by(&key, &issuer).map_err(|e| tls_err("signing the node certificate", e))?;
    let nodes = dir.join("nodes");
    fs::create_dir_all(&nodes)
        .map_err(|e| tls_err("creating the node certificate directory", e))?;
    let out = NodeCert {
        cert: nodes.join(format!("{name}.pem")),
        key: nodes.join(format!("{name}.key")),
        sha256: cert_sha256(cert.der()),
        not_before,
        not_after,
    };
    write_private(&out.key, &key.serialize_pem())
        .map_err(|e| tls_err("writing the node key", e))?;
    fs::write(&out.cert, cert.pem()).map_err(|e| tls_err("writing the node certificate", e))?;
    Ok(out)
}

/// Verifies client certificates against the CA in `ca` (PEM). Connections without a
/// certificate still complete the handshake, so the Core can refuse their registration with
/// a reason the node can read instead of a bare TLS alert.
pub fn client_verifier(
    ca: &Path,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, CoreError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| tls_err("opening the CA", e))? {
        roots
            .add(c.map_err(|e| tls_err("reading the CA", e))?)
            .map_err(|e| tls_err("loading the CA", e))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let inner =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| tls_err("client certificate verifier", e))?;
    Ok(Arc::new(OutsideValidity { inner }))
}

/// Lets a certificate through the handshake when its only fault is the time (expired or not
/// yet valid) but it is otherwise a genuine certificate of this CA: the Core then refuses the
/// registration with a reason the node can log (the validity window is bound to the node in
/// the store) instead of a bare TLS alert. Any other fault still fails the handshake.
#[derive(Debug)]
struct OutsideValidity {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl rustls::server::danger::ClientCertVerifier for OutsideValidity {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        use rustls::CertificateError as C;
        match self.inner.verify_client_cert(end_entity, intermediates, now) {
            // Checked again at the edge of its window: valid then means only the time is off.
            Err(rustls::Error::InvalidCertificate(C::ExpiredContext { not_after: at, .. }))
            | Err(rustls::Error::InvalidCertificate(C::NotValidYetContext {
                not_before: at,
                ..
            })) => self.inner.verify_client_cert(end_entity, intermediates, at),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A rustls server configuration (TLS 1.3 and 1.2) from PEM files; with `client_ca`, client
/// certificates are requested and verified against it (mutual TLS).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, CoreError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_err("opening the certificate", e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err("reading the certificate", e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err("reading the key", e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls_err("protocol versions", e))?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(client_verifier(ca)?),
        None => builder.with_no_client_auth(),
    };
    let cfg =
        builder.with_single_cert(chain, key).map_err(|e| tls_err("certificate and key", e))?;
    Ok(Arc::new(cfg))
}
