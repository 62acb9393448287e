//! Redis 7 look-alike: RESP arrays and inline commands (a two-phase parser after mini-redis's
//! `frame.rs`, capped), AUTH captured, a small bounded per-session keyspace, and the commands
//! attack scripts use (CONFIG SET dir/dbfilename, SLAVEOF/REPLICAOF, MODULE LOAD, EVAL)
//! answered as a real server would while nothing is ever written, loaded or run.
//!
//! Events: `command.input` (interpreter `redis`, every command; `fields.technique` names the
//! attack a command belongs to), `auth.attempt` (AUTH, and HELLO ... AUTH).

use std::collections::BTreeMap;
use std::sync::Arc;

use apiary_event::{Auth, AuthMethod, Command, Kind, Transport};
use bytes::{Buf, Bytes, BytesMut};
use serde::Deserialize;

use super::{Handler, ServiceInfo, TcpService, options};
use crate::{Conn, SessionError};

pub(crate) const INFO: ServiceInfo = ServiceInfo {
    name: "redis",
    aliases: &["Redis", "redis-server"],
    protocol: "redis",
    description: "Redis 7 look-alike: RESP and inline commands, AUTH capture, attack commands recorded",
    transports: &[Transport::Tcp],
    build,
};

/// Arguments per request (Redis allows a million; attack scripts send a handful).
const MAX_ARGS: usize = 4096;
/// Bytes of one bulk argument (a module or an RDB payload sent inline is cut here).
const MAX_BULK: usize = 1024 * 1024;
/// Redis's `PROTO_INLINE_MAX_SIZE`: an inline request or a header line longer than this is
/// a protocol error.
const MAX_INLINE: usize = 64 * 1024;
/// Bytes buffered waiting for a request to complete.
const MAX_BUFFER: usize = 2 * MAX_BULK;
/// Keys and bytes of a session's keyspace; past them writes get Redis's OOM error.
const MAX_KEYS: usize = 1024;
const MAX_KEYSPACE_BYTES: usize = 1024 * 1024;
/// Characters of a command kept in its `command.input` event.
const MAX_RECORDED: usize = 8 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// `requirepass`: none leaves the server open (what attackers look for).
    #[serde(default)]
    password: Option<String>,
    /// `redis_version` in INFO and HELLO.
    #[serde(default = "default_version")]
    version: String,
    /// `os` in INFO.
    #[serde(default = "default_os")]
    os: String,
}

fn default_version() -> String {
    "7.0.15".into()
}
fn default_os() -> String {
    "Linux 6.1.0-18-amd64 x86_64".into()
}

struct Redis {
    password: Option<String>,
    version: String,
    os: String,
    run_id: String,
    /// Unix time the fake server "started" (uptime in INFO).
    started: u64,
}

fn build(_transport: Transport, table: &toml::Table) -> Result<Handler, String> {
    let o: Options = options(table)?;
    for (k, v) in [("version", &o.version), ("os", &o.os)] {
        if v.contains(['\r', '\n']) || v.len() > 100 {
            return Err(format!("redis: `{k}` must be one short line"));
        }
    }
    let run_id: String = super::random_bytes(20).iter().map(|b| format!("{b:02x}")).collect();
    let up = u64::from(super::random_bytes(2).iter().fold(0u16, |a, b| a << 8 | u16::from(*b)));
    Ok(Handler::Tcp(Arc::new(Redis {
        password: o.password,
        version: o.version,
        os: o.os,
        run_id,
        started: now().saturating_sub(86_400 * 3 + up * 60),
    })))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why a request could not be taken from the buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// More bytes are needed.
    #[error("incomplete request")]
    Incomplete,
    /// Redis's `Protocol error: ...` (the server replies with it and closes).
    #[error("Protocol error: {0}")]
    Protocol(&'static str),
    /// A multibulk element did not start with `$` (the byte found instead).
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedBulk(u8),
}

/// Finds `\r\n` from `start`; the line must not pass [`MAX_INLINE`].
fn line_end(buf: &[u8], start: usize) -> Result<usize, RespError> {
    let rest = buf.get(start..).unwrap_or_default();
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(i) if i <= MAX_INLINE => Ok(start + i),
        Some(_) => Err(RespError::Protocol("too big inline request")),
        None if rest.len() > MAX_INLINE => Err(RespError::Protocol("too big inline request")),
        None => Err(RespError::Incomplete),
    }
}

fn number(buf: &[u8], start: usize, end: usize) -> Option<i64> {
    std::str::from_utf8(buf.get(start..end)?).ok()?.parse().ok()
}

