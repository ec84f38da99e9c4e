//! A webhook receiver on port 0 that records what it gets and can be told to fail.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Inner {
    received: Mutex<Vec<(HeaderMap, String)>>,
    fail_next: AtomicU32,
}

pub struct Receiver {
    pub url: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(State(s): State<Arc<Inner>>, headers: HeaderMap, body: String) -> StatusCode {
    if s.fail_next.load(Ordering::SeqCst) > 0 {
        s.fail_next.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    s.received.lock().expect("lock").push((headers, body));
    StatusCode::NO_CONTENT
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, inner, task }
    }

    /// Everything accepted so far: (headers, body).
    pub fn received(&self) -> Vec<(HeaderMap, String)> {
        self.inner.received.lock().expect("lock").clone()
    }

    /// Answer the next `n` deliveries with 503.
    pub fn fail_next(&self, n: u32) {
        self.inner.fail_next.store(n, Ordering::SeqCst);
    }
}
