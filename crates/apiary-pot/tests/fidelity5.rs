//! Fidelity: `nmap -sV` (its own probes and match rules) names the SSH, FTP, Redis, MySQL and
//! PostgreSQL look-alikes as the products they imitate.

use apiary_event::Transport;
use apiary_pot::Limits;

use crate::ssh::{have, run};
use crate::support::{service, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmap_names_openssh_vsftpd_redis_mysql_and_postgresql() {
    if !have(&["nmap"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut ssh = service("SSH", "ssh", &["tcp:0"]);
    ssh.options = toml::from_str(&format!(
        "host_key_dir = \"{}\"\nhost_keys = [\"ed25519\"]\n[shell]\ndistro = \"debian12\"",
        dir.path().display()
    ))
    .unwrap();
    let services = [
        ssh,
        service("FTP", "ftp", &["tcp:0"]),
        service("Redis", "redis", &["tcp:0"]),
        service("MySQL", "mysql", &["tcp:0"]),
        service("PostgreSQL", "postgres", &["tcp:0"]),
    ];
    let pot = start(&services, Limits::default(), "127.0.0.1");
    let port = |name: &str| pot.handle.addr(name, Transport::Tcp).unwrap().port();
    let want = [
        (port("SSH"), "OpenSSH 9.2p1 Debian 2+deb12u3"),
        (port("FTP"), "vsftpd 3.0.3"),
        // On a port other than 6379 nmap's HTTP probe comes first and Redis's answer to it
        // (the arity error of GET) names the product without a version, as for a real Redis.
        (port("Redis"), "Redis key-value store"),
        (port("MySQL"), "MySQL 8.0.36"),
        (port("PostgreSQL"), "PostgreSQL DB 15"),
    ];
    let ports: Vec<String> = want.iter().map(|(p, _)| p.to_string()).collect();
    let out = run(
        ["nmap", "-sV", "-Pn", "-n", "-p", &ports.join(","), "127.0.0.1"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        None,
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for (p, product) in want {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{p}/tcp ")))
            .unwrap_or_else(|| panic!("no line for {p}: {text}"));
        assert!(line.contains(" open ") && line.contains(product), "{product}: {line}\n{text}");
    }
    pot.finish().await;
}
