//! `apiary ctl`: the operator CLI over the Core's REST API (nodes, pots, commands, events,
//! statistics), printing tables for people and `--json` for scripts. All the HTTP work is in
//! `apiary_core::http::client`.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use apiary_core::http::client::{
    Client, CommandInfo, EventQuery, NodeInfo, PotInfo, StreamItem, StreamQuery,
};
use apiary_event::{Event, Timestamp};
use apiary_proto::NodeCommandType;
use serde_json::{Value, json};

use crate::cli::{CtlArgs, CtlCommand, CtlEventsArgs, WaitArgs};
use crate::table;

/// Exit status of `send`/`deploy` when the node answered with a failure.
const EXIT_FAILED: u8 = 1;
/// Exit status of `send`/`deploy`/`command --wait` when no answer came in time.
const EXIT_PENDING: u8 = 3;

pub(crate) fn run(args: CtlArgs) -> anyhow::Result<ExitCode> {
    let client = connect(&args)?;
    let json = args.json;
    super::runtime()?.block_on(async move {
        match args.command {
            CtlCommand::Nodes => nodes(&client, json).await,
            CtlCommand::Node { node } => node_detail(&client, &node, json).await,
            CtlCommand::Delete { node } => {
                let id = client.resolve_node(&node).await?;
                client.delete_node(id).await.with_context(|| format!("deleting node {node}"))?;
                out(json, &json!({ "deleted": id }), || format!("deleted node {node} (id {id})\n"));
                Ok(ExitCode::SUCCESS)
            }
            CtlCommand::Pots { node } => pots(&client, node.as_deref(), json).await,
            CtlCommand::Deploy { node, pot, wait } => {
                let command = NodeCommandType::DeployPot(pot);
                send(&client, &node, &command, &wait, json).await
            }
            CtlCommand::Send { node, command, arg, wait } => {
                let command = parse_command(&command, arg.as_deref())?;
                send(&client, &node, &command, &wait, json).await
            }
            CtlCommand::Command { id, wait } => {
                let c = client.command(id, wait.unwrap_or_default()).await?;
                Ok(report(&c, json, wait.is_some()))
            }
            CtlCommand::Events(e) if e.follow => follow(&client, &e, json).await,
            CtlCommand::Events(e) => events(&client, &e, json).await,
            CtlCommand::Stats { since, until, top } => {
                stats(&client, &since, until.as_deref(), top, json).await
            }
        }
    })
}

/// The API's URL and token from flags, environment or the `[core]` section.
fn connect(args: &CtlArgs) -> anyhow::Result<Client> {
    let url = match (&args.url, &args.config) {
        (Some(u), _) => u.clone(),
        (None, Some(path)) => {
            let loaded = super::load_valid(Some(path))?;
            let listen = loaded.config.core.as_ref().and_then(|c| c.http).with_context(|| {
                format!("{}: no `http` address in [core]; pass --url", path.display())
            })?;
            let mut addr = listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(if addr.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            if addr.port() == 0 {
                bail!("{}: [core] http uses port 0 (any); pass --url", path.display());
            }
            format!("http://{addr}")
        }
        (None, None) => "http://127.0.0.1:5100".to_owned(),
    };
    if !url.starts_with("http://") && !url.starts_with("https://") {
        bail!("--url {url:?}: use http://HOST:PORT or https://...");
    }
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the API token from {}", f.display()))?,
        (None, None) => bail!(
            "no API token: pass --token or --token-file, or set APIARY_TOKEN \
             (`apiary core user add NAME --role viewer` prints one)"
        ),
    };
    if token.trim().is_empty() {
        bail!("the API token is empty");
    }
    Ok(Client::new(&url, &token)?)
}

/// Prints `value` as JSON, or the text `human` builds.
fn out(json: bool, value: &impl serde::Serialize, human: impl FnOnce() -> String) {
    if json {
        let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
        s.push('\n');
        super::print(&s);
    } else {
        super::print(&human());
    }
}

/// A time in microseconds as `2025-06-01 12:00:00`, UTC, or `-`.
fn when(us: Option<i64>) -> String {
    match us {
        Some(us) if us > 0 => second(Timestamp::from_micros(us)),
        _ => "-".to_owned(),
    }
}

fn second(t: Timestamp) -> String {
    let s = t.to_string();
    let s = s.split('.').next().unwrap_or(&s).trim_end_matches('Z');
    s.replacen('T', " ", 1)
}

fn opt(s: &Option<String>) -> String {
    s.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "-".to_owned())
}

