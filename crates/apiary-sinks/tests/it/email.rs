//! E-mail alerts over STARTTLS and implicit TLS with authentication, against aiosmtpd (PyPI,
//! the SMTP server of Python's standard toolkit) with a self-signed certificate, started here.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use apiary_event::{Event, Kind};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::common::{event, logger};

/// The server: requires STARTTLS (or speaks TLS from the first byte), requires AUTH with one
/// user and password, and prints each accepted message as one JSON line with the TLS version
/// and the authenticated user it arrived with.
const SERVER: &str = r#"
import asyncio, json, socket, ssl, sys
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

mode, cert, key, user, password = sys.argv[1:6]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)

class Handler:
    async def handle_DATA(self, server, session, envelope):
        tls = server.transport.get_extra_info("ssl_object")
        print(json.dumps({
            "tls": tls.version() if tls else None,
            "user": session.auth_data.login.decode() if session.authenticated else None,
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
        }), flush=True)
        return "250 OK queued"

def check(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == user.encode() \
        and data.password == password.encode()
    # handled=False: let aiosmtpd answer 535 itself on a failure.
    return AuthResult(success=ok, handled=False, auth_data=data)

def factory():
    if mode == "starttls":
        return SMTP(Handler(), hostname="mx.test", tls_context=ctx, require_starttls=True,
                    authenticator=check, auth_required=True, auth_require_tls=True)
    # Implicit TLS: the whole connection is TLS, so AUTH needs no STARTTLS first.
    return SMTP(Handler(), hostname="mx.test", authenticator=check, auth_required=True,
                auth_require_tls=False)

async def main():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = await asyncio.get_running_loop().create_server(
        factory, sock=sock, ssl=ctx if mode == "tls" else None)
    print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
    await server.serve_forever()

asyncio.run(main())
"#;

/// Whether aiosmtpd is importable; absent, the test is skipped, or fails with
/// `APIARY_REQUIRE_SERVICES=1`.
fn aiosmtpd() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("APIARY_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
            panic!(
                "aiosmtpd (pip install aiosmtpd) is not installed and APIARY_REQUIRE_SERVICES=1"
            );
        }
        eprintln!("note: aiosmtpd not installed; test skipped");
    }
    ok
}

struct Server {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    port: u16,
}

