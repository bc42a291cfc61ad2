//! `eddy server`: the engine behind ksqlDB's REST API, so that the tools and clients teams
//! already use with ksqlDB work against Eddy.
//!
//! One persistent [`Session`] holds the catalog and runs the persistent queries in the
//! background, as the REPL does; requests take its lock only while a statement executes (a push
//! query's rows stream after the lock is released). Statements run on blocking tasks, since the
//! engine does blocking file I/O. Endpoints and their shapes are ksqlDB's:
//!
//! - `POST /ksql`: statements other than queries; one entity per statement (`ksql.rs`).
//! - `POST /query`, `POST /query-stream`, `POST /close-query`: pull and push queries, PRINT
//!   (`query.rs`).
//! - `POST /inserts-stream`: rows as JSON lines into a stream (`inserts.rs`).
//! - `GET /info`, `/healthcheck`, `/status[/id]`, `/metrics` (Prometheus text, `metrics.rs`).
//! - `GET /`: the web console, a page for people (`console.rs`).
//!
//! With `--queries-file` the server is headless, as ksqlDB's: it applies the file at start and
//! refuses statements that would change the catalog. With `--auth-token` (or
//! `EDDY_AUTH_TOKEN`) every endpoint but `/healthcheck` and the console's static files wants
//! `Authorization: Bearer <token>`.

mod console;
mod inserts;
mod ksql;
mod metrics;
mod proto_rows;
mod query;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{bail, Context, Result};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use clap::Args;
use eddy_log::Log;
use eddy_sql::Session;
use serde_json::{json, Value};

#[derive(Args)]
pub struct ServerArgs {
    /// The address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    /// Headless mode: run this file's statements at start and refuse statements that change
    /// the catalog over the API.
    #[arg(long)]
    queries_file: Option<PathBuf>,
    /// Require `Authorization: Bearer TOKEN` on every endpoint but /healthcheck and the web
    /// console's static files (the console asks for the token, or takes it from `/#token=...`).
    #[arg(long, env = "EDDY_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// Also serve Kafka's wire protocol on this address, over the same topics: Kafka clients
    /// produce to the streams the queries read and consume what they write.
    #[arg(long, value_name = "HOST:PORT")]
    kafka_listen: Option<SocketAddr>,
    #[command(flatten)]
    kafka: crate::broker::KafkaOptions,
}

/// The largest request body accepted (an `/inserts-stream` body is read as it streams and is
/// not limited by this).
const MAX_BODY: usize = 1 << 20;

/// What every request shares.
pub(crate) struct Shared {
    session: Mutex<Session>,
    headless: bool,
    token: Option<String>,
    /// Running push queries, by id: the flag that `/close-query` sets to end one.
    pub(crate) push: Mutex<HashMap<String, Arc<AtomicBool>>>,
    /// Numbers the statements that changed the catalog (ksqlDB's command sequence numbers).
    command_seq: AtomicU64,
    /// Each command's id and outcome, for `/status`.
    statuses: Mutex<BTreeMap<String, (String, String)>>,
    /// Set when the server stops: streaming responses end, so the shutdown need not wait for
    /// clients to hang up.
    stopping: AtomicBool,
}

impl Shared {
    /// The session, even if a request panicked while holding it (its state is the log's and
    /// RocksDB's, which a panic does not corrupt).
    pub(crate) fn session(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub fn run(log: Log, setup: crate::SessionSetup, args: ServerArgs) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let mut session = setup.open(log)?;
    session.run_in_background()?;
    if let Some(path) = &args.queries_file {
        let sql = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut failure = None;
        let _ = session.run_script(&sql, &mut |text, outcome| match outcome {
            Ok(_) => std::ops::ControlFlow::Continue(()),
            Err(e) => {
                failure = Some(format!("{e}\n  in: {}", text.trim()));
                std::ops::ControlFlow::Break(())
            }
        });
        if let Some(f) = failure {
            session.shutdown();
            bail!("{}: {f}", path.display());
        }
    }
    let options = ServeOptions {
        headless: args.queries_file.is_some(),
        token: args.auth_token.filter(|t| !t.is_empty()),
    };
    let log = session.log().clone();
    let server = runtime.block_on(Server::start(session, args.listen, options))?;
    // Scripts and tests read the address from this line (with --listen ...:0).
    println!("eddy server listening on http://{}", server.addr);
    let kafka = match args.kafka_listen {
        Some(addr) => {
            let listener = runtime.block_on(crate::broker::start(log, addr, &args.kafka))?;
            println!("eddy kafka listener on {}", listener.addr);
            Some(listener)
        }
        None => None,
    };
    let served = runtime.block_on(async {
        shutdown_signal().await;
        if let Some(k) = kafka {
            k.stop().await;
        }
        server.stop().await
    });
    served
}

/// How a server treats requests.
#[derive(Default)]
pub(crate) struct ServeOptions {
    pub headless: bool,
    pub token: Option<String>,
}

/// A server running on a runtime's tasks (`eddy server`, and `eddy test` for ksqlDB's REST
/// conformance cases).
pub(crate) struct Server {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Listens on `listen` and serves `session` (whose queries should run in the background).
    pub(crate) async fn start(
        session: Session,
        listen: SocketAddr,
        options: ServeOptions,
    ) -> Result<Server> {
        let shared = Arc::new(Shared {
            session: Mutex::new(session),
            headless: options.headless,
            token: options.token,
            push: Mutex::default(),
            command_seq: AtomicU64::new(0),
            statuses: Mutex::default(),
            stopping: AtomicBool::new(false),
        });
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = router(shared.clone());
        let served = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Server {
            addr,
            shared,
            stop,
            served,
        })
    }

