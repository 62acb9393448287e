//! The fake machine a shell runs on: its configuration (`[service.options.shell]`) and the
//! resolved identity (host name, distribution, kernel, users, hardware) with randomised
//! defaults, so that no two installs share a value a bot could test for.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use super::fs::Tree;

/// How the fake machine looks. Every field is optional: what is left out is chosen at random
/// (from `seed` when given, so a restart shows the same machine).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShellConfig {
    /// Seed of every random choice; services derive one from their persistent state (the SSH
    /// host key) when this is absent, so an install keeps its identity across restarts.
    pub seed: Option<u64>,
    /// Host name (`srv-04`, `ip-172-31-9-17`, ...).
    pub hostname: Option<String>,
    /// `debian12`, `debian11`, `ubuntu2204` or `ubuntu2404`.
    pub distro: Option<String>,
    /// Regular user accounts with home directories (the first gets uid 1000).
    pub users: Vec<String>,
    /// CPU model name in `/proc/cpuinfo`.
    pub cpu_model: Option<String>,
    /// Number of CPUs.
    pub cpus: Option<u32>,
    /// Memory in MiB.
    pub mem_mib: Option<u64>,
    /// Days since boot shown by `uptime` and `w` at start.
    pub uptime_days: Option<u32>,
    /// The machine's address shown by `ip addr`.
    pub ip: Option<Ipv4Addr>,
    /// Extra files, absolute path to text content (a lure `/root/.aws/credentials`, ...).
    pub files: BTreeMap<String, String>,
    /// Bytes a session may write into its copy of the filesystem (bots echo binaries in).
    pub max_written_bytes: Option<usize>,
}

/// A distribution release the shell can imitate.
#[derive(Debug, Clone)]
pub(crate) struct Distro {
    pub(crate) pretty: &'static str,
    pub(crate) version_id: &'static str,
    pub(crate) codename: &'static str,
    pub(crate) issue: &'static str,
    pub(crate) debian_version: &'static str,
    pub(crate) ubuntu: bool,
    /// `uname -r`.
    pub(crate) kernel_release: String,
    /// `uname -v`.
    pub(crate) kernel_version: String,
    /// The compiler part of `/proc/version`.
    pub(crate) kernel_builder: String,
    /// `bash --version` first line.
    pub(crate) bash: &'static str,
}

/// A login account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) home: String,
}

/// The resolved machine, shared by every session of a service (sessions copy on write).
#[derive(Debug)]
pub struct Machine {
    pub(crate) hostname: String,
    pub(crate) distro: Distro,
    pub(crate) users: Vec<User>,
    pub(crate) cpu_model: String,
    pub(crate) cpus: u32,
    pub(crate) mem_kib: u64,
    /// Unix time of the fake boot.
    pub(crate) boot: u64,
    pub(crate) ip: Ipv4Addr,
    pub(crate) mac: [u8; 6],
    pub(crate) max_written: usize,
    pub(crate) tree: Tree,
    /// Random but fixed per machine: process ids, load, memory use.
    pub(crate) noise: u64,
}

const HOST_WORDS: &[&str] = &[
    "web", "srv", "app", "db", "node", "vps", "host", "backup", "mail", "dev", "prod", "api",
    "worker", "proxy", "cloud", "nas", "git", "build", "vm", "data",
];
const USER_NAMES: &[&str] = &[
    "admin", "deploy", "user", "alex", "mike", "john", "dave", "sam", "chris", "anna", "kevin",
    "support", "ops", "mark", "paul", "tom", "peter", "jan", "martin", "lucas", "nick", "sysadm",
];
const CPUS: &[(&str, &str, &str, &str, &str)] = &[
    // model name, vendor, family, model, MHz
    ("Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz", "GenuineIntel", "6", "79", "2399.998"),
    ("Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz", "GenuineIntel", "6", "85", "2999.996"),
    ("Intel(R) Xeon(R) CPU E5-2650 v2 @ 2.60GHz", "GenuineIntel", "6", "62", "2599.998"),
    ("Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz", "GenuineIntel", "6", "85", "2194.842"),
    ("Intel Xeon Processor (Skylake, IBRS)", "GenuineIntel", "6", "85", "2095.076"),
    ("AMD EPYC 7543 32-Core Processor", "AuthenticAMD", "25", "1", "2794.750"),
    ("AMD EPYC-Rome Processor", "AuthenticAMD", "23", "49", "2894.562"),
    ("AMD EPYC 7R13 Processor", "AuthenticAMD", "25", "1", "2650.000"),
    ("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", "GenuineIntel", "6", "158", "3191.998"),
];

