//! `apiary list services|loggers` (HoneyPy's console `list`).

use std::path::Path;
use std::process::ExitCode;

use crate::cli::ListWhat;
use crate::table;

pub(crate) fn run(what: ListWhat, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let text = match what {
        ListWhat::Services => {
            let rows: Vec<Vec<String>> = apiary_pot::catalog()
                .iter()
                .map(|s| {
                    let transports: Vec<_> = s.transports.iter().map(|t| t.as_str()).collect();
                    vec![
                        s.name.to_owned(),
                        transports.join("+"),
                        s.aliases.join(", "),
                        s.description.to_owned(),
                    ]
                })
                .collect();
            table::render(&["PLUGIN", "TRANSPORT", "ALSO KNOWN AS", "WHAT IT DOES"], &rows)
        }
        ListWhat::Profiles => {
            let rows: Vec<Vec<String>> = apiary_pot::profiles::list()
                .into_iter()
                .filter_map(apiary_pot::profiles::get)
                .map(|p| {
                    let n = p.services.len();
                    let ports: usize = p.services.iter().map(|s| s.ports.len()).sum();
                    vec![p.name.to_owned(), n.to_string(), ports.to_string(), p.description]
                })
                .collect();
            table::render(&["PROFILE", "SERVICES", "PORTS", "WHAT IT IMITATES"], &rows)
        }
        ListWhat::Loggers => {
            let loaded = super::load_valid(config)?;
            let rows: Vec<Vec<String>> = loaded
                .config
                .logger
                .iter()
                .map(|l| {
                    vec![
                        l.display_name(),
                        l.kind.type_name().to_owned(),
                        if l.enabled { "enabled" } else { "disabled" }.to_owned(),
                    ]
                })
                .collect();
            format!(
                "loggers in {}:\n{}",
                loaded.origin,
                table::render(&["NAME", "TYPE", "STATE"], &rows)
            )
        }
    };
    super::print(&text);
    Ok(ExitCode::SUCCESS)
}

/// `apiary profile show NAME`: the profile file as shipped.
pub(crate) fn show_profile(name: &str) -> anyhow::Result<ExitCode> {
    match apiary_pot::profiles::get(name) {
        Some(p) => {
            super::print(p.source);
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!(
            "no profile named `{name}` (built-in profiles: {})",
            apiary_pot::profiles::list().join(", ")
        ),
    }
}
