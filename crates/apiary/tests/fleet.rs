//! The fleet as separate processes on loopback: `apiary core run`, nodes enrolled with
//! `apiary core node add`, `apiary node run` for each; pots deployed through commands over the
//! REST API, attacked with curl, events read back through the API and the store. Fault tests:
//! the Core SIGKILLed during a 50,000-event stream from two nodes (every event stored exactly
//! once), and a node restarted (same id, commands queued while it was away delivered).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use apiary_core::http::client::{Client, EventQuery};
use apiary_proto::{InstallPot, NodeCommandType};

use crate::apiary;

/// A child process killed when dropped, with its stdout lines on a channel.
pub(crate) struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    pub(crate) fn spawn(args: &[&str], config: &Path) -> Self {
        let mut child = apiary()
            .args(args)
            .arg("-c")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The rest of the first stdout line starting with `prefix`.
    pub(crate) fn wait_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line =
                self.lines.recv_timeout(left).unwrap_or_else(|_| panic!("no `{prefix}` line"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    }

    fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn stop(&mut self) {
        // SAFETY: kill(2) on our own child's pid; it touches no memory.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.sigkill();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Enrolls `name` with the CLI; returns (TOTP secret, CA file).
pub(crate) fn enroll(core_toml: &Path, name: &str) -> (String, String) {
    let out = apiary().args(["core", "node", "add", name, "-c"]).arg(core_toml).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("otpauth://totp/apiary:"), "{text}");
    assert!(text.contains("apiary node run -c node.toml"), "{text}");
    assert!(text.contains('█'), "no QR code in:\n{text}");
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().trim_matches('"').split('"').next().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
    };
    (field("totp_secret = "), field("ca_file = "))
}

/// Writes `dir/core.toml` for a Core with its data in `dir/core-data`, the node port `listen`
/// and the API on `http`, plus `extra` lines of `[core]`; returns (data dir, config path).
pub(crate) fn core_toml(dir: &Path, listen: &str, http: &str, extra: &str) -> (PathBuf, PathBuf) {
    let top = dir.join("core-data");
    let path = dir.join("core.toml");
    let text = format!(
        "data_dir = \"{}\"\n\n[core]\nlisten = \"{listen}\"\nhttp = \"{http}\"\n{extra}",
        top.display()
    );
    std::fs::write(&path, text).unwrap();
    (top, path)
}

pub(crate) fn node_toml(dir: &Path, name: &str, core: &str, secret: &str, ca: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "data_dir = \"{}\"\n\n[node]\nname = \"{name}\"\ncore = \"{core}\"\nca_file = \"{ca}\"\n\
         totp_secret = \"{secret}\"\nevent_port = 0\nreconnect_min = \"100ms\"\n\
         reconnect_max = \"1s\"\nbatch = 1000\n",
        dir.join(name).display()
    );
    std::fs::write(&path, text).unwrap();
    let check = apiary().args(["config", "check", "-c"]).arg(&path).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    path
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn api_token(top: &Path) -> String {
    let cfg = apiary_core::CoreSettings::default().to_config(top);
    rt().block_on(apiary_core::http::add_user_offline(
        &cfg,
        "fleet-test",
        apiary_core::http::Role::Admin,
    ))
    .unwrap()
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

pub(crate) fn web_pot(id: &str) -> NodeCommandType {
    let services = "[pot]\nbind = [\"127.0.0.1\"]\n\n[[service]]\nname = \"web\"\nplugin = \"web\"\nports = [\"tcp:0\"]\n";
    NodeCommandType::InstallPot(InstallPot {
        pot_id: id.into(),
        honeypot_type: "honeypot".into(),
        git_url: None,
        git_branch: None,
        config: Some(BTreeMap::from([("services".to_owned(), services.to_owned())])),
        auto_start: true,
    })
}

pub(crate) async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn node_id(api: &Client, name: &str) -> i64 {
    eventually(&format!("{name} online"), || async {
        api.nodes().await.ok()?.into_iter().find(|n| n.name == name && n.connected).map(|n| n.id)
    })
    .await
}

#[test]
fn core_and_three_nodes_deploy_attack_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let (top, core_toml) = core_toml(dir.path(), "127.0.0.1:0", "127.0.0.1:0", "");
    let names = ["bee-1", "bee-2", "bee-3"];
    let creds: Vec<(String, String)> = names.iter().map(|n| enroll(&core_toml, n)).collect();
    let token = api_token(&top);

    let core = Proc::spawn(&["core", "run"], &core_toml);
    let ca = core.wait_line("CA certificate (give it to nodes as ca_file):");
    assert_eq!(ca, creds[0].1);
    let addr = core.wait_line("listening on");
    let api_url = core.wait_line("API and dashboard:");
    let nodes: Vec<Proc> = names
        .iter()
        .zip(&creds)
        .map(|(n, (secret, ca))| {
            let p = Proc::spawn(&["node", "run"], &node_toml(dir.path(), n, &addr, secret, ca));
            p.wait_line("event socket:");
            p
        })
        .collect();

    rt().block_on(async {
        let api = Client::new(&api_url, &token).unwrap();
        for name in names {
            let id = node_id(&api, name).await;
            let pot = format!("web-{name}");
            let c = api.run_command(id, &web_pot(&pot), Duration::from_secs(60)).await.unwrap();
            assert_eq!(c.status, "done", "{c:?}");
            let result = c.result.unwrap();
            let port: u16 =
                result.rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("{result}"));

            // A real client attacks the pot.
            let url = format!("http://127.0.0.1:{port}/wp-login.php?from={name}");
            let out = std::process::Command::new("curl")
                .args([
                    "-s",
                    "-m",
                    "10",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-A",
                    "sqlmap/1.7",
                    &url,
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "curl failed: {out:?}");

            // The event, through the REST API.
            let ev = eventually("the attack in the API", || async {
                let q = EventQuery { node_id: Some(id), limit: Some(100), ..EventQuery::default() };
                let page = api.events(&q).await.ok()?;
                page.events.into_iter().find(|e| {
                    e.http.as_ref().is_some_and(|h| h.target.contains(&format!("from={name}")))
                })
            })
            .await;
            assert_eq!(&*ev.node, name);
            assert_eq!(ev.pot.as_deref(), Some(pot.as_str()));
            assert_eq!(ev.dst_port, Some(port));
            let pots = api.pots(id).await.unwrap();
            assert_eq!(pots.len(), 1);
            assert_eq!(pots[0].status, "Running");
        }
    });
    drop(nodes);
    drop(core);
}

/// Writes `count` JSON events with fresh ids to a node's event socket; returns the ids.
fn stream(addr: &str, count: usize, tag: &str) -> Vec<String> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut ids = Vec::with_capacity(count);
    let mut buf = String::new();
    for i in 0..count {
        let id = uuid::Uuid::now_v7().to_string();
        buf.push_str(&format!(
            "{{\"eventid\":\"cowrie.command.input\",\"event_id\":\"{id}\",\"input\":\"{tag} {i}\",\"src_ip\":\"198.51.100.{}\",\"session\":\"{tag}\"}}\n",
            i % 250
        ));
        ids.push(id);
        if buf.len() > 64 * 1024 {
            s.write_all(buf.as_bytes()).unwrap();
            buf.clear();
        }
    }
    s.write_all(buf.as_bytes()).unwrap();
    ids
}