/// Phase one: whether `buf` starts with a whole request, and its length. Never allocates.
pub fn check_request(buf: &[u8]) -> Result<usize, RespError> {
    match buf.first() {
        None => Err(RespError::Incomplete),
        Some(b'*') => {
            let end = line_end(buf, 1)?;
            let n = number(buf, 1, end).ok_or(RespError::Protocol("invalid multibulk length"))?;
            let mut pos = end + 2;
            if n <= 0 {
                return Ok(pos);
            }
            if n as u64 > MAX_ARGS as u64 {
                return Err(RespError::Protocol("invalid multibulk length"));
            }
            for _ in 0..n {
                match buf.get(pos) {
                    None => return Err(RespError::Incomplete),
                    Some(b'$') => {}
                    Some(c) => return Err(RespError::ExpectedBulk(*c)),
                }
                let end = line_end(buf, pos + 1)?;
                let len = number(buf, pos + 1, end)
                    .filter(|l| (0..=MAX_BULK as i64).contains(l))
                    .ok_or(RespError::Protocol("invalid bulk length"))?;
                // Checked: len is at most MAX_BULK, pos at most the buffer's length.
                pos = end + 2 + len as usize + 2;
                if buf.len() < pos {
                    return Err(RespError::Incomplete);
                }
            }
            Ok(pos)
        }
        Some(_) => {
            // Inline commands end at `\n` (redis-cli in telnet mode, `nc`, scanners).
            match buf.iter().position(|b| *b == b'\n') {
                Some(i) if i <= MAX_INLINE => Ok(i + 1),
                Some(_) => Err(RespError::Protocol("too big inline request")),
                None if buf.len() > MAX_INLINE => {
                    Err(RespError::Protocol("too big inline request"))
                }
                None => Err(RespError::Incomplete),
            }
        }
    }
}

/// Phase two: the request's arguments and its length (checks first, so any bytes are safe).
pub fn parse_request(buf: &[u8]) -> Result<(Vec<Bytes>, usize), RespError> {
    let total = check_request(buf)?;
    let frame = buf.get(..total).unwrap_or_default();
    if frame.first() != Some(&b'*') {
        let line = frame.strip_suffix(b"\n").unwrap_or(frame);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        return Ok((split_inline(line)?, total));
    }
    let mut args = Vec::new();
    let mut pos = line_end(frame, 1)? + 2;
    while pos < frame.len() {
        let end = line_end(frame, pos + 1)?;
        let len = number(frame, pos + 1, end).unwrap_or(0).max(0) as usize;
        let start = end + 2;
        let arg = frame.get(start..start + len).ok_or(RespError::Incomplete)?;
        args.push(Bytes::copy_from_slice(arg));
        pos = start + len + 2;
    }
    Ok((args, total))
}