/// At most `n` characters of `s` on one line.
fn cut(s: &str, n: usize) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= n {
        flat
    } else {
        let mut t: String = flat.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

async fn nodes(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let nodes = client.nodes().await?;
    out(json, &nodes, || node_table(&nodes));
    Ok(ExitCode::SUCCESS)
}

fn node_table(nodes: &[NodeInfo]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.id.to_string(),
                n.name.clone(),
                n.status.clone(),
                if n.connected { "yes" } else { "no" }.to_owned(),
                when(n.last_seen),
                opt(&n.address),
                opt(&n.peer),
            ]
        })
        .collect();
    table::render(
        &["ID", "NAME", "STATUS", "CONNECTED", "LAST SEEN (UTC)", "ADDRESS", "PEER"],
        &rows,
    )
}

fn pot_table(pots: &[PotInfo], names: &dyn Fn(i64) -> String) -> String {
    let rows: Vec<Vec<String>> = pots
        .iter()
        .map(|p| {
            vec![
                names(p.node_id),
                p.pot_id.clone(),
                p.pot_type.clone(),
                p.status.clone(),
                when(Some(p.updated)),
                cut(&opt(&p.message), 60),
            ]
        })
        .collect();
    table::render(&["NODE", "POT", "TYPE", "STATUS", "UPDATED (UTC)", "MESSAGE"], &rows)
}

fn command_table(commands: &[CommandInfo]) -> String {
    let rows: Vec<Vec<String>> = commands
        .iter()
        .map(|c| {
            vec![
                c.id.to_string(),
                cut(&command_text(&c.command), 40),
                c.status.clone(),
                when(Some(c.created)),
                c.attempts.to_string(),
                cut(&opt(&c.result), 60),
            ]
        })
        .collect();
    table::render(&["ID", "COMMAND", "STATUS", "QUEUED (UTC)", "SENT", "RESULT"], &rows)
}

/// `"GetInstalledPots"` or `DeployPot web` for people; JSON for anything bigger.
fn command_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next().map(|(k, v)| (k.clone(), v)).unwrap_or_default();
            match arg {
                Value::String(a) => format!("{k} {a}"),
                Value::Object(o) if o.is_empty() => k,
                Value::Object(o) => match o.get("pot_id").and_then(Value::as_str) {
                    Some(p) => format!("{k} {p}"),
                    None => k,
                },
                other => format!("{k} {other}"),
            }
        }
        other => other.to_string(),
    }
}

