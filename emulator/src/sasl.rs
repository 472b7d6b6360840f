//! SASL as the service offers it: `MSSBCBS` and `ANONYMOUS` (the client authorizes later
//! on `$cbs`), and `PLAIN` with the shared access key name and key (as generic AMQP
//! clients log in).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fe2o3_amqp::acceptor::{sasl_acceptor::SaslServerFrame, SaslAcceptor};
use fe2o3_amqp::types::{
    primitives::{Array, Symbol},
    sasl::{SaslCode, SaslInit, SaslOutcome, SaslResponse},
};

/// The mechanisms an Event Hubs client may ask for.
#[derive(Debug, Clone)]
pub(crate) struct Sasl {
    pub(crate) key_name: String,
    pub(crate) key: String,
    /// Set once a PLAIN login succeeded.
    pub(crate) plain_ok: Arc<AtomicBool>,
}

impl SaslAcceptor for Sasl {
    fn mechanisms(&self) -> Array<Symbol> {
        Array::from(vec![
            Symbol::from("MSSBCBS"),
            Symbol::from("ANONYMOUS"),
            Symbol::from("PLAIN"),
        ])
    }

    fn on_init(&mut self, init: SaslInit) -> SaslServerFrame {
        let code = if init.mechanism.as_str() == "PLAIN" {
            let response = init
                .initial_response
                .map(|b| b.into_vec())
                .unwrap_or_default();
            let mut parts = response.split(|b| *b == 0);
            let (_authz, user, pass) = (parts.next(), parts.next(), parts.next());
            if user == Some(self.key_name.as_bytes()) && pass == Some(self.key.as_bytes()) {
                self.plain_ok.store(true, Ordering::SeqCst);
                SaslCode::Ok
            } else {
                SaslCode::Auth
            }
        } else {
            // ANONYMOUS and MSSBCBS: the client authorises later through $cbs.
            SaslCode::Ok
        };
        SaslServerFrame::Outcome(SaslOutcome {
            code,
            additional_data: None,
        })
    }

    fn on_response(&mut self, _response: SaslResponse) -> SaslServerFrame {
        SaslServerFrame::Outcome(SaslOutcome {
            code: SaslCode::Auth,
            additional_data: None,
        })
    }
}