/// Splits an inline command as Redis's `sdssplitargs` does: spaces separate, "double quotes"
/// take `\n`, `\xHH` escapes, 'single quotes' take text as it is.
pub fn split_inline(line: &[u8]) -> Result<Vec<Bytes>, RespError> {
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| line.get(i).copied();
    loop {
        while at(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
        let Some(first) = at(i) else { return Ok(out) };
        if out.len() >= MAX_ARGS {
            return Err(RespError::Protocol("invalid multibulk length"));
        }
        let mut cur = Vec::new();
        match first {
            b'"' => {
                i += 1;
                loop {
                    match at(i) {
                        None => return Err(RespError::Protocol("unbalanced quotes in request")),
                        Some(b'\\') => {
                            let hex = |c: Option<u8>| (c? as char).to_digit(16);
                            if let (Some(b'x'), Some(h), Some(l)) =
                                (at(i + 1), hex(at(i + 2)), hex(at(i + 3)))
                            {
                                cur.push((h * 16 + l) as u8);
                                i += 4;
                                continue;
                            }
                            let c = match at(i + 1) {
                                Some(b'n') => b'\n',
                                Some(b'r') => b'\r',
                                Some(b't') => b'\t',
                                Some(b'b') => 8,
                                Some(b'a') => 7,
                                Some(c) => c,
                                None => {
                                    return Err(RespError::Protocol(
                                        "unbalanced quotes in request",
                                    ));
                                }
                            };
                            cur.push(c);
                            i += 2;
                        }
                        Some(b'"') => {
                            // The closing quote must be followed by a space or the end.
                            if at(i + 1).is_some_and(|c| !c.is_ascii_whitespace()) {
                                return Err(RespError::Protocol("unbalanced quotes in request"));
                            }
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            cur.push(c);
                            i += 1;
                        }
                    }
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    match at(i) {
                        None => return Err(RespError::Protocol("unbalanced quotes in request")),
                        Some(b'\\') if at(i + 1) == Some(b'\'') => {
                            cur.push(b'\'');
                            i += 2;
                        }
                        Some(b'\'') => {
                            if at(i + 1).is_some_and(|c| !c.is_ascii_whitespace()) {
                                return Err(RespError::Protocol("unbalanced quotes in request"));
                            }
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            cur.push(c);
                            i += 1;
                        }
                    }
                }
            }
            _ => {
                while let Some(c) = at(i).filter(|c| !c.is_ascii_whitespace()) {
                    cur.push(c);
                    i += 1;
                }
            }
        }
        out.push(Bytes::from(cur));
    }
}

/// RESP2 reply builders.
fn simple(s: &str) -> Vec<u8> {
    format!("+{s}\r\n").into_bytes()
}
fn error(s: &str) -> Vec<u8> {
    format!("-{s}\r\n").into_bytes()
}
fn int(n: i64) -> Vec<u8> {
    format!(":{n}\r\n").into_bytes()
}
fn bulk(b: &[u8]) -> Vec<u8> {
    let mut v = format!("${}\r\n", b.len()).into_bytes();
    v.extend_from_slice(b);
    v.extend_from_slice(b"\r\n");
    v
}
const NIL: &[u8] = b"$-1\r\n";
fn array(items: &[Vec<u8>]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", items.len()).into_bytes();
    for i in items {
        v.extend_from_slice(i);
    }
    v
}

/// What one connection changed.
struct State {
    authed: bool,
    keys: BTreeMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
    /// CONFIG SET values this client set (a later CONFIG GET shows them).
    config: BTreeMap<String, String>,
    db: u32,
    name: Option<String>,
}

/// Redis's `stringmatchlen` for `KEYS` patterns: `*`, `?`, `[...]` and `\`.
fn glob(p: &[u8], s: &[u8], depth: u8) -> bool {
    if depth > 32 {
        return false;
    }
    let (mut pi, mut si) = (0, 0);
    while let Some(&pc) = p.get(pi) {
        match pc {
            b'*' => {
                while p.get(pi + 1) == Some(&b'*') {
                    pi += 1;
                }
                let rest = p.get(pi + 1..).unwrap_or_default();
                if rest.is_empty() {
                    return true;
                }
                return (si..=s.len())
                    .any(|k| glob(rest, s.get(k..).unwrap_or_default(), depth + 1));
            }
            b'?' => {
                if si >= s.len() {
                    return false;
                }
                si += 1;
            }
            b'\\' if pi + 1 < p.len() => {
                pi += 1;
                if s.get(si) != p.get(pi) {
                    return false;
                }
                si += 1;
            }
            c => {
                if s.get(si) != Some(&c) {
                    return false;
                }
                si += 1;
            }
        }
        pi += 1;
    }
    si == s.len()
}

/// Which attack a command belongs to, for alerting.
fn technique(cmd: &str, args: &[Bytes]) -> Option<&'static str> {
    let arg = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).to_ascii_lowercase());
    match cmd {
        "config" if arg(1).as_deref() == Some("set") => match arg(2).as_deref() {
            Some("dir" | "dbfilename") => Some("file-write"),
            Some(_) => Some("config-change"),
            None => None,
        },
        "slaveof" | "replicaof" if arg(1).as_deref() != Some("no") => Some("rogue-master"),
        "module" => Some("module-load"),
        "eval" | "evalsha" | "script" | "function" | "fcall" => Some("lua"),
        "save" | "bgsave" => Some("file-write"),
        "flushall" | "flushdb" => Some("wipe"),
        _ => None,
    }
}