async fn node_detail(client: &Client, node: &str, json: bool) -> anyhow::Result<ExitCode> {
    let id = client.resolve_node(node).await?;
    let d = client.node(id).await?;
    out(json, &d, || {
        let mut s = node_table(std::slice::from_ref(&d.node));
        let name = d.node.name.clone();
        let _ = write!(s, "\nenrolled {}\n", when(Some(d.node.created)));
        if d.pots.is_empty() {
            s.push_str("\nno pots reported\n");
        } else {
            s.push('\n');
            s.push_str(&pot_table(&d.pots, &|_| name.clone()));
        }
        if d.commands.is_empty() {
            s.push_str("\nno commands\n");
        } else {
            s.push_str("\nlatest commands:\n");
            s.push_str(&command_table(&d.commands));
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}

async fn pots(client: &Client, node: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let nodes = client.nodes().await?;
    let pots = match node {
        Some(n) => client.pots(client.resolve_node(n).await?).await?,
        None => client.all_pots().await?,
    };
    let name = |id: i64| {
        nodes.iter().find(|n| n.id == id).map_or_else(|| id.to_string(), |n| n.name.clone())
    };
    out(json, &pots, || {
        if pots.is_empty() { "no pots reported\n".to_owned() } else { pot_table(&pots, &name) }
    });
    Ok(ExitCode::SUCCESS)
}

/// A command from `NAME [ARG]` or JSON, checked here so a typo fails before it is queued.
fn parse_command(text: &str, arg: Option<&str>) -> anyhow::Result<NodeCommandType> {
    let text = text.trim();
    let value = if text.starts_with('{') || text.starts_with('"') {
        if arg.is_some() {
            bail!("a command given as JSON takes no separate argument");
        }
        serde_json::from_str::<Value>(text).context("the command is not valid JSON")?
    } else {
        match arg {
            Some(a) => json!({ text: a }),
            None => Value::String(text.to_owned()),
        }
    };
    NodeCommandType::from_value(&value).map_err(|e| {
        anyhow::anyhow!(
            "{e}\ncommands: Restart, UpdateConfig, GetInstalledPots, DeployPot POT, StopPot POT, \
             RestartPot POT, RemovePot POT, GetPotStatus POT, GetPotInfo POT, GetPotLogs POT, \
             GetPotMetrics POT, or InstallPot as JSON"
        )
    })
}

async fn send(
    client: &Client,
    node: &str,
    command: &NodeCommandType,
    wait: &WaitArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let id = client.resolve_node(node).await?;
    if wait.no_wait {
        let c = client.send_command(id, command).await?;
        out(json, &c, || format!("command {} queued for node {node} ({})\n", c.id, c.status));
        return Ok(ExitCode::SUCCESS);
    }
    let c = client.run_command(id, command, wait.wait).await?;
    Ok(report(&c, json, true))
}

/// Prints a command's state; the exit status says whether the node answered and how.
fn report(c: &CommandInfo, json: bool, waited: bool) -> ExitCode {
    out(json, c, || {
        let mut s = format!("command {} ({}): {}", c.id, command_text(&c.command), c.status);
        if let Some(r) = &c.result {
            let _ = write!(s, "\n{r}");
        } else if !c.finished() && waited {
            s.push_str(" (no answer yet; `apiary ctl command ID --wait 60s` follows it)");
        }
        s.push('\n');
        s
    });
    match c.status.as_str() {
        "done" => ExitCode::SUCCESS,
        "failed" => ExitCode::from(EXIT_FAILED),
        _ if waited => ExitCode::from(EXIT_PENDING),
        _ => ExitCode::SUCCESS,
    }
}

/// The most telling part of an event, for one table cell.
fn detail(e: &Event) -> String {
    if let Some(a) = &e.auth {
        let method = serde_json::to_value(a.method).ok();
        return format!(
            "{} {}/{}{}",
            method.as_ref().and_then(Value::as_str).unwrap_or("auth"),
            a.username.as_deref().unwrap_or(""),
            a.password.as_deref().unwrap_or(""),
            if a.success { " (accepted)" } else { "" }
        );
    }
    if let Some(c) = &e.command {
        return c.input.clone();
    }
    if let Some(h) = &e.http {
        return format!("{} {}", h.method, h.target);
    }
    if let Some(m) = &e.message {
        return m.clone();
    }
    if let Some(p) = &e.payload {
        return String::from_utf8_lossy(&p.data).into_owned();
    }
    String::new()
}

fn event_row(e: &Event) -> Vec<String> {
    vec![
        second(e.time),
        e.node.to_string(),
        e.kind.to_string(),
        e.src_ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
        e.service.as_deref().unwrap_or("-").to_owned(),
        cut(&detail(e), 70),
    ]
}

const EVENT_HEADER: [&str; 6] = ["TIME (UTC)", "NODE", "KIND", "SOURCE", "SERVICE", "DETAIL"];

async fn events(client: &Client, a: &CtlEventsArgs, json: bool) -> anyhow::Result<ExitCode> {
    if !(1..=1000).contains(&a.limit) {
        bail!("--limit: 1 to 1000");
    }
    let node_id = match &a.node {
        Some(n) => Some(client.resolve_node(n).await?),
        None => None,
    };
    let mut q = EventQuery {
        since: a.since.clone(),
        until: a.until.clone(),
        src_ip: a.src_ip.clone(),
        node_id,
        kind: a.kind.clone(),
        service: a.service.clone(),
        session: a.session.clone(),
        q: a.query.clone(),
        before: a.before.clone(),
        limit: Some(a.limit),
    };
    let mut all = Vec::new();
    let mut next = None;
    for _ in 0..a.pages.max(1) {
        let page = client.events(&q).await?;
        all.extend(page.events);
        next = page.next;
        match &next {
            Some(cursor) => q.before = Some(cursor.clone()),
            None => break,
        }
    }
    out(json, &json!({ "events": all, "next": next }), || {
        let rows: Vec<Vec<String>> = all.iter().map(event_row).collect();
        let mut s = table::render(&EVENT_HEADER, &rows);
        match &next {
            Some(c) => {
                let _ = writeln!(s, "{} events; more with --before {c}", all.len());
            }
            None => {
                let _ = writeln!(s, "{} events", all.len());
            }
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}

async fn follow(client: &Client, a: &CtlEventsArgs, json: bool) -> anyhow::Result<ExitCode> {
    // The stream filters nodes by name; accept an id as `events` does.
    let node = match &a.node {
        Some(n) => {
            let id = client.resolve_node(n).await?;
            client.nodes().await?.into_iter().find(|x| x.id == id).map(|x| x.name)
        }
        None => None,
    };
    let q = StreamQuery {
        kind: a.kind.clone(),
        src_ip: a.src_ip.clone(),
        service: a.service.clone(),
        node,
    };
    if !json {
        super::print(&fixed(&EVENT_HEADER.map(str::to_owned)));
    }
    let limit = a.count.unwrap_or(u64::MAX);
    let mut seen = 0u64;
    client
        .follow(&q, |item| {
            match item {
                StreamItem::Events(evs) => {
                    let mut s = String::new();
                    for e in &evs {
                        if seen >= limit {
                            break;
                        }
                        seen += 1;
                        if json {
                            s.push_str(&serde_json::to_string(e).unwrap_or_default());
                            s.push('\n');
                        } else {
                            s.push_str(&fixed(&event_row(e)));
                        }
                    }
                    super::print(&s);
                }
                StreamItem::Lagged(n) => {
                    tracing::warn!(missed = n, "reading too slowly: the Core skipped events");
                }
            }
            seen < limit
        })
        .await?;
    if seen < limit && a.count.is_some() {
        bail!("the live stream ended after {seen} events");
    }
    Ok(ExitCode::SUCCESS)
}

/// One streamed row in fixed columns (a table cannot be measured before it ends).
fn fixed(cells: &[String]) -> String {
    const W: [usize; 5] = [19, 14, 16, 15, 10];
    let mut s = String::new();
    for (i, c) in cells.iter().enumerate() {
        match W.get(i) {
            Some(w) => {
                let _ = write!(s, "{:<w$}  ", cut(c, *w));
            }
            None => s.push_str(c),
        }
    }
    let mut s = s.trim_end().to_owned();
    s.push('\n');
    s
}

async fn stats(
    client: &Client,
    since: &str,
    until: Option<&str>,
    top: u32,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let v = client.overview_range(since, until, top).await?;
    out(json, &v, || {
        let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
        let mut s = format!(
            "{} events from {} to {} (UTC)\n",
            num(&v, "total"),
            when(Some(num(&v, "since"))),
            when(Some(num(&v, "until")))
        );
        let list = |k: &str| v.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
        for (key, title) in [
            ("top_sources", "SOURCE"),
            ("top_services", "SERVICE"),
            ("top_kinds", "KIND"),
            ("top_commands", "COMMAND"),
        ] {
            let rows: Vec<Vec<String>> = list(key)
                .iter()
                .map(|e| {
                    vec![
                        num(e, "count").to_string(),
                        cut(e.get("key").and_then(Value::as_str).unwrap_or(""), 70),
                    ]
                })
                .collect();
            if !rows.is_empty() {
                s.push('\n');
                s.push_str(&table::render(&["COUNT", title], &rows));
            }
        }
        let creds: Vec<Vec<String>> = list("top_credentials")
            .iter()
            .map(|e| {
                let f = |k: &str| cut(e.get(k).and_then(Value::as_str).unwrap_or(""), 40);
                vec![num(e, "count").to_string(), f("username"), f("password")]
            })
            .collect();
        if !creds.is_empty() {
            s.push('\n');
            s.push_str(&table::render(&["COUNT", "USERNAME", "PASSWORD"], &creds));
        }
        let timeline = v.get("timeline");
        let step = timeline.map(|t| num(t, "step_secs")).unwrap_or(0);
        let points = timeline
            .and_then(|t| t.get("points"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let rows: Vec<Vec<String>> = points
            .iter()
            .filter_map(|p| {
                let p = p.as_array()?;
                let n = p.get(1)?.as_i64()?;
                let t = p.first()?.as_i64();
                (n > 0).then(|| vec![when(t), n.to_string()])
            })
            .collect();
        if !rows.is_empty() {
            let _ = write!(s, "\nevents per {step} s (steps with none left out)\n");
            s.push_str(&table::render(&["FROM (UTC)", "EVENTS"], &rows));
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_from_names_arguments_and_json() {
        assert_eq!(
            parse_command("GetInstalledPots", None).unwrap(),
            NodeCommandType::GetInstalledPots
        );
        assert_eq!(
            parse_command("StopPot", Some("web-1")).unwrap(),
            NodeCommandType::StopPot("web-1".into())
        );
        assert_eq!(
            parse_command(r#"{"GetPotLogs": "c"}"#, None).unwrap(),
            NodeCommandType::GetPotLogs("c".into())
        );
        assert!(parse_command("Reboot", None).unwrap_err().to_string().contains("commands:"));
        assert!(parse_command("{nope", None).is_err());
        assert!(parse_command(r#""Restart""#, Some("x")).is_err());
    }

    #[test]
    fn command_text_is_short() {
        assert_eq!(command_text(&json!("Restart")), "Restart");
        assert_eq!(command_text(&json!({"DeployPot": "web"})), "DeployPot web");
        assert_eq!(command_text(&json!({"Restart": {}})), "Restart");
        assert_eq!(command_text(&json!({"InstallPot": {"pot_id": "w"}})), "InstallPot w");
    }

    #[test]
    fn cells_are_cut_and_flattened() {
        assert_eq!(cut("a\nb", 10), "a b");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(when(None), "-");
        assert_eq!(when(Some(1_700_000_000_000_000)), "2023-11-14 22:13:20");
    }
}
