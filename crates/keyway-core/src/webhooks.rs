//! Webhooks: signed notifications of connection events, delivered from a transactional
//! outbox. The store queues a delivery for each subscribed endpoint in the same
//! transaction as the audit event it reports, so an event is never lost to a crash; a
//! background worker sends due deliveries with retries and backoff. Delivery is at least
//! once: receivers deduplicate on the `Keyway-Delivery` header.
//!
//! Signature: `Keyway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

use crate::audit::AuditEvent;
use crate::broker::Broker;
use crate::error::CoreError;
use crate::ids::{new_id, random_token};
use crate::outbound::OutboundRequest;
use crate::vault::FieldRef;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;

/// Event types a webhook can subscribe to.
pub const EVENTS: &[&str] = &[
    "connection.created",
    "connection.needs_reauthorization",
    "connection.recovered",
    "connection.revoked",
    "agent_session.approved",
    "agent_session.ended",
];

pub const MAX_DELIVERY_ATTEMPTS: i64 = 12;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    /// `None`: an operator's webhook, receiving every application's events.
    pub application_id: Option<String>,
    pub url: String,
    pub events: Vec<String>,
    pub secret_sealed: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub event_type: String,
    pub payload: String,
    pub created_at: OffsetDateTime,
    pub attempts: i64,
    pub next_attempt_at: OffsetDateTime,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<OffsetDateTime>,
}

/// The JSON body for an audit record that is also a webhook event.
pub fn payload(seq: i64, e: &AuditEvent) -> String {
    serde_json::json!({
        "id": format!("evt_{seq}"),
        "type": e.action,
        "created_at": crate::clock::rfc3339(e.at),
        "data": {
            "application_id": e.application_id,
            "user_id": e.user_id,
            "connection_id": e.connection_id,
            "integration": e.integration,
            "details": serde_json::from_str::<serde_json::Value>(&e.details).unwrap_or(serde_json::Value::Null),
        }
    })
    .to_string()
}

/// `t=<unix>,v1=<hex hmac>` over `"<t>.<body>"`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

fn retry_delay(attempts: i64) -> time::Duration {
    time::Duration::seconds(10i64 << attempts.clamp(0, 9)).min(time::Duration::hours(1))
}

impl Broker {
    /// Registers a webhook; the secret is returned once.
    pub async fn create_webhook(
        &self,
        actor: &str,
        application_id: Option<&str>,
        url: &str,
        events: Vec<String>,
    ) -> Result<(Webhook, String), CoreError> {
        let parsed = url::Url::parse(url)
            .map_err(|_| CoreError::invalid("invalid_request", "`url` is not a valid URL"))?;
        if !matches!(parsed.scheme(), "https" | "http")
            || parsed.host_str().is_none()
            || !parsed.username().is_empty()
            || url.len() > 2000
        {
            return Err(CoreError::invalid(
                "invalid_request",
                "`url` must be an absolute http(s) URL without credentials",
            ));
        }
        if events.is_empty() || events.len() > EVENTS.len() {
            return Err(CoreError::invalid(
                "invalid_request",
                format!("`events` must name some of: {}", EVENTS.join(", ")),
            ));
        }
        for e in &events {
            if !EVENTS.contains(&e.as_str()) {
                return Err(CoreError::invalid(
                    "invalid_request",
                    format!("unknown event `{e}`; known: {}", EVENTS.join(", ")),
                ));
            }
        }
        let id = new_id("wh");
        let secret = format!("whsec_{}", random_token(32));
        let now = self.clock.now();
        let hook = Webhook {
            secret_sealed: self
                .vault
                .seal(FieldRef::new("webhooks", &id, "secret"), &secret),
            id,
            application_id: application_id.map(str::to_string),
            url: url.to_string(),
            events,
            created_at: now,
        };
        let mut event = AuditEvent::new(now, "webhook.created", actor).details(
            serde_json::json!({"webhook_id": hook.id, "url": hook.url, "events": hook.events}),
        );
        event.application_id = hook.application_id.clone();
        self.store.insert_webhook(&hook, &[event]).await?;
        Ok((hook, secret))
    }

