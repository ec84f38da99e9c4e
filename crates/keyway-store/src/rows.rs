//! Row ⇄ record mapping, shared by both databases: [`Get`] reads a column the same way
//! from a SQLite or a PostgreSQL row (times are Unix milliseconds in both, lists and maps
//! JSON text; flags are integers in SQLite and booleans in PostgreSQL).

use keyway_core::clock::{from_millis, to_millis};
use keyway_core::model::*;
use keyway_core::StoreError;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use std::collections::BTreeMap;
use time::OffsetDateTime;

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(d.message().to_string())
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(d)
            if d.message().contains("locked") || d.message().contains("busy") =>
        {
            StoreError::Unavailable(d.message().to_string())
        }
        // PostgreSQL: connection exceptions (08), too many connections (53), operator
        // intervention such as a shutdown or a terminated backend (57), and a database not
        // accepting connections (55000): the database is away, not the request wrong.
        sqlx::Error::Database(d)
            if d.code().is_some_and(|c| {
                c.starts_with("08") || c.starts_with("53") || c.starts_with("57") || c == "55000"
            }) =>
        {
            StoreError::Unavailable(d.message().to_string())
        }
        sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Other(e.to_string()),
    }
}

/// Which columns hold sealed values, and each table's key column: the only identifiers
/// either store formats into SQL for master-key rotation.
pub(crate) const SEALED: &[(&str, &str, &str)] = &[
    ("integrations", "slug", "client_secret"),
    ("connections", "id", "access_token"),
    ("connections", "id", "refresh_token"),
    ("pending_authorizations", "state_hash", "pkce_verifier"),
    ("revocation_retries", "id", "access_token"),
    ("revocation_retries", "id", "refresh_token"),
    ("webhooks", "id", "secret"),
];

pub(crate) fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn parse_json<T: serde::de::DeserializeOwned + Default>(s: Option<String>) -> T {
    s.and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

pub(crate) fn ms(t: OffsetDateTime) -> i64 {
    to_millis(t)
}

/// Typed column reads, the same for both databases.
pub(crate) trait Get {
    fn s(&self, col: &str) -> Result<String, StoreError>;
    fn os(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn i(&self, col: &str) -> Result<i64, StoreError>;
    fn oi(&self, col: &str) -> Result<Option<i64>, StoreError>;
    fn b(&self, col: &str) -> Result<bool, StoreError>;
}

macro_rules! impl_get {
    ($row:ty, |$r:ident, $c:ident| $flag:expr) => {
        impl Get for $row {
            fn s(&self, col: &str) -> Result<String, StoreError> {
                self.try_get(col).map_err(db_err)
            }
            fn os(&self, col: &str) -> Result<Option<String>, StoreError> {
                self.try_get(col).map_err(db_err)
            }
            fn i(&self, col: &str) -> Result<i64, StoreError> {
                self.try_get(col).map_err(db_err)
            }
            fn oi(&self, col: &str) -> Result<Option<i64>, StoreError> {
                self.try_get(col).map_err(db_err)
            }
            fn b(&self, col: &str) -> Result<bool, StoreError> {
                let ($r, $c) = (self, col);
                $flag
            }
        }
    };
}

impl_get!(SqliteRow, |r, c| r.i(c).map(|v| v != 0));
impl_get!(PgRow, |r, c| r.try_get(c).map_err(db_err));

fn t<R: Get>(row: &R, col: &str) -> Result<OffsetDateTime, StoreError> {
    row.i(col).map(from_millis)
}

fn ot<R: Get>(row: &R, col: &str) -> Result<Option<OffsetDateTime>, StoreError> {
    row.oi(col).map(|v| v.map(from_millis))
}

fn s<R: Get>(row: &R, col: &str) -> Result<String, StoreError> {
    row.s(col)
}

fn os<R: Get>(row: &R, col: &str) -> Result<Option<String>, StoreError> {
    row.os(col)
}

pub(crate) fn application<R: Get>(row: &R) -> Result<Application, StoreError> {
    Ok(Application {
        id: s(row, "id")?,
        name: s(row, "name")?,
        return_urls: parse_json(os(row, "return_urls")?),
        allowed_origins: parse_json(os(row, "allowed_origins")?),
        allowed_integrations: os(row, "allowed_integrations")?
            .and_then(|v| serde_json::from_str(&v).ok()),
        agent_session_max_secs: row.i("agent_session_max_secs")?,
        agent_session_default_secs: row.i("agent_session_default_secs")?,
        login_url: os(row, "login_url")?,
        branding: os(row, "branding")?
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default(),
        created_at: t(row, "created_at")?,
    })
}

pub(crate) fn api_key<R: Get>(row: &R) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        id: s(row, "id")?,
        application_id: os(row, "application_id")?,
        name: s(row, "name")?,
        hash: s(row, "hash")?,
        prefix: s(row, "prefix")?,
        created_at: t(row, "created_at")?,
        revoked_at: ot(row, "revoked_at")?,
    })
}