async fn server(mode: &str, dir: &Path) -> Server {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("smtpd.py"), SERVER).unwrap();
    let mut child = tokio::process::Command::new("python3")
        .arg(dir.join("smtpd.py"))
        .arg(mode)
        .arg(dir.join("cert.pem"))
        .arg(dir.join("key.pem"))
        .args(["alerts", "s3cret pass"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("aiosmtpd did not start")
        .unwrap()
        .unwrap();
    let port =
        serde_json::from_str::<serde_json::Value>(&first).unwrap()["port"].as_u64().unwrap() as u16;
    Server { child, lines, port }
}

fn config(port: u16, dir: &Path, extra: &str) -> apiary_sinks::SinkConfig {
    logger(&format!(
        "[[logger]]\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         from = \"alerts@example.org\"\nto = [\"soc@example.org\", \"oncall@example.org\"]\n\
         ca_file = \"{}\"\n{extra}",
        dir.join("cert.pem").display()
    ))
}

/// Sends one alert through the sink itself and returns what the server accepted.
async fn deliver(mode: &str, extra: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = server(mode, dir.path()).await;
    let cfg = config(srv.port, dir.path(), extra);
    let mut spec = cfg.build(&[], dir.path()).unwrap();
    spec.sink.send(&[Arc::new(event(7))]).await.unwrap();
    let line = tokio::time::timeout(Duration::from_secs(30), srv.lines.next_line())
        .await
        .expect("no message reached the server")
        .unwrap()
        .unwrap();
    let _ = srv.child.kill().await;
    serde_json::from_str(&line).unwrap()
}

fn check_message(got: &serde_json::Value) {
    assert_eq!(got["user"], "alerts", "{got}");
    assert_eq!(got["from"], "alerts@example.org");
    assert_eq!(got["to"], serde_json::json!(["soc@example.org", "oncall@example.org"]));
    let data = got["data"].as_str().unwrap();
    assert!(
        data.contains("Subject: [apiary] test-node: Possible Telnet attack from 203.0.113.7"),
        "{data}"
    );
    assert!(data.contains("To: <soc@example.org>, <oncall@example.org>"), "{data}");
    assert!(data.contains("Content-Type: text/plain; charset=utf-8"), "{data}");
}

#[tokio::test]
async fn starttls_with_auth_delivers_the_alert_encrypted() {
    if !aiosmtpd() {
        return;
    }
    let got =
        deliver("starttls", "starttls = true\nusername = \"alerts\"\npassword = \"s3cret pass\"\n")
            .await;
    assert!(got["tls"].as_str().unwrap().starts_with("TLSv1."), "{got}");
    check_message(&got);
}

#[tokio::test]
async fn implicit_tls_with_auth_delivers_the_alert() {
    if !aiosmtpd() {
        return;
    }
    let got =
        deliver("tls", "tls = true\nusername = \"alerts\"\npassword = \"s3cret pass\"\n").await;
    assert!(got["tls"].as_str().unwrap().starts_with("TLSv1."), "{got}");
    check_message(&got);
}

#[tokio::test]
async fn a_wrong_password_or_an_unknown_certificate_fails_the_send() {
    if !aiosmtpd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut srv = server("starttls", dir.path()).await;
    let test = Arc::new(Event::new(Kind::TEST, Arc::from("test-node")));

    let cfg = config(
        srv.port,
        dir.path(),
        "starttls = true\nusername = \"alerts\"\npassword = \"wrong\"\n",
    );
    let err =
        cfg.build(&[], dir.path()).unwrap().sink.send(&[Arc::clone(&test)]).await.unwrap_err();
    assert!(err.to_string().contains("535") || err.to_string().contains("AUTH"), "{err}");

    // A certificate the client does not trust: the handshake fails before AUTH.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let other_ca = dir.path().join("other.pem");
    std::fs::write(&other_ca, other.cert.pem()).unwrap();
    let cfg = logger(&format!(
        "[[logger]]\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {}\nfrom = \"a@example.org\"\n\
         to = [\"b@example.org\"]\nstarttls = true\nusername = \"alerts\"\npassword = \"s3cret pass\"\n\
         ca_file = \"{}\"\n",
        srv.port,
        other_ca.display()
    ));
    assert!(cfg.build(&[], dir.path()).unwrap().sink.send(&[test]).await.is_err());

    // Nothing was accepted.
    let none = tokio::time::timeout(Duration::from_millis(500), srv.lines.next_line()).await;
    assert!(none.is_err(), "a message got through: {none:?}");
    let _ = srv.child.kill().await;
}

#[tokio::test]
async fn starttls_never_falls_back_to_clear_text() {
    // A server that offers no STARTTLS and would take mail in clear: the sink must refuse.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt as _;
        let (sock, _) = listener.accept().await.unwrap();
        let (r, mut w) = sock.into_split();
        let mut lines = BufReader::new(r).lines();
        w.write_all(b"220 plain ESMTP\r\n").await.unwrap();
        let mut seen = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let reply: &[u8] = if line.starts_with("EHLO") {
                b"250-plain\r\n250 AUTH PLAIN\r\n"
            } else {
                b"250 ok\r\n"
            };
            seen.push(line);
            w.write_all(reply).await.unwrap();
        }
        seen
    });
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), ca.cert.pem()).unwrap();
    let cfg = config(port, dir.path(), "starttls = true\nusername = \"u\"\npassword = \"p\"\n");
    let test = Arc::new(Event::new(Kind::TEST, Arc::from("n")));
    let mut spec = cfg.build(&[], dir.path()).unwrap();
    let err = spec.sink.send(&[test]).await.unwrap_err();
    assert!(err.to_string().contains("STARTTLS"), "{err}");
    drop(spec);
    let seen = tokio::time::timeout(Duration::from_secs(10), seen).await.unwrap().unwrap();
    assert_eq!(seen, vec!["EHLO apiary".to_owned()], "only EHLO may cross in clear");
}

#[test]
fn passwords_without_tls_and_both_tls_modes_fail_config_check() {
    let base = "[[logger]]\ntype = \"email\"\nhost = \"h\"\nfrom = \"a@b\"\nto = [\"c@d\"]\n";
    let dir = tempfile::tempdir().unwrap();
    for (extra, want) in [
        ("username = \"u\"\npassword = \"p\"\n", "in clear"),
        ("tls = true\nstarttls = true\n", "exclude each other"),
    ] {
        let err = logger(&format!("{base}{extra}")).build(&[], dir.path()).err().unwrap();
        assert!(err.to_string().contains(want), "{extra}: {err}");
    }
}