    /// Stops accepting requests, waits for those in flight, and stops the persistent queries
    /// (they resume from their commits next time). Push queries end with their connections.
    pub(crate) async fn stop(self) -> Result<()> {
        self.shared
            .stopping
            .store(true, std::sync::atomic::Ordering::Release);
        let _ = self.stop.send(());
        let served = self.served.await;
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.session().shutdown()).await?;
        served??;
        Ok(())
    }
}

pub(crate) async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/ksql", post(ksql::ksql))
        .route("/query", post(query::query))
        .route("/query-stream", post(query::query_stream))
        .route("/close-query", post(query::close_query))
        .route(
            "/inserts-stream",
            post(inserts::inserts_stream).layer(DefaultBodyLimit::disable()),
        )
        .route("/info", get(info))
        .route("/healthcheck", get(healthcheck))
        .route("/status", get(statuses))
        .route("/status/{*id}", get(status))
        .route("/metrics", get(metrics::metrics))
        .route("/", get(console::index))
        .route("/console/console.js", get(console::script))
        .route("/console/console.css", get(console::style))
        .route("/console/api/state", get(console::state))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(refuse_oversize))
        .layer(middleware::from_fn_with_state(shared.clone(), authorize))
        .with_state(shared)
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// An error as ksqlDB reports one: `{"@type": "generic_error", "error_code", "message"}`; the
/// error code is the HTTP status followed by two digits.
pub(crate) fn error_response(status: StatusCode, code: u32, message: &str) -> Response {
    json_response(
        status,
        &json!({"@type": "generic_error", "error_code": code, "message": message}),
    )
}

/// A statement that failed, as ksqlDB reports one (`statement_error`, 40001), with the entities
/// of the statements before it in the request.
pub(crate) fn statement_error(
    text: &str,
    e: &eddy_sql::SqlError,
    entities: Vec<Value>,
) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({
            "@type": "statement_error",
            "error_code": 40001,
            "message": e.to_string(),
            "statementText": text,
            "entities": entities,
        }),
    )
}

pub(crate) fn bad_request(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, 40000, message)
}

/// A response that ends a request early (an error), boxed: a `Response` is large to move
/// around in every `Result`.
pub(crate) type Reject = Box<Response>;

/// The request body as JSON, or the 400 a malformed body gets.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reject> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(bad_request(&format!("Invalid JSON in request: {e}"))))
}

async fn authorize(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let Some(token) = &shared.token else {
        return next.run(req).await;
    };
    if req.uri().path() == "/healthcheck" || console::is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(token.as_str()) {
        next.run(req).await
    } else {
        error_response(
            StatusCode::UNAUTHORIZED,
            40100,
            "Unauthorized: a valid 'Authorization: Bearer <token>' header is required.",
        )
    }
}

/// Refuses a body announced larger than [`MAX_BODY`] on its `Content-Length`, before reading
/// it: the body limit alone answers only once that much has arrived, so a client announcing
/// gigabytes would hold the connection (and the handler's wait) for as long as it liked.
/// `/inserts-stream` has no limit: it reads its body a line at a time.
async fn refuse_oversize(req: Request, next: Next) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match announced {
        Some(n) if n > MAX_BODY as u64 && req.uri().path() != "/inserts-stream" => error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            41300,
            &format!("The request body of {n} bytes is larger than the {MAX_BODY} allowed."),
        ),
        _ => next.run(req).await,
    }
}

async fn not_found(req: Request) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        40400,
        &format!("No endpoint {} {}", req.method(), req.uri().path()),
    )
}

async fn info(State(shared): State<Arc<Shared>>) -> Response {
    let status = if shared.headless {
        "RUNNING (headless)"
    } else {
        "RUNNING"
    };
    json_response(
        StatusCode::OK,
        &json!({"KsqlServerInfo": {
            "version": env!("CARGO_PKG_VERSION"),
            "kafkaClusterId": "eddy-embedded-log",
            "ksqlServiceId": "eddy",
            "serverStatus": status,
        }}),
    )
}

async fn healthcheck() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"isHealthy": true, "details": {
            "metastore": {"isHealthy": true},
            "kafka": {"isHealthy": true},
        }}),
    )
}

async fn statuses(State(shared): State<Arc<Shared>>) -> Response {
    let statuses = shared.statuses.lock().unwrap_or_else(|e| e.into_inner());
    let map: serde_json::Map<String, Value> = statuses
        .iter()
        .map(|(id, (status, _))| (id.clone(), Value::from(status.clone())))
        .collect();
    json_response(StatusCode::OK, &json!({ "commandStatuses": map }))
}

async fn status(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let statuses = shared.statuses.lock().unwrap_or_else(|e| e.into_inner());
    match statuses.get(&id) {
        Some((status, message)) => json_response(
            StatusCode::OK,
            &json!({"status": status, "message": message}),
        ),
        None => error_response(
            StatusCode::NOT_FOUND,
            40400,
            &format!("Command not found: {id}"),
        ),
    }
}
