//! Prometheus metrics, and the request log. Both name the matched route template, never
//! the raw path: connect URLs carry session tokens (S1).

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use keyway_core::Broker;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    latency: Histogram,
}

#[derive(Debug)]
struct BrokerCollector(Arc<Broker>);

impl Collector for BrokerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (calls, refreshes, failures) = self.0.refresh_stats().snapshot();
        for (name, help, v) in [
            (
                "keyway_token_calls",
                "Token calls answered or refused",
                calls,
            ),
            (
                "keyway_refreshes",
                "Upstream token refreshes that succeeded",
                refreshes,
            ),
            (
                "keyway_refresh_failures",
                "Upstream token refreshes that failed",
                failures,
            ),
        ] {
            let c = ConstCounter::new(v);
            let m = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            c.encode(m)?;
        }
        Ok(())
    }
}

impl Metrics {
    pub fn new(broker: Arc<Broker>) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
        ]);
        registry.register(
            "keyway_http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "keyway_http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        registry.register_collector(Box::new(BrokerCollector(broker)));
        Self {
            registry,
            requests,
            latency,
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("could not encode metrics");
        }
        out
    }
}

/// Counts and logs every request by route template.
pub async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    s.metrics
        .requests
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    s.metrics.latency.observe(elapsed.as_secs_f64());
    tracing::debug!(%method, %route, status, elapsed_ms = elapsed.as_millis() as u64, "request");
    resp
}
