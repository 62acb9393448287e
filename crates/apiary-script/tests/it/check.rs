//! `apiary config check`: validation with file and line, for both languages and hooks.

use apiary_script::{Hook, ScriptError, check_plugin};

use crate::support::{plugins_dir, script};

#[test]
fn shipped_examples_pass_the_check() {
    let dir = plugins_dir();
    check_plugin(dir.join("hashcount.lua"), Hook::Service).unwrap();
    check_plugin(dir.join("hashcount.py"), Hook::Service).unwrap();
    for name in ["print.py", "dns_payload.py", "pass_config.py", "pass_config.lua", "timestamp.lua"]
    {
        check_plugin(dir.join("pokiestream").join(name), Hook::Packet).unwrap();
    }
}

#[test]
fn lua_syntax_errors_name_file_and_line() {
    let (_d, path) = script("bad.lua", "function handle()\n  tx('a')\n  tx('b' ..)\nend\n");
    match check_plugin(&path, Hook::Service) {
        Err(ScriptError::Syntax { path: p, line, message }) => {
            assert_eq!(p, path);
            assert_eq!(line, Some(3));
            assert!(message.contains("unexpected symbol"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let shown = check_plugin(&path, Hook::Service).unwrap_err().to_string();
    assert!(shown.starts_with(&format!("{}:3: ", path.display())), "{shown}");
}

#[test]
fn python_syntax_errors_name_file_and_line() {
    let (_d, path) = script("bad.py", "async def handle(conn):\n    x = 1\n    y = (\n");
    match check_plugin(&path, Hook::Service) {
        Err(ScriptError::Syntax { path: p, line, .. }) => {
            assert_eq!(p, path);
            assert!(line.is_some_and(|l| l >= 3), "{line:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let (_d, path) = script("raise.py", "import os\n\nraise ValueError('at import')\n");
    match check_plugin(&path, Hook::Packet) {
        Err(ScriptError::Invalid { message, .. }) => {
            assert!(message.contains("line 3"), "{message}");
            assert!(message.contains("at import"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn missing_entry_points_are_reported() {
    let (_d, path) = script("none.lua", "local x = 1\n");
    assert!(matches!(check_plugin(&path, Hook::Service), Err(ScriptError::Invalid { .. })));
    let err = check_plugin(&path, Hook::Packet).unwrap_err().to_string();
    assert!(err.contains("receiver"), "{err}");

    let (_d, path) = script("sync.py", "def receiver(packet_log):\n    print(packet_log)\n");
    let err = check_plugin(&path, Hook::Packet).unwrap_err().to_string();
    assert!(err.contains("async def"), "{err}");
    let (_d, path) = script("none.py", "x = 1\n");
    let err = check_plugin(&path, Hook::Packet).unwrap_err().to_string();
    assert!(err.contains("receiver"), "{err}");
    let (_d, path) = script("sync_handle.py", "def handle(conn):\n    pass\n");
    let err = check_plugin(&path, Hook::Service).unwrap_err().to_string();
    assert!(err.contains("async def"), "{err}");
}

#[test]
fn top_level_waits_are_refused() {
    let (_d, path) = script("top.lua", "rx()\nfunction handle() end\n");
    let err = check_plugin(&path, Hook::Service).unwrap_err().to_string();
    assert!(err.contains("top-level"), "{err}");
}

#[test]
fn other_extensions_and_missing_files_fail() {
    let (_d, path) = script("x.rb", "puts 1");
    assert!(matches!(
        check_plugin(&path, Hook::Packet),
        Err(ScriptError::UnsupportedExtension { .. })
    ));
    assert!(matches!(
        check_plugin("/nonexistent/plugin.lua", Hook::Service),
        Err(ScriptError::Read { .. })
    ));
    assert!(matches!(
        check_plugin("/nonexistent/plugin.py", Hook::Service),
        Err(ScriptError::Read { .. })
    ));
}