fn distro(name: &str, rng: &mut StdRng) -> Option<Distro> {
    let pick = |rng: &mut StdRng, n: usize| rng.random_range(0..n);
    Some(match name {
        "debian12" => {
            const K: &[(&str, &str, &str)] = &[
                ("18", "6.1.76-1", "2024-02-01"),
                ("21", "6.1.90-1", "2024-05-03"),
                ("23", "6.1.99-1", "2024-07-15"),
                ("25", "6.1.106-3", "2024-08-26"),
                ("26", "6.1.112-1", "2024-09-30"),
                ("28", "6.1.119-1", "2024-11-22"),
                ("31", "6.1.128-1", "2025-02-07"),
            ];
            let (abi, ver, date) = K.get(pick(rng, K.len()))?;
            Distro {
                pretty: "Debian GNU/Linux 12 (bookworm)",
                version_id: "12",
                codename: "bookworm",
                issue: "Debian GNU/Linux 12",
                debian_version: "12.9",
                ubuntu: false,
                kernel_release: format!("6.1.0-{abi}-amd64"),
                kernel_version: format!("#1 SMP PREEMPT_DYNAMIC Debian {ver} ({date})"),
                kernel_builder: "(debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) \
                                 12.2.0, GNU ld (GNU Binutils for Debian) 2.40)"
                    .into(),
                bash: "GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)",
            }
        }
        "debian11" => {
            const K: &[(&str, &str, &str)] = &[
                ("26", "5.10.197-1", "2023-09-29"),
                ("28", "5.10.209-2", "2024-01-31"),
                ("30", "5.10.218-1", "2024-06-01"),
                ("32", "5.10.223-1", "2024-08-10"),
            ];
            let (abi, ver, date) = K.get(pick(rng, K.len()))?;
            Distro {
                pretty: "Debian GNU/Linux 11 (bullseye)",
                version_id: "11",
                codename: "bullseye",
                issue: "Debian GNU/Linux 11",
                debian_version: "11.11",
                ubuntu: false,
                kernel_release: format!("5.10.0-{abi}-amd64"),
                kernel_version: format!("#1 SMP Debian {ver} ({date})"),
                kernel_builder: "(debian-kernel@lists.debian.org) (gcc-10 (Debian 10.2.1-6) \
                                 10.2.1 20210110, GNU ld (GNU Binutils for Debian) 2.35.2)"
                    .into(),
                bash: "GNU bash, version 5.1.4(1)-release (x86_64-pc-linux-gnu)",
            }
        }
        "ubuntu2204" => {
            const K: &[(&str, &str, &str)] = &[
                ("94", "104", "Tue Jan 9 15:25:40 UTC 2024"),
                ("105", "115", "Mon Apr 15 09:52:04 UTC 2024"),
                ("116", "126", "Fri Jul 5 16:04:18 UTC 2024"),
                ("122", "132", "Thu Aug 29 14:23:11 UTC 2024"),
                ("125", "135", "Fri Sep 27 13:53:58 UTC 2024"),
                ("130", "140", "Wed Nov 27 14:52:37 UTC 2024"),
            ];
            let (abi, build, date) = K.get(pick(rng, K.len()))?;
            Distro {
                pretty: "Ubuntu 22.04.5 LTS",
                version_id: "22.04",
                codename: "jammy",
                issue: "Ubuntu 22.04.5 LTS",
                debian_version: "bookworm/sid",
                ubuntu: true,
                kernel_release: format!("5.15.0-{abi}-generic"),
                kernel_version: format!("#{build}-Ubuntu SMP {date}"),
                kernel_builder: format!(
                    "(buildd@lcy02-amd64-{:03}) (gcc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0, GNU \
                     ld (GNU Binutils for Ubuntu) 2.38)",
                    rng.random_range(10..120)
                ),
                bash: "GNU bash, version 5.1.16(1)-release (x86_64-pc-linux-gnu)",
            }
        }
        "ubuntu2404" => {
            const K: &[(&str, &str, &str)] = &[
                ("31", "31", "Sat Apr 20 00:40:06 UTC 2024"),
                ("41", "41", "Fri Aug 2 20:41:06 UTC 2024"),
                ("45", "45", "Fri Aug 30 12:02:04 UTC 2024"),
                ("48", "48", "Sat Oct 5 02:43:45 UTC 2024"),
                ("51", "52", "Thu Dec 5 13:09:44 UTC 2024"),
            ];
            let (abi, build, date) = K.get(pick(rng, K.len()))?;
            Distro {
                pretty: "Ubuntu 24.04.1 LTS",
                version_id: "24.04",
                codename: "noble",
                issue: "Ubuntu 24.04.1 LTS",
                debian_version: "trixie/sid",
                ubuntu: true,
                kernel_release: format!("6.8.0-{abi}-generic"),
                kernel_version: format!("#{build}-Ubuntu SMP PREEMPT_DYNAMIC {date}"),
                kernel_builder: format!(
                    "(buildd@lcy02-amd64-{:03}) (x86_64-linux-gnu-gcc-13 (Ubuntu \
                     13.2.0-23ubuntu4) 13.2.0, GNU ld (GNU Binutils for Ubuntu) 2.42)",
                    rng.random_range(10..120)
                ),
                bash: "GNU bash, version 5.2.21(1)-release (x86_64-pc-linux-gnu)",
            }
        }
        _ => return None,
    })
}