    pub async fn list_webhooks(
        &self,
        application_id: Option<&str>,
    ) -> Result<Vec<Webhook>, CoreError> {
        Ok(self.store.list_webhooks(application_id).await?)
    }

    /// A webhook the caller owns (operators own every one).
    pub async fn webhook_for(
        &self,
        application_id: Option<&str>,
        id: &str,
    ) -> Result<Webhook, CoreError> {
        let hook = self
            .store
            .get_webhook(id)
            .await?
            .ok_or(CoreError::NotFound { what: "webhook" })?;
        match application_id {
            Some(app) if hook.application_id.as_deref() != Some(app) => {
                Err(CoreError::NotFound { what: "webhook" })
            }
            _ => Ok(hook),
        }
    }

    pub async fn delete_webhook(
        &self,
        actor: &str,
        application_id: Option<&str>,
        id: &str,
    ) -> Result<(), CoreError> {
        let hook = self.webhook_for(application_id, id).await?;
        let mut event = AuditEvent::new(self.clock.now(), "webhook.deleted", actor)
            .details(serde_json::json!({"webhook_id": hook.id, "url": hook.url}));
        event.application_id = hook.application_id.clone();
        self.store.delete_webhook(&hook.id, &[event]).await?;
        Ok(())
    }

    pub async fn webhook_deliveries(
        &self,
        webhook_id: &str,
        limit: u32,
    ) -> Result<Vec<Delivery>, CoreError> {
        Ok(self
            .store
            .list_deliveries(webhook_id, limit.clamp(1, 500))
            .await?)
    }

    /// Sends due deliveries once each; run periodically. Returns how many were attempted.
    pub async fn deliver_webhooks(&self) -> Result<usize, CoreError> {
        let now = self.clock.now();
        // Claiming pushes next_attempt_at forward, so another worker does not send the
        // same delivery while this one is at it.
        let due = self
            .store
            .claim_due_deliveries(now, now + time::Duration::minutes(2), 50)
            .await?;
        for (d, hook) in &due {
            let secret = match self.vault.open(
                FieldRef::new("webhooks", &hook.id, "secret"),
                &hook.secret_sealed,
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(webhook = %hook.id, error = %e, "cannot open webhook secret");
                    continue;
                }
            };
            let ts = now.unix_timestamp();
            let mut req = OutboundRequest::new("POST", hook.url.as_str())
                .header("Keyway-Event", d.event_type.clone())
                .header("Keyway-Delivery", d.id.clone())
                .header(
                    "Keyway-Signature",
                    signature(secret.expose(), ts, &d.payload),
                )
                .header(
                    "User-Agent",
                    concat!("keyway-webhooks/", env!("CARGO_PKG_VERSION")),
                )
                .body("application/json", d.payload.clone().into_bytes());
            req.timeout = std::time::Duration::from_secs(10);
            let (status, error) = match self.http.send(req).await {
                Ok(r) if (200..300).contains(&r.status) => (Some(r.status as i64), None),
                Ok(r) => (Some(r.status as i64), Some(format!("HTTP {}", r.status))),
                Err(e) => (None, Some(e.to_string())),
            };
            let attempts = d.attempts + 1;
            let (state, next) = match &error {
                None => ("delivered", now),
                Some(_) if attempts >= MAX_DELIVERY_ATTEMPTS => ("failed", now),
                Some(_) => ("pending", now + retry_delay(attempts)),
            };
            self.store
                .record_delivery_attempt(
                    &d.id,
                    attempts,
                    state,
                    status,
                    error.as_deref(),
                    next,
                    now,
                )
                .await?;
        }
        Ok(due.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_and_body() {
        // Independent computation: HMAC-SHA256(key="k", "1700000000.{}").
        let sig = signature("k", 1_700_000_000, "{}");
        assert!(sig.starts_with("t=1700000000,v1="));
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"k").expect("key");
        mac.update(b"1700000000.{}");
        assert_eq!(
            sig,
            format!(
                "t=1700000000,v1={}",
                hex::encode(mac.finalize().into_bytes())
            )
        );
        assert_ne!(
            signature("k", 1_700_000_001, "{}"),
            sig,
            "the timestamp is signed"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(retry_delay(1) < retry_delay(2));
        assert_eq!(retry_delay(20), time::Duration::hours(1));
    }
}
