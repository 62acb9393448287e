//! `apiary core run` (serve the node port, say where the CA is) and `apiary core node add`
//! (enroll a node and print what the node's operator needs).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use apiary_core::{Core, CoreConfig, CoreSettings, EnrollKind, NodeTransport, NodeTrust};

fn settings(loaded: &crate::config::Loaded) -> (CoreSettings, CoreConfig) {
    let s = loaded.config.core.clone().unwrap_or_default();
    let cfg = s.to_config(&loaded.data_dir());
    (s, cfg)
}

pub(crate) fn run(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    apiary_core::install_crypto_provider();
    let loaded = super::load_valid(path)?;
    let (settings, cfg) = settings(&loaded);
    let store = cfg.store_url();
    let transport = cfg.transport;
    super::runtime()?.block_on(async move {
        let core = Core::start(cfg).await.context("starting the Core")?;
        let mut out = format!(
            "apiary {} core | node port {} ({}) | store {}\n",
            env!("CARGO_PKG_VERSION"),
            core.local_addr(),
            match transport {
                NodeTransport::Tls => "TLS",
                NodeTransport::Plain => "PLAIN TCP",
                NodeTransport::Both => "TLS and plain TCP",
            },
            redact(&store),
        );
        if let Some(f) = core.tls_files() {
            out.push_str(&format!(
                "CA certificate (give it to nodes as ca_file): {}\nserver certificate: {}\n\
                 server certificate pin (pin_sha256): {}\n",
                f.ca_cert.display(),
                f.server_cert.display(),
                apiary_node::pin_of_pem_file(&f.server_cert).unwrap_or_default(),
            ));
        }
        out.push_str(&format!("listening on {}\n", core.local_addr()));
        let api = match settings.http {
            Some(listen) => {
                let cfg = apiary_core::http::HttpConfig { listen, ..Default::default() };
                let h = apiary_core::http::start(&core, cfg).await.context("starting the API")?;
                out.push_str(&format!("API and dashboard: {}\n", h.base_url()));
                Some(h)
            }
            None => None,
        };
        out.push_str("enroll a node: apiary core node add NAME (-c the same file)\n");
        super::print(&out);
        super::pot::shutdown_signal()?.await?;
        tracing::info!("shutting down: closing node connections, storing queued events");
        if let Some(api) = api {
            api.shutdown().await;
        }
        let stats = core.stats();
        core.shutdown().await;
        tracing::info!(
            stored = stats.events_stored,
            duplicates = stats.events_duplicate,
            "Core stopped"
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// A database URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The secret as a terminal QR code (two rows per character), for authenticator apps.
fn qr(data: &str) -> Option<String> {
    let code = qrcode::QrCode::new(data.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

pub(crate) fn add_node(
    path: Option<&Path>,
    name: &str,
    token: bool,
    core_addr: Option<&str>,
) -> anyhow::Result<ExitCode> {
    apiary_core::install_crypto_provider();
    let loaded = super::load_valid(path)?;
    let (s, cfg) = settings(&loaded);
    let kind = if token { EnrollKind::Token } else { EnrollKind::Totp };
    let e = super::runtime()?
        .block_on(apiary_core::enroll_offline(&cfg, name, kind))
        .with_context(|| format!("enrolling node {name:?}"))?;
    let trust = cfg.node_trust();
    // The node needs the CA now, so create it if the Core has not started yet.
    if let NodeTrust::CaFile(_) = trust {
        apiary_core::tls::ensure_certificates(&cfg.tls_dir(), &cfg.tls_names)
            .context("preparing the Core's certificates")?;
    }
    let addr = core_addr.map(str::to_owned).unwrap_or_else(|| {
        if s.listen.ip().is_unspecified() {
            format!("CORE-HOST:{}", s.listen.port())
        } else {
            s.listen.to_string()
        }
    });
    let mut out = format!("enrolled node {} (id {})\n\n", e.name, e.node_id);
    let mut client = None;
    if cfg.mtls {
        let c = super::runtime()?
            .block_on(apiary_core::issue_node_cert(&cfg, name))
            .with_context(|| format!("issuing node {name:?} its client certificate"))?;
        out.push_str(&format!(
            "client certificate (mutual TLS): {}\nclient key: {}\ncertificate SHA-256: {}\n",
            c.cert.display(),
            c.key.display(),
            c.sha256
        ));
        client = Some((c.cert.display().to_string(), c.key.display().to_string()));
    }
    if let (Some(secret), Some(uri)) = (&e.totp_secret, &e.otpauth_uri) {
        out.push_str(&format!("TOTP secret: {secret}\notpauth URI: {uri}\n"));
        if let Some(code) = qr(uri) {
            out.push_str(&code);
            out.push('\n');
        }
    }
    if let Some(t) = &e.token {
        out.push_str(&format!(
            "one-time token: {t}\n(the node sends it once; the Core then issues it a TOTP secret)\n"
        ));
    }
    let section =
        e.node_section(&addr, trust, client.as_ref().map(|(c, k)| (c.as_str(), k.as_str())));
    out.push_str(&format!(
        "\nOn the node, put this in node.toml (keep it private: it holds the node's credential):\n\n\
         {section}\nthen run: apiary node run -c node.toml\n"
    ));
    super::print(&out);
    Ok(ExitCode::SUCCESS)
}

/// `apiary core user add NAME --role ROLE`: a new API token, printed once.
pub(crate) fn add_user(
    path: Option<&Path>,
    name: &str,
    role: crate::cli::UserRole,
) -> anyhow::Result<ExitCode> {
    use apiary_core::http::Role;
    let loaded = super::load_valid(path)?;
    let (s, cfg) = settings(&loaded);
    let role = match role {
        crate::cli::UserRole::Viewer => Role::Viewer,
        crate::cli::UserRole::Operator => Role::Operator,
        crate::cli::UserRole::Admin => Role::Admin,
    };
    let token = super::runtime()?
        .block_on(apiary_core::http::add_user_offline(&cfg, name, role))
        .with_context(|| format!("adding API user {name:?}"))?;
    let url = match s.http {
        Some(a) if a.port() != 0 && !a.ip().is_unspecified() => format!("http://{a}"),
        Some(a) if a.port() != 0 => format!("http://127.0.0.1:{}", a.port()),
        _ => "http://CORE-HOST:PORT".to_owned(),
    };
    super::print(&format!(
        "API user {name} ({}) added; the token is shown only now:\ntoken: {token}\n\n\
         use it with: APIARY_URL={url} APIARY_TOKEN={token} apiary ctl nodes\n",
        role.as_str()
    ));
    Ok(ExitCode::SUCCESS)
}

/// `apiary core node cert NAME`: a new client certificate for an enrolled node (mutual TLS);
/// the one issued before stops working at once.
pub(crate) fn node_cert(path: Option<&Path>, name: &str) -> anyhow::Result<ExitCode> {
    apiary_core::install_crypto_provider();
    let loaded = super::load_valid(path)?;
    let (s, cfg) = settings(&loaded);
    let c = super::runtime()?
        .block_on(apiary_core::issue_node_cert(&cfg, name))
        .with_context(|| format!("issuing node {name:?} a client certificate"))?;
    let mut out = format!(
        "issued node {name} a client certificate (the previous one no longer works)\n\
         certificate: {}\nkey: {}\nSHA-256: {}\n\nOn the node, in [node]:\n\n\
         client_cert = \"{}\"\nclient_key = \"{}\"\n",
        c.cert.display(),
        c.key.display(),
        c.sha256,
        c.cert.display(),
        c.key.display()
    );
    if !s.mtls {
        out.push_str("\n(the Core checks certificates only with mtls = true in [core])\n");
    }
    super::print(&out);
    Ok(ExitCode::SUCCESS)
}
