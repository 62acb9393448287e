//! Python service scripts in the worker process: HashCountRandom, the conn API, errors,
//! crashes and hangs of the worker, UDP, reload.

use std::time::Duration;

use apiary_script::{Limits, ScriptError, ServicePlugin, SessionEnd, SessionInfo};

use crate::lua_service::bump_mtime;
use crate::support::{TestIo, md5_hex, options, plugins_dir, script};

#[tokio::test]
async fn hashcount_python_answers_like_honeypy() {
    let plugin = ServicePlugin::load(plugins_dir().join("hashcount.py"), options()).unwrap();
    assert!(plugin.handles_tcp());
    let mut io = TestIo::new(&[b"hello", b"again"]);
    let end = plugin.run_session(&mut io).await.unwrap();
    assert_eq!(end, SessionEnd::Returned);
    assert_eq!(io.sent.len(), 3);
    assert_eq!(io.sent[0], b"ACCEPT_CONN: 203.0.113.7\n");
    for (i, line) in io.sent[1..].iter().enumerate() {
        let expected = format!("{}:", md5_hex(&(i + 1).to_string()));
        assert!(line.starts_with(expected.as_bytes()), "line {i}: {line:?}");
        assert_eq!(line.len(), 32 + 1 + 99 + 1);
    }
}

#[tokio::test]
async fn conn_api_and_many_sessions_on_one_worker() {
    let src = r#"
async def handle(conn):
    conn.session["n"] = 1
    data = await conn.rx()
    conn.log("auth.attempt", {"username": "root", "password": data.decode()})
    await conn.sleep(0.01)
    await conn.tx(f"{conn.remote_host} {conn.remote_port} {conn.local_port} {conn.session_id} {conn.service} {conn.session['n']}")
    await conn.rx()
    await conn.rx()
    await conn.tx("never")
"#;
    let (_d, path) = script("svc.py", src);
    let plugin = ServicePlugin::load(&path, options()).unwrap();
    let mut ios: Vec<TestIo> = (0..20).map(|_| TestIo::new(&[b"toor"])).collect();
    let futs = ios.iter_mut().map(|io| {
        let plugin = plugin.clone();
        async move { plugin.run_session(io).await }
    });
    let results = futures_join_all(futs).await;
    for (res, io) in results.into_iter().zip(&ios) {
        assert_eq!(res.unwrap(), SessionEnd::PeerGone);
        assert_eq!(
            String::from_utf8(io.sent[0].clone()).unwrap(),
            "203.0.113.7 40123 4096 0198c6f0-0000-7000-8000-000000000001 hashcount 1"
        );
        assert_eq!(io.sent.len(), 1);
        assert_eq!(io.log_kinds(), ["auth.attempt"]);
        assert_eq!(io.logs[0].1["password"], "toor");
    }
}

async fn futures_join_all<F: std::future::Future>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out = Vec::new();
    // Poll all concurrently on this task: a tiny join_all without an extra dependency.
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (slot, res) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *res = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    out.extend(results.into_iter().map(|r| r.unwrap()));
    out
}

