//! Scripted services: Lua and Python plugins named in `[[service]]` serve connections and
//! datagrams, are checked before binding, and are reloaded when their file changes.

use std::time::Duration;

use apiary_event::{Kind, Transport};
use apiary_pot::{Limits, check_services};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::support::{service, start};

const LUA: &str = r#"
function handle()
  tx("ACCEPT_CONN: " .. remote_host .. "\n")
  local count = 0
  while true do
    local data = rx()
    if data == nil then return end
    count = count + 1
    if data == "login\n" then
      log("auth.attempt", {username = "root", password = "toor"})
    end
    tx(md5(tostring(count)) .. "\n")
  end
end

function datagram(data)
  session.n = (session.n or 0) + 1
  tx("v1 " .. session.n .. " " .. data)
end
"#;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_lua_plugin_serves_tcp_and_udp_and_logs_typed_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "count.lua", LUA);
    let pot =
        start(&[service("Scripted", &path, &["tcp:0", "udp:0"])], Limits::default(), "127.0.0.1");
    let mut s =
        TcpStream::connect(pot.handle.addr("Scripted", Transport::Tcp).unwrap()).await.unwrap();
    let mut greet = [0u8; 23];
    s.read_exact(&mut greet).await.unwrap();
    assert_eq!(&greet, b"ACCEPT_CONN: 127.0.0.1\n");
    s.write_all(b"login\n").await.unwrap();
    let mut reply = [0u8; 33];
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"c4ca4238a0b923820dcc509a6f75849b\n");
    drop(s);

    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp = pot.handle.addr("Scripted", Transport::Udp).unwrap();
    let mut buf = [0u8; 64];
    for want in ["v1 1 a", "v1 2 b"] {
        c.send_to(&want.as_bytes()[5..], udp).await.unwrap();
        let n = c.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], want.as_bytes());
    }
    pot.wait_for(&Kind::SESSION_CLOSE, 1).await;
    let events = pot.finish().await;
    let auth = events.iter().find(|e| e.kind == Kind::AUTH_ATTEMPT).unwrap().auth.clone().unwrap();
    assert_eq!((auth.username.as_deref(), auth.password.as_deref()), (Some("root"), Some("toor")));
    assert_eq!(
        events.iter().find(|e| e.kind == Kind::SESSION_OPEN).unwrap().protocol.as_deref(),
        Some("script")
    );
}

#[tokio::test]
async fn a_changed_plugin_file_is_reloaded_for_new_datagrams() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "count.lua", LUA);
    let pot = start(&[service("Scripted", &path, &["udp:0"])], Limits::default(), "127.0.0.1");
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp = pot.handle.addr("Scripted", Transport::Udp).unwrap();
    let mut buf = [0u8; 64];
    c.send_to(b"x", udp).await.unwrap();
    let n = c.recv(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"v1 1 x");
    // The host looks at the file at most once a second; make the new mtime differ.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    write(&dir, "count.lua", &LUA.replace("\"v1 \"", "\"v2 \""));
    let f = std::fs::File::options().append(true).open(&path).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5)).unwrap();
    c.send_to(b"y", udp).await.unwrap();
    let n = c.recv(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"v2 "), "{:?}", String::from_utf8_lossy(&buf[..n]));
    pot.finish().await;
}

#[tokio::test]
async fn a_python_plugin_serves_connections() {
    if std::process::Command::new("python3").arg("-V").output().is_err() {
        assert!(std::env::var("APIARY_REQUIRE_SERVICES").is_err(), "python3 is required");
        eprintln!("skipping: python3 not on PATH");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "hello.py",
        "async def handle(conn):\n    await conn.tx('hi ' + conn.remote_host + '\\n')\n    data = await conn.rx()\n    conn.log('auth.attempt', {'username': 'py', 'password': data.decode().strip()})\n    await conn.tx(data.upper())\n",
    );
    let pot = start(&[service("Py", &path, &["tcp:0"])], Limits::default(), "127.0.0.1");
    let mut s = TcpStream::connect(pot.handle.addr("Py", Transport::Tcp).unwrap()).await.unwrap();
    let mut hi = [0u8; 13];
    s.read_exact(&mut hi).await.unwrap();
    assert_eq!(&hi, b"hi 127.0.0.1\n");
    s.write_all(b"secret\n").await.unwrap();
    let mut up = [0u8; 7];
    s.read_exact(&mut up).await.unwrap();
    assert_eq!(&up, b"SECRET\n");
    pot.wait_for(&Kind::AUTH_ATTEMPT, 1).await;
    let events = pot.finish().await;
    let auth = events.iter().find(|e| e.kind == Kind::AUTH_ATTEMPT).unwrap().auth.clone().unwrap();
    assert_eq!(auth.password.as_deref(), Some("secret"));
}

#[test]
fn broken_or_mismatched_scripts_fail_the_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let broken = write(&dir, "broken.lua", "function handle(\n  tx('x')\n");
    let errs = check_services(&[service("B", &broken, &["tcp:0"])]);
    assert!(errs[0].to_string().contains("broken.lua"), "{}", errs[0]);
    let tcp_only = write(&dir, "tcp.lua", "function handle() tx('x') end\n");
    let errs = check_services(&[service("T", &tcp_only, &["udp:0"])]);
    assert!(errs[0].to_string().contains("no `datagram`"), "{}", errs[0]);
    assert!(check_services(&[service("T", &tcp_only, &["tcp:0"])]).is_empty());
    let missing = dir.path().join("nope.lua");
    assert!(!check_services(&[service("M", missing.to_str().unwrap(), &["tcp:0"])]).is_empty());
}

#[tokio::test]
async fn lua_pool_is_a_checked_service_option() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "count.lua", LUA);
    // 0 turns the pool off: every connection builds its own state, and is still served.
    let mut svc = service("Scripted", &path, &["tcp:0"]);
    svc.options = "lua_pool = 0".parse().unwrap();
    let pot = start(&[svc], Limits::default(), "127.0.0.1");
    let mut s =
        TcpStream::connect(pot.handle.addr("Scripted", Transport::Tcp).unwrap()).await.unwrap();
    let mut greet = [0u8; 23];
    s.read_exact(&mut greet).await.unwrap();
    assert_eq!(&greet, b"ACCEPT_CONN: 127.0.0.1\n");
    drop(s);
    pot.finish().await;

    let config = apiary_pot::PotConfig {
        bind: vec!["127.0.0.1".parse().unwrap()],
        ..apiary_pot::PotConfig::default()
    };
    for (options, want) in
        [("lua_pool = 100000", "more than 256"), ("pool = 4", "unknown field `pool`")]
    {
        let mut svc = service("Scripted", &path, &["tcp:0"]);
        svc.options = options.parse().unwrap();
        let err =
            apiary_pot::Pot::bind("node-1", &config, &[svc], apiary_event::Collector::shared())
                .err()
                .unwrap_or_else(|| panic!("{options} was accepted"))
                .to_string();
        assert!(err.contains(want), "{options}: {err}");
    }
}
