//! Entry points for `apiary config check` and `apiary loggers test`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use apiary_event::{Event, Kind};
use ipnet::IpNet;

use crate::{SinkConfig, SinkError};

/// Checks every `[[logger]]` table without connecting anywhere: keys, values, and that
/// names (which name the spool directories) are unique. Returns every problem found.
pub fn validate(loggers: &[SinkConfig]) -> Result<(), Vec<SinkError>> {
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    for l in loggers {
        if let Err(e) = l.validate() {
            problems.push(e);
        }
        let name = l.display_name();
        if !names.insert(name.clone()) {
            problems.push(SinkError::Config(format!(
                "two loggers are named {name:?}; give each a distinct `name`"
            )));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

/// The outcome of sending the test event to one logger.
#[derive(Debug)]
pub struct SinkTestResult {
    /// The logger's name.
    pub name: String,
    /// Its type.
    pub kind: &'static str,
    /// `Ok` when the target accepted the test event, else why not.
    pub result: Result<(), SinkError>,
}

/// Sends one marked test event (`Kind::TEST`, `message` saying so) straight to every enabled
/// logger, bypassing queues and spools, and reports pass or fail per logger. Each logger gets
/// at most `timeout`; they are tried one after another so the report is in config order.
pub async fn test_sinks(
    loggers: &[SinkConfig],
    global_ignore: &[IpNet],
    data_dir: &Path,
    node: &str,
    timeout: Duration,
) -> Vec<SinkTestResult> {
    let mut out = Vec::new();
    for l in loggers.iter().filter(|l| l.enabled) {
        let mut event = Event::new(Kind::TEST, Arc::from(node));
        event.message = Some("apiary loggers test: this event checks the logger".into());
        let event = Arc::new(event);
        let result = match l.build(global_ignore, data_dir) {
            Err(e) => Err(e),
            Ok(mut spec) => {
                let send = async {
                    spec.sink.send(std::slice::from_ref(&event)).await?;
                    spec.sink.flush().await
                };
                match tokio::time::timeout(timeout, send).await {
                    Ok(r) => r,
                    Err(_) => Err(SinkError::Timeout(timeout)),
                }
            }
        };
        out.push(SinkTestResult { name: l.display_name(), kind: l.kind.type_name(), result });
    }
    out
}
