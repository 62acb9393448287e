//! `apiary pot run` as a user runs it: real sockets, events in the JSONL file, SIGTERM.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::apiary;

const CONFIG: &str = r#"
node = "test-node"
data_dir = "data"

[pot]
name = "itest"
bind = ["127.0.0.1"]

[[service]]
name = "Echo"
plugin = "echo"
ports = ["tcp:0", "udp:0"]

[[service]]
name = "HashCountRandom"
plugin = "hashcount"
ports = ["tcp:0"]

[[logger]]
type = "jsonl"
path = "events.jsonl"
"#;

struct Running {
    child: Child,
    ports: Vec<(String, String, u16)>,
}

/// Starts `apiary pot run` and reads the listener table from its stdout.
fn start(dir: &std::path::Path) -> Running {
    std::fs::write(dir.join("apiary.toml"), CONFIG).unwrap();
    let mut child = apiary()
        .args(["pot", "run", "-c", "apiary.toml"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ports = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("try it") {
            break;
        }
        let cols: Vec<_> = line.split_whitespace().collect();
        if let [service, _plugin, transport, port, _addrs] = cols[..]
            && let Ok(port) = port.parse()
        {
            ports.push((service.to_owned(), transport.to_owned(), port));
        }
    }
    Running { child, ports }
}

impl Running {
    fn port(&self, service: &str, transport: &str) -> u16 {
        self.ports.iter().find(|p| p.0 == service && p.1 == transport).unwrap().2
    }

    fn stop(mut self) -> i32 {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc_kill(self.child.id() as i32, 15) };
        self.child.wait().unwrap().code().unwrap()
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    pub(crate) fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Replaces values that change between runs so the event file can be compared to a golden one.
fn redact(line: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
    let obj = v.as_object_mut().unwrap();
    for key in ["id", "time", "session", "src_port", "dst_port"] {
        if obj.contains_key(key) {
            obj.insert(key.into(), key.to_uppercase().into());
        }
    }
    if let Some(close) = obj.get_mut("close").and_then(|c| c.as_object_mut()) {
        close.insert("duration_ms".into(), "DURATION".into());
    }
    if obj.get("service").and_then(|s| s.as_str()) == Some("HashCountRandom")
        && obj.get("kind").and_then(|k| k.as_str()) == Some("session.tx")
        && let Some(p) = obj.get_mut("payload").and_then(|p| p.as_object_mut())
        && p.get("len").and_then(|l| l.as_u64()) == Some(133)
    {
        // The 99 random bytes differ every run.
        p.insert("sha256".into(), "RANDOM".into());
        p.insert("b64".into(), "RANDOM".into());
    }
    serde_json::to_string(&v).unwrap()
}

#[test]
fn serves_logs_every_event_and_flushes_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path());

    let mut echo = TcpStream::connect(("127.0.0.1", running.port("Echo", "tcp"))).unwrap();
    echo.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    echo.write_all(b"hello apiary\n").unwrap();
    let mut buf = [0u8; 13];
    echo.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello apiary\n");
    drop(echo);

    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    udp.send_to(b"ping", ("127.0.0.1", running.port("Echo", "udp"))).unwrap();
    let n = udp.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");

    // This session is still open at SIGTERM: shutdown must close and log it.
    let mut hc = TcpStream::connect(("127.0.0.1", running.port("HashCountRandom", "tcp"))).unwrap();
    hc.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greet = [0u8; 23];
    hc.read_exact(&mut greet).unwrap();
    hc.write_all(b"x").unwrap();
    let mut reply = [0u8; 133];
    hc.read_exact(&mut reply).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    assert_eq!(running.stop(), 0);
    let text = std::fs::read_to_string(dir.path().join("data/events.jsonl")).unwrap();
    let mut got: Vec<String> = text.lines().map(redact).collect();
    // Services run concurrently: compare per session, in order within each.
    got.sort_by_key(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        format!("{}{}", v["service"], v["transport"])
    });
    let golden_path = format!("{}/tests/golden/run.jsonl", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("APIARY_BLESS").is_some() {
        std::fs::write(&golden_path, got.join("\n") + "\n").unwrap();
    }
    let want = std::fs::read_to_string(&golden_path).unwrap();
    assert_eq!(got.join("\n") + "\n", want, "APIARY_BLESS=1 rewrites the golden file");
}

fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[test]
fn binds_a_privileged_port_as_root_then_runs_as_the_configured_user() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { geteuid() } != 0 {
        assert!(
            std::env::var_os("APIARY_REQUIRE_SERVICES").is_none(),
            "CI runs as root: this test must not be skipped there"
        );
        println!("skipped: needs root");
        return;
    }
    // A privileged port that is free right now.
    let port =
        (600..1000).find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .unwrap();
    let config = format!(
        "data_dir = \"data\"\n[pot]\nbind = [\"127.0.0.1\"]\nuser = \"nobody\"\n\
         [[service]]\nname = \"MOTD\"\nplugin = \"motd\"\nports = [\"tcp:{port}\"]\n\
         [[logger]]\ntype = \"jsonl\"\n"
    );
    std::fs::write(dir.path().join("apiary.toml"), config).unwrap();
    let mut child = apiary()
        .args(["pot", "run", "-c", "apiary.toml"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().starts_with("try it")));
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert_eq!(got, "Prototype unit 0001 is ready to accept programming\r\n");
    assert_eq!(uid_of(child.id()), Some(65534), "runs as nobody after binding");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc_kill(child.id() as i32, 15) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

unsafe extern "C" {
    fn geteuid() -> u32;
}

#[test]
fn skip_busy_starts_the_rest_and_says_what_it_skipped() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "data_dir = \"data\"\n[pot]\nbind = [\"127.0.0.1\"]\n\
         [[service]]\nname = \"Busy\"\nplugin = \"echo\"\nports = [\"tcp:{busy}\"]\n\
         [[service]]\nname = \"Free\"\nplugin = \"motd\"\nports = [\"tcp:0\"]\n"
    );
    std::fs::write(dir.path().join("apiary.toml"), config).unwrap();
    // Without the flag the busy port is a clear error naming service and port.
    let out = apiary()
        .args(["pot", "run", "-c", "apiary.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("service `Busy`: cannot bind tcp/127.0.0.1:{busy}")), "{err}");
    // With it, the rest starts and the skipped port is reported.
    let mut child = apiary()
        .args(["pot", "run", "--skip-busy", "-c", "apiary.toml"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .take_while(|l| !l.starts_with("try it"))
        .collect();
    assert!(stdout.iter().any(|l| l.starts_with("Free")), "{stdout:?}");
    assert!(!stdout.iter().any(|l| l.starts_with("Busy")), "{stdout:?}");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc_kill(child.id() as i32, 15) };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(err.contains(&format!("skipped tcp 127.0.0.1:{busy}")), "{err}");
    drop(taken);
}
