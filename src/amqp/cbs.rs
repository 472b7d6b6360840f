//! Authorizing the connection: a token for the hub put on the `$cbs` node.

use std::time::{Duration, SystemTime};

use fe2o3_amqp::types::primitives::SimpleValue;
use serde_amqp::Value;

use super::management::status_error;
use super::{rpc, Endpoint};
use crate::Error;

/// Puts a token for the hub on `$cbs`; returns when to refresh it.
pub(super) async fn put_token(
    cbs: &mut rpc::Rpc,
    endpoint: &Endpoint,
) -> Result<tokio::time::Instant, Error> {
    let audience = endpoint.audience();
    let token = endpoint.token().await?;
    let expires_ms = token
        .expires_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let reply = cbs
        .call(
            &[
                ("operation", SimpleValue::String("put-token".into())),
                ("type", SimpleValue::String(token.kind.cbs_type().into())),
                ("name", SimpleValue::String(audience)),
                (
                    "expiration",
                    SimpleValue::Timestamp(
                        fe2o3_amqp::types::primitives::Timestamp::from_milliseconds(expires_ms),
                    ),
                ),
            ],
            Value::String(token.token),
            endpoint.timeout,
        )
        .await?;
    if reply.status == 404 {
        // The hub is named in the token's audience: a wrong name is refused here.
        return Err(status_error(
            &reply,
            &format!(
                "no event hub named '{}' in the namespace {}: check the hub name \
                 (EntityPath in the connection string, or the hub given to the builder)",
                endpoint.hub(),
                endpoint.host
            ),
        ));
    }
    if !(200..300).contains(&reply.status) {
        return Err(status_error(&reply, "the token was refused"));
    }
    // Refresh six minutes before expiry (as the Rust SDK does), or at half the
    // remaining validity for short-lived tokens.
    let remaining = token
        .expires_at
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let lead = Duration::from_secs(360).min(remaining / 2);
    // Never sooner than a second from now, so a token that is (nearly) expired cannot
    // make the refresh spin.
    let delay = remaining.saturating_sub(lead).max(Duration::from_secs(1));
    Ok(tokio::time::Instant::now() + delay)
}
