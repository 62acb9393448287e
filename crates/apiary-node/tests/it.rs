//! The node agent against a real Core on loopback: enrollment (TOTP, token), TLS verification
//! (CA file, pin, wrong CA, wrong pin), pot commands with real clients, the event socket, and
//! commands queued while the node was away.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use apiary_core::{CommandStatus, Core, CoreConfig, CoreHandle, EnrollKind, EventQuery};
use apiary_node::{Node, NodeConfig, NodeHandle, NodeOptions, pin_of_pem_file};
use apiary_proto::{InstallPot, NodeCommandType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn core(dir: &Path) -> CoreHandle {
    Core::start(CoreConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        command_gap: Duration::from_millis(20),
        ..CoreConfig::default()
    })
    .await
    .unwrap()
}

fn node_cfg(core: &CoreHandle, name: &str) -> NodeConfig {
    let mut c = NodeConfig::new(name);
    c.core = core.local_addr().to_string();
    c.ca_file = Some(core.tls_files().unwrap().ca_cert.clone());
    c.event_port = 0;
    c.reconnect_min = Duration::from_millis(100);
    c.reconnect_max = Duration::from_millis(500);
    c.connect_timeout = Duration::from_secs(5);
    c
}

async fn start_node(cfg: NodeConfig, dir: &Path) -> NodeHandle {
    Node::start(
        cfg,
        NodeOptions { data_dir: dir.to_path_buf(), extra_sinks: Vec::new(), reload: None },
    )
    .await
    .unwrap()
}

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for a command to be answered and returns (status, result).
async fn answered(core: &CoreHandle, id: i64) -> (CommandStatus, String) {
    let store = core.store();
    eventually("a command answer", || {
        let store = store.clone();
        async move {
            let c = store.command(id).await.unwrap()?;
            matches!(c.status, CommandStatus::Done | CommandStatus::Failed)
                .then(|| (c.status, c.result.unwrap_or_default()))
        }
    })
    .await
}

fn echo_pot(id: &str) -> NodeCommandType {
    let services = "[pot]\nbind = [\"127.0.0.1\"]\n\n[[service]]\nname = \"Echo\"\nplugin = \"echo\"\nports = [\"tcp:0\"]\n";
    NodeCommandType::InstallPot(InstallPot {
        pot_id: id.into(),
        honeypot_type: "honeypot".into(),
        git_url: None,
        git_branch: None,
        config: Some(BTreeMap::from([("services".to_owned(), services.to_owned())])),
        auto_start: true,
    })
}

