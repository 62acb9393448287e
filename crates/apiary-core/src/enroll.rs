//! Enrollment: creating node records with a TOTP secret or a one-time token, and checking what
//! a registering node presents against them.

use apiary_proto::{NodeRegistration, TotpError, TotpSecret};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::EnrollmentMode;
use crate::store::{NodeRecord, Store, StoreError};
use crate::{CoreError, now_micros};

/// The issuer name in `otpauth://` URIs.
pub const ISSUER: &str = "apiary";

/// How a new node proves itself on first registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnrollKind {
    /// A TOTP secret the operator gives the node (RFC 6238 codes from then on).
    #[default]
    Totp,
    /// A one-time token the node sends as `totp_code` once; the Core then issues a TOTP secret
    /// in `RegistrationAck.totp_key` (the Go node stores it).
    Token,
}

/// What `apiary core node add NAME` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enrollment {
    /// The Core-assigned node id.
    pub node_id: i64,
    /// The node name.
    pub name: String,
    /// The TOTP secret (base32), for [`EnrollKind::Totp`].
    pub totp_secret: Option<String>,
    /// `otpauth://` URI of that secret (for authenticator apps and QR codes).
    pub otpauth_uri: Option<String>,
    /// The one-time token, for [`EnrollKind::Token`].
    pub token: Option<String>,
}

/// How the node checks the Core's certificate, for its `[node]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeTrust {
    /// Plain TCP (`transport = "plain"` on the Core).
    Plain,
    /// The CA the Core created (`ca.pem` under its data directory): the node needs a copy.
    CaFile(std::path::PathBuf),
    /// The operator's own certificate (`tls_cert`): the node needs the CA that signed it.
    OperatorCa,
}

impl Enrollment {
    /// The `[node]` section of the node's `node.toml` (run it with `apiary node run -c
    /// node.toml`), as `apiary core node add` prints it and `POST /nodes` answers it.
    /// `client` names the node's client certificate and key files under mutual TLS.
    pub fn node_section(
        &self,
        core_addr: &str,
        trust: NodeTrust,
        client: Option<(&str, &str)>,
    ) -> String {
        let mut s = format!("[node]\nname = \"{}\"\ncore = \"{core_addr}\"\n", self.name);
        match trust {
            NodeTrust::Plain => s.push_str("plain = true\n"),
            NodeTrust::CaFile(ca) => s.push_str(&format!(
                "ca_file = \"{}\"   # a copy of this file on the node\n",
                ca.display()
            )),
            NodeTrust::OperatorCa => s.push_str("ca_file = \"CA-OF-YOUR-CERTIFICATE.pem\"\n"),
        }
        if let Some((cert, key)) = client {
            s.push_str(&format!(
                "client_cert = \"{cert}\"   # a copy of this file on the node\n\
                 client_key = \"{key}\"    # likewise; keep it private\n"
            ));
        }
        if let Some(secret) = &self.totp_secret {
            s.push_str(&format!("totp_secret = \"{secret}\"\n"));
        }
        if let Some(t) = &self.token {
            s.push_str(&format!("token = \"{t}\"\n"));
        }
        s
    }
}

/// Node names: 1 to 64 of `[A-Za-z0-9._-]`, so they are safe in logs, URIs and file names.
pub fn validate_name(name: &str) -> Result<(), CoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(()) } else { Err(CoreError::InvalidName(name.chars().take(80).collect())) }
}

/// A fresh 160-bit TOTP secret.
pub fn new_secret() -> TotpSecret {
    let mut raw = [0u8; 20];
    rand::rng().fill_bytes(&mut raw);
    TotpSecret::from_bytes(&raw)
}

fn new_token() -> String {
    let mut raw = [0u8; 20];
    rand::rng().fill_bytes(&mut raw);
    // Base32 makes it 32 characters: never mistaken for a six-digit TOTP code.
    TotpSecret::from_bytes(&raw).to_base32()
}

