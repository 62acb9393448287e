//! Lua service scripts: HashCountRandom, the script API, the sandbox and its limits, UDP.

use apiary_script::{Limits, ScriptError, ServicePlugin, SessionEnd, SessionInfo};

use crate::support::{TestIo, md5_hex, options, plugins_dir, script};

async fn run(source: &str, chunks: &[&[u8]]) -> (Result<SessionEnd, ScriptError>, TestIo) {
    run_with(source, chunks, Limits::default()).await
}

async fn run_with(
    source: &str,
    chunks: &[&[u8]],
    limits: Limits,
) -> (Result<SessionEnd, ScriptError>, TestIo) {
    let (_dir, path) = script("svc.lua", source);
    let mut opts = options();
    opts.limits = limits;
    let plugin = ServicePlugin::load(&path, opts).unwrap();
    let mut io = TestIo::new(chunks);
    let res = plugin.run_session(&mut io).await;
    (res, io)
}

#[tokio::test]
async fn hashcount_lua_answers_like_honeypy() {
    let plugin = ServicePlugin::load(plugins_dir().join("hashcount.lua"), options()).unwrap();
    assert!(plugin.handles_tcp());
    assert!(!plugin.handles_udp());
    let mut io = TestIo::new(&[b"hello", b"again"]);
    let end = plugin.run_session(&mut io).await.unwrap();
    assert_eq!(end, SessionEnd::Returned);
    assert_eq!(io.sent.len(), 3);
    assert_eq!(io.sent[0], b"ACCEPT_CONN: 203.0.113.7\n");
    for (i, line) in io.sent[1..].iter().enumerate() {
        let expected = format!("{}:", md5_hex(&(i + 1).to_string()));
        assert!(line.starts_with(expected.as_bytes()), "line {i}: {line:?}");
        assert_eq!(line.len(), 32 + 1 + 99 + 1);
        assert_eq!(line.last(), Some(&b'\n'));
    }
    assert_ne!(io.sent[1][33..132], io.sent[2][33..132], "random bytes differ");
}

#[tokio::test]
async fn script_sees_session_facts_and_logs_events() {
    let src = r#"
        function handle()
          session.greeting = "hi"
          log("auth.attempt", {username = "root", password = rx(), port = remote_port})
          tx(session.greeting .. " " .. remote_host .. " " .. remote_port .. " " .. local_port
             .. " " .. session_id .. " " .. service)
        end
    "#;
    let (res, io) = run(src, &[b"toor"]).await;
    assert_eq!(res.unwrap(), SessionEnd::Returned);
    assert_eq!(
        String::from_utf8(io.sent[0].clone()).unwrap(),
        "hi 203.0.113.7 40123 4096 0198c6f0-0000-7000-8000-000000000001 hashcount"
    );
    assert_eq!(io.log_kinds(), ["auth.attempt"]);
    let fields = &io.logs[0].1;
    assert_eq!(fields["username"], "root");
    assert_eq!(fields["password"], "toor");
    assert_eq!(fields["port"], 40123);
}

#[tokio::test]
async fn rx_returns_nil_at_eof_and_a_second_rx_ends_the_session() {
    let src = r#"
        function handle()
          local a = rx()
          local b = rx()
          tx(tostring(a) .. "/" .. tostring(b))
          rx()
          tx("never")
        end
    "#;
    let (res, io) = run(src, &[b"one"]).await;
    assert_eq!(res.unwrap(), SessionEnd::PeerGone);
    assert_eq!(io.sent, [b"one/nil".to_vec()]);
}

#[tokio::test]
async fn close_ends_the_session_and_sleep_waits() {
    let src = r#"
        function handle()
          sleep(0.01)
          tx("bye")
          close()
          tx("never")
        end
    "#;
    let (res, io) = run(src, &[]).await;
    assert_eq!(res.unwrap(), SessionEnd::Closed);
    assert_eq!(io.sent, [b"bye".to_vec()]);
}

#[tokio::test]
async fn a_failed_send_ends_the_session_quietly() {
    let src = "function handle() while true do tx('x'); rx() end end";
    let (_dir, path) = script("svc.lua", src);
    let plugin = ServicePlugin::load(&path, options()).unwrap();
    let mut io = TestIo::new(&[b"a", b"b", b"c"]);
    io.fail_tx_after = Some(1);
    assert_eq!(plugin.run_session(&mut io).await.unwrap(), SessionEnd::PeerGone);
    assert!(io.error_log().is_none());
}

