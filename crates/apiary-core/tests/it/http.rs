//! The REST API and live stream against a real Core on 127.0.0.1:0 with a real node
//! connection (SQLite, and PostgreSQL when present), the stats rollups against direct queries,
//! and `apiary up` with a real HTTP client attacking its pot.

use std::sync::Arc;
use std::time::Duration;

use apiary_core::http::client::{Client as Api, EventQuery, StreamItem, StreamQuery};
use apiary_core::http::{self, HttpConfig, HttpHandle, Role};
use apiary_core::{CoreConfig, CoreHandle, StoredEvent};
use apiary_event::{Auth, AuthMethod, Command, Event, Kind, Payload, Timestamp};
use apiary_proto::{CoreMessage, NodeCommandType, NodeMessage, PotStatus, PotStatusUpdate};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::util::{self, Client as Node, code, config, eventually, start};

fn http_cfg() -> HttpConfig {
    HttpConfig { listen: "127.0.0.1:0".parse().unwrap(), ..HttpConfig::default() }
}

async fn serve(cfg: CoreConfig) -> (CoreHandle, HttpHandle) {
    let core = start(cfg).await;
    let api = http::start(&core, http_cfg()).await.unwrap();
    (core, api)
}

/// An attack session as a pot records it: open, a login, a command, the shell's answer.
fn session_events(node: &str, src: &str, t0: Timestamp) -> (Uuid, Vec<Event>) {
    let session = Uuid::now_v7();
    let mk = |i: i64, kind: Kind| {
        let mut e = Event::at(
            kind,
            Arc::from(node),
            Timestamp::from_micros(t0.as_micros() + i * 1000),
            Uuid::now_v7(),
        );
        e.service = Some(Arc::from("telnet"));
        e.protocol = Some(Arc::from("telnet"));
        e.src_ip = Some(src.parse().unwrap());
        e.src_port = Some(40000);
        e.session = Some(session);
        e
    };
    let open = mk(0, Kind::SESSION_OPEN);
    let mut auth = mk(1, Kind::AUTH_ATTEMPT);
    auth.auth = Some(Box::new(Auth {
        method: AuthMethod::Password,
        username: Some("root".into()),
        password: Some("<script>alert(1)</script>".into()),
        success: true,
        extra: Default::default(),
    }));
    let mut cmd = mk(2, Kind::COMMAND_INPUT);
    cmd.command = Some(Box::new(Command {
        input: "uname -a".into(),
        interpreter: Some("shell".into()),
        known: Some(true),
    }));
    let mut tx = mk(3, Kind::SESSION_TX);
    tx.payload = Some(Payload::new(b"Linux web01 5.10.0 x86_64 GNU/Linux\r\n$ ", 1024));
    (session, vec![open, auth, cmd, tx])
}

async fn get(api: &HttpHandle, token: Option<&str>, path: &str) -> (StatusCode, Value) {
    let mut rb = reqwest::Client::new().get(format!("{}/api/v1{path}", api.base_url()));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap();
    let status = r.status();
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, v)
}

