//! `apiary config check`: one test per kind of mistake, each checking the located message.

use crate::{apiary, run_with_config};

fn check(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = run_with_config(&["config", "check"], dir.path(), config);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap(), text.replace(&dir.path().display().to_string(), "DIR"))
}

const SERVICE: &str = "[[service]]\nname = \"Echo\"\nplugin = \"echo\"\nports = [\"tcp:10007\"]\n";

#[test]
fn a_good_config_passes() {
    let (code, text) = check(SERVICE);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("DIR/apiary.toml: ok (1 service(s), 0 logger(s)"), "{text}");
}

#[test]
fn the_built_in_default_passes() {
    let out = apiary().args(["config", "check"]).output().unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with("<built-in>: ok (8 service(s), 1 logger(s)")
    );
}

#[test]
fn unknown_key() {
    let (code, text) = check(&format!("{SERVICE}colour = \"red\"\n"));
    assert_eq!(code, 1);
    assert!(
        text.starts_with(
            "error: DIR/apiary.toml:5:1: key `service.colour`: unknown field `colour`"
        ),
        "{text}"
    );
}

#[test]
fn unknown_top_level_key() {
    let (code, text) = check("nodename = \"x\"\n");
    assert_eq!(code, 1);
    assert!(
        text.starts_with("error: DIR/apiary.toml:1:1: key `nodename`: unknown field `nodename`"),
        "{text}"
    );
}

#[test]
fn bad_port() {
    let (code, text) =
        check("[[service]]\nname = \"Echo\"\nplugin = \"echo\"\nports = [\"tcp:70000\"]\n");
    assert_eq!(code, 1);
    assert!(text.contains("DIR/apiary.toml:4:"), "{text}");
    assert!(text.contains("key `service.ports`"), "{text}");
    assert!(
        text.contains("invalid port \"tcp:70000\": port must be a number from 0 to 65535"),
        "{text}"
    );
}

#[test]
fn duplicate_service() {
    let (code, text) = check(&format!("{SERVICE}\n{SERVICE}"));
    assert_eq!(code, 1);
    assert_eq!(text, "error: DIR/apiary.toml:7: key `service.Echo`: duplicate service name\n");
}

#[test]
fn bad_cidr() {
    let (code, text) = check("[pot]\nignore = [\"10.0.0.0/33\"]\n");
    assert_eq!(code, 1);
    assert!(text.starts_with("error: DIR/apiary.toml:2:"), "{text}");
    assert!(text.contains("key `pot.ignore`"), "{text}");
    assert!(text.contains("invalid IP address syntax"), "{text}");
}

#[test]
fn unknown_plugin_and_bad_option_are_both_reported() {
    let (code, text) = check(
        "[[service]]\nname = \"A\"\nplugin = \"nosuch\"\nports = [\"tcp:1\"]\n\n\
         [[service]]\nname = \"B\"\nplugin = \"motd\"\nports = [\"tcp:2\"]\noptions = { colour = 1 }\n",
    );
    assert_eq!(code, 1);
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines[0], "error: DIR/apiary.toml:2: key `service.A`: unknown plugin `nosuch`");
    assert!(
        lines[1].starts_with(
            "error: DIR/apiary.toml:7: key `service.B`: options: unknown field `colour`"
        ),
        "{text}"
    );
}

#[test]
fn bad_duration_and_logger_type() {
    let (code, text) = check("[pot.limits]\nidle_timeout = \"5 minutes\"\n");
    assert_eq!(code, 1);
    assert!(text.contains(":2:") && text.contains("unit must be ms, s, m, h or d"), "{text}");
    let (code, text) = check("[[logger]]\ntype = \"carrier-pigeon\"\n");
    assert_eq!(code, 1);
    assert!(text.contains("DIR/apiary.toml:1:") && text.contains("carrier-pigeon"), "{text}");
}

#[test]
fn missing_file_is_named() {
    let out =
        apiary().args(["config", "check", "-c", "/nonexistent/apiary.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with("error: /nonexistent/apiary.toml: cannot read")
    );
}

#[test]
fn list_services_and_completions() {
    let out = apiary().args(["list", "services"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("PLUGIN"), "{text}");
    for plugin in ["echo", "motd", "random", "hashcount"] {
        assert!(text.lines().any(|l| l.starts_with(plugin)), "{plugin} missing:\n{text}");
    }
    let out = apiary().args(["list", "profiles"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let names = apiary_pot::profiles::list();
    assert_eq!(text.lines().count(), names.len() + 1, "a header and a row per profile:\n{text}");
    for name in names {
        assert!(text.lines().any(|l| l.split_whitespace().next() == Some(name)), "{name}: {text}");
    }
    // PROFILE, SERVICES, PORTS: HoneyPy's 355 common sections are 160 services on 340 ports.
    let common = text.lines().find(|l| l.starts_with("common ")).unwrap_or_default();
    assert_eq!(common.split_whitespace().take(3).collect::<Vec<_>>(), ["common", "160", "340"]);
    let out = apiary().args(["profile", "show", "default"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("plugin = \"telnet\""));
    let out = apiary().args(["profile", "show", "nosuch"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no profile named `nosuch`"));
    let out = apiary().args(["completions", "bash"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("_apiary()"));
    let out = apiary().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("apiary "));
}

#[test]
fn unknown_profile_is_reported() {
    let (code, text) = check("[pot]\nprofiles = [\"nosuch\"]\n");
    assert_eq!(code, 1);
    assert!(text.contains("nosuch"), "{text}");
}