impl Redis {
    fn info(&self, conn: &Conn, st: &State, section: Option<&str>) -> String {
        let port = conn.ctx().local.port();
        let uptime = now().saturating_sub(self.started);
        let mut out = String::new();
        let want = |name: &str| match section {
            None => true,
            Some(s) => {
                s.eq_ignore_ascii_case(name)
                    || s.eq_ignore_ascii_case("all")
                    || s.eq_ignore_ascii_case("everything")
                    || s.eq_ignore_ascii_case("default")
            }
        };
        if want("server") {
            out.push_str(&format!(
                "# Server\r\nredis_version:{v}\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\nredis_build_id:{b}\r\nredis_mode:standalone\r\nos:{os}\r\narch_bits:64\r\nmonotonic_clock:POSIX clock_gettime\r\nmultiplexing_api:epoll\r\natomicvar_api:c11-builtin\r\ngcc_version:12.2.0\r\nprocess_id:{pid}\r\nprocess_supervised:systemd\r\nrun_id:{run}\r\ntcp_port:{port}\r\nserver_time_usec:{us}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{days}\r\nhz:10\r\nconfigured_hz:10\r\nlru_clock:{lru}\r\nexecutable:/usr/bin/redis-server\r\nconfig_file:/etc/redis/redis.conf\r\nio_threads_active:0\r\n\r\n",
                v = self.version,
                b = self.run_id.get(..16).unwrap_or("0"),
                os = self.os,
                pid = 700 + self.started % 400,
                run = self.run_id,
                us = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros())
                    .unwrap_or(0),
                days = uptime / 86_400,
                lru = now() % 16_777_216,
            ));
        }
        if want("clients") {
            out.push_str("# Clients\r\nconnected_clients:1\r\ncluster_connections:0\r\nmaxclients:10000\r\nclient_recent_max_input_buffer:20480\r\nclient_recent_max_output_buffer:0\r\nblocked_clients:0\r\ntracking_clients:0\r\nclients_in_timeout_table:0\r\n\r\n");
        }
        if want("memory") {
            let used = 874_152 + st.bytes;
            out.push_str(&format!(
                "# Memory\r\nused_memory:{used}\r\nused_memory_human:{:.2}K\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{:.2}M\r\nused_memory_peak:{peak}\r\nused_memory_peak_human:{:.2}K\r\nmaxmemory:0\r\nmaxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\nmem_allocator:jemalloc-5.3.0\r\n\r\n",
                used as f64 / 1024.0,
                10_526_720f64 / 1_048_576.0,
                (used + 80_000) as f64 / 1024.0,
                rss = 10_526_720,
                peak = used + 80_000,
            ));
        }
        if want("persistence") {
            out.push_str(&format!("# Persistence\r\nloading:0\r\nasync_loading:0\r\ncurrent_cow_peak:0\r\nrdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:0\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:ok\r\naof_enabled:0\r\naof_rewrite_in_progress:0\r\n\r\n", st.keys.len(), self.started));
        }
        if want("stats") {
            out.push_str("# Stats\r\ntotal_connections_received:2813\r\ntotal_commands_processed:11902\r\ninstantaneous_ops_per_sec:0\r\nrejected_connections:0\r\nexpired_keys:0\r\nevicted_keys:0\r\nkeyspace_hits:371\r\nkeyspace_misses:92\r\npubsub_channels:0\r\n\r\n");
        }
        if want("replication") {
            out.push_str(&format!("# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\nmaster_replid:{}\r\nmaster_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:0\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:0\r\nrepl_backlog_size:1048576\r\n\r\n", self.run_id.chars().rev().collect::<String>()));
        }
        if want("cpu") {
            out.push_str("# CPU\r\nused_cpu_sys:41.530229\r\nused_cpu_user:58.142114\r\nused_cpu_sys_children:0.000000\r\nused_cpu_user_children:0.000000\r\n\r\n");
        }
        if want("keyspace") {
            out.push_str("# Keyspace\r\n");
            if !st.keys.is_empty() {
                out.push_str(&format!("db0:keys={},expires=0,avg_ttl=0\r\n", st.keys.len()));
            }
        }
        // INFO's last section has no blank line after it.
        while out.ends_with("\r\n\r\n") {
            out.truncate(out.len() - 2);
        }
        out
    }

    fn config_get(&self, st: &State, pattern: &[u8]) -> Vec<u8> {
        let defaults: [(&str, String); 10] = [
            ("dir", "/var/lib/redis".into()),
            ("dbfilename", "dump.rdb".into()),
            ("requirepass", self.password.clone().map(|_| "********".into()).unwrap_or_default()),
            ("protected-mode", "no".into()),
            ("port", "6379".into()),
            ("bind", "* -::*".into()),
            ("maxmemory", "0".into()),
            ("appendonly", "no".into()),
            ("save", "3600 1 300 100 60 10000".into()),
            ("databases", "16".into()),
        ];
        let mut items = Vec::new();
        for (k, v) in defaults {
            if glob(&pattern.to_ascii_lowercase(), k.as_bytes(), 0) {
                let v = st.config.get(k).cloned().unwrap_or(v);
                items.push(bulk(k.as_bytes()));
                items.push(bulk(v.as_bytes()));
            }
        }
        array(&items)
    }

    /// Answers one command. `None` closes the connection after `reply`.
    fn execute(&self, conn: &Conn, st: &mut State, args: &[Bytes]) -> (Vec<u8>, bool) {
        let Some(name) = args.first() else { return (Vec::new(), false) };
        let cmd = String::from_utf8_lossy(name).to_ascii_lowercase();
        let argc = args.len();
        let arg = |i: usize| args.get(i).map(|a| &a[..]).unwrap_or_default();
        let arg_s = |i: usize| String::from_utf8_lossy(arg(i)).into_owned();
        let wrong_args = || error(&format!("ERR wrong number of arguments for '{cmd}' command"));
        if self.password.is_some()
            && !st.authed
            && !matches!(cmd.as_str(), "auth" | "hello" | "quit")
        {
            return (error("NOAUTH Authentication required."), false);
        }
        let reply = match cmd.as_str() {
            "ping" => match argc {
                1 => simple("PONG"),
                2 => bulk(arg(1)),
                _ => wrong_args(),
            },
            "echo" if argc == 2 => bulk(arg(1)),
            "quit" => return (simple("OK"), true),
            "auth" => match argc {
                2 | 3 => self.auth(conn, st, args),
                _ => wrong_args(),
            },
            "hello" => {
                let at = args.iter().position(|a| a.eq_ignore_ascii_case(b"auth"));
                if let Some((Some(u), Some(p))) = at.map(|i| (args.get(i + 1), args.get(i + 2))) {
                    let r = self.auth(conn, st, &[name.clone(), u.clone(), p.clone()]);
                    if !st.authed {
                        return (r, false);
                    }
                }
                if self.password.is_some() && !st.authed {
                    return (
                        error(
                            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
                        ),
                        false,
                    );
                }
                match argc {
                    1 => self.hello(),
                    _ if arg(1) == b"2"
                        || arg(1).eq_ignore_ascii_case(b"auth")
                        || arg(1).eq_ignore_ascii_case(b"setname") =>
                    {
                        self.hello()
                    }
                    // RESP3 is not spoken; Redis answers NOPROTO for versions it lacks.
                    _ if arg(1) == b"3" => self.hello(),
                    _ => error("NOPROTO unsupported protocol version"),
                }
            }
            "select" if argc == 2 => match arg_s(1).parse::<u32>() {
                Ok(n) if n < 16 => {
                    st.db = n;
                    simple("OK")
                }
                Ok(_) => error("ERR DB index is out of range"),
                Err(_) => error("ERR value is not an integer or out of range"),
            },
            "set" if argc >= 3 => {
                let key = arg(1).to_vec();
                let val = arg(2).to_vec();
                let old = st.keys.get(&key).map(|v| v.len() + key.len()).unwrap_or(0);
                let grow = key.len() + val.len();
                if (st.keys.len() >= MAX_KEYS && old == 0)
                    || st.bytes - old + grow > MAX_KEYSPACE_BYTES
                {
                    error("OOM command not allowed when used memory > 'maxmemory'.")
                } else {
                    st.bytes = st.bytes - old + grow;
                    st.keys.insert(key, val);
                    simple("OK")
                }
            }
            "get" if argc == 2 => {
                st.keys.get(arg(1)).map(|v| bulk(v)).unwrap_or_else(|| NIL.to_vec())
            }
            "del" | "unlink" if argc >= 2 => {
                let mut n = 0;
                for k in args.iter().skip(1) {
                    if let Some(v) = st.keys.remove(&k[..]) {
                        st.bytes -= v.len() + k.len();
                        n += 1;
                    }
                }
                int(n)
            }
            "exists" if argc >= 2 => {
                int(args.iter().skip(1).filter(|k| st.keys.contains_key(&k[..])).count() as i64)
            }
            "keys" if argc == 2 => {
                let items: Vec<Vec<u8>> =
                    st.keys.keys().filter(|k| glob(arg(1), k, 0)).map(|k| bulk(k)).collect();
                array(&items)
            }
            "scan" if argc >= 2 => {
                array(&[bulk(b"0"), array(&st.keys.keys().map(|k| bulk(k)).collect::<Vec<_>>())])
            }
            "type" if argc == 2 => {
                simple(if st.keys.contains_key(arg(1)) { "string" } else { "none" })
            }
            "ttl" | "pttl" if argc == 2 => int(if st.keys.contains_key(arg(1)) { -1 } else { -2 }),
            "expire" | "pexpire" if argc >= 3 => int(i64::from(st.keys.contains_key(arg(1)))),
            "dbsize" => int(st.keys.len() as i64),
            "flushall" | "flushdb" => {
                st.keys.clear();
                st.bytes = 0;
                simple("OK")
            }
            "info" => {
                let section = (argc >= 2).then(|| arg_s(1));
                bulk(self.info(conn, st, section.as_deref()).as_bytes())
            }
            "config" if argc >= 2 => match arg_s(1).to_ascii_lowercase().as_str() {
                "get" if argc >= 3 => self.config_get(st, arg(2)),
                "set" if argc >= 4 && argc.is_multiple_of(2) => {
                    for pair in args.get(2..).unwrap_or_default().chunks(2) {
                        if let [k, v] = pair
                            && st.config.len() < 64
                        {
                            let k = crate::shell::truncate(&String::from_utf8_lossy(k), 128)
                                .to_ascii_lowercase();
                            let v = crate::shell::truncate(&String::from_utf8_lossy(v), 1024)
                                .to_owned();
                            st.config.insert(k, v);
                        }
                    }
                    simple("OK")
                }
                "resetstat" | "rewrite" => simple("OK"),
                _ => error(&format!(
                    "ERR unknown subcommand or wrong number of arguments for '{}'. Try CONFIG HELP.",
                    arg_s(1)
                )),
            },
            "save" => simple("OK"),
            "bgsave" => simple("Background saving started"),
            "bgrewriteaof" => simple("Background append only file rewriting started"),
            "lastsave" => int(self.started as i64),
            "slaveof" | "replicaof" if argc == 3 => {
                if arg(1).eq_ignore_ascii_case(b"no") && arg(2).eq_ignore_ascii_case(b"one") {
                    simple("OK")
                } else if arg_s(2).parse::<u16>().is_err() {
                    error("ERR value is not an integer or out of range")
                } else {
                    simple("OK")
                }
            }
            "module" if argc >= 2 => match arg_s(1).to_ascii_lowercase().as_str() {
                "load" if argc >= 3 => {
                    error("ERR Error loading the extension. Please check the server logs.")
                }
                "list" => array(&[]),
                "unload" => error("ERR Error unloading module: no such module with that name"),
                _ => error(&format!("ERR unknown subcommand '{}'. Try MODULE HELP.", arg_s(1))),
            },
            "eval" | "evalsha" | "eval_ro" if argc >= 3 => {
                if cmd.starts_with("evalsha") {
                    error("NOSCRIPT No matching script. Please use EVAL.")
                } else {
                    let body = arg_s(1);
                    // Redis's sandbox has no `package`, `io` or `os`: CVE-2022-0543 payloads
                    // get the error a patched server gives.
                    match ["package", "io", "os", "loadstring", "dofile", "require"].iter().find(
                        |g| body.contains(&format!("{g}.")) || body.contains(&format!("{g}(")),
                    ) {
                        Some(g) => error(&format!(
                            "ERR user_script:1: Script attempted to access nonexistent global variable '{g}' script: {}, on @user_script:1.",
                            sha1_like(&body)
                        )),
                        None => NIL.to_vec(),
                    }
                }
            }
            "script" if argc >= 2 => match arg_s(1).to_ascii_lowercase().as_str() {
                "load" if argc == 3 => bulk(sha1_like(&arg_s(2)).as_bytes()),
                "flush" | "kill" => simple("OK"),
                "exists" => array(&args.iter().skip(2).map(|_| int(0)).collect::<Vec<_>>()),
                _ => error("ERR unknown subcommand. Try SCRIPT HELP."),
            },
            "client" if argc >= 2 => match arg_s(1).to_ascii_lowercase().as_str() {
                "setname" if argc == 3 => {
                    st.name = Some(crate::shell::truncate(&arg_s(2), 128).to_owned());
                    simple("OK")
                }
                "getname" => {
                    st.name.as_ref().map(|n| bulk(n.as_bytes())).unwrap_or_else(|| NIL.to_vec())
                }
                "id" => int(7 + (conn.peer().port() % 1000) as i64),
                "setinfo" | "no-evict" | "no-touch" | "reply" => simple("OK"),
                "list" | "info" => {
                    let p = conn.peer();
                    let l = conn.ctx().local;
                    bulk(format!("id=7 addr={p} laddr={l} fd=8 name={} age=0 idle=0 flags=N db={} sub=0 psub=0 ssub=0 multi=-1 qbuf=26 qbuf-free=20448 argv-mem=10 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=22298 events=r cmd=client|list user=default redir=-1 resp=2\n", st.name.clone().unwrap_or_default(), st.db).as_bytes())
                }
                _ => error(&format!("ERR unknown subcommand '{}'. Try CLIENT HELP.", arg_s(1))),
            },
            "command" => match argc {
                1 => array(&[]),
                _ if arg(1).eq_ignore_ascii_case(b"count") => int(240),
                _ if arg(1).eq_ignore_ascii_case(b"docs") => array(&[]),
                _ => array(&[]),
            },
            "time" => {
                let d = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                array(&[
                    bulk(d.as_secs().to_string().as_bytes()),
                    bulk(d.subsec_micros().to_string().as_bytes()),
                ])
            }
            "role" => array(&[bulk(b"master"), int(0), array(&[])]),
            "dump" if argc == 2 => NIL.to_vec(),
            "shutdown" => error("ERR Errors trying to SHUTDOWN. Check logs."),
            "debug" => error(
                "ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server.",
            ),
            "acl" if argc >= 2 && arg(1).eq_ignore_ascii_case(b"whoami") => bulk(b"default"),
            "acl" if argc >= 2 && arg(1).eq_ignore_ascii_case(b"users") => {
                array(&[bulk(b"default")])
            }
            "multi" => simple("OK"),
            "exec" => error("ERR EXEC without MULTI"),
            "discard" => error("ERR DISCARD without MULTI"),
            "watch" | "unwatch" | "readonly" | "readwrite" => simple("OK"),
            // Redis 7 closes on what looks like HTTP sent at it (cross-protocol scripting).
            "post" | "host:" => return (Vec::new(), true),
            known if KNOWN.contains(&known) => wrong_args(),
            _ => {
                let mut msg = format!(
                    "ERR unknown command '{}', with args beginning with: ",
                    crate::shell::truncate(&String::from_utf8_lossy(name), 128)
                );
                for a in args.iter().skip(1).take(20) {
                    msg.push_str(&format!(
                        "'{}' ",
                        crate::shell::truncate(&String::from_utf8_lossy(a), 128)
                    ));
                }
                error(&msg.replace(['\r', '\n'], " "))
            }
        };
        (reply, false)
    }

    fn hello(&self) -> Vec<u8> {
        array(&[
            bulk(b"server"),
            bulk(b"redis"),
            bulk(b"version"),
            bulk(self.version.as_bytes()),
            bulk(b"proto"),
            int(2),
            bulk(b"id"),
            int(7),
            bulk(b"mode"),
            bulk(b"standalone"),
            bulk(b"role"),
            bulk(b"master"),
            bulk(b"modules"),
            array(&[]),
        ])
    }

    fn auth(&self, conn: &Conn, st: &mut State, args: &[Bytes]) -> Vec<u8> {
        let (user, pass) = match args {
            [_, p] => (None, p),
            [_, u, p] => (Some(String::from_utf8_lossy(u).into_owned()), p),
            _ => return error("ERR syntax error"),
        };
        let pass_s = String::from_utf8_lossy(pass).into_owned();
        let ok = match &self.password {
            Some(want) => user.as_deref().is_none_or(|u| u == "default") && *want == pass_s,
            None => false,
        };
        let mut e = conn.event(Kind::AUTH_ATTEMPT);
        e.auth = Some(Box::new(Auth {
            method: AuthMethod::Password,
            username: user.clone(),
            password: Some(pass_s),
            success: ok,
            extra: BTreeMap::new(),
        }));
        conn.emit(e);
        if ok {
            st.authed = true;
            return simple("OK");
        }
        if self.password.is_none() && user.is_none() {
            return error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            );
        }
        error("WRONGPASS invalid username-password pair or user is disabled.")
    }
}