/// SHA-256 (hex) of a token; only the hash is stored.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.trim().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Enrolls `name` in `store`.
pub async fn add_node(
    store: &dyn Store,
    name: &str,
    kind: EnrollKind,
) -> Result<Enrollment, CoreError> {
    validate_name(name)?;
    let now = now_micros();
    let (secret, token) = match kind {
        EnrollKind::Totp => (Some(new_secret()), None),
        EnrollKind::Token => (None, Some(new_token())),
    };
    let secret_b32 = secret.as_ref().map(TotpSecret::to_base32);
    let hash = token.as_deref().map(token_hash);
    let rec = store.create_node(name, secret_b32.as_deref(), hash.as_deref(), now).await?;
    let how = if secret.is_some() { "totp" } else { "token" };
    store
        .audit("operator", "node.add", &format!("node {} id {} ({how})", rec.name, rec.id), now)
        .await?;
    Ok(Enrollment {
        node_id: rec.id,
        name: rec.name,
        otpauth_uri: secret.as_ref().map(|s| s.otpauth_uri(ISSUER, name)),
        totp_secret: secret_b32,
        token,
    })
}

/// The result of checking a registration's credentials.
#[derive(Debug)]
pub(crate) enum AuthOutcome {
    /// Go on as this node; `issued` is a new TOTP secret to put in the ack.
    Accepted { node: NodeRecord, issued: Option<String> },
    /// Refused, with the reason sent to the node and logged.
    Rejected { node: Option<NodeRecord>, reason: String },
}

fn rejected(node: Option<NodeRecord>, reason: impl Into<String>) -> AuthOutcome {
    AuthOutcome::Rejected { node, reason: reason.into() }
}

fn is_totp_shape(code: &str) -> bool {
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

/// Checks a registration against the node records.
pub(crate) async fn authenticate(
    store: &dyn Store,
    mode: EnrollmentMode,
    reg: &NodeRegistration,
    unix_secs: u64,
) -> Result<AuthOutcome, StoreError> {
    let name = reg.node_name.trim();
    let code = reg.code();
    let now = now_micros();
    let Some(node) = store.node_by_name(name).await? else {
        if mode == EnrollmentMode::Closed || validate_name(name).is_err() {
            return Ok(rejected(
                None,
                format!("unknown node {name:?}: enroll it first (apiary core node add NAME)"),
            ));
        }
        let secret = new_secret().to_base32();
        return match store.create_node(name, Some(&secret), None, now).await {
            Ok(node) => {
                store
                    .audit(
                        "node-server",
                        "node.enroll.open",
                        &format!("node {name} id {}", node.id),
                        now,
                    )
                    .await?;
                Ok(AuthOutcome::Accepted { node, issued: Some(secret) })
            }
            Err(StoreError::Conflict(_)) => Ok(rejected(None, "enrollment conflict, retry")),
            Err(e) => Err(e),
        };
    };

    let issued = if let (Some(hash), Some(code)) = (node.token_hash.as_deref(), code) {
        if is_totp_shape(code) && node.totp_secret.is_some() {
            None
        } else if hash.len() == 64 && store.consume_token(node.id, &token_hash(code)).await? {
            let secret = new_secret().to_base32();
            store.set_totp_secret(node.id, &secret).await?;
            Some(secret)
        } else {
            return Ok(rejected(Some(node), "invalid or already used enrollment token"));
        }
    } else {
        None
    };

    if issued.is_none() {
        match (node.totp_secret.as_deref(), code) {
            (Some(secret), Some(code)) => {
                let Some(secret) = TotpSecret::from_base32(secret) else {
                    return Ok(rejected(
                        Some(node),
                        "stored TOTP secret is unreadable; re-enroll the node",
                    ));
                };
                let last = node.last_totp_step.and_then(|s| u64::try_from(s).ok());
                match secret.verify(code, unix_secs, last) {
                    Ok(step) => {
                        let step = i64::try_from(step).unwrap_or(i64::MAX);
                        if !store.claim_totp_step(node.id, step).await? {
                            return Ok(rejected(Some(node), TotpError::Replayed.to_string()));
                        }
                    }
                    Err(e) => return Ok(rejected(Some(node), e.to_string())),
                }
            }
            (Some(_), None) => return Ok(rejected(Some(node), "TOTP code required")),
            (None, _) => {
                if mode == EnrollmentMode::Open {
                    let secret = new_secret().to_base32();
                    store.set_totp_secret(node.id, &secret).await?;
                    return Ok(AuthOutcome::Accepted { node, issued: Some(secret) });
                }
                return Ok(rejected(Some(node), "enrollment token required"));
            }
        }
    }

    // A node may repeat its own Core id but never claim another node's.
    if let Ok(claimed) = i64::try_from(reg.node_id)
        && claimed != node.id
        && store.node_by_id(claimed).await?.is_some()
    {
        return Ok(rejected(Some(node), format!("node_id {claimed} belongs to another node")));
    }
    Ok(AuthOutcome::Accepted { node, issued })
}