fn random_hostname(rng: &mut StdRng, ubuntu: bool) -> String {
    let word = HOST_WORDS.get(rng.random_range(0..HOST_WORDS.len())).copied().unwrap_or("srv");
    match rng.random_range(0..6) {
        0 => format!("{word}-{:02}", rng.random_range(1..40)),
        1 => format!("{word}{:02}", rng.random_range(1..20)),
        2 => format!(
            "ip-{}-{}-{}-{}",
            [10, 172, 192].get(rng.random_range(0..3)).copied().unwrap_or(10),
            rng.random_range(16..32),
            rng.random_range(0..255),
            rng.random_range(1..255)
        ),
        3 => format!("vps{}", rng.random_range(10_000..999_999)),
        4 if ubuntu => format!(
            "ubuntu-s-{}vcpu-{}gb-{}-0{}",
            rng.random_range(1..3),
            [1, 2, 4].get(rng.random_range(0..3)).copied().unwrap_or(1),
            ["fra1", "ams3", "nyc1", "sfo3", "lon1", "sgp1"]
                .get(rng.random_range(0..6))
                .copied()
                .unwrap_or("fra1"),
            rng.random_range(1..4)
        ),
        _ => format!(
            "{word}-{}",
            (0..6)
                .map(|_| char::from(
                    b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]
                ))
                .collect::<String>()
        ),
    }
}

