//! The REST routes under `/api/v1` and their handlers (documented in `docs/api.md`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use apiary_event::{Event, Kind, Timestamp};
use apiary_proto::NodeCommandType;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::auth::{COOKIE, Principal, Role};
use super::db::{EventFilter, parse_cursor};
use super::{AppState, HttpError, assets, qr, sse};
use crate::enroll::{self, EnrollKind};
use crate::store::{CommandRecord, CommandStatus, NodeRecord, PotRecord};
use crate::{CoreError, StoreError, now_micros};

type St = State<Arc<AppState>>;

/// An error answer: `{"error": "..."}` with a status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, "API request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: {e}"))
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<HttpError> for ApiError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Invalid(m) => Self::bad(m),
            other => Self::internal(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => {
                Self::new(StatusCode::CONFLICT, format!("{m} already exists"))
            }
            other => Self::internal(other),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::InvalidName(_) => Self::bad(e.to_string()),
            CoreError::NoSuchNode(_) => Self::not_found(e.to_string()),
            CoreError::Store(s) => s.into(),
            other => Self::internal(other),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .route("/core", get(core_status))
        .route("/nodes", get(list_nodes).post(add_node))
        .route("/nodes/{id}", get(get_node).delete(delete_node))
        .route("/nodes/{id}/totp", post(rotate_totp))
        .route("/nodes/{id}/cert", post(renew_cert))
        .route("/nodes/{id}/pots", get(node_pots))
        .route("/nodes/{id}/commands", get(node_commands).post(send_command))
        .route("/pots", get(all_pots))
        .route("/commands/{id}", get(get_command))
        .route("/events", get(search_events))
        .route("/events/{id}", get(get_event))
        .route("/sessions/{id}", get(get_session))
        .route("/stats/overview", get(overview))
        .route("/stream", get(sse::stream))
        .route("/alerts", get(alerts))
        .route("/audit", get(audit))
        .route("/tokens", get(list_tokens).post(add_token))
        .route("/tokens/{name}", delete(delete_token));
    let mut app = Router::new().nest("/api/v1", api);
    if state.cfg.dashboard {
        app = app.route("/", get(assets::index)).route("/assets/{file}", get(assets::file));
    }
    app.fallback(|| async { ApiError::not_found("no such route") }).with_state(state)
}

async fn audit_action(st: &AppState, who: &Principal, action: &str, detail: &str) {
    if let Err(e) = st.core.store.audit(&who.name, action, detail, now_micros()).await {
        tracing::warn!(error = %e, action, "audit log write failed");
    }
}

// ---------------------------------------------------------------------------------------------
// Session.

async fn health(State(st): St) -> Json<Value> {
    Json(json!({ "ok": true, "store": st.core.store.backend() }))
}

#[derive(Deserialize)]
struct LoginBody {
    token: String,
}

async fn login(State(st): St, Json(body): Json<LoginBody>) -> ApiResult<Response> {
    let Some(p) = st.db.authenticate(&body.token).await? else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid API token"));
    };
    audit_action(&st, &p, "login", "dashboard session").await;
    let token = body.token.trim();
    // The token is hex from new_token(); anything else could not have authenticated.
    if !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(ApiError::bad("token has characters a cookie cannot hold"));
    }
    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200");
    let mut resp = Json(&p).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn logout() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("apiary_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    resp
}

async fn me(p: Principal) -> Json<Principal> {
    Json(p)
}

async fn core_status(State(st): St, _p: Principal) -> Json<Value> {
    Json(json!({
        "node_port": st.node_port,
        "store": st.core.store.backend(),
        "stats": st.core.stats.snapshot(),
        "connected": st.core.connected(),
        "rejections": st.core.rejections(),
    }))
}

// ---------------------------------------------------------------------------------------------
// Nodes, pots, commands.

#[derive(Serialize)]
struct NodeView {
    #[serde(flatten)]
    node: NodeRecord,
    connected: bool,
    /// Whether this node uses a TOTP secret (false: a one-time token not used yet).
    totp: bool,
}

fn view(node: NodeRecord, connected: &[i64]) -> NodeView {
    let totp = node.totp_secret.is_some();
    NodeView { connected: connected.binary_search(&node.id).is_ok(), node, totp }
}