/// A stable 40-hex-digit name for a script (Redis uses SHA-1; the name only has to look like
/// one and be the same for the same body).
fn sha1_like(body: &str) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(body.as_bytes());
    d.iter().take(20).map(|b| format!("{b:02x}")).collect()
}

/// Commands Redis has, answered with the arity error when their arguments are wrong.
const KNOWN: &[&str] = &[
    "ping",
    "echo",
    "quit",
    "auth",
    "hello",
    "select",
    "set",
    "get",
    "del",
    "unlink",
    "exists",
    "keys",
    "scan",
    "type",
    "ttl",
    "pttl",
    "expire",
    "pexpire",
    "dbsize",
    "flushall",
    "flushdb",
    "info",
    "config",
    "save",
    "bgsave",
    "bgrewriteaof",
    "lastsave",
    "slaveof",
    "replicaof",
    "module",
    "eval",
    "evalsha",
    "eval_ro",
    "script",
    "client",
    "command",
    "time",
    "role",
    "dump",
    "shutdown",
    "debug",
    "acl",
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
    "readonly",
    "readwrite",
    "incr",
    "decr",
    "lpush",
    "rpush",
    "lrange",
    "hset",
    "hget",
    "hgetall",
    "sadd",
    "smembers",
    "zadd",
    "publish",
    "subscribe",
    "sync",
    "psync",
    "migrate",
    "restore",
];