pub(crate) fn integration<R: Get>(row: &R) -> Result<Integration, StoreError> {
    Ok(Integration {
        slug: s(row, "slug")?,
        provider: s(row, "provider")?,
        client_id: s(row, "client_id")?,
        client_secret_sealed: os(row, "client_secret")?,
        scopes: parse_json(os(row, "scopes")?),
        settings: parse_json::<BTreeMap<String, String>>(os(row, "settings")?),
        created_at: t(row, "created_at")?,
        updated_at: t(row, "updated_at")?,
    })
}

pub(crate) fn connect_session<R: Get>(row: &R) -> Result<ConnectSession, StoreError> {
    Ok(ConnectSession {
        id: s(row, "id")?,
        token_hash: s(row, "token_hash")?,
        application_id: s(row, "application_id")?,
        user_id: s(row, "user_id")?,
        organization_id: os(row, "organization_id")?,
        integrations: os(row, "integrations")?.and_then(|v| serde_json::from_str(&v).ok()),
        return_url: os(row, "return_url")?,
        owner: os(row, "owner")?,
        purpose: os(row, "purpose")?,
        expires_at: t(row, "expires_at")?,
        shared: row.b("shared")?,
        created_at: t(row, "created_at")?,
    })
}

pub(crate) fn authorize_link<R: Get>(row: &R) -> Result<AuthorizeLink, StoreError> {
    Ok(AuthorizeLink {
        id: s(row, "id")?,
        application_id: s(row, "application_id")?,
        user_id: s(row, "user_id")?,
        organization_id: os(row, "organization_id")?,
        integration: s(row, "integration")?,
        connect_session_id: os(row, "connect_session_id")?,
        return_url: os(row, "return_url")?,
        owner: os(row, "owner")?,
        purpose: os(row, "purpose")?,
        expires_at: t(row, "expires_at")?,
    })
}

pub(crate) fn pending<R: Get>(row: &R) -> Result<PendingAuthorization, StoreError> {
    Ok(PendingAuthorization {
        state_hash: s(row, "state_hash")?,
        application_id: s(row, "application_id")?,
        user_id: s(row, "user_id")?,
        organization_id: os(row, "organization_id")?,
        integration: s(row, "integration")?,
        connect_session_id: os(row, "connect_session_id")?,
        browser_hash: s(row, "browser_hash")?,
        pkce_verifier_sealed: os(row, "pkce_verifier")?,
        redirect_uri: s(row, "redirect_uri")?,
        return_url: os(row, "return_url")?,
        owner: os(row, "owner")?,
        purpose: os(row, "purpose")?,
        shared: row.b("shared")?,
        expires_at: t(row, "expires_at")?,
    })
}

pub(crate) fn connection<R: Get>(row: &R) -> Result<Connection, StoreError> {
    let status = s(row, "status")?;
    let tokens = match os(row, "access_token")? {
        Some(access_token) => Some(SealedTokens {
            access_token,
            refresh_token: os(row, "refresh_token")?,
            token_type: os(row, "token_type")?.unwrap_or_else(|| "bearer".into()),
            expires_at: ot(row, "expires_at")?,
        }),
        None => None,
    };
    Ok(Connection {
        id: s(row, "id")?,
        application_id: s(row, "application_id")?,
        user_id: s(row, "user_id")?,
        organization_id: os(row, "organization_id")?,
        integration: s(row, "integration")?,
        provider: s(row, "provider")?,
        status: ConnectionStatus::parse(&status)
            .ok_or_else(|| StoreError::Other(format!("bad status {status}")))?,
        scopes: parse_json(os(row, "scopes")?),
        account_id: os(row, "account_id")?,
        account_name: os(row, "account_name")?,
        metadata: parse_json(os(row, "metadata")?),
        owner: os(row, "owner")?,
        purpose: os(row, "purpose")?,
        label: os(row, "label")?,
        tokens,
        token_version: row.i("token_version")?,
        created_at: t(row, "created_at")?,
        updated_at: t(row, "updated_at")?,
        last_used_at: ot(row, "last_used_at")?,
        last_refreshed_at: ot(row, "last_refreshed_at")?,
        last_validated_at: ot(row, "last_validated_at")?,
        revoked_at: ot(row, "revoked_at")?,
        revocation: os(row, "revocation")?.and_then(|r| RevocationOutcome::parse(&r)),
        shared: row.b("shared")?,
    })
}