#[test]
fn core_sigkill_mid_stream_and_node_restart_lose_nothing() {
    sigkill_mid_stream_and_restart(None);
}

/// The same on PostgreSQL, where batches go in with `COPY` and a resent batch takes the
/// deduplicating path.
#[test]
fn core_sigkill_mid_stream_on_postgres_stores_every_event_once() {
    let db = format!("apiary_fleet_{}", uuid::Uuid::now_v7().simple());
    let psql = |sql: &str| {
        std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc", sql])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !psql(&format!("CREATE DATABASE {db}")) {
        assert!(
            std::env::var_os("APIARY_REQUIRE_SERVICES").is_none(),
            "PostgreSQL on 127.0.0.1:5432 is required"
        );
        println!("skipped: no PostgreSQL");
        return;
    }
    sigkill_mid_stream_and_restart(Some(&format!("postgres://postgres@127.0.0.1:5432/{db}")));
    psql(&format!("DROP DATABASE {db} WITH (FORCE)"));
}

fn sigkill_mid_stream_and_restart(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let db_line = database_url.map(|u| format!("database_url = \"{u}\"\n")).unwrap_or_default();
    let (top, core_toml) =
        core_toml(dir.path(), &format!("127.0.0.1:{port}"), "127.0.0.1:0", &db_line);
    let names = ["ant-1", "ant-2"];
    let creds: Vec<(String, String)> = names.iter().map(|n| enroll(&core_toml, n)).collect();
    let out = apiary()
        .args(["core", "user", "add", "fleet-test", "--role", "admin", "-c"])
        .arg(&core_toml)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("token: ").map(str::to_owned))
        .unwrap();
    let mut core = Proc::spawn(&["core", "run"], &core_toml);
    let addr = core.wait_line("listening on");
    let tomls: Vec<PathBuf> = names
        .iter()
        .zip(&creds)
        .map(|(n, (s, ca))| node_toml(dir.path(), n, &addr, s, ca))
        .collect();
    let mut nodes: Vec<Proc> = tomls.iter().map(|t| Proc::spawn(&["node", "run"], t)).collect();
    let sockets: Vec<String> = nodes.iter().map(|p| p.wait_line("event socket:")).collect();
    let api_url = core.wait_line("API and dashboard:");
    let ids = rt().block_on(async {
        let api = Client::new(&api_url, &token).unwrap();
        let mut ids = Vec::new();
        for n in names {
            ids.push(node_id(&api, n).await);
        }
        ids
    });

    // 2 × 25,000 events; the Core dies in the middle of it.
    let writers: Vec<_> = sockets
        .iter()
        .zip(names)
        .map(|(s, n)| {
            let s = s.clone();
            std::thread::spawn(move || stream(&s, 25_000, n))
        })
        .collect();
    let store_url = database_url
        .map(str::to_owned)
        .unwrap_or_else(|| format!("sqlite:{}", top.join("core/core.db").display()));
    let count = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            let store = apiary_core::store::open(&store_url, None).await.unwrap();
            let q =
                apiary_core::EventQuery { kind: Some("pot.event".into()), ..Default::default() };
            store.count_events(&q).await.unwrap()
        })
    };
    let r = rt();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&r) < 5_000 {
        assert!(Instant::now() < deadline, "no events arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    core.sigkill();
    let before = count(&r);
    let sent: Vec<String> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert_eq!(sent.len(), 50_000);
    assert!(before < 50_000, "the Core was killed too late to test anything ({before})");

    let mut core = Proc::spawn(&["core", "run"], &core_toml);
    let api_url = core.wait_line("API and dashboard:");
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&r) < 50_000 {
        assert!(Instant::now() < deadline, "only {} of 50,000 events stored", count(&r));
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&r), 50_000, "every event exactly once");
    // A node restart: same id, and a command queued while it was away is delivered.
    nodes[0].sigkill();
    r.block_on(async {
        let api = Client::new(&api_url, &token).unwrap();
        eventually("ant-1 offline", || async {
            api.nodes()
                .await
                .ok()?
                .into_iter()
                .find(|n| n.name == "ant-1" && !n.connected)
                .map(|_| ())
        })
        .await;
        let queued = api.send_command(ids[0], &web_pot("late")).await.unwrap();
        assert_eq!(queued.status, "pending");
        let again = Proc::spawn(&["node", "run"], &tomls[0]);
        again.wait_line("event socket:");
        assert_eq!(node_id(&api, "ant-1").await, ids[0]);
        let done = api.command(queued.id, Duration::from_secs(60)).await.unwrap();
        assert_eq!(done.status, "done", "{done:?}");
        assert!(done.result.unwrap_or_default().starts_with("Running"));
        assert_eq!(api.nodes().await.unwrap().iter().filter(|n| n.name == "ant-1").count(), 1);
        nodes[0] = again;
    });
    for n in &mut nodes {
        n.stop();
    }
    core.stop();
}

