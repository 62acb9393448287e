//! `apiary loggers test`: one marked test event sent straight to every enabled logger, then a
//! pass/fail table with the error of each failure (HoneyPy's `test loggers`, with results).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::table;

pub(crate) fn test(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let loaded = super::load_valid(config)?;
    let data_dir = loaded.data_dir();
    std::fs::create_dir_all(&data_dir)?;
    let node = loaded.node();
    let c = &loaded.config;
    let results = super::runtime()?.block_on(apiary_sinks::test_sinks(
        &c.logger,
        &c.pot.ignore,
        &data_dir,
        &node,
        Duration::from_secs(10),
    ));
    if results.is_empty() {
        super::print("no enabled loggers\n");
        return Ok(ExitCode::SUCCESS);
    }
    let failed = results.iter().filter(|r| r.result.is_err()).count();
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let result = match &r.result {
                Ok(()) => "pass".to_owned(),
                Err(e) => format!("FAIL: {e}"),
            };
            vec![r.name.clone(), r.kind.to_owned(), result]
        })
        .collect();
    super::print(&table::render(&["LOGGER", "TYPE", "RESULT"], &rows));
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