pub(crate) fn audit<R: Get>(row: &R) -> Result<keyway_core::audit::AuditRecord, StoreError> {
    Ok(keyway_core::audit::AuditRecord {
        seq: row.i("seq")?,
        event: keyway_core::audit::AuditEvent {
            at: t(row, "at")?,
            action: s(row, "action")?,
            actor: s(row, "actor")?,
            application_id: os(row, "application_id")?,
            user_id: os(row, "user_id")?,
            connection_id: os(row, "connection_id")?,
            integration: os(row, "integration")?,
            details: s(row, "details")?,
        },
        prev_hash: s(row, "prev_hash")?,
        hash: s(row, "hash")?,
    })
}

pub(crate) fn retry<R: Get>(row: &R) -> Result<RevocationRetry, StoreError> {
    Ok(RevocationRetry {
        id: s(row, "id")?,
        connection_id: s(row, "connection_id")?,
        application_id: s(row, "application_id")?,
        user_id: s(row, "user_id")?,
        integration: s(row, "integration")?,
        access_token_sealed: s(row, "access_token")?,
        refresh_token_sealed: os(row, "refresh_token")?,
        attempts: row.i("attempts")?,
        next_attempt_at: t(row, "next_attempt_at")?,
        last_error: os(row, "last_error")?,
        created_at: t(row, "created_at")?,
    })
}

pub(crate) fn webhook<R: Get>(row: &R) -> Result<keyway_core::webhooks::Webhook, StoreError> {
    Ok(keyway_core::webhooks::Webhook {
        id: s(row, "id")?,
        application_id: os(row, "application_id")?,
        url: s(row, "url")?,
        events: parse_json(os(row, "events")?),
        secret_sealed: s(row, "secret")?,
        created_at: t(row, "created_at")?,
    })
}

pub(crate) fn delivery<R: Get>(row: &R) -> Result<keyway_core::webhooks::Delivery, StoreError> {
    Ok(keyway_core::webhooks::Delivery {
        id: s(row, "id")?,
        webhook_id: s(row, "webhook_id")?,
        event_type: s(row, "event_type")?,
        payload: s(row, "payload")?,
        created_at: t(row, "created_at")?,
        attempts: row.i("attempts")?,
        next_attempt_at: t(row, "next_attempt_at")?,
        state: s(row, "state")?,
        last_status: row.oi("last_status")?,
        last_error: os(row, "last_error")?,
        delivered_at: ot(row, "delivered_at")?,
    })
}

pub(crate) fn agent_client<R: Get>(row: &R) -> Result<AgentClient, StoreError> {
    Ok(AgentClient {
        id: s(row, "id")?,
        name: s(row, "name")?,
        redirect_uris: parse_json(os(row, "redirect_uris")?),
        created_at: t(row, "created_at")?,
    })
}

pub(crate) fn agent_authorization<R: Get>(row: &R) -> Result<AgentAuthorization, StoreError> {
    Ok(AgentAuthorization {
        id: s(row, "id")?,
        client_id: s(row, "client_id")?,
        application_id: s(row, "application_id")?,
        redirect_uri: s(row, "redirect_uri")?,
        state: os(row, "state")?,
        code_challenge: s(row, "code_challenge")?,
        resource: s(row, "resource")?,
        user_id: os(row, "user_id")?,
        organization_id: os(row, "organization_id")?,
        approval_hash: os(row, "approval_hash")?,
        created_at: t(row, "created_at")?,
        expires_at: t(row, "expires_at")?,
    })
}

pub(crate) fn agent_session<R: Get>(row: &R) -> Result<AgentSession, StoreError> {
    let access = match s(row, "access")?.as_str() {
        "write" => keyway_core::catalog::Access::Write,
        _ => keyway_core::catalog::Access::Read,
    };
    Ok(AgentSession {
        id: s(row, "id")?,
        application_id: s(row, "application_id")?,
        user_id: s(row, "user_id")?,
        organization_id: os(row, "organization_id")?,
        client_id: s(row, "client_id")?,
        client_name: s(row, "client_name")?,
        integrations: parse_json(os(row, "integrations")?),
        access,
        resource: s(row, "resource")?,
        created_at: t(row, "created_at")?,
        expires_at: t(row, "expires_at")?,
        revoked_at: ot(row, "revoked_at")?,
        code_hash: os(row, "code_hash")?.unwrap_or_default(),
        code_challenge: s(row, "code_challenge")?,
        code_redirect_uri: s(row, "code_redirect_uri")?,
        code_expires_at: t(row, "code_expires_at")?,
    })
}

pub(crate) fn agent_call<R: Get>(row: &R) -> Result<AgentCall, StoreError> {
    Ok(AgentCall {
        session_id: s(row, "session_id")?,
        at: t(row, "at")?,
        tool: s(row, "tool")?,
        integration: s(row, "integration")?,
        method: s(row, "method")?,
        path: s(row, "path")?,
        status: row.oi("status")?,
        outcome: s(row, "outcome")?,
    })
}
