//! A small Lambda Runtime API server, for driving a real `bootstrap` binary
//! the way AWS Lambda does: the function polls `GET .../invocation/next`,
//! then posts `.../{id}/response` or `.../{id}/error`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use tests::lambda_runtime_api::RuntimeApi;
//! let api = RuntimeApi::start().await?;
//! // spawn the bootstrap binary with AWS_LAMBDA_RUNTIME_API = api.address()
//! let outcome = api.invoke(serde_json::json!({"Records": []}), std::time::Duration::from_secs(60)).await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{Response, StatusCode};
use axum::routing::{get, post};
use tokio::sync::{Mutex, mpsc, oneshot};

/// How an invocation ended, as the function reported it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `POST /runtime/invocation/{id}/response` with this body.
    Response(serde_json::Value),
    /// `POST /runtime/invocation/{id}/error` with this body (`errorType`, `errorMessage`).
    Error(serde_json::Value),
}

struct Invocation {
    id: String,
    payload: serde_json::Value,
    deadline: Duration,
}

struct Shared {
    next: Mutex<mpsc::UnboundedReceiver<Invocation>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: Mutex<Option<serde_json::Value>>,
}

/// The server; stops when dropped.
pub struct RuntimeApi {
    address: SocketAddr,
    queue: mpsc::UnboundedSender<Invocation>,
    shared: Arc<Shared>,
    counter: AtomicU64,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    /// Listen on 127.0.0.1 (an ephemeral port).
    pub async fn start() -> std::io::Result<Self> {
        let (queue, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            next: Mutex::new(rx),
            waiting: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "runtime API server stopped");
            }
        });
        Ok(RuntimeApi {
            address,
            queue,
            shared,
            counter: AtomicU64::new(0),
            server,
        })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Queue one invocation and wait (at most `timeout`) for the function's
    /// answer. The function sees `timeout` as its deadline.
    pub async fn invoke(
        &self,
        payload: serde_json::Value,
        timeout: Duration,
    ) -> anyhow::Result<Outcome> {
        let id = format!("req-{}", self.counter.fetch_add(1, Ordering::Relaxed) + 1);
        let (tx, rx) = oneshot::channel();
        self.shared.waiting.lock().await.insert(id.clone(), tx);
        self.queue
            .send(Invocation {
                id: id.clone(),
                payload,
                deadline: timeout,
            })
            .map_err(|_| anyhow::anyhow!("runtime API server is gone"))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => anyhow::bail!("invocation {id} was dropped"),
            Err(_) => {
                let init = self.init_error().await;
                anyhow::bail!(
                    "invocation {id}: no answer within {timeout:?} (init error: {init:?})"
                )
            }
        }
    }

    /// The body of `POST /runtime/init/error`, if the function reported one.
    pub async fn init_error(&self) -> Option<serde_json::Value> {
        self.shared.init_error.lock().await.clone()
    }
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

async fn next(State(shared): State<Arc<Shared>>) -> Response<Body> {
    let invocation = shared.next.lock().await.recv().await;
    let Some(inv) = invocation else {
        return status(StatusCode::GONE);
    };
    let deadline = epoch_ms() + inv.deadline.as_millis();
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", &inv.id)
        .header("lambda-runtime-deadline-ms", deadline.to_string())
        .header(
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:imagestack-processor-test",
        )
        .header(
            "lambda-runtime-trace-id",
            format!("Root=1-00000000-{:024x};Sampled=0", 1),
        )
        .body(Body::from(inv.payload.to_string()))
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR))
}

async fn complete(shared: &Shared, id: &str, outcome: Outcome) -> Response<Body> {
    match shared.waiting.lock().await.remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            status(StatusCode::ACCEPTED)
        }
        None => status(StatusCode::BAD_REQUEST),
    }
}

fn json(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response<Body> {
    complete(&shared, &id, Outcome::Response(json(&body))).await
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response<Body> {
    complete(&shared, &id, Outcome::Error(json(&body))).await
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> Response<Body> {
    *shared.init_error.lock().await = Some(json(&body));
    status(StatusCode::ACCEPTED)
}

fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    r
}