/// The port in "listening: Echo tcp 127.0.0.1:PORT".
fn listening_port(result: &str) -> u16 {
    let addr = result.rsplit(' ').next().unwrap();
    addr.parse::<std::net::SocketAddr>().unwrap_or_else(|_| panic!("{result}")).port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_a_honeypot_and_forwards_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir.path().join("core")).await;
    let e = core.add_node("edge-1", EnrollKind::Totp).await.unwrap();
    let mut cfg = node_cfg(&core, "edge-1");
    cfg.totp_secret = e.totp_secret.clone();
    let node = start_node(cfg, &dir.path().join("n")).await;
    eventually("registration", || async { node.link().connected().then_some(()) }).await;
    assert_eq!(node.link().node_id(), e.node_id as u64);

    let id = core.send_command(e.node_id, echo_pot("web")).await.unwrap();
    let (status, result) = answered(&core, id).await;
    assert_eq!(status, CommandStatus::Done, "{result}");
    assert!(result.starts_with("Running: listening: Echo tcp 127.0.0.1:"), "{result}");
    let port = listening_port(&result);

    // A real client talks to the pot.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"hello apiary\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"hello apiary\n");
    drop(s);

    let store = core.store();
    let events = eventually("the pot's events in the Core", || {
        let store = store.clone();
        async move {
            let q = EventQuery {
                node_id: Some(e.node_id),
                kind: Some("session.close".into()),
                ..EventQuery::default()
            };
            let ev = store.query_events(&q).await.unwrap();
            (!ev.is_empty()).then_some(ev)
        }
    })
    .await;
    assert_eq!(events[0].pot.as_deref(), Some("web"));
    assert_eq!(&*events[0].node, "edge-1");
    assert_eq!(events[0].dst_port, Some(port));

    // Every other command gets an answer.
    for (cmd, want) in [
        (NodeCommandType::GetPotStatus("web".into()), "Running"),
        (NodeCommandType::GetPotInfo("web".into()), "\"type\":\"honeypot\""),
        (NodeCommandType::GetPotMetrics("web".into()), "connections_accepted"),
        (NodeCommandType::GetPotLogs("web".into()), "listening"),
        (NodeCommandType::GetInstalledPots, "Running"),
        (NodeCommandType::RestartPot("web".into()), "Running"),
        (NodeCommandType::StopPot("web".into()), "Stopped"),
        (NodeCommandType::DeployPot("web".into()), "Running"),
        (NodeCommandType::UpdateConfig, "no configuration file"),
        (NodeCommandType::Restart, ""),
        (NodeCommandType::RemovePot("web".into()), "Removed"),
        (NodeCommandType::GetPotStatus("web".into()), "no such pot"),
        (NodeCommandType::GetInstalledPots, "no pots installed"),
    ] {
        let id = core.send_command(e.node_id, cmd.clone()).await.unwrap();
        let (_, result) = answered(&core, id).await;
        assert!(result.contains(want), "{cmd:?}: {result}");
    }
    node.shutdown(Duration::from_secs(5)).await;
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_enrollment_keeps_identity_and_gets_queued_commands() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir.path().join("core")).await;
    let e = core.add_node("edge-2", EnrollKind::Token).await.unwrap();
    let mut cfg = node_cfg(&core, "edge-2");
    cfg.token = e.token.clone();
    let ndir = dir.path().join("n");
    let node = start_node(cfg.clone(), &ndir).await;
    eventually("registration", || async { node.link().connected().then_some(()) }).await;
    node.shutdown(Duration::from_secs(5)).await;
    let state = std::fs::read_to_string(ndir.join("node/state.json")).unwrap();
    assert!(state.contains("\"totp_secret\""), "{state}");

    // Queued while the node is away.
    eventually("the Core to see the node gone", || async {
        core.connected_nodes().is_empty().then_some(())
    })
    .await;
    let id = core.send_command(e.node_id, echo_pot("late")).await.unwrap();

    // Restarted: the token is spent, the issued secret is used, the id is the same.
    let node = start_node(cfg, &ndir).await;
    eventually("re-registration", || async { node.link().connected().then_some(()) }).await;
    assert_eq!(node.link().node_id(), e.node_id as u64);
    let (status, result) = answered(&core, id).await;
    assert_eq!(status, CommandStatus::Done, "{result}");
    let pots = core.store().list_pots(e.node_id).await.unwrap();
    assert_eq!(pots.len(), 1);
    assert_eq!(pots[0].status, "Running");
    node.shutdown(Duration::from_secs(5)).await;
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_certificate_accepted_wrong_pin_and_wrong_ca_refused() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir.path().join("core")).await;
    let other = self::core(&dir.path().join("other")).await;
    let files = core.tls_files().unwrap().clone();
    for (name, i) in [("pin-ok", 0), ("pin-bad", 1), ("ca-bad", 2)] {
        let e = core.add_node(name, EnrollKind::Totp).await.unwrap();
        let mut cfg = node_cfg(&core, name);
        cfg.totp_secret = e.totp_secret;
        match i {
            0 => {
                cfg.ca_file = None;
                cfg.pin_sha256 = Some(pin_of_pem_file(&files.server_cert).unwrap());
            }
            1 => {
                cfg.ca_file = None;
                cfg.pin_sha256 = Some(pin_of_pem_file(&files.ca_cert).unwrap());
            }
            _ => cfg.ca_file = Some(other.tls_files().unwrap().ca_cert.clone()),
        }
        let node = start_node(cfg, &dir.path().join(name)).await;
        if i == 0 {
            eventually("registration with a pin", || async {
                node.link().connected().then_some(())
            })
            .await;
        } else {
            let why =
                eventually("a refused handshake", || async { node.link().last_error() }).await;
            assert!(
                why.contains("TLS") && (why.contains("pin") || why.contains("certificate")),
                "{why}"
            );
            assert!(!node.link().connected());
            assert_eq!(node.link().registrations(), 0);
        }
        node.shutdown(Duration::from_secs(2)).await;
    }
    other.shutdown().await;
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_pot_is_supervised_and_its_json_lines_become_events() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir.path().join("core")).await;
    let e = core.add_node("edge-x", EnrollKind::Totp).await.unwrap();
    let mut cfg = node_cfg(&core, "edge-x");
    cfg.totp_secret = e.totp_secret;
    cfg.allow_programs = vec!["/bin/sleep".into()];
    cfg.max_event_line = 1024;
    let node = start_node(cfg, &dir.path().join("n")).await;
    eventually("registration", || async { node.link().connected().then_some(()) }).await;

    let install = |id: &str, argv: &str| {
        NodeCommandType::InstallPot(InstallPot {
            pot_id: id.into(),
            honeypot_type: "cowrie".into(),
            git_url: None,
            git_branch: None,
            config: Some(BTreeMap::from([
                ("argv".to_owned(), argv.to_owned()),
                ("hostname".to_owned(), "srv04".to_owned()),
            ])),
            auto_start: true,
        })
    };
    // Not allowed by the node: refused, nothing runs.
    let id =
        core.send_command(e.node_id, install("evil", r#"["/bin/sh","-c","id"]"#)).await.unwrap();
    let (status, result) = answered(&core, id).await;
    assert_eq!(status, CommandStatus::Failed);
    assert!(result.contains("allow_programs"), "{result}");
    // A config value with a newline is refused (it would be an injection elsewhere).
    let mut bad = install("cowrie-02", r#"["/bin/sleep","300"]"#);
    if let NodeCommandType::InstallPot(p) = &mut bad {
        p.config.as_mut().unwrap().insert("hostname".into(), "a\n[output_x]".into());
    }
    let id = core.send_command(e.node_id, bad).await.unwrap();
    assert_eq!(answered(&core, id).await.0, CommandStatus::Failed);

    let id = core
        .send_command(e.node_id, install("cowrie-01", r#"["/bin/sleep","300"]"#))
        .await
        .unwrap();
    let (status, result) = answered(&core, id).await;
    assert_eq!(status, CommandStatus::Done, "{result}");
    assert!(result.contains("/bin/sleep running, pid"), "{result}");

    // The pot (played by the test) reports over the event socket.
    let addr = node.event_addr().unwrap();
    assert!(addr.ip().is_loopback());
    let mut s = TcpStream::connect(addr).await.unwrap();
    let long = format!("{{\"x\":\"{}\"}}\n", "a".repeat(2000));
    s.write_all(long.as_bytes()).await.unwrap();
    s.write_all(b"not json\n").await.unwrap();
    s.write_all(br#"{"eventid":"cowrie.login.failed","username":"root","password":"admin","src_ip":"203.0.113.7","src_port":40000,"session":"abc"}"#).await.unwrap();
    s.write_all(b"\n").await.unwrap();
    s.flush().await.unwrap();
    let store = core.store();
    let ev = eventually("the external pot's event", || {
        let store = store.clone();
        async move {
            let q = EventQuery { kind: Some("pot.event".into()), ..EventQuery::default() };
            store.query_events(&q).await.unwrap().into_iter().next()
        }
    })
    .await;
    assert_eq!(ev.pot.as_deref(), Some("cowrie-01"));
    assert_eq!(ev.src_ip, Some("203.0.113.7".parse().unwrap()));
    let auth = ev.auth.unwrap();
    assert_eq!(auth.username.as_deref(), Some("root"));
    assert!(!auth.success);
    assert_eq!(node.event_socket_counts(), (1, 2));

    let id = core
        .send_command(e.node_id, NodeCommandType::GetPotMetrics("cowrie-01".into()))
        .await
        .unwrap();
    assert!(answered(&core, id).await.1.contains("\"alive\":true"));
    let id =
        core.send_command(e.node_id, NodeCommandType::StopPot("cowrie-01".into())).await.unwrap();
    assert_eq!(answered(&core, id).await.1, "Stopped: stopped");
    node.shutdown(Duration::from_secs(5)).await;
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_accepts_the_issued_certificate_and_refuses_others_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let core = Core::start(CoreConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("core"),
        mtls: true,
        ..CoreConfig::default()
    })
    .await
    .unwrap();
    let other = self::core(&dir.path().join("other")).await;
    for name in ["m-good", "m-none", "m-stolen", "m-foreign", "m-unissued"] {
        core.add_node(name, EnrollKind::Totp).await.unwrap();
    }
    let good = core.issue_node_cert("m-good").await.unwrap();
    // m-stolen has a certificate of its own but presents m-good's.
    core.issue_node_cert("m-stolen").await.unwrap();
    // A certificate for the same name from another Core's CA: a valid chain, wrong issuer.
    other.add_node("m-foreign", EnrollKind::Totp).await.unwrap();
    let foreign = other.issue_node_cert("m-foreign").await.unwrap();

    let store = core.store();
    let start = |name: &'static str, cert: Option<&apiary_core::NodeCert>| {
        let store = store.clone();
        let mut cfg = node_cfg(&core, name);
        cfg.client_cert = cert.map(|c| c.cert.clone());
        cfg.client_key = cert.map(|c| c.key.clone());
        let dir = dir.path().join(name);
        async move {
            cfg.totp_secret = store.node_by_name(name).await.unwrap().unwrap().totp_secret;
            start_node(cfg, &dir).await
        }
    };
    let ok = start("m-good", Some(&good)).await;
    eventually("m-good registered", || async { ok.link().connected().then_some(()) }).await;

    let refused = [
        ("m-none", None, "none was presented"),
        ("m-stolen", Some(&good), "was not issued to node \"m-stolen\""),
        ("m-unissued", Some(&good), "no client certificate was issued to node \"m-unissued\""),
        // Refused in the handshake, before any registration; the node says why.
        ("m-foreign", Some(&foreign), "refused this node's TLS client certificate"),
    ];
    for (name, cert, why) in refused {
        let node = start(name, cert).await;
        let err = eventually("a refusal", || async { node.link().last_error() }).await;
        assert!(err.contains(why), "{name}: {err}");
        assert!(!node.link().connected(), "{name}");
        assert_eq!(node.link().registrations(), 0, "{name}");
        node.shutdown(Duration::from_secs(2)).await;
    }
    // The foreign certificate fails the handshake; the Core says why.
    let rejections = core.recent_rejections();
    assert!(
        rejections
            .iter()
            .any(|r| r.reason.contains("TLS handshake failed") && r.reason.contains("certificate")),
        "{rejections:?}"
    );
    // The node with its own certificate kept being served throughout.
    assert!(ok.link().connected());
    assert_eq!(ok.link().registrations(), 1);
    ok.shutdown(Duration::from_secs(2)).await;
    other.shutdown().await;
    core.shutdown().await;
}
