//! `apiary config check`: parse and validate, report every problem, exit non-zero on any.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Loaded;

pub(crate) fn run(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let loaded = match Loaded::load(path) {
        Ok(l) => l,
        Err(e) => {
            super::print(&format!("error: {e}\n"));
            return Ok(ExitCode::from(1));
        }
    };
    let errors = loaded.validate();
    for e in &errors {
        super::print(&format!("error: {e}\n"));
    }
    if !errors.is_empty() {
        return Ok(ExitCode::from(1));
    }
    let c = &loaded.config;
    let enabled =
        apiary_pot::resolve_services(&c.pot, &c.service)?.iter().filter(|s| s.enabled).count();
    let loggers = c.logger.iter().filter(|l| l.enabled).count();
    super::print(&format!(
        "{}: ok ({enabled} service(s), {loggers} logger(s), node `{}`, data in {})\n",
        loaded.origin,
        loaded.node(),
        loaded.data_dir().display()
    ));
    Ok(ExitCode::SUCCESS)
}