async fn list_nodes(State(st): St, _p: Principal) -> ApiResult<Json<Vec<NodeView>>> {
    let connected = st.core.connected();
    let nodes = st.core.store.list_nodes().await?;
    Ok(Json(nodes.into_iter().map(|n| view(n, &connected)).collect()))
}

async fn node_or_404(st: &AppState, id: i64) -> ApiResult<NodeRecord> {
    st.core.store.node_by_id(id).await?.ok_or_else(|| ApiError::not_found(format!("no node {id}")))
}

#[derive(Serialize)]
struct NodeDetail {
    node: NodeView,
    pots: Vec<PotRecord>,
    commands: Vec<CommandRecord>,
}

async fn get_node(
    State(st): St,
    _p: Principal,
    Path(id): Path<i64>,
) -> ApiResult<Json<NodeDetail>> {
    let node = node_or_404(&st, id).await?;
    let pots = st.core.store.list_pots(id).await?;
    let commands = st.core.store.list_commands(id, 20).await?;
    Ok(Json(NodeDetail { node: view(node, &st.core.connected()), pots, commands }))
}

#[derive(Deserialize)]
struct AddNode {
    name: String,
    #[serde(default)]
    kind: Option<String>,
}

#[derive(Serialize)]
struct EnrollmentView {
    #[serde(flatten)]
    enrollment: crate::Enrollment,
    /// The `otpauth://` URI (or the token) as an SVG QR code.
    qr_svg: Option<String>,
    /// The node's `node.toml` (its `[node]` section; shown once, it holds the credential).
    node_config: String,
    /// What to run on the node with that file.
    node_command: String,
    /// With mutual TLS on: the client certificate issued to the node, as `apiary core node
    /// add` issues it.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_certificate: Option<ClientCertView>,
}

/// A node's client certificate and key (PEM) for mutual TLS, shown once.
#[derive(Serialize)]
struct ClientCertView {
    /// The certificate (PEM): save it on the node as the file `client_cert` names.
    cert_pem: String,
    /// Its private key (PEM): save it as the file `client_key` names; keep it private.
    key_pem: String,
    /// SHA-256 (hex) of the certificate's DER, bound to the node id.
    sha256: String,
    /// Valid from (Unix seconds).
    not_before: i64,
    /// Valid until (Unix seconds): issue a new one before (`POST /nodes/{id}/cert`).
    not_after: i64,
}

/// Issues node `name` a client certificate and reads it back for the response.
async fn client_cert_view(st: &AppState, name: &str) -> ApiResult<ClientCertView> {
    let c = crate::issue_cert(st.core.store.as_ref(), &st.core.cfg, name).await?;
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| {
            ApiError::from(crate::CoreError::Tls(format!("reading {}: {e}", p.display())))
        })
    };
    Ok(ClientCertView {
        cert_pem: read(&c.cert)?,
        key_pem: read(&c.key)?,
        sha256: c.sha256,
        not_before: c.not_before,
        not_after: c.not_after,
    })
}

fn enrollment_view(
    st: &AppState,
    e: crate::Enrollment,
    cert: Option<ClientCertView>,
) -> EnrollmentView {
    let qr_svg = e.otpauth_uri.as_deref().and_then(qr::svg);
    let cfg = &st.core.cfg;
    // Under mutual TLS the node keeps the certificate and key `POST /nodes` answered under
    // these names; a rotated TOTP secret's node.toml names them too.
    let client = cfg.mtls.then_some(("client.pem", "client.key"));
    let node_config =
        e.node_section(&format!("CORE-HOST:{}", st.node_port), cfg.node_trust(), client);
    EnrollmentView {
        enrollment: e,
        qr_svg,
        node_config,
        node_command: "apiary node run -c node.toml".to_owned(),
        client_certificate: cert,
    }
}

async fn add_node(
    State(st): St,
    p: Principal,
    Json(body): Json<AddNode>,
) -> ApiResult<(StatusCode, Json<EnrollmentView>)> {
    p.require(Role::Admin)?;
    let kind = match body.kind.as_deref() {
        None | Some("totp") => EnrollKind::Totp,
        Some("token") => EnrollKind::Token,
        Some(other) => return Err(ApiError::bad(format!("kind {other:?}: use totp or token"))),
    };
    let e = enroll::add_node(st.core.store.as_ref(), body.name.trim(), kind).await?;
    audit_action(&st, &p, "node.add", &format!("node {} id {}", e.name, e.node_id)).await;
    let cert = if st.core.cfg.mtls { Some(client_cert_view(&st, &e.name).await?) } else { None };
    Ok((StatusCode::CREATED, Json(enrollment_view(&st, e, cert))))
}