/// Enrolls through the API, connects a real node over TLS, streams a session, and checks
/// every read endpoint, the live stream and a command's round trip.
async fn end_to_end(cfg: CoreConfig) {
    let (core, api) = serve(cfg).await;
    let admin = api.db().create_token("alice", Role::Admin, false).await.unwrap();
    let client = Api::new(&api.base_url(), &admin).unwrap();

    // Enroll through the API: a TOTP secret and its QR code.
    let enrolled = client.add_node("edge-1", "totp").await.unwrap();
    let secret = enrolled["totp_secret"].as_str().unwrap().to_owned();
    assert!(enrolled["qr_svg"].as_str().unwrap().contains("<svg"));
    let node_id = enrolled["node_id"].as_i64().unwrap();

    // Subscribe to the live stream before anything happens.
    let (live_tx, mut live_rx) = tokio::sync::mpsc::unbounded_channel();
    let follower = client.clone();
    let follow = tokio::spawn(async move {
        follower
            .follow(
                &StreamQuery { kind: Some("auth.attempt".into()), ..Default::default() },
                |item| live_tx.send(item).is_ok(),
            )
            .await
    });

    let mut node = Node::connect(&core).await;
    let ack = node.register("edge-1", 7, Some(code(&secret, 0))).await;
    assert!(ack.accepted, "{ack:?}");
    node.heartbeat().await;
    let t0 = Timestamp::now();
    let (session, events) = session_events("edge-1", "203.0.113.7", t0);
    for e in &events {
        node.send(&NodeMessage::ApiaryEvent(Box::new(e.clone()))).await;
    }
    let (_, other) = session_events("edge-1", "198.51.100.9", t0);
    for e in &other {
        node.send(&NodeMessage::ApiaryEvent(Box::new(e.clone()))).await;
    }

    // Live: the login arrives on the stream, filtered server-side to auth.attempt.
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match live_rx.recv().await {
                Some(StreamItem::Events(evs)) => seen.extend(evs),
                Some(StreamItem::Lagged(_)) => {}
                None => break,
            }
        }
        seen
    })
    .await
    .expect("live stream delivered nothing");
    assert!(got.iter().all(|e| e.kind == Kind::AUTH_ATTEMPT), "{got:?}");
    assert_eq!(got.first().map(|e| e.id), Some(events[1].id));

    // Search: the 8 attack events (the node's first heartbeat also stored a node.status
    // event), then filters.
    let telnet = || EventQuery { service: Some("telnet".into()), ..Default::default() };
    let all = eventually("8 stored events", || async {
        let p = client.events(&EventQuery { since: Some("1h".into()), ..telnet() }).await.unwrap();
        (p.events.len() == 8).then_some(p)
    })
    .await;
    let everything = client.events(&EventQuery::default()).await.unwrap();
    assert_eq!(everything.events.len(), 9);
    assert_eq!(everything.events.iter().filter(|e| e.kind == Kind::NODE_STATUS).count(), 1);
    assert!(all.events.windows(2).all(|w| (w[0].time, w[0].id) >= (w[1].time, w[1].id)));
    let by_src = client
        .events(&EventQuery { src_ip: Some("203.0.113.7".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(by_src.events.len(), 4);
    let by_kind = client
        .events(&EventQuery { kind: Some("command.input".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(by_kind.events.len(), 2);
    let by_service = client
        .events(&EventQuery {
            service: Some("telnet".into()),
            node_id: Some(node_id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_service.events.len(), 8);
    let none = client
        .events(&EventQuery { service: Some("smtp".into()), ..Default::default() })
        .await
        .unwrap();
    assert!(none.events.is_empty());
    let text =
        client.events(&EventQuery { q: Some("uname".into()), ..Default::default() }).await.unwrap();
    assert_eq!(text.events.len(), 2);
    let future = client
        .events(&EventQuery { since: Some("2999-01-01T00:00:00Z".into()), ..Default::default() })
        .await
        .unwrap();
    assert!(future.events.is_empty());

    // Paging: 3 + 3 + 2 with cursors, no overlap, same order as one page.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let p = client
            .events(&EventQuery { limit: Some(3), before: before.clone(), ..telnet() })
            .await
            .unwrap();
        paged.extend(p.events.iter().map(|e| e.id));
        match p.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    assert_eq!(paged, all.events.iter().map(|e| e.id).collect::<Vec<_>>());

    // One event, one session (in order, with a terminal recording).
    let (st, one) = get(&api, Some(&admin), &format!("/events/{}", events[2].id)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(one["command"]["input"], "uname -a");
    let (st, s) = get(&api, Some(&admin), &format!("/sessions/{session}")).await;
    assert_eq!(st, StatusCode::OK);
    let ids: Vec<&str> =
        s["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    let want: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, want);
    let cast = s["asciicast"].as_str().unwrap();
    assert!(cast.starts_with("{\"") && cast.contains("Linux web01"), "{cast}");

    // Statistics.
    let ov = client.overview("2h").await.unwrap();
    assert_eq!(ov["total"], 9);
    let sources: Vec<(&str, i64)> = ov["top_sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["key"].as_str().unwrap(), t["count"].as_i64().unwrap()))
        .collect();
    assert_eq!(sources, vec![("198.51.100.9", 4), ("203.0.113.7", 4)]);
    assert_eq!(ov["top_credentials"][0]["username"], "root");
    assert_eq!(ov["top_credentials"][0]["password"], "<script>alert(1)</script>");
    assert_eq!(ov["top_credentials"][0]["count"], 2);
    assert_eq!(ov["top_commands"][0], json!({ "key": "uname -a", "count": 2 }));
    assert_eq!(ov["top_services"][0], json!({ "key": "telnet", "count": 8 }));
    let points: i64 =
        ov["timeline"]["points"].as_array().unwrap().iter().map(|p| p[1].as_i64().unwrap()).sum();
    assert_eq!(points, 9);

    // A command and its result: the node answers GetInstalledPots with a pot status.
    let sent = client.send_command(node_id, &NodeCommandType::GetInstalledPots).await.unwrap();
    // The node is connected, so the Core may already have written it when the API reads the
    // row back: either early state is right, an answer is not (the node has not replied).
    assert!(["pending", "sent"].contains(&sent.status.as_str()), "{}", sent.status);
    let cmd = loop {
        match node.recv().await {
            Some(CoreMessage::NodeCommand(c)) => break c,
            Some(_) => {}
            None => panic!("core closed the node connection"),
        }
    };
    assert_eq!(cmd.command, NodeCommandType::GetInstalledPots);
    node.send(&NodeMessage::PotStatusUpdate(PotStatusUpdate {
        node_id: 7,
        pot_id: "web".into(),
        pot_type: "honeypot".into(),
        status: PotStatus::Running,
        message: Some("listening".into()),
    }))
    .await;
    let done = client.command(sent.id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(done.status, "done", "{done:?}");
    assert_eq!(done.result.as_deref(), Some("Running: listening"));
    let pots = client.pots(node_id).await.unwrap();
    assert_eq!(pots.len(), 1);
    assert_eq!(pots[0].pot_id, "web");
    let detail = client.node(node_id).await.unwrap();
    assert!(detail.node.connected);
    assert_eq!(detail.commands[0].id, sent.id);

    // Every operator action is in the audit log, with the token's name as the actor.
    let (_, audit) = get(&api, Some(&admin), "/audit").await;
    let actions: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["actor"].as_str().unwrap().into(), a["action"].as_str().unwrap().into()))
        .collect();
    assert!(actions.contains(&("alice".into(), "node.add".into())), "{actions:?}");
    assert!(actions.contains(&("alice".into(), "command.send".into())), "{actions:?}");

    follow.abort();
    api.shutdown().await;
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_end_to_end_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    end_to_end(config(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_end_to_end_on_postgres() {
    if !util::pg_available().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = CoreConfig {
        database_url: Some(util::PG_URL.into()),
        database_schema: Some(util::fresh_schema()),
        ..config(dir.path())
    };
    end_to_end(cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_roles_csrf_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let (core, api) = serve(config(dir.path())).await;
    let db = api.db();
    let admin = db.create_token("root-admin", Role::Admin, false).await.unwrap();
    let op = db.create_token("ops", Role::Operator, false).await.unwrap();
    let viewer = db.create_token("watcher", Role::Viewer, false).await.unwrap();
    assert!(db.create_token("ops", Role::Viewer, false).await.is_err(), "names are unique");
    assert!(db.create_token("bad name!", Role::Viewer, false).await.is_err());
    let node = core.add_node("n1", apiary_core::EnrollKind::Totp).await.unwrap();

    let (st, _) = get(&api, None, "/nodes").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = get(&api, Some("apiary_nonsense"), "/nodes").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v) = get(&api, Some(&viewer), "/nodes").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v[0]["name"], "n1");
    assert!(v[0].get("totp_secret").is_none(), "secrets never leave the Core");
    let (st, _) = get(&api, None, "/health").await;
    assert_eq!(st, StatusCode::OK);

    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}/api/v1{p}", api.base_url());
    let cmd = json!({ "command": { "DeployPot": "web" } });
    let post = |t: &str, p: &str, body: &Value| http.post(url(p)).bearer_auth(t).json(body).send();

    let r = post(&viewer, &format!("/nodes/{}/commands", node.node_id), &cmd).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post(&op, &format!("/nodes/{}/commands", node.node_id), &cmd).await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r =
        post(&op, &format!("/nodes/{}/commands", node.node_id), &json!({"command": {"Nope": 1}}))
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = post(&op, "/nodes", &json!({ "name": "n2" })).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post(&admin, "/nodes", &json!({ "name": "n2", "kind": "token" })).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token"].as_str().unwrap().len(), 32);
    // The answer is the node's whole node.toml, as `apiary core node add` prints it.
    assert_eq!(body["node_command"], "apiary node run -c node.toml");
    let node_toml: toml::Table = body["node_config"].as_str().unwrap().parse().unwrap();
    let section = node_toml["node"].as_table().unwrap();
    assert_eq!(section["name"].as_str(), Some("n2"));
    assert_eq!(section["token"].as_str(), body["token"].as_str());
    assert_eq!(
        section["core"].as_str().unwrap(),
        format!("CORE-HOST:{}", core.local_addr().port())
    );
    assert!(section["ca_file"].as_str().unwrap().ends_with("ca.pem"), "{section:?}");
    let r = post(&admin, "/nodes", &json!({ "name": "n2" })).await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = post(&admin, "/tokens", &json!({ "name": "carol", "role": "viewer" })).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (st, _) = get(&api, Some(&op), "/audit").await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // The dashboard's cookie works for reads; changes also need the CSRF header.
    let r = http.post(url("/login")).json(&json!({ "token": op })).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let r = http.get(url("/me")).header("cookie", &pair).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "ops");
    let path = format!("/nodes/{}/commands", node.node_id);
    let r = http.post(url(&path)).header("cookie", &pair).json(&cmd).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(url(&path))
        .header("cookie", &pair)
        .header("x-apiary-csrf", "1")
        .json(&cmd)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // The dashboard itself, with a strict content security policy.
    let r = http.get(format!("{}/", api.base_url())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers().get("content-security-policy").unwrap().to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(r.text().await.unwrap().contains("/assets/app.js"));
    let r = http.get(format!("{}/assets/app.js", api.base_url())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http.get(format!("{}/assets/../Cargo.toml", api.base_url())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let r = http
        .delete(url(&format!("/nodes/{}", node.node_id)))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .delete(url(&format!("/nodes/{}", node.node_id)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let (_, audit) = get(&api, Some(&admin), "/audit").await;
    let actions: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{} {}", a["actor"].as_str().unwrap(), a["action"].as_str().unwrap()))
        .collect();
    for want in [
        "ops command.send",
        "ops login",
        "root-admin node.add",
        "root-admin token.add",
        "root-admin node.delete",
    ] {
        assert!(actions.iter().any(|a| a == want), "{want} missing from {actions:?}");
    }
    api.shutdown().await;
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_nodes_issues_the_client_certificate_under_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.mtls = true;
    cfg.node_cert_validity = Duration::from_secs(30 * 86_400);
    let (core, api) = serve(cfg).await;
    let admin = api.db().create_token("admin", Role::Admin, false).await.unwrap();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}/api/v1{p}", api.base_url());
    let r = http.post(url("/nodes")).bearer_auth(&admin).json(&json!({ "name": "m1" }));
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    let cert = &body["client_certificate"];
    let (pem, key) = (cert["cert_pem"].as_str().unwrap(), cert["key_pem"].as_str().unwrap());
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{body}");
    let days = (cert["not_after"].as_i64().unwrap() - util::unix_now() as i64) / 86_400;
    assert!((29..=30).contains(&days), "{cert}");
    let secret = body["totp_secret"].as_str().unwrap().to_owned();
    // The node.toml in the answer names the files the certificate and key go in.
    let node_toml: toml::Table = body["node_config"].as_str().unwrap().parse().unwrap();
    let section = node_toml["node"].as_table().unwrap();
    assert_eq!(
        (section["client_cert"].as_str(), section["client_key"].as_str()),
        (Some("client.pem"), Some("client.key"))
    );
    assert_eq!(section["totp_secret"].as_str(), Some(secret.as_str()));
    let id = body["node_id"].as_i64().unwrap();

    // The material works as returned: the node registers with it.
    let mut node = Node::with_cert(&core, pem, key).await;
    let ack = node.register("m1", 3, Some(code(&secret, 0))).await;
    assert!(ack.accepted, "{ack:?}");
    drop(node);
    eventually("m1 offline", || async { core.connected_nodes().is_empty().then_some(()) }).await;

    // A renewed certificate replaces it: the old one is refused with the reason.
    let r = http.post(url(&format!("/nodes/{id}/cert"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let renewed: Value = r.json().await.unwrap();
    assert_ne!(renewed["sha256"], cert["sha256"]);
    let mut node = Node::with_cert(&core, pem, key).await;
    let ack = node.register("m1", 3, Some(code(&secret, 1))).await;
    assert!(!ack.accepted);
    assert!(ack.message.unwrap().contains("was not issued to node"));

    // Without mutual TLS there is nothing to issue.
    let dir2 = tempfile::tempdir().unwrap();
    let (core2, api2) = serve(config(dir2.path())).await;
    let admin2 = api2.db().create_token("admin", Role::Admin, false).await.unwrap();
    let r = http
        .post(format!("{}/api/v1/nodes", api2.base_url()))
        .bearer_auth(&admin2)
        .json(&json!({ "name": "p1" }))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert!(body.get("client_certificate").is_none(), "{body}");
    for (api, core) in [(api, core), (api2, core2)] {
        api.shutdown().await;
        core.shutdown().await;
    }
}

/// Events spread over several hours with repeated keys.
fn spread_events(n: usize, base: Timestamp) -> Vec<StoredEvent> {
    (0..n)
        .map(|i| {
            let t = base.as_micros() + (i as i64) * 7_919_000; // ~2.2 h per 1000 events
            let kind = match i % 4 {
                0 => Kind::AUTH_ATTEMPT,
                1 => Kind::COMMAND_INPUT,
                2 => Kind::SESSION_OPEN,
                _ => Kind::HTTP_REQUEST,
            };
            let mut e =
                Event::at(kind.clone(), Arc::from("n"), Timestamp::from_micros(t), Uuid::now_v7());
            e.src_ip = Some(format!("10.0.{}.{}", i % 3, (i * 7) % 11).parse().unwrap());
            e.service = Some(Arc::from(["ssh", "web", "smtp"][i % 3]));
            if kind == Kind::AUTH_ATTEMPT {
                e.auth = Some(Box::new(Auth {
                    method: AuthMethod::Password,
                    username: Some(["root", "admin"][i % 2].into()),
                    password: if i % 5 == 0 { None } else { Some(format!("pw{}", i % 6)) },
                    success: false,
                    extra: Default::default(),
                }));
            }
            if kind == Kind::COMMAND_INPUT {
                e.command = Some(Box::new(Command {
                    input: format!(
                        "wget http://x/{}{}",
                        i % 9,
                        "a".repeat(if i % 13 == 0 { 300 } else { 1 })
                    ),
                    interpreter: None,
                    known: None,
                }));
            }
            StoredEvent { node_id: Some(1), event: e }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rollups_match_direct_queries() {
    let dir = tempfile::tempdir().unwrap();
    let (core, api) = serve(config(dir.path())).await;
    let base = Timestamp::from_micros(Timestamp::now().as_micros() - 30 * 3_600_000_000);
    let events = spread_events(6000, base);
    let store = core.store();
    store.insert_events(&events[..4000]).await.unwrap();
    let db = api.db();
    let (since, until) = (base, Timestamp::now());
    for round in 0..2 {
        assert!(db.catch_up(u64::MAX).await.unwrap());
        let rolled = db.overview(since, until, 10).await.unwrap();
        let direct = db.overview_direct(since, until, 10).await.unwrap();
        assert_eq!(rolled.source, "rollup");
        assert_eq!(rolled.total, if round == 0 { 4000 } else { 6000 });
        assert!(rolled.top_credentials.iter().any(|c| c.password.is_none()));
        assert!(rolled.top_commands.iter().any(|c| c.key.chars().count() == 200));
        assert_eq!(
            serde_json::to_value(&rolled).unwrap().as_object().unwrap().len(),
            serde_json::to_value(&direct).unwrap().as_object().unwrap().len()
        );
        assert_eq!(
            (rolled.since, rolled.until, rolled.total),
            (direct.since, direct.until, direct.total)
        );
        assert_eq!(rolled.top_sources, direct.top_sources);
        assert_eq!(rolled.top_credentials, direct.top_credentials);
        assert_eq!(rolled.top_commands, direct.top_commands);
        assert_eq!(rolled.top_services, direct.top_services);
        assert_eq!(rolled.top_kinds, direct.top_kinds);
        assert_eq!(rolled.timeline, direct.timeline);
        // A narrower window, and a duplicate insert that must not be counted twice.
        let mid = Timestamp::from_micros(base.as_micros() + 5 * 3_600_000_000);
        let a = db.overview(mid, until, 5).await.unwrap();
        let b = db.overview_direct(mid, until, 5).await.unwrap();
        assert_eq!((a.total, &a.top_sources, &a.timeline), (b.total, &b.top_sources, &b.timeline));
        store.insert_events(&events[..4000]).await.unwrap();
        store.insert_events(&events[4000..]).await.unwrap();
    }
    api.shutdown().await;
    core.shutdown().await;
}

/// Several days of events with long, flat-ish key lists (many ties), so the day tier, the
/// edge hours and the threshold algorithm's deeper rounds all take part.
fn days_of_events(n: usize, base: Timestamp) -> Vec<StoredEvent> {
    (0..n)
        .map(|i| {
            let t = base.as_micros() + (i as i64) * 21_600_000; // 6 days per 24,000 events
            let h = (i as u64).wrapping_mul(2_654_435_761) % 1_000_003;
            let kind = if i % 3 == 0 { Kind::AUTH_ATTEMPT } else { Kind::COMMAND_INPUT };
            let mut e =
                Event::at(kind.clone(), Arc::from("n"), Timestamp::from_micros(t), Uuid::now_v7());
            // 600 sources, mildly skewed: a few hundred keys per hour, none dominant.
            let src = (h * h / 1_000_003) % 600;
            e.src_ip = Some(format!("10.1.{}.{}", src / 200, src % 200).parse().unwrap());
            e.service = Some(Arc::from(["ssh", "telnet"][i % 2]));
            if kind == Kind::AUTH_ATTEMPT {
                e.auth = Some(Box::new(Auth {
                    method: AuthMethod::Password,
                    username: Some(format!("u{}", h % 7)),
                    password: Some(format!("p{}", h % 97)),
                    success: false,
                    extra: Default::default(),
                }));
            } else {
                e.command = Some(Box::new(Command {
                    input: format!("cat /etc/{}", (h / 7) % 300),
                    interpreter: None,
                    known: None,
                }));
            }
            StoredEvent { node_id: Some(1), event: e }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_day_tier_top_lists_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (core, api) = serve(config(dir.path())).await;
    const H: i64 = 3_600_000_000;
    let base = Timestamp::from_micros(Timestamp::now().as_micros() - 7 * 24 * H);
    core.store().insert_events(&days_of_events(24_000, base)).await.unwrap();
    let db = api.db();
    assert!(db.catch_up(u64::MAX).await.unwrap());
    let at = |h: i64| Timestamp::from_micros(base.as_micros() + h * H);
    // Whole range; days plus both edges; a range inside one day; a single hour; empty.
    for (since, until) in [
        (base, Timestamp::now()),
        (at(5), at(150)),
        (at(30), at(100)),
        (at(49), at(50)),
        (at(-50), at(-20)),
    ] {
        for limit in [1, 3, 10, 100] {
            let rolled = db.overview(since, until, limit).await.unwrap();
            let direct = db.overview_direct(since, until, limit).await.unwrap();
            assert_eq!(rolled.source, "rollup");
            let what = format!("{since:?}..{until:?} top {limit}");
            assert_eq!(rolled.total, direct.total, "{what}");
            assert_eq!(rolled.top_sources, direct.top_sources, "{what}");
            assert_eq!(rolled.top_credentials, direct.top_credentials, "{what}");
            assert_eq!(rolled.top_commands, direct.top_commands, "{what}");
            assert_eq!(rolled.top_services, direct.top_services, "{what}");
            assert_eq!(rolled.top_kinds, direct.top_kinds, "{what}");
            assert_eq!(rolled.timeline, direct.timeline, "{what}");
        }
    }
    api.shutdown().await;
    core.shutdown().await;
}

#[test]
fn geoip_reads_country_and_city_databases() {
    let dir = tempfile::tempdir().unwrap();
    let city = dir.path().join("city.mmdb");
    crate::mmdb::write(&city, "GeoLite2-City", &crate::mmdb::test_entries(), 1_700_000_000);
    let g = http::geo::GeoIp::open(&city).unwrap();
    assert!(g.has_locations());
    assert_eq!(g.build_epoch(), 1_700_000_000);
    let de = g.locate("10.1.200.7".parse().unwrap()).unwrap();
    assert_eq!((de.country.as_deref(), de.cell), (Some("DE"), Some((53, 13))));
    let br = g.locate("10.2.0.1".parse().unwrap()).unwrap();
    assert_eq!((br.country.as_deref(), br.cell), (Some("BR"), Some((-24, -47))));
    assert_eq!(g.locate("10.3.0.9".parse().unwrap()).unwrap().country.as_deref(), Some("JP"));
    // Outside every network, the /24's neighbour, and IPv6 in an IPv4 database: unknown.
    for miss in ["10.9.9.9", "10.3.1.1", "192.0.2.1", "2001:db8::1"] {
        assert_eq!(g.locate(miss.parse().unwrap()), None, "{miss}");
    }
    let country = dir.path().join("country.mmdb");
    let entries: Vec<_> = crate::mmdb::test_entries()
        .into_iter()
        .map(|e| crate::mmdb::Entry { location: None, ..e })
        .collect();
    crate::mmdb::write(&country, "GeoLite2-Country", &entries, 1);
    let g = http::geo::GeoIp::open(&country).unwrap();
    assert!(!g.has_locations());
    let de = g.locate("10.1.0.1".parse().unwrap()).unwrap();
    assert_eq!((de.country.as_deref(), de.cell), (Some("DE"), None));
    // Not a MaxMind database at all.
    let junk = dir.path().join("junk.mmdb");
    std::fs::write(&junk, b"not a database").unwrap();
    assert!(http::geo::GeoIp::open(&junk).is_err());
    assert!(http::geo::GeoIp::open(&dir.path().join("missing.mmdb")).is_err());
}

/// Sources in the test GeoIP world and outside it, over two days.
fn located_events(base: Timestamp) -> Vec<StoredEvent> {
    let srcs = ["10.1.0.5", "10.1.9.9", "10.2.3.4", "10.3.0.7", "10.9.0.1", "2001:db8::7"];
    (0..3000)
        .map(|i: usize| {
            let t = base.as_micros() + (i as i64) * 57_600_000; // 2 days per 3,000
            let mut e = Event::at(
                Kind::SESSION_OPEN,
                Arc::from("n"),
                Timestamp::from_micros(t),
                Uuid::now_v7(),
            );
            // Skewed: the first sources are the busiest.
            e.src_ip = Some(srcs[(i * i) % 31 % srcs.len()].parse().unwrap());
            StoredEvent { node_id: Some(1), event: e }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_places_sources_with_a_geoip_database() {
    let dir = tempfile::tempdir().unwrap();
    let mmdb = dir.path().join("GeoLite2-City.mmdb");
    crate::mmdb::write(&mmdb, "GeoLite2-City", &crate::mmdb::test_entries(), 1_700_000_000);
    let mut cfg = config(&dir.path().join("core"));
    cfg.geoip = Some(mmdb.clone());
    let (core, api) = serve(cfg).await;
    let base = Timestamp::from_micros(Timestamp::now().as_micros() - 50 * 3_600_000_000);
    core.store().insert_events(&located_events(base)).await.unwrap();
    let db = api.db();
    assert!(db.catch_up(u64::MAX).await.unwrap());
    let (since, until) = (base, Timestamp::now());
    let rolled = db.overview(since, until, 10).await.unwrap();
    let direct = db.overview_direct(since, until, 10).await.unwrap();
    assert_eq!(rolled.source, "rollup");
    assert!(rolled.geoip);
    assert_eq!(rolled.top_countries, direct.top_countries);
    assert_eq!(rolled.map, direct.map);
    let keys: Vec<&str> = rolled.top_countries.iter().map(|t| t.key.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["BR", "DE", "JP"]);
    // Every located event is counted once by country and once on the map.
    let by_src = |p: &str| {
        rolled.top_sources.iter().filter(|t| t.key.starts_with(p)).map(|t| t.count).sum::<i64>()
    };
    let de = rolled.top_countries.iter().find(|t| t.key == "DE").unwrap().count;
    assert_eq!(de, by_src("10.1."));
    assert!(rolled.map.iter().any(|p| (p.lat, p.lon, p.count) == (53, 13, de)));
    assert_eq!(rolled.map.len(), 3);
    assert_eq!(
        rolled.top_countries.iter().map(|t| t.count).sum::<i64>(),
        rolled.map.iter().map(|p| p.count).sum::<i64>()
    );
    // The API serves the same lists to the dashboard.
    let admin = db.create_token("geo-admin", Role::Admin, false).await.unwrap();
    let client = Api::new(&api.base_url(), &admin).unwrap();
    let ov = client.overview("7d").await.unwrap();
    assert_eq!(ov["geoip"], json!(true));
    assert_eq!(ov["top_countries"].as_array().unwrap().len(), 3);
    assert_eq!(ov["map"].as_array().unwrap().len(), 3);
    api.shutdown().await;
    core.shutdown().await;

    // Restarted without the database: no map, no error, and the rollups are refolded.
    let (core, api) = serve(config(&dir.path().join("core"))).await;
    assert!(api.db().catch_up(u64::MAX).await.unwrap());
    let plain = api.db().overview(since, until, 10).await.unwrap();
    assert_eq!(plain.source, "rollup");
    assert!(!plain.geoip && plain.top_countries.is_empty() && plain.map.is_empty());
    assert_eq!(plain.total, rolled.total);
    api.shutdown().await;
    core.shutdown().await;

    // A database path that does not read stops the API from starting, loudly.
    let mut bad = config(&dir.path().join("core"));
    bad.geoip = Some(dir.path().join("missing.mmdb"));
    let core = start(bad).await;
    let err = http::start(&core, http_cfg()).await.unwrap_err();
    assert!(err.to_string().contains("missing.mmdb"), "{err}");
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_a_real_attack_to_the_api_and_runs_node_commands() {
    let dir = tempfile::tempdir().unwrap();
    let web = apiary_pot::ServiceConfig {
        name: "web".into(),
        plugin: "web".into(),
        ports: vec!["tcp:0".parse().unwrap()],
        bind: None,
        enabled: true,
        description: None,
        options: Default::default(),
    };
    let up = apiary_core::up::run(apiary_core::up::UpConfig {
        data_dir: dir.path().to_path_buf(),
        core_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        pot_bind: vec!["127.0.0.1".parse().unwrap()],
        services: Some(vec![web]),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(up.dashboard_url.contains("#token=apiary_"), "{}", up.dashboard_url);
    assert!(up.banner().contains(&up.token));
    let pot = up.listeners[0].addr;
    assert!(
        up.try_it().contains(&format!("curl http://127.0.0.1:{}/", pot.port())),
        "{}",
        up.try_it()
    );
    let api = Api::new(&up.api_url, &up.token).unwrap();

    let node = eventually("the local node connected", || async {
        let n = api.nodes().await.unwrap();
        n.into_iter().find(|n| n.connected && n.name == "local")
    })
    .await;
    assert_eq!(node.id, up.node_id);

    // A real client attacks the pot.
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-A", "apiary-test-agent", "-w", "%{http_code}"])
        .arg(format!("http://{pot}/wp-login.php?x=1"))
        .output()
        .await
        .expect("curl must be installed");
    assert!(out.status.success(), "{out:?}");
    let ev = eventually("the attack in the API", || async {
        let p = api
            .events(&EventQuery { kind: Some("http.request".into()), ..Default::default() })
            .await
            .unwrap();
        p.events
            .into_iter()
            .find(|e| e.http.as_ref().is_some_and(|h| h.target.starts_with("/wp-login.php")))
    })
    .await;
    assert_eq!(ev.src_ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(&*ev.node, "local");
    assert_eq!(ev.http.as_ref().unwrap().user_agent.as_deref(), Some("apiary-test-agent"));

    // Node commands really act on the pot.
    let wait = Duration::from_secs(20);
    let stop = api
        .run_command(up.node_id, &NodeCommandType::StopPot("default".into()), wait)
        .await
        .unwrap();
    assert_eq!(stop.status, "done", "{stop:?}");
    assert!(tokio::net::TcpStream::connect(pot).await.is_err(), "the stopped pot still accepts");
    let deploy = api.deploy(up.node_id, "default", wait).await.unwrap();
    assert_eq!(deploy.status, "done", "{deploy:?}");
    assert!(deploy.result.as_deref().unwrap_or_default().contains(&pot.to_string()), "{deploy:?}");
    tokio::net::TcpStream::connect(pot).await.expect("the pot is back on the same port");
    let bad = api.deploy(up.node_id, "nope", wait).await.unwrap();
    assert_eq!(bad.status, "failed");
    let pots = api.pots(up.node_id).await.unwrap();
    assert!(pots.iter().any(|p| p.pot_id == "default" && p.status == "Running"), "{pots:?}");

    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_sqlite_database_is_migrated_to_service_and_session_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let url = format!("sqlite:{}", path.display());
    // The events table as earlier versions created it, with the dashboard's JSON indexes.
    let (session, events) = session_events("n1", "203.0.113.9", Timestamp::now());
    {
        let opts =
            sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        for stmt in [
            "CREATE TABLE events (id TEXT PRIMARY KEY, time BIGINT NOT NULL, kind TEXT NOT NULL,
             node_id BIGINT, node TEXT NOT NULL, pot TEXT, src_ip TEXT, src_port BIGINT,
             username TEXT, password TEXT, body TEXT NOT NULL)",
            "CREATE TABLE node_certs (node_id BIGINT PRIMARY KEY, sha256 TEXT NOT NULL,
             created BIGINT NOT NULL)",
            "CREATE INDEX http_events_session ON events (json_extract(body, '$.session'))",
            "CREATE INDEX events_src ON events (src_ip, time)",
        ] {
            sqlx::query(stmt).execute(&pool).await.unwrap();
        }
        for e in &events {
            let mut body = Vec::new();
            apiary_event::encode::json_line(e, &mut body);
            sqlx::query(
                "INSERT INTO events (id, time, kind, node, body) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(e.id.to_string())
            .bind(e.time.as_micros())
            .bind(e.kind.as_str())
            .bind(&*e.node)
            .bind(String::from_utf8(body).unwrap().trim_end().to_owned())
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
    let _store = apiary_core::store::open(&url, None).await.unwrap();
    let db = http::Db::open(&url, None).await.unwrap();
    let timeline = db.session(session, 100).await.unwrap();
    assert_eq!(timeline.len(), events.len());
    let filter = http::EventFilter {
        service: events[0].service.as_deref().map(str::to_owned),
        ..Default::default()
    };
    assert_eq!(db.search(&filter).await.unwrap().events.len(), events.len());
    // The old indexes are gone, the new ones exist.
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
    let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'index'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(names.iter().any(|n| n == "events_session"), "{names:?}");
    assert!(!names.iter().any(|n| n == "http_events_session" || n == "events_src"), "{names:?}");
}
