//! The node server end to end over loopback: registration, TOTP, commands, events, refusals.

use std::process::Stdio;
use std::time::Duration;

use apiary_core::{CommandStatus, EnrollKind, EnrollmentMode, EventQuery, NodeTransport};
use apiary_event::Kind;
use apiary_proto::{CoreMessage, NodeCommandType, NodeMessage};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::util::{self, Client, code, config, eventually, start};

/// Runs tests/seed_node.py against the Core and returns its stdout lines.
async fn run_seed_node(
    port: u16,
    ca: Option<std::path::PathBuf>,
    secret: Option<String>,
) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seed_node.py");
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(script)
        .env("APIARY_CORE_PORT", port.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    match ca {
        Some(ca) => cmd.env("APIARY_TLS", "1").env("APIARY_CA_FILE", ca),
        None => cmd.env("APIARY_TLS", "0"),
    };
    if let Some(s) = secret {
        cmd.env("APIARY_TOTP_SECRET", s);
    }
    let mut child = cmd.spawn().expect("python3 must be installed");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = Vec::new();
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            out.push(l);
        }
        child.wait().await.unwrap()
    })
    .await
    .expect("seed node did not finish");
    assert!(status.success(), "seed node exited {status:?}, output {out:?}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_python_node_registers_heartbeats_and_receives_a_command_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let core = start(config(dir.path())).await;
    let files = core.tls_files().unwrap().clone();
    assert!(files.created && files.ca_cert.exists());
    let enrolled = core.add_node("my-python-node", EnrollKind::Totp).await.unwrap();
    let cmd = NodeCommandType::DeployPot("cowrie-01".into());
    let cmd_id = core.send_command(enrolled.node_id, cmd).await.unwrap();

    let out = run_seed_node(
        core.local_addr().port(),
        Some(files.ca_cert.clone()),
        enrolled.totp_secret.clone(),
    )
    .await;
    assert_eq!(out.first().map(String::as_str), Some("Registration successful"), "{out:?}");
    let want = format!(
        "COMMAND {{\"command\": {{\"DeployPot\": \"cowrie-01\"}}, \"node_id\": {}}}",
        enrolled.node_id
    );
    assert_eq!(out.get(1), Some(&want), "{out:?}");

    let store = core.store();
    let node = store.node_by_id(enrolled.node_id).await.unwrap().unwrap();
    assert_eq!(node.claimed_id.as_deref(), Some("12345"));
    let c = store.command(cmd_id).await.unwrap().unwrap();
    assert_eq!(c.status, CommandStatus::Sent);
    assert_eq!(c.attempts, 1);
    // The heartbeat reached the store as a node.status event.
    let q = EventQuery {
        node_id: Some(enrolled.node_id),
        kind: Some("node.status".into()),
        ..Default::default()
    };
    let events = eventually("heartbeat event", || async {
        let ev = store.query_events(&q).await.unwrap();
        (!ev.is_empty()).then_some(ev)
    })
    .await;
    assert_eq!(&*events[0].node, "my-python-node");
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_python_node_unchanged_code_enrolls_in_open_mode_over_plain_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = util::plain(config(dir.path()));
    cfg.enrollment = EnrollmentMode::Open;
    let core = start(cfg).await;
    assert!(core.tls_files().is_none());
    let seed = tokio::spawn(run_seed_node(core.local_addr().port(), None, None));
    let store = core.store();
    let node = eventually("open enrollment of the seed node", || async {
        store
            .node_by_name("my-python-node")
            .await
            .unwrap()
            .filter(|n| n.online && n.status == "Running")
    })
    .await;
    core.send_command(node.id, NodeCommandType::Restart).await.unwrap();
    let out = seed.await.unwrap();
    let want = format!("COMMAND {{\"command\": {{\"Restart\": {{}}}}, \"node_id\": {}}}", node.id);
    assert_eq!(out, vec!["Registration successful".to_string(), want]);
    assert!(
        core.store().audit_log(10).await.unwrap().iter().any(|a| a.action == "node.enroll.open")
    );
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_and_replayed_totp_are_rejected_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let core = start(config(dir.path())).await;
    let good = core.add_node("good", EnrollKind::Totp).await.unwrap();
    let bad = core.add_node("bad", EnrollKind::Totp).await.unwrap();
    let good_secret = good.totp_secret.clone().unwrap();
    let bad_secret = bad.totp_secret.clone().unwrap();

    // A healthy node stays connected throughout.
    let mut g = Client::connect(&core).await;
    let ack = g.register("good", 999, Some(code(&good_secret, 0))).await;
    assert!(ack.accepted, "{ack:?}");
    assert_eq!(ack.node_id, good.node_id as u64);
    g.heartbeat().await;

    // Wrong code.
    let mut c = Client::connect(&core).await;
    let ack = c.register("bad", 5, Some(code(&good_secret, 0))).await;
    assert!(!ack.accepted);
    assert_eq!(ack.message.as_deref(), Some("wrong TOTP code"));
    assert!(c.closed().await);

    // Missing code.
    let mut c = Client::connect(&core).await;
    let ack = c.register("bad", 5, None).await;
    assert!(!ack.accepted);
    assert_eq!(ack.message.as_deref(), Some("TOTP code required"));

    // Right code once, then the same code again.
    let first = code(&bad_secret, 0);
    let mut c = Client::connect(&core).await;
    assert!(c.register("bad", 5, Some(first.clone())).await.accepted);
    c.send(&NodeMessage::NodeDrop).await;
    assert!(c.closed().await);
    let mut c = Client::connect(&core).await;
    let ack = c.register("bad", 5, Some(first)).await;
    assert!(!ack.accepted);
    assert_eq!(ack.message.as_deref(), Some("TOTP code already used"));
    // An earlier step is a replay too.
    let mut c = Client::connect(&core).await;
    let ack = c.register("bad", 5, Some(code(&bad_secret, -1))).await;
    assert!(!ack.accepted);

    // Unknown name in closed mode.
    let mut c = Client::connect(&core).await;
    let ack = c.register("stranger", 5, Some("123456".into())).await;
    assert!(!ack.accepted);
    assert!(ack.message.unwrap().contains("unknown node"));

    // The healthy node still gets commands.
    core.send_command(good.node_id, NodeCommandType::GetInstalledPots).await.unwrap();
    match g.recv().await {
        Some(CoreMessage::NodeCommand(c)) => {
            assert_eq!(c.command, NodeCommandType::GetInstalledPots)
        }
        other => panic!("{other:?}"),
    }
    let reasons: Vec<String> = core.recent_rejections().into_iter().map(|r| r.reason).collect();
    assert!(reasons.iter().any(|r| r == "TOTP code already used"), "{reasons:?}");
    let audit = core.store().audit_log(100).await.unwrap();
    assert!(audit.iter().filter(|a| a.action == "registration.rejected").count() >= 4);
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_cannot_claim_another_nodes_id_or_steal_a_live_session() {
    let dir = tempfile::tempdir().unwrap();
    let core = start(config(dir.path())).await;
    let a = core.add_node("node-a", EnrollKind::Totp).await.unwrap();
    let b = core.add_node("node-b", EnrollKind::Totp).await.unwrap();
    let (sa, sb) = (a.totp_secret.unwrap(), b.totp_secret.unwrap());

    let mut ca = Client::connect(&core).await;
    assert!(ca.register("node-a", a.node_id as u64, Some(code(&sa, 0))).await.accepted);
    ca.heartbeat().await;

    // B with its own valid code but A's id.
    let mut cb = Client::connect(&core).await;
    let ack = cb.register("node-b", a.node_id as u64, Some(code(&sb, 0))).await;
    assert!(!ack.accepted);
    assert_eq!(ack.message.unwrap(), format!("node_id {} belongs to another node", a.node_id));

    // B's code under A's name.
    let mut cb = Client::connect(&core).await;
    let ack = cb.register("node-a", 77, Some(code(&sb, 1))).await;
    assert!(!ack.accepted);
    assert_eq!(ack.message.as_deref(), Some("wrong TOTP code"));

    // A second connection for A (valid next code) while A is live.
    let mut a2 = Client::connect(&core).await;
    let ack = a2.register("node-a", a.node_id as u64, Some(code(&sa, 1))).await;
    assert!(!ack.accepted);
    assert!(ack.message.unwrap().contains("already connected"));

    // A is unaffected.
    core.send_command(a.node_id, NodeCommandType::Restart).await.unwrap();
    assert!(matches!(ca.recv().await, Some(CoreMessage::NodeCommand(_))));
    assert_eq!(core.connected_nodes(), vec![a.node_id]);
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_unknown_and_oversize_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_message = 64 * 1024;
    let core = start(cfg).await;
    let n = core.add_node("n1", EnrollKind::Totp).await.unwrap();
    let s = n.totp_secret.unwrap();

    // Malformed first message: refused with a reason, connection closed.
    let mut c = Client::connect(&core).await;
    c.send_raw(b"{\"version\":2,\"message\":{\"NodeRegistration\":{\"node_id\":\"x\"}}}\n").await;
    let ack = c.ack().await;
    assert!(!ack.accepted);
    assert!(ack.message.unwrap().starts_with("invalid NodeRegistration"));

    // Not a registration first.
    let mut c = Client::connect(&core).await;
    c.send_raw(b"{\"version\":2,\"message\":\"NodeDrop\"}\n").await;
    let ack = c.ack().await;
    assert_eq!(
        ack.message.as_deref(),
        Some("first message must be NodeRegistration, got NodeDrop")
    );

    // Registered node: garbage, malformed JSON and an unknown type are counted, not fatal.
    let mut c = Client::connect(&core).await;
    assert!(c.register("n1", 1, Some(code(&s, 0))).await.accepted);
    c.send_raw(b"this is not json\n").await;
    c.send_raw(b"{\"version\":2,\"message\":{\"NodeStatusUpdate\":{\"status\":}}}\n").await;
    c.send_raw(b"{\"version\":2,\"message\":{\"Teleport\":{\"to\":\"mars\"}}}\n").await;
    c.heartbeat().await;
    core.send_command(n.node_id, NodeCommandType::UpdateConfig).await.unwrap();
    assert!(matches!(c.recv().await, Some(CoreMessage::NodeCommand(_))));
    let st = core.stats();
    assert_eq!(st.malformed, 2, "{st:?}");
    assert_eq!(st.unknown, 1, "{st:?}");
    let reasons: Vec<String> = core.recent_rejections().into_iter().map(|r| r.reason).collect();
    assert!(reasons.contains(&"unknown message type \"Teleport\"".to_string()), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("malformed JSON")), "{reasons:?}");

    // An oversize line closes that connection only.
    let mut big = b"{\"version\":2,\"message\":{\"PotEvent\":{\"pot_id\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 70 * 1024));
    big.extend_from_slice(b"\"}}}\n");
    c.send_raw(&big).await;
    assert!(c.closed().await);
    assert_eq!(core.stats().oversize, 1);
    assert!(core.recent_rejections().iter().any(|r| r.reason == "message exceeds 65536 bytes"));

    // The Core still serves: the node reconnects with the next code. The client can see the
    // close before the Core's session task has deregistered it (a node reconnecting that fast
    // is told it is "already connected" and retries), so wait for the deregistration first.
    eventually("node deregistered", || async { core.connected_nodes().is_empty().then_some(()) })
        .await;
    let mut c = Client::connect(&core).await;
    assert!(c.register("n1", 1, Some(code(&s, 1))).await.accepted);
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_node_id_and_delivers_commands_queued_while_away() {
    let dir = tempfile::tempdir().unwrap();
    let core = start(config(dir.path())).await;
    let n = core.add_node("edge-1", EnrollKind::Totp).await.unwrap();
    let s = n.totp_secret.unwrap();
    let mut c = Client::connect(&core).await;
    let first = c.register("edge-1", 424242, Some(code(&s, -1))).await;
    assert!(first.accepted);
    c.heartbeat().await;
    drop(c);
    eventually("node offline", || async { core.connected_nodes().is_empty().then_some(()) }).await;

    // Queued while the node is away, then the Core itself restarts.
    let c1 = core.send_command(n.node_id, NodeCommandType::StopPot("p1".into())).await.unwrap();
    let c2 = core.send_command(n.node_id, NodeCommandType::GetPotInfo("p1".into())).await.unwrap();
    core.shutdown().await;
    let core = start(config(dir.path())).await;
    assert_eq!(core.store().node_by_id(n.node_id).await.unwrap().unwrap().status, "offline");

    // The node restarts with a new random id of its own: the Core's id stays the same.
    let mut c = Client::connect(&core).await;
    let again = c.register("edge-1", 777, Some(code(&s, 0))).await;
    assert!(again.accepted);
    assert_eq!(again.node_id, first.node_id);
    // Nothing is sent before the first heartbeat, then one at a time in queue order.
    c.heartbeat().await;
    let mut got = Vec::new();
    for _ in 0..2 {
        match c.recv().await {
            Some(CoreMessage::NodeCommand(cmd)) => {
                assert_eq!(cmd.node_id, n.node_id as u64);
                got.push(cmd.command);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        got,
        vec![NodeCommandType::StopPot("p1".into()), NodeCommandType::GetPotInfo("p1".into())]
    );

    // Answers close the commands.
    c.send_raw(b"{\"version\":2,\"message\":{\"PotStatusUpdate\":{\"node_id\":777,\"pot_id\":\"p1\",\"pot_type\":\"cowrie\",\"status\":\"Stopped\",\"message\":\"stopped\"}}}\n").await;
    let store = core.store();
    eventually("command done", || async {
        let r = store.command(c1).await.unwrap().unwrap();
        (r.status == CommandStatus::Done).then_some(())
    })
    .await;
    assert_eq!(
        store.command(c1).await.unwrap().unwrap().result.as_deref(),
        Some("Stopped: stopped")
    );
    c.send_raw(b"{\"version\":2,\"message\":{\"NodeEvent\":{\"type\":\"Error\",\"message\":\"not yet implemented\"}}}\n").await;
    eventually("command failed", || async {
        let r = store.command(c2).await.unwrap().unwrap();
        (r.status == CommandStatus::Failed).then_some(())
    })
    .await;
    let pots = store.list_pots(n.node_id).await.unwrap();
    assert_eq!(pots.len(), 1);
    assert_eq!(pots[0].status, "Stopped");
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_every_shape_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let core = start(config(dir.path())).await;
    let n = core.add_node("sensor-9", EnrollKind::Totp).await.unwrap();
    let mut live = core.subscribe();
    let mut c = Client::connect(&core).await;
    assert!(
        c.register("sensor-9", 9, Some(code(n.totp_secret.as_deref().unwrap(), 0))).await.accepted
    );
    // Back to back with no separator (the Rust example node), then split across writes.
    c.send_raw(concat!(
        r#"{"version":2,"message":{"PotEvent":{"node_id":9,"pot_id":"cowrie-01","pot_type":"cowrie","event_type":"cowrie.login.failed","timestamp":"2024-01-15T10:30:00Z","data":{"username":"root","password":"admin","src_ip":"203.0.113.7","src_port":40000}}}}"#,
        r#"{"version":2,"message":{"PotEvent":{"node_id":9,"pot_id":"cowrie-01","event":"cowrie.command.input","message":"CMD: uname -a","metadata":{"src_ip":"203.0.113.7","input":"uname -a"},"timestamp":1705314601}}}"#,
    ).as_bytes()).await;
    let carrier = br#"{"version":2,"message":{"PotStatusUpdate":{"node_id":9,"pot_id":"cowrie-01","pot_type":"","status":"","message":"New connection: 198.51.100.1"}}}"#;
    let (x, y) = carrier.split_at(50);
    c.send_raw(x).await;
    c.send_raw(y).await;
    c.send_raw(b"\r\n").await;
    // The apiary extension carries an id: sent twice (a resend after a reconnect), stored once.
    let mut e = apiary_event::Event::new(Kind::AUTH_ATTEMPT, "spoofed-name".into());
    e.src_ip = Some("192.0.2.50".parse().unwrap());
    c.send(&NodeMessage::ApiaryEvent(Box::new(e.clone()))).await;
    c.send(&NodeMessage::ApiaryEvent(Box::new(e.clone()))).await;

    let store = core.store();
    let q = EventQuery::default();
    eventually("events stored", || async {
        (store.count_events(&q).await.unwrap() == 4).then_some(())
    })
    .await;
    eventually("duplicate counted", || async {
        (core.stats().events_duplicate == 1).then_some(())
    })
    .await;

    let by_src = store
        .query_events(&EventQuery {
            src_ip: Some("203.0.113.7".parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_src.len(), 2);
    assert!(by_src.iter().all(|e| e.kind == Kind::POT_EVENT && &*e.node == "sensor-9"));
    assert_eq!(by_src[0].command.as_ref().unwrap().input, "uname -a");
    assert_eq!(by_src[1].auth.as_ref().unwrap().username.as_deref(), Some("root"));
    let stored_ext = store
        .query_events(&EventQuery { kind: Some("auth.attempt".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(stored_ext.len(), 1);
    assert_eq!(stored_ext[0].id, e.id);
    assert_eq!(&*stored_ext[0].node, "sensor-9", "the connection's identity wins");
    let creds = store.top_credentials(None, None, 10).await.unwrap();
    assert_eq!(creds[0].key, (Some("root".to_string()), Some("admin".to_string())));
    let first_live =
        tokio::time::timeout(Duration::from_secs(10), live.recv()).await.unwrap().unwrap();
    assert_eq!(first_live.kind, Kind::POT_EVENT);
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_node_goes_offline_after_missed_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.heartbeat_interval = Duration::from_millis(200);
    cfg.missed_heartbeats = 2;
    let core = start(cfg).await;
    let n = core.add_node("quiet", EnrollKind::Totp).await.unwrap();
    let mut c = Client::connect(&core).await;
    assert!(
        c.register("quiet", 3, Some(code(n.totp_secret.as_deref().unwrap(), 0))).await.accepted
    );
    c.heartbeat().await;
    let store = core.store();
    eventually("running", || async {
        (store.node_by_id(n.node_id).await.unwrap().unwrap().status == "Running").then_some(())
    })
    .await;
    assert!(c.closed().await, "the Core drops a silent node");
    let rec = eventually("offline", || async {
        let r = store.node_by_id(n.node_id).await.unwrap().unwrap();
        (!r.online).then_some(r)
    })
    .await;
    assert_eq!(rec.status, "offline");
    assert_eq!(core.stats().timed_out, 1);
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_enrollment_issues_a_totp_secret_for_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let core = start(config(dir.path())).await;
    let n = core.add_node("go-node", EnrollKind::Token).await.unwrap();
    let token = n.token.clone().unwrap();
    assert!(n.totp_secret.is_none());
    let mut c = Client::connect(&core).await;
    let ack = c.register("go-node", 1, Some(token.clone())).await;
    assert!(ack.accepted, "{ack:?}");
    let key = ack.totp_key.expect("a TOTP secret is issued with the ack");
    c.send(&NodeMessage::NodeDrop).await;
    assert!(c.closed().await);
    // The token works once.
    let mut c = Client::connect(&core).await;
    let ack = c.register("go-node", 1, Some(token)).await;
    assert!(!ack.accepted);
    // The issued secret works.
    let mut c = Client::connect(&core).await;
    let ack = c.register("go-node", 1, Some(code(&key, 0))).await;
    assert!(ack.accepted, "{ack:?}");
    assert!(ack.totp_key.is_none());
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serde_style_nodes_get_bare_string_unit_commands() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.transport = NodeTransport::Both;
    let core = start(cfg).await;
    let n = core.add_node("rusty", EnrollKind::Totp).await.unwrap();
    // Plain TCP on the shared port, writing with no newline like the Rust example node.
    let mut c = Client::plain(&core).await;
    let mut reg = Vec::new();
    apiary_proto::wire::encode_node_message(
        &util::registration("rusty", 5, Some(code(n.totp_secret.as_deref().unwrap(), 0))),
        apiary_proto::UnitStyle::BareString,
        &mut reg,
    );
    reg.pop();
    c.send_raw(&reg).await;
    assert!(c.ack().await.accepted);
    c.send_raw(br#"{"version":2,"message":{"NodeEvent":"Started"}}{"version":2,"message":{"NodeStatusUpdate":{"node_id":5,"status":"Running"}}}"#).await;
    core.send_command(n.node_id, NodeCommandType::Restart).await.unwrap();
    let line = c.recv_line().await.unwrap();
    let text = String::from_utf8(line.to_vec()).unwrap();
    assert!(text.contains(r#""command":"Restart""#), "{text}");
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_refuses_expired_and_not_yet_valid_certificates_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.mtls = true;
    let core = start(cfg).await;
    let now = util::unix_now() as i64;
    let tls_dir = dir.path().join("tls");
    // (node, valid from, valid until, reason the Core gives)
    let cases = [
        ("c-valid", now - 60, now + 3600, None),
        ("c-expired", now - 7200, now - 3600, Some("expired at")),
        ("c-early", now + 3600, now + 7200, Some("is not valid yet")),
    ];
    let mut connected = Vec::new();
    for (name, from, until, why) in cases {
        let e = core.add_node(name, EnrollKind::Totp).await.unwrap();
        let c =
            apiary_core::tls::issue_node_cert_between(&tls_dir, &[], e.node_id, name, from, until)
                .unwrap();
        let record = apiary_core::NodeCertRecord {
            sha256: c.sha256.clone(),
            not_before: Some(c.not_before),
            not_after: Some(c.not_after),
        };
        core.store().set_node_cert(e.node_id, &record, 0).await.unwrap();
        let pem = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
        // The handshake completes (the certificate is genuine), so the node hears why.
        let mut client = Client::with_cert(&core, &pem(&c.cert), &pem(&c.key)).await;
        let ack = client.register(name, 7, Some(code(e.totp_secret.as_deref().unwrap(), 0))).await;
        match why {
            None => {
                assert!(ack.accepted, "{name}: {ack:?}");
                connected.push(client);
            }
            Some(why) => {
                assert!(!ack.accepted, "{name}");
                let msg = ack.message.unwrap_or_default();
                assert!(msg.contains(why) && msg.contains("apiary core node cert"), "{msg}");
                assert!(client.closed().await);
            }
        }
    }
    // A certificate outside its window from another CA still fails in the handshake.
    let other = tempfile::tempdir().unwrap();
    let foreign = apiary_core::tls::issue_node_cert_between(
        other.path(),
        &[],
        1,
        "c-valid",
        now - 7200,
        now - 3600,
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(core.local_addr()).await.unwrap();
    let ca = core.tls_files().unwrap().ca_cert.clone();
    let (cert, key) = (
        std::fs::read_to_string(&foreign.cert).unwrap(),
        std::fs::read_to_string(&foreign.key).unwrap(),
    );
    let refused = async {
        let mut io = util::tls_connect_as(tcp, &ca, Some((&cert, &key))).await?;
        // TLS 1.3: the client learns of a refused certificate on its first read.
        tokio::io::AsyncWriteExt::write_all(&mut io, b"\n").await?;
        let mut b = [0u8; 1];
        tokio::io::AsyncReadExt::read(&mut io, &mut b).await
    };
    assert!(refused.await.is_err_and(|e| e.to_string().contains("alert")));
    // The node with a valid certificate was served throughout.
    connected[0].heartbeat().await;
    assert_eq!(core.connected_nodes(), vec![1]);
    core.shutdown().await;
}
