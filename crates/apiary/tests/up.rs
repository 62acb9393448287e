//! `apiary up`, the README's main-job command: starts, a real client's attack appears through
//! the REST API, and Ctrl-C ends it with status 0.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use crate::apiary;

fn http_get(addr: &str, path: &str, token: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn up_serves_an_attack_through_the_api_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pot.toml"),
        "[pot]\nprofiles = []\n[[service]]\nname = \"Echo\"\nplugin = \"echo\"\nports = [\"tcp:0\"]\n",
    )
    .unwrap();
    let mut child = apiary()
        .args(["up", "--http", "127.0.0.1:0", "--core", "127.0.0.1:0", "--bind", "127.0.0.1"])
        .args(["--data-dir", "data", "-c", "pot.toml"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let banner: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .take_while(|l| !l.starts_with("Press Ctrl-C"))
        .collect();
    let field = |name: &str| {
        banner.iter().find_map(|l| l.trim().strip_prefix(name)).map(|r| r.trim().to_owned())
    };
    let url = field("dashboard").unwrap();
    let token = field("API token").unwrap().split_whitespace().next().unwrap().to_owned();
    let api = url.trim_start_matches("http://").split('/').next().unwrap().to_owned();
    let echo = banner
        .iter()
        .find(|l| l.trim().starts_with("Echo"))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.trim().parse::<u16>().ok())
        .unwrap();

    let mut s = TcpStream::connect(("127.0.0.1", echo)).unwrap();
    s.write_all(b"attack\n").unwrap();
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).unwrap();
    drop(s);

    let mut seen = false;
    for _ in 0..100 {
        let body = http_get(&api, "/api/v1/events?limit=50", &token);
        if body.contains("\"service\":\"Echo\"") && body.contains("session.rx") {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(seen, "the attack never reached the API");
    assert!(http_get(&api, "/api/v1/events", "wrong-token").starts_with("HTTP/1.1 401"));

    // SAFETY: kill(2) on our own child's pid, SIGINT as Ctrl-C sends.
    unsafe { crate::run::libc_kill(child.id() as i32, 2) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
    // No listener survives it.
    assert!(TcpStream::connect(("127.0.0.1", echo)).is_err());
}
