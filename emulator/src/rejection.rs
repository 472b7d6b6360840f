//! A refusal with an AMQP error condition, and the frame error it becomes.

/// A refusal with an AMQP error condition, used for dispositions and detaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) condition: String,
    pub(crate) description: String,
}

impl Rejection {
    pub(crate) fn new(condition: &str, description: impl Into<String>) -> Self {
        Self {
            condition: condition.to_owned(),
            description: description.into(),
        }
    }

    pub(crate) fn to_error(&self) -> fe2o3_amqp_types::definitions::Error {
        use fe2o3_amqp_types::definitions::{AmqpError, ErrorCondition, LinkError};
        let condition = match self.condition.as_str() {
            "amqp:link:message-size-exceeded" => {
                ErrorCondition::LinkError(LinkError::MessageSizeExceeded)
            }
            "amqp:link:detach-forced" => ErrorCondition::LinkError(LinkError::DetachForced),
            "amqp:link:stolen" => ErrorCondition::LinkError(LinkError::Stolen),
            "amqp:not-found" => ErrorCondition::AmqpError(AmqpError::NotFound),
            "amqp:unauthorized-access" => ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess),
            "amqp:internal-error" => ErrorCondition::AmqpError(AmqpError::InternalError),
            "amqp:not-allowed" => ErrorCondition::AmqpError(AmqpError::NotAllowed),
            "amqp:resource-limit-exceeded" => {
                ErrorCondition::AmqpError(AmqpError::ResourceLimitExceeded)
            }
            other => ErrorCondition::Custom(serde_amqp::primitives::Symbol::from(other)),
        };
        fe2o3_amqp_types::definitions::Error::new(condition, Some(self.description.clone()), None)
    }
}