#[tokio::test]
async fn close_and_errors() {
    let src = r#"
async def handle(conn):
    data = await conn.rx()
    if data == b"close":
        await conn.tx("bye")
        await conn.close()
        await conn.tx("never")
    raise ValueError("boom " + data.decode())
"#;
    let (_d, path) = script("svc.py", src);
    let plugin = ServicePlugin::load(&path, options()).unwrap();
    let mut io = TestIo::new(&[b"close"]);
    assert_eq!(plugin.run_session(&mut io).await.unwrap(), SessionEnd::Closed);
    assert_eq!(io.sent, [b"bye".to_vec()]);

    let mut io = TestIo::new(&[b"x"]);
    match plugin.run_session(&mut io).await {
        Err(ScriptError::Runtime(m)) => assert!(m.contains("ValueError: boom x"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(io.error_log().unwrap()["error"], "runtime");
}

#[tokio::test]
async fn crashed_worker_is_restarted_and_its_sessions_end() {
    let src = r#"
import os
async def handle(conn):
    data = await conn.rx()
    if data == b"crash":
        os._exit(3)
    await conn.tx(b"ok")
"#;
    let (_d, path) = script("crash.py", src);
    let plugin = ServicePlugin::load(&path, options()).unwrap();
    let mut io = TestIo::new(&[b"crash"]);
    let res = plugin.run_session(&mut io).await;
    assert!(matches!(res, Err(ScriptError::Worker(_))), "{res:?}");
    assert_eq!(io.error_log().unwrap()["error"], "worker");
    // The next session is served by a fresh worker once it is up.
    let mut served = false;
    for _ in 0..100 {
        let mut io = TestIo::new(&[b"hi"]);
        if plugin.run_session(&mut io).await.is_ok() {
            assert_eq!(io.sent, [b"ok".to_vec()]);
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served);
    assert_eq!(plugin.worker_restarts(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn hung_worker_is_killed_and_does_not_stall_the_runtime() {
    let src = r#"
import time
async def handle(conn):
    data = await conn.rx()
    if data == b"hang":
        time.sleep(3600)
    await conn.tx(b"ok")
"#;
    let (_d, path) = script("hang.py", src);
    let mut opts = options();
    opts.limits = Limits { worker_ping_timeout: Duration::from_millis(400), ..Limits::default() };
    let plugin = ServicePlugin::load(&path, opts).unwrap();
    let lua = ServicePlugin::load(plugins_dir().join("hashcount.lua"), options()).unwrap();
    let mut hung = TestIo::new(&[b"hang"]);
    let mut other = TestIo::new(&[b"a"]);
    // On a single-threaded runtime, a Lua session still completes while Python is stuck.
    let (res, lua_res) = tokio::join!(plugin.run_session(&mut hung), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        lua.run_session(&mut other).await
    });
    assert!(matches!(res, Err(ScriptError::Worker(_))), "{res:?}");
    assert_eq!(lua_res.unwrap(), SessionEnd::Returned);
    assert_eq!(other.sent.len(), 2);
}

#[tokio::test]
async fn python_udp_datagrams() {
    let src = r#"
async def datagram(conn, data):
    n = conn.session.get("n", 0) + 1
    conn.session["n"] = n
    await conn.tx(b"%s:%d:" % (conn.remote_host.encode(), n) + data)
    conn.log("udp.seen", {"n": n})
"#;
    let (_d, path) = script("udp.py", src);
    let plugin = ServicePlugin::load(&path, options()).unwrap();
    assert!(plugin.handles_udp());
    assert!(!plugin.handles_tcp());
    let a = SessionInfo {
        remote_host: "198.51.100.1".into(),
        remote_port: 1,
        ..SessionInfo::default()
    };
    let b = SessionInfo {
        remote_host: "198.51.100.2".into(),
        remote_port: 1,
        ..SessionInfo::default()
    };
    assert_eq!(plugin.datagram(&a, b"x").await.unwrap().replies, [&b"198.51.100.1:1:x"[..]]);
    let r = plugin.datagram(&a, b"y").await.unwrap();
    assert_eq!(r.replies, [&b"198.51.100.1:2:y"[..]]);
    assert_eq!(r.logs[0].0, "udp.seen");
    assert_eq!(r.logs[0].1["n"], 2);
    assert_eq!(plugin.datagram(&b, b"z").await.unwrap().replies, [&b"198.51.100.2:1:z"[..]]);
}

#[tokio::test]
async fn python_reload_on_change() {
    let (_d, path) = script("svc.py", "async def handle(conn):\n    await conn.tx('v1')\n");
    let plugin = ServicePlugin::load(&path, options()).unwrap();
    let mut io = TestIo::new(&[]);
    plugin.run_session(&mut io).await.unwrap();
    assert_eq!(io.sent, [b"v1".to_vec()]);
    std::fs::write(&path, "async def handle(conn):\n    await conn.tx('v2')\n").unwrap();
    bump_mtime(&path, 10);
    assert!(plugin.reload_if_changed().unwrap());
    // The worker swaps code when it reads the load request, before the next session's open.
    let mut io = TestIo::new(&[]);
    plugin.run_session(&mut io).await.unwrap();
    assert_eq!(io.sent, [b"v2".to_vec()]);
    std::fs::write(&path, "async def handle(conn)\n").unwrap();
    bump_mtime(&path, 20);
    assert!(matches!(plugin.reload_if_changed(), Err(ScriptError::Syntax { .. })));
    let mut io = TestIo::new(&[]);
    plugin.run_session(&mut io).await.unwrap();
    assert_eq!(io.sent, [b"v2".to_vec()]);
}