#[tokio::test]
async fn script_errors_end_the_session_with_a_logged_error() {
    let (res, io) = run("function handle() tx('before') error('boom') end", &[]).await;
    match res {
        Err(ScriptError::Runtime(m)) => assert!(m.contains("boom"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(io.sent, [b"before".to_vec()], "data queued before the error is still sent");
    let fields = io.error_log().unwrap();
    assert_eq!(fields["error"], "runtime");
    assert!(fields["message"].as_str().unwrap().contains("boom"));
}

async fn assert_refused(body: &str) {
    let src = format!("function handle() {body} end");
    let (res, io) = run(&src, &[]).await;
    assert!(matches!(res, Err(ScriptError::Runtime(_))), "{body}: {res:?}");
    assert!(io.error_log().is_some(), "{body}");
    assert!(io.sent.is_empty(), "{body}");
}

#[tokio::test]
async fn sandbox_refuses_escapes() {
    for body in [
        "os.execute('touch /tmp/apiary-pwned')",
        "os.getenv('HOME')",
        "os.remove('/tmp/x')",
        "os.exit(1)",
        "io.open('/etc/passwd')",
        "io.write('x')",
        "require('os')",
        "package.loadlib('libc.so.6', 'system')",
        "dofile('/etc/passwd')",
        "loadfile('/etc/passwd')",
        "debug.getinfo(1)",
        "collectgarbage('stop')",
        "string.dump(function() end)",
        "local f = assert(load(string.char(27) .. 'LuaT' .. string.rep('\\0', 32))) f()",
    ] {
        assert_refused(body).await;
    }
}

#[tokio::test]
async fn load_of_bytecode_is_refused_but_text_chunks_work() {
    let src = r#"
        function handle()
          local f, err = load(string.char(27) .. "LuaT\0\25\147\r\n\26\n", "x", "b")
          tx(tostring(f) .. "|" .. tostring(err) .. "|" .. load("return 1 + 2")())
        end
    "#;
    let (res, io) = run(src, &[]).await;
    res.unwrap();
    let out = String::from_utf8(io.sent[0].clone()).unwrap();
    assert!(out.starts_with("nil|"), "{out}");
    assert!(out.contains("binary chunk"), "{out}");
    assert!(out.ends_with("|3"), "{out}");
}

fn small_limits() -> Limits {
    Limits {
        memory: 1 << 20,
        instructions: 5_000_000,
        instructions_per_slice: 2_000_000,
        ..Limits::default()
    }
}

#[tokio::test]
async fn instruction_budget_ends_a_busy_loop() {
    let (res, io) = run_with("function handle() while true do end end", &[], small_limits()).await;
    assert!(matches!(res, Err(ScriptError::InstructionBudget)), "{res:?}");
    assert_eq!(io.error_log().unwrap()["error"], "instruction_budget");
}

#[tokio::test]
async fn instruction_budget_cannot_be_caught() {
    for body in [
        "while true do pcall(function() while true do end end) end",
        "while true do xpcall(function() while true do end end, function(e) return e end) end",
        "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
        "while true do pcall(pcall, function() while true do end end) end",
    ] {
        let src = format!("function handle() {body} end");
        let (res, _) = run_with(&src, &[], small_limits()).await;
        assert!(matches!(res, Err(ScriptError::InstructionBudget)), "{body}: {res:?}");
    }
}

#[tokio::test]
async fn memory_limit_ends_the_session_even_when_caught() {
    for body in [
        "local t = {} while true do t[#t + 1] = string.rep('x', 4096) .. #t end",
        "local t = {} while true do pcall(function() t[#t + 1] = string.rep('y', 4096) .. #t end) end",
        "local s = string.rep('z', 64 * 1024 * 1024)",
    ] {
        let src = format!("function handle() {body} end");
        let (res, io) = run_with(&src, &[], small_limits()).await;
        assert!(
            matches!(res, Err(ScriptError::MemoryLimit | ScriptError::InstructionBudget)),
            "{body}: {res:?}"
        );
        let class = io.error_log().unwrap()["error"].as_str().unwrap().to_string();
        assert!(class == "memory_limit" || class == "instruction_budget", "{body}: {class}");
    }
    let (res, _) = run_with(
        "function handle() local s = string.rep('z', 64 * 1024 * 1024) end",
        &[],
        small_limits(),
    )
    .await;
    assert!(matches!(res, Err(ScriptError::MemoryLimit)), "{res:?}");
}

#[tokio::test]
async fn budget_is_per_session() {
    // Each session gets a fresh state and budget: many sessions that each use a lot pass.
    let src =
        "function handle() local n = 0 for i = 1, 300000 do n = n + i end tx(tostring(n)) end";
    let (_dir, path) = script("svc.lua", src);
    let mut opts = options();
    opts.limits = small_limits();
    let plugin = ServicePlugin::load(&path, opts).unwrap();
    sessions_each_send(&plugin, 5, b"45000150000").await;
}

#[tokio::test]
async fn a_stray_yield_is_an_error() {
    let (res, _) = run("function handle() coroutine.yield('x') end", &[]).await;
    assert!(matches!(res, Err(ScriptError::Runtime(_))), "{res:?}");
}

#[tokio::test]
async fn sessions_do_not_share_globals() {
    let src = "count = (count or 0) + 1 function handle() tx(tostring(count)) end";
    let (_dir, path) = script("svc.lua", src);
    let plugin = ServicePlugin::load(&path, options()).unwrap();
    sessions_each_send(&plugin, 2, b"1").await;
}

#[tokio::test]
async fn pooled_states_never_carry_one_session_into_the_next() {
    // A pool of 2 and more sessions than that: states come from the pool and from building on
    // arrival; a global or a library change made during one session is never seen by another.
    let src = r#"
        function handle()
          tx(tostring(seen) .. "|" .. tostring(string.marked))
          seen = session_id
          string.marked = true
          session.mine = session_id
        end
    "#;
    let (_dir, path) = script("svc.lua", src);
    let mut opts = options();
    opts.lua_pool = 2;
    let plugin = ServicePlugin::load(&path, opts).unwrap();
    sessions_each_send(&plugin, 6, b"nil|nil").await;
}

#[tokio::test]
async fn limits_apply_to_pooled_states() {
    let mut opts = options();
    opts.limits = small_limits();
    opts.lua_pool = 2;
    for (body, want) in [
        ("while true do end", "instruction_budget"),
        ("local s = string.rep('z', 64 * 1024 * 1024)", "memory_limit"),
    ] {
        let (_dir, path) = script("svc.lua", &format!("function handle() {body} end"));
        let plugin = ServicePlugin::load(&path, opts.clone()).unwrap();
        // Twice: the second session gets a state the pool built after the first one took its.
        for _ in 0..2 {
            let mut io = TestIo::new(&[]);
            assert!(plugin.run_session(&mut io).await.is_err());
            assert_eq!(io.error_log().unwrap()["error"], want, "{body}");
        }
    }
}

#[tokio::test]
async fn udp_datagrams_get_replies_and_per_peer_tables() {
    let src = r#"
        function datagram(data)
          session.n = (session.n or 0) + 1
          tx(remote_host .. ":" .. session.n .. ":" .. data)
          if session.n == 2 then tx("second") end
          log("udp.seen", {n = session.n})
        end
    "#;
    let (_dir, path) = script("udp.lua", src);
    let plugin = ServicePlugin::load(&path, options()).unwrap();
    assert!(plugin.handles_udp());
    assert!(!plugin.handles_tcp());
    let a = SessionInfo {
        remote_host: "198.51.100.1".into(),
        remote_port: 1000,
        ..SessionInfo::default()
    };
    let b = SessionInfo {
        remote_host: "198.51.100.2".into(),
        remote_port: 1000,
        ..SessionInfo::default()
    };
    let r1 = plugin.datagram(&a, b"x").await.unwrap();
    let r2 = plugin.datagram(&a, b"y").await.unwrap();
    let r3 = plugin.datagram(&b, b"z").await.unwrap();
    assert_eq!(r1.replies, [&b"198.51.100.1:1:x"[..]]);
    assert_eq!(r2.replies, [&b"198.51.100.1:2:y"[..], &b"second"[..]]);
    assert_eq!(r3.replies, [&b"198.51.100.2:1:z"[..]]);
    assert_eq!(r2.logs[0].0, "udp.seen");
    assert_eq!(r2.logs[0].1["n"], 2);
}

#[tokio::test]
async fn udp_peer_tables_are_bounded() {
    let src = "function datagram(d) session.n = (session.n or 0) + 1 tx(tostring(session.n)) end";
    let (_dir, path) = script("udp.lua", src);
    let mut opts = options();
    opts.limits.max_peers = 2;
    let plugin = ServicePlugin::load(&path, opts).unwrap();
    let peer = |p: u16| SessionInfo {
        remote_host: "192.0.2.1".into(),
        remote_port: p,
        ..SessionInfo::default()
    };
    plugin.datagram(&peer(1), b"").await.unwrap();
    plugin.datagram(&peer(2), b"").await.unwrap();
    plugin.datagram(&peer(3), b"").await.unwrap(); // evicts peer 1, the least recently used
    let again = plugin.datagram(&peer(1), b"").await.unwrap();
    assert_eq!(again.replies, [&b"1"[..]]);
    let kept = plugin.datagram(&peer(3), b"").await.unwrap();
    assert_eq!(kept.replies, [&b"2"[..]]);
}

#[tokio::test]
async fn udp_script_errors_do_not_kill_the_service() {
    let src = "function datagram(d) if d == 'bad' then error('nope') end tx('ok') end";
    let (_dir, path) = script("udp.lua", src);
    let plugin = ServicePlugin::load(&path, options()).unwrap();
    let peer = SessionInfo::default();
    assert!(matches!(plugin.datagram(&peer, b"bad").await, Err(ScriptError::Runtime(_))));
    assert_eq!(plugin.datagram(&peer, b"good").await.unwrap().replies, [&b"ok"[..]]);
    let src = "function datagram(d) while true do end end";
    let (_dir2, path) = script("busy.lua", src);
    let mut opts = options();
    opts.limits = small_limits();
    let plugin = ServicePlugin::load(&path, opts).unwrap();
    assert!(matches!(plugin.datagram(&peer, b"").await, Err(ScriptError::InstructionBudget)));
    assert!(matches!(plugin.datagram(&peer, b"").await, Err(ScriptError::InstructionBudget)));
}

#[tokio::test]
async fn reload_picks_up_a_changed_file_and_keeps_old_code_on_error() {
    let (_dir, path) = script("svc.lua", "function handle() tx('v1') end");
    let mut opts = options();
    // A pool larger than the sessions run: every state it built holds v1, and a reload must
    // throw them all away rather than hand them out.
    opts.lua_pool = 8;
    let plugin = ServicePlugin::load(&path, opts).unwrap();
    let mut io = TestIo::new(&[]);
    plugin.run_session(&mut io).await.unwrap();
    assert_eq!(io.sent, [b"v1".to_vec()]);
    for _ in 0..1000 {
        if plugin.lua_states_ready() == 8 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(plugin.lua_states_ready(), 8, "the pool fills up in the background");

    std::fs::write(&path, "function handle() tx('v2') end").unwrap();
    bump_mtime(&path, 10);
    let mut io = TestIo::new(&[]);
    plugin.run_session(&mut io).await.unwrap();
    assert_eq!(io.sent, [b"v2".to_vec()]);

    std::fs::write(&path, "function handle( tx('v3') end").unwrap();
    bump_mtime(&path, 20);
    assert!(matches!(plugin.reload_if_changed(), Err(ScriptError::Syntax { .. })));
    let mut io = TestIo::new(&[]);
    plugin.run_session(&mut io).await.unwrap();
    assert_eq!(io.sent, [b"v2".to_vec()], "a broken file keeps the old code");
}

/// Moves the file's mtime forward so a change is seen even within the clock's granularity.
pub(crate) fn bump_mtime(path: &std::path::Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(secs)).unwrap();
}

/// Runs `n` sessions without input; each must send exactly `want`.
async fn sessions_each_send(plugin: &ServicePlugin, n: usize, want: &[u8]) {
    for _ in 0..n {
        let mut io = TestIo::new(&[]);
        plugin.run_session(&mut io).await.unwrap();
        assert_eq!(io.sent, [want.to_vec()]);
    }
}