fn record(conn: &Conn, args: &[Bytes]) {
    let Some(name) = args.first() else { return };
    let cmd = String::from_utf8_lossy(name).to_ascii_lowercase();
    let mut input = String::from_utf8_lossy(name).into_owned();
    if cmd == "auth" {
        // The password goes to `auth.attempt`, not into command logs.
        input.push_str(" ********");
    } else {
        for a in args.iter().skip(1) {
            if input.len() >= MAX_RECORDED {
                break;
            }
            input.push(' ');
            let s = String::from_utf8_lossy(a);
            if s.is_empty() || s.contains([' ', '"', '\n', '\r']) {
                input.push_str(&format!("{s:?}"));
            } else {
                input.push_str(&s);
            }
        }
    }
    let input = crate::shell::truncate(&input, MAX_RECORDED).to_owned();
    let mut e = conn.event(Kind::COMMAND_INPUT);
    e.command = Some(Box::new(Command {
        input,
        interpreter: Some("redis".into()),
        known: Some(KNOWN.contains(&cmd.as_str())),
    }));
    if let Some(t) = technique(&cmd, args) {
        e.fields.insert("technique".into(), t.into());
    }
    conn.emit(e);
}

#[async_trait::async_trait]
impl TcpService for Redis {
    async fn handle(&self, conn: &mut Conn) -> Result<(), SessionError> {
        let mut st = State {
            authed: false,
            keys: BTreeMap::new(),
            bytes: 0,
            config: BTreeMap::new(),
            db: 0,
            name: None,
        };
        let mut buf = BytesMut::new();
        loop {
            match parse_request(&buf) {
                Ok((args, used)) => {
                    buf.advance(used);
                    if args.is_empty() {
                        continue;
                    }
                    record(conn, &args);
                    let (reply, close) = self.execute(conn, &mut st, &args);
                    conn.tx(&reply).await?;
                    if close {
                        conn.shutdown().await;
                        return Ok(());
                    }
                }
                Err(RespError::Incomplete) => {
                    if buf.len() > MAX_BUFFER {
                        return Err(SessionError::TooLong);
                    }
                    match conn.rx().await? {
                        Some(chunk) => buf.extend_from_slice(&chunk),
                        None => return Ok(()),
                    }
                }
                Err(e) => {
                    let msg = format!("ERR {e}");
                    conn.tx(&error(&msg)).await?;
                    conn.shutdown().await;
                    return Err(SessionError::Protocol(msg));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_check_then_parse() {
        let r = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
        assert_eq!(check_request(r), Ok(20));
        let (args, used) = parse_request(r).unwrap_or_default();
        assert_eq!((args, used), (vec![Bytes::from("GET"), Bytes::from("k")], 20));
        for cut in 0..20 {
            assert_eq!(check_request(&r[..cut]), Err(RespError::Incomplete), "{cut}");
        }
        assert_eq!(check_request(b"*x\r\n"), Err(RespError::Protocol("invalid multibulk length")));
        assert_eq!(check_request(b"*1\r\n:1\r\n"), Err(RespError::ExpectedBulk(b':')));
        assert_eq!(
            check_request(b"*1\r\n$99999999\r\n"),
            Err(RespError::Protocol("invalid bulk length"))
        );
        let (args, _) = parse_request(b"set k \"a b\\x41\" 'c d'\r\n").unwrap_or_default();
        assert_eq!(args, ["set", "k", "a bA", "c d"].map(Bytes::from).to_vec());
        assert_eq!(
            parse_request(b"set \"k\n"),
            Err(RespError::Protocol("unbalanced quotes in request"))
        );
    }

    #[test]
    fn key_patterns() {
        assert!(glob(b"*", b"anything", 0));
        assert!(glob(b"user:*:name", b"user:42:name", 0));
        assert!(!glob(b"user:?", b"user:42", 0));
        assert!(glob(b"d*r", b"dir", 0));
        assert!(!glob(b"dir", b"dbfilename", 0));
    }
}