impl Machine {
    /// Resolves a configuration, filling what it leaves out at random.
    pub fn new(config: &ShellConfig) -> Result<Arc<Self>, String> {
        let seed = config.seed.unwrap_or_else(rand::random);
        let mut rng = StdRng::seed_from_u64(seed);
        const DISTROS: &[&str] = &["debian12", "debian12", "debian11", "ubuntu2204", "ubuntu2404"];
        let dname = match &config.distro {
            Some(d) => d.as_str(),
            None => DISTROS.get(rng.random_range(0..DISTROS.len())).copied().unwrap_or("debian12"),
        };
        let distro = distro(dname, &mut rng).ok_or_else(|| {
            format!("shell: unknown distro `{dname}` (debian12, debian11, ubuntu2204, ubuntu2404)")
        })?;
        let hostname = match &config.hostname {
            Some(h) if valid_name(h) => h.clone(),
            Some(h) => return Err(format!("shell: invalid hostname `{h}`")),
            None => random_hostname(&mut rng, distro.ubuntu),
        };
        let mut names = config.users.clone();
        if names.is_empty() {
            let n = USER_NAMES.get(rng.random_range(0..USER_NAMES.len())).copied();
            names.push(
                if distro.ubuntu && rng.random_bool(0.5) { "ubuntu" } else { n.unwrap_or("admin") }
                    .into(),
            );
        }
        let mut users = vec![User { name: "root".into(), uid: 0, home: "/root".into() }];
        for (i, n) in names.iter().enumerate() {
            if !valid_name(n) || n == "root" {
                return Err(format!("shell: invalid user name `{n}`"));
            }
            users.push(User { name: n.clone(), uid: 1000 + i as u32, home: format!("/home/{n}") });
        }
        let (cpu, cpus) = match &config.cpu_model {
            Some(m) => (m.clone(), config.cpus.unwrap_or(2)),
            None => {
                let c = CPUS.get(rng.random_range(0..CPUS.len())).map(|c| c.0).unwrap_or("");
                (c.to_owned(), config.cpus.unwrap_or([1, 2, 2, 4, 4, 8][rng.random_range(0..6)]))
            }
        };
        let mem_mib =
            config.mem_mib.unwrap_or([1024, 2048, 2048, 4096, 8192, 16384][rng.random_range(0..6)]);
        // The kernel reserves a little: MemTotal is never the nominal size.
        let mem_kib = mem_mib * 1024 - mem_mib * rng.random_range(28..40);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let days = u64::from(config.uptime_days.unwrap_or(rng.random_range(3..180)));
        let boot = now.saturating_sub(days * 86_400 + rng.random_range(0..86_400));
        let ip = config.ip.unwrap_or_else(|| {
            Ipv4Addr::new(
                10,
                rng.random_range(0..255),
                rng.random_range(0..255),
                rng.random_range(2..250),
            )
        });
        let mut mac = [0u8; 6];
        rng.fill(&mut mac);
        mac[0] = (mac[0] & 0xfc) | 0x02;
        let mut m = Self {
            hostname,
            distro,
            users,
            cpu_model: cpu,
            cpus: cpus.clamp(1, 256),
            mem_kib,
            boot,
            ip,
            mac,
            max_written: config.max_written_bytes.unwrap_or(512 * 1024),
            tree: Tree::default(),
            noise: rng.random(),
        };
        m.tree = super::fs::base_tree(&m, &mut rng, &config.files)?;
        Ok(Arc::new(m))
    }

    /// The host name.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// `uname -a` output, without the newline.
    pub fn uname_a(&self) -> String {
        format!(
            "Linux {} {} {} x86_64 GNU/Linux",
            self.hostname, self.distro.kernel_release, self.distro.kernel_version
        )
    }

    /// The CPU row of [`CPUS`] for the configured model, or a plausible Intel one.
    pub(crate) fn cpu_row(&self) -> (&str, &str, &str, &str) {
        CPUS.iter().find(|c| c.0 == self.cpu_model).map(|c| (c.1, c.2, c.3, c.4)).unwrap_or((
            "GenuineIntel",
            "6",
            "85",
            "2394.454",
        ))
    }

    /// A pseudo-random number fixed for this machine and `salt`.
    pub(crate) fn noise(&self, salt: u64, modulo: u64) -> u64 {
        let mut x = self.noise ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        if modulo == 0 { x } else { x % modulo }
    }
}

/// Host and user names: what `useradd` and `hostname` would accept.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_random_but_seeded() {
        let a = Machine::new(&ShellConfig { seed: Some(1), ..Default::default() }).unwrap();
        let b = Machine::new(&ShellConfig { seed: Some(1), ..Default::default() }).unwrap();
        assert_eq!(a.hostname, b.hostname);
        assert_eq!(a.users, b.users);
        let names: std::collections::HashSet<String> = (0..20)
            .map(|s| Machine::new(&ShellConfig { seed: Some(s), ..Default::default() }).unwrap())
            .map(|m| m.hostname.clone())
            .collect();
        assert!(names.len() > 10, "{names:?}");
    }

    #[test]
    fn config_wins() {
        let m = Machine::new(&ShellConfig {
            hostname: Some("db7".into()),
            distro: Some("ubuntu2204".into()),
            users: vec!["carol".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(m.hostname, "db7");
        assert!(m.uname_a().contains("-generic"));
        assert_eq!(m.users.get(1).map(|u| u.name.as_str()), Some("carol"));
        assert!(
            Machine::new(&ShellConfig { distro: Some("arch".into()), ..Default::default() })
                .is_err()
        );
        assert!(
            Machine::new(&ShellConfig { hostname: Some("a b".into()), ..Default::default() })
                .is_err()
        );
    }
}