#[test]
fn mutual_tls_fleet_enrolls_with_a_certificate_and_reissue_revokes_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let (top, core_toml) = core_toml(dir.path(), "127.0.0.1:0", "127.0.0.1:0", "mtls = true\n");
    let out =
        apiary().args(["core", "node", "add", "mt-1", "-c"]).arg(&core_toml).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().trim_matches('"').split('"').next().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
    };
    let (secret, ca) = (field("totp_secret = "), field("ca_file = "));
    let (cert, key) = (field("client_cert = "), field("client_key = "));
    assert!(cert.ends_with("nodes/mt-1.pem") && key.ends_with("nodes/mt-1.key"), "{text}");
    let (old_cert, old_key) = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());
    let token = api_token(&top);

    let core = Proc::spawn(&["core", "run"], &core_toml);
    let addr = core.wait_line("listening on");
    let api_url = core.wait_line("API and dashboard:");
    let toml = node_toml(dir.path(), "mt-1", &addr, &secret, &ca);
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(&format!("client_cert = \"{cert}\"\nclient_key = \"{key}\"\n"));
    std::fs::write(&toml, text).unwrap();
    let mut node = Proc::spawn(&["node", "run"], &toml);
    node.wait_line("event socket:");
    rt().block_on(async {
        let api = Client::new(&api_url, &token).unwrap();
        node_id(&api, "mt-1").await;
    });
    node.stop();

    // A new certificate: the old one, still on the node, no longer registers.
    let out =
        apiary().args(["core", "node", "cert", "mt-1", "-c"]).arg(&core_toml).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let new_cert = std::fs::read(&cert).unwrap();
    assert_ne!(old_cert, new_cert);
    std::fs::write(&cert, &old_cert).unwrap();
    std::fs::write(&key, &old_key).unwrap();
    let _node = Proc::spawn(&["node", "run"], &toml);
    rt().block_on(async {
        let api = Client::new(&api_url, &token).unwrap();
        eventually("the refusal in the Core's status", || async {
            let v: serde_json::Value = core_status(&api_url, &token).await?;
            v["rejections"]
                .to_string()
                .contains("was not issued to node \\\"mt-1\\\"")
                .then_some(())
        })
        .await;
        assert!(!api.nodes().await.unwrap().iter().any(|n| n.name == "mt-1" && n.connected));
    });
}

