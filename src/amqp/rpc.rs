//! Request/response over a pair of links, as `$cbs` and `$management` expect:
//! requests carry a message-id and reply-to, the reply's
//! correlation-id echoes the message-id.

use std::time::Duration;

use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::{
    AmqpValue, ApplicationProperties, Body, Message, MessageId, Properties,
};
use fe2o3_amqp::types::primitives::SimpleValue;
use serde_amqp::Value;

use crate::Error;

pub(crate) type Msg = Message<Body<Value>>;

/// One request/response node (`$cbs` or `$management`) on a session.
#[derive(Debug)]
pub(crate) struct Rpc {
    sender: Sender,
    receiver: Receiver,
    reply_to: String,
    next_id: u64,
}

impl Rpc {
    pub(crate) async fn attach(session: &mut SessionHandle<()>, node: &str) -> Result<Self, Error> {
        let client = format!(
            "{}-client-{}",
            node.trim_start_matches('$'),
            std::process::id()
        );
        let sender = Sender::attach(session, format!("{client}-sender"), node)
            .await
            .map_err(|e| Error::connection(format!("cannot attach to {node}")).with_source(e))?;
        let receiver = Receiver::builder()
            .name(format!("{client}-receiver"))
            .source(node)
            .target(client.as_str())
            .attach(session)
            .await
            .map_err(|e| Error::connection(format!("cannot attach to {node}")).with_source(e))?;
        Ok(Self {
            sender,
            receiver,
            reply_to: client,
            next_id: 0,
        })
    }

    /// Sends `request` (application properties and body) and waits for its reply.
    pub(crate) async fn call(
        &mut self,
        properties: &[(&str, SimpleValue)],
        body: Value,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        self.next_id += 1;
        let id = MessageId::Ulong(self.next_id);
        let mut app = ApplicationProperties::default();
        for (k, v) in properties {
            app.0.insert((*k).to_owned(), v.clone());
        }
        let request: Msg = Message {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: Some(Properties {
                message_id: Some(id.clone()),
                reply_to: Some(self.reply_to.clone()),
                ..Default::default()
            }),
            application_properties: Some(app),
            body: Body::Value(AmqpValue(body)),
            footer: None,
        };
        let exchange = async {
            self.sender.send(request).await.map_err(|e| {
                Error::connection("a management request could not be sent").with_source(e)
            })?;
            loop {
                let delivery = self.receiver.recv::<Body<Value>>().await.map_err(|e| {
                    Error::connection("no reply to a management request").with_source(e)
                })?;
                let _ = self.receiver.accept(&delivery).await;
                let message = delivery.into_message();
                let correlation = message
                    .properties
                    .as_ref()
                    .and_then(|p| p.correlation_id.clone());
                // A late reply to an earlier, timed-out request is skipped.
                if correlation.as_ref() == Some(&id) {
                    return Ok(Reply::from(message));
                }
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::timeout())?
    }

    pub(crate) async fn close(self) {
        let _ = self.sender.close().await;
        let _ = self.receiver.close().await;
    }
}

/// A reply: status code, description and body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: i32,
    pub(crate) description: String,
    pub(crate) body: Body<Value>,
}

impl From<Msg> for Reply {
    fn from(m: Msg) -> Self {
        let props = m.application_properties.map(|p| p.0).unwrap_or_default();
        let status = ["status-code", "statusCode"]
            .iter()
            .find_map(|k| match props.get(*k) {
                Some(SimpleValue::Int(v)) => Some(*v),
                Some(SimpleValue::Long(v)) => i32::try_from(*v).ok(),
                Some(SimpleValue::Uint(v)) => i32::try_from(*v).ok(),
                Some(SimpleValue::Short(v)) => Some(i32::from(*v)),
                _ => None,
            })
            .unwrap_or(0);
        let description = ["status-description", "statusDescription"]
            .iter()
            .find_map(|k| match props.get(*k) {
                Some(SimpleValue::String(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        Reply {
            status,
            description,
            body: m.body,
        }
    }
}