async fn rotate_totp(
    State(st): St,
    p: Principal,
    Path(id): Path<i64>,
) -> ApiResult<Json<EnrollmentView>> {
    p.require(Role::Admin)?;
    let node = node_or_404(&st, id).await?;
    let secret = enroll::new_secret();
    let b32 = secret.to_base32();
    st.core.store.set_totp_secret(id, &b32).await?;
    audit_action(&st, &p, "node.totp.rotate", &format!("node {} id {id}", node.name)).await;
    let e = crate::Enrollment {
        node_id: id,
        otpauth_uri: Some(secret.otpauth_uri(enroll::ISSUER, &node.name)),
        name: node.name,
        totp_secret: Some(b32),
        token: None,
    };
    Ok(Json(enrollment_view(&st, e, None)))
}

/// A new client certificate for the node (mutual TLS); the one issued before stops working.
async fn renew_cert(
    State(st): St,
    p: Principal,
    Path(id): Path<i64>,
) -> ApiResult<(StatusCode, Json<ClientCertView>)> {
    p.require(Role::Admin)?;
    let node = node_or_404(&st, id).await?;
    let view = client_cert_view(&st, &node.name).await?;
    audit_action(&st, &p, "node.cert", &format!("node {} id {id}", node.name)).await;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn delete_node(State(st): St, p: Principal, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    p.require(Role::Admin)?;
    if !st.core.store.delete_node(id).await? {
        return Err(ApiError::not_found(format!("no node {id}")));
    }
    audit_action(&st, &p, "node.delete", &format!("node {id}")).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn node_pots(
    State(st): St,
    _p: Principal,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<PotRecord>>> {
    node_or_404(&st, id).await?;
    Ok(Json(st.core.store.list_pots(id).await?))
}

async fn all_pots(State(st): St, _p: Principal) -> ApiResult<Json<Vec<PotRecord>>> {
    let mut out = Vec::new();
    for n in st.core.store.list_nodes().await? {
        out.extend(st.core.store.list_pots(n.id).await?);
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<i64>,
}

async fn node_commands(
    State(st): St,
    _p: Principal,
    Path(id): Path<i64>,
    Query(q): Query<Limit>,
) -> ApiResult<Json<Vec<CommandRecord>>> {
    node_or_404(&st, id).await?;
    Ok(Json(st.core.store.list_commands(id, q.limit.unwrap_or(50)).await?))
}

#[derive(Deserialize)]
struct SendCommand {
    /// Any accepted wire form: `"GetInstalledPots"`, `{"DeployPot": "web"}`, ...
    command: Value,
}

async fn send_command(
    State(st): St,
    p: Principal,
    Path(id): Path<i64>,
    Json(body): Json<SendCommand>,
) -> ApiResult<(StatusCode, Json<CommandRecord>)> {
    p.require(Role::Operator)?;
    let command = NodeCommandType::from_value(&body.command).map_err(ApiError::bad)?;
    let node = node_or_404(&st, id).await?;
    let store = &st.core.store;
    let cid = store.enqueue_command(id, &command, now_micros()).await?;
    let detail = format!(
        "node {} id {id} command {cid} {}",
        node.name,
        serde_json::to_string(&command).unwrap_or_default()
    );
    audit_action(&st, &p, "command.send", &detail).await;
    st.core.wake(id);
    let rec = store
        .command(cid)
        .await?
        .ok_or_else(|| ApiError::internal("command vanished after insert"))?;
    Ok((StatusCode::ACCEPTED, Json(rec)))
}

#[derive(Deserialize)]
struct Wait {
    /// Seconds to wait for the command to finish (done or failed).
    wait: Option<f64>,
}

async fn get_command(
    State(st): St,
    _p: Principal,
    Path(id): Path<i64>,
    Query(q): Query<Wait>,
) -> ApiResult<Json<CommandRecord>> {
    let wait =
        Duration::from_secs_f64(q.wait.unwrap_or(0.0).clamp(0.0, 3600.0)).min(st.cfg.max_wait);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let rec = st
            .core
            .store
            .command(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no command {id}")))?;
        let finished = matches!(rec.status, CommandStatus::Done | CommandStatus::Failed);
        if finished || tokio::time::Instant::now() >= deadline {
            return Ok(Json(rec));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = st.cancel.cancelled() => return Ok(Json(rec)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Events, sessions, statistics.

/// Parses a time parameter: RFC 3339, or a duration meaning "that long ago" (`15m`, `24h`,
/// `7d`; a bare number is seconds).
pub(crate) fn parse_time(s: &str, now: Timestamp) -> Result<Timestamp, ApiError> {
    if let Ok(t) = Timestamp::parse(s) {
        return Ok(t);
    }
    let d = apiary_event::duration::parse(s).map_err(|_| {
        ApiError::bad(format!("time {s:?}: use RFC 3339 or a duration ago (15m, 24h)"))
    })?;
    let us = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    Ok(Timestamp::from_micros(now.as_micros().saturating_sub(us)))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct EventParams {
    pub(crate) since: Option<String>,
    pub(crate) until: Option<String>,
    pub(crate) src_ip: Option<String>,
    pub(crate) node_id: Option<i64>,
    pub(crate) kind: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) session: Option<String>,
    pub(crate) q: Option<String>,
    pub(crate) before: Option<String>,
    pub(crate) limit: Option<u32>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl EventParams {
    pub(crate) fn filter(&self, now: Timestamp) -> Result<EventFilter, ApiError> {
        let capped = |s: &str| -> Result<String, ApiError> {
            if s.len() > 256 {
                Err(ApiError::bad("filter values are at most 256 bytes"))
            } else {
                Ok(s.to_owned())
            }
        };
        Ok(EventFilter {
            since: non_empty(&self.since).map(|s| parse_time(s, now)).transpose()?,
            until: non_empty(&self.until).map(|s| parse_time(s, now)).transpose()?,
            src_ip: non_empty(&self.src_ip)
                .map(|s| {
                    s.parse::<IpAddr>()
                        .map_err(|_| ApiError::bad(format!("src_ip {s:?} is not an address")))
                })
                .transpose()?,
            node_id: self.node_id,
            kind: non_empty(&self.kind).map(capped).transpose()?,
            service: non_empty(&self.service).map(capped).transpose()?,
            session: non_empty(&self.session)
                .map(|s| {
                    Uuid::parse_str(s)
                        .map_err(|_| ApiError::bad(format!("session {s:?} is not a UUID")))
                })
                .transpose()?,
            text: non_empty(&self.q).map(capped).transpose()?,
            before: non_empty(&self.before)
                .map(|s| {
                    parse_cursor(s).ok_or_else(|| ApiError::bad("before: not a cursor from `next`"))
                })
                .transpose()?,
            limit: self.limit.unwrap_or(100),
        })
    }
}

async fn search_events(
    State(st): St,
    _p: Principal,
    Query(q): Query<EventParams>,
) -> ApiResult<Json<super::EventPage>> {
    let f = q.filter(Timestamp::now())?;
    Ok(Json(st.db.search(&f).await?))
}

async fn get_event(State(st): St, _p: Principal, Path(id): Path<String>) -> ApiResult<Json<Event>> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::bad("not an event id"))?;
    st.db.event(id).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no event {id}")))
}

#[derive(Serialize)]
struct SessionView {
    session: Uuid,
    events: Vec<Event>,
    /// An asciicast v2 recording of the terminal output, for interactive sessions.
    asciicast: Option<String>,
}

/// Builds an asciicast v2 recording from a session's bytes: what the honeypot sent (`o`) and
/// what the attacker typed (`i`), timed from the events. Only for interactive protocols, or
/// when a pot attached its own recording as `fields.asciicast`.
fn asciicast(events: &[Event]) -> Option<String> {
    if let Some(cast) =
        events.iter().find_map(|e| e.fields.get("asciicast").and_then(Value::as_str))
    {
        return Some(cast.to_owned());
    }
    let interactive = events.iter().any(|e| {
        matches!(e.protocol.as_deref(), Some("telnet" | "ssh" | "shell"))
            || e.command.as_ref().is_some_and(|c| c.interpreter.as_deref() == Some("shell"))
    });
    let start = events.first()?.time;
    let mut lines = Vec::new();
    for e in events {
        let dir = if e.kind == Kind::SESSION_TX {
            "o"
        } else if e.kind == Kind::SESSION_RX {
            "i"
        } else {
            continue;
        };
        let Some(p) = &e.payload else { continue };
        let t = e.time.micros_since(start) as f64 / 1e6;
        let text = String::from_utf8_lossy(&p.data);
        lines.push(json!([t, dir, text]).to_string());
    }
    if !interactive || !lines.iter().any(|l| l.contains("\"o\"")) {
        return None;
    }
    let header = json!({ "version": 2, "width": 100, "height": 30, "timestamp": start.as_secs() });
    let mut out = header.to_string();
    for l in lines {
        out.push('\n');
        out.push_str(&l);
    }
    out.push('\n');
    Some(out)
}

async fn get_session(
    State(st): St,
    _p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<SessionView>> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::bad("not a session id"))?;
    let events = st.db.session(id, 10_000).await?;
    if events.is_empty() {
        return Err(ApiError::not_found(format!("no events for session {id}")));
    }
    let asciicast = asciicast(&events);
    Ok(Json(SessionView { session: id, events, asciicast }))
}

#[derive(Deserialize)]
struct OverviewParams {
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
}

async fn overview(
    State(st): St,
    _p: Principal,
    Query(q): Query<OverviewParams>,
) -> ApiResult<Json<super::db::Overview>> {
    let now = Timestamp::now();
    let since = match non_empty(&q.since) {
        Some(s) => parse_time(s, now)?,
        None => parse_time("24h", now)?,
    };
    let until = match non_empty(&q.until) {
        Some(s) => parse_time(s, now)?,
        None => now,
    };
    if until <= since {
        return Err(ApiError::bad("until must be after since"));
    }
    Ok(Json(st.db.overview(since, until, q.limit.unwrap_or(10)).await?))
}

#[derive(Deserialize)]
struct AlertParams {
    window: Option<String>,
    windows: Option<u32>,
}

async fn alerts(
    State(st): St,
    _p: Principal,
    Query(q): Query<AlertParams>,
) -> ApiResult<Json<Value>> {
    let window = match non_empty(&q.window) {
        Some(w) => apiary_event::duration::parse(w).map_err(ApiError::bad)?,
        None => Duration::from_secs(600),
    };
    let digests = st.db.digests(Timestamp::now(), window, q.windows.unwrap_or(6), 20).await?;
    Ok(Json(json!({ "window_secs": window.as_secs(), "digests": digests })))
}

async fn audit(
    State(st): St,
    p: Principal,
    Query(q): Query<Limit>,
) -> ApiResult<Json<Vec<crate::AuditRecord>>> {
    p.require(Role::Admin)?;
    Ok(Json(st.core.store.audit_log(q.limit.unwrap_or(100)).await?))
}

// ---------------------------------------------------------------------------------------------
// Tokens.

async fn list_tokens(State(st): St, p: Principal) -> ApiResult<Json<Vec<super::db::TokenInfo>>> {
    p.require(Role::Admin)?;
    Ok(Json(st.db.list_tokens().await?))
}

#[derive(Deserialize)]
struct AddToken {
    name: String,
    role: Role,
}

async fn add_token(
    State(st): St,
    p: Principal,
    Json(body): Json<AddToken>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    p.require(Role::Admin)?;
    let token = st.db.create_token(&body.name, body.role, false).await?;
    audit_action(&st, &p, "token.add", &format!("{} ({})", body.name, body.role.as_str())).await;
    Ok((StatusCode::CREATED, Json(json!({ "name": body.name, "role": body.role, "token": token }))))
}

async fn delete_token(
    State(st): St,
    p: Principal,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    p.require(Role::Admin)?;
    if !st.db.delete_token(&name).await? {
        return Err(ApiError::not_found(format!("no token named {name:?}")));
    }
    audit_action(&st, &p, "token.delete", &name).await;
    Ok(StatusCode::NO_CONTENT)
}