/// `GET /api/v1/core` (node-server counters and recent refusals).
async fn core_status(api_url: &str, token: &str) -> Option<serde_json::Value> {
    let out = std::process::Command::new("curl")
        .args(["-s", "-m", "10", "-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("{api_url}/api/v1/core"))
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

#[test]
fn config_check_validates_core_and_node_sections() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let path = dir.path().join("a.toml");
        std::fs::write(&path, text).unwrap();
        let out = apiary().args(["config", "check", "-c"]).arg(&path).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, out) = check("[core]\nlisten = \"127.0.0.1:9001\"\nenrollment = \"open\"\n");
    assert!(ok, "{out}");
    let (ok, out) = check("[core]\ncolour = 1\n");
    assert!(!ok && out.contains("unknown field `colour`"), "{out}");
    let (ok, out) = check("[core]\nmtls = true\ntransport = \"plain\"\n");
    assert!(!ok && out.contains("mtls: needs transport = \"tls\""), "{out}");
    let (ok, out) =
        check("[node]\nname = \"n1\"\nca_file = \"/ca.pem\"\nclient_cert = \"/n1.pem\"\n");
    assert!(!ok && out.contains("client_cert and client_key go together"), "{out}");
    let (ok, out) = check("[core]\ntls_cert = \"/x.pem\"\n");
    assert!(!ok && out.contains("tls_cert and tls_key go together"), "{out}");
    let (ok, out) = check("[node]\nname = \"n1\"\nplain = true\ntoken = \"T\"\n");
    assert!(ok, "{out}");
    assert!(out.contains("node `n1`"), "{out}");
    let (ok, out) = check("[node]\nname = \"n1\"\ntoken = \"T\"\n");
    assert!(!ok && out.contains("a.toml:1: key `node`: set ca_file"), "{out}");
    let (ok, out) = check("[node]\nname = \"n 1\"\nplain = true\nheartbeat = \"soon\"\n");
    assert!(!ok, "{out}");
    // The old form still works.
    let (ok, out) = check("node = \"sensor-7\"\n");
    assert!(ok && out.contains("node `sensor-7`"), "{out}");
}
