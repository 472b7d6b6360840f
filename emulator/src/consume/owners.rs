//! Epoch (owner level) readers: who may read a partition through a consumer group.
//!
//! The service's rules, as Microsoft's recorded live runs and SDKs show them:
//!
//! - a receiver attached with `com.microsoft:epoch` closes every other receiver of the
//!   same partition and consumer group that has no epoch or an epoch not above its own;
//!   of two equal epochs the newer receiver wins ("New receiver 'nil' with higher epoch
//!   of '0' is created hence current receiver 'nil' with epoch '0' is getting
//!   disconnected", quoted in github.com/Azure/azure-sdk-for-js/issues/15893);
//! - while an epoch receiver holds the partition, a receiver with a lower epoch or with
//!   none is refused;
//! - every one of these detaches is `closed` with `amqp:link:stolen`, which the SDKs turn
//!   into their "consumer disconnected" error and do not retry (.NET
//!   `sdk/eventhub/Azure.Messaging.EventHubs/src/Amqp/AmqpError.cs`, JS
//!   `sdk/core/core-amqp/src/errors.ts`, Python `check_link_stolen` in
//!   `azure/eventhub/_transport/_pyamqp_transport.py`).
//!
//! The texts are the service's, without its tracking ids. A displaced non-epoch
//! receiver's epoch is quoted as '' (recorded in azure-sdk-for-python,
//! `sdk/eventhub/azure-eventhub/tests/amqpproxy_recordings/livetest/synctests/test_receive.test_receive_owner_level[pyamqp]-4.json`);
//! the two refusals are quoted in github.com/Azure/azure-sdk-for-java/issues/26583 and
//! github.com/Azure/amqpnetlite/issues/162. A receiver is named by its
//! `com.microsoft:receiver-name` property, 'nil' without one, as the service does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use eventhubs_protocol::LINK_STOLEN;
use tokio::sync::watch;

use crate::rejection::Rejection;

/// Who asks to read, from the attach's properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Claim {
    pub(crate) epoch: Option<i64>,
    pub(crate) name: Option<String>,
}

impl Claim {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("nil")
    }

    fn epoch_text(&self) -> String {
        self.epoch.map(|e| e.to_string()).unwrap_or_default()
    }
}

#[derive(Debug)]
struct Reader {
    id: u64,
    claim: Claim,
    /// Told why, when a newer owner displaces this reader.
    displace: watch::Sender<Option<Rejection>>,
}

#[derive(Debug, Default)]
struct Groups {
    next_id: u64,
    /// Readers by consumer group, lower-cased: the service matches group names
    /// without regard to case.
    by_group: HashMap<String, Vec<Reader>>,
}

/// The readers of one partition.
#[derive(Debug, Default, Clone)]
pub(crate) struct Readers(Arc<Mutex<Groups>>);

/// A reader's place on its partition; dropping it (the link ended) gives the place up.
#[derive(Debug)]
pub(crate) struct Registration {
    readers: Readers,
    group: String,
    id: u64,
    displaced: watch::Receiver<Option<Rejection>>,
}

impl Readers {
    fn lock(&self) -> MutexGuard<'_, Groups> {
        // The map stays consistent at every await-free step, so a poisoned lock is
        // still a usable one.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for `claim` in `group`, displacing the readers it outranks, or
    /// says why the service would refuse it.
    pub(crate) fn join(&self, group: &str, claim: Claim) -> Result<Registration, Rejection> {
        let group = group.to_ascii_lowercase();
        let mut groups = self.lock();
        let id = groups.next_id;
        groups.next_id += 1;
        let readers = groups.by_group.entry(group.clone()).or_default();
        let owner = readers
            .iter()
            .filter(|r| r.claim.epoch.is_some())
            .max_by_key(|r| r.claim.epoch)
            .map(|r| r.claim.clone());
        match (claim.epoch, owner) {
            (None, Some(owner)) => return Err(non_epoch_refused(&owner)),
            (Some(epoch), Some(owner)) if owner.epoch > Some(epoch) => {
                return Err(lower_epoch_refused(&owner, &claim))
            }
            (Some(_), _) => {
                for old in readers.drain(..) {
                    old.displace
                        .send_replace(Some(displaced_by(&claim, &old.claim)));
                }
            }
            (None, None) => {}
        }
        let (displace, displaced) = watch::channel(None);
        readers.push(Reader {
            id,
            claim,
            displace,
        });
        Ok(Registration {
            readers: self.clone(),
            group,
            id,
            displaced,
        })
    }
}

impl Registration {
    /// Resolves with the error to close with once a newer owner displaced this reader;
    /// never resolves otherwise.
    pub(crate) async fn displaced(&mut self) -> Rejection {
        let why = match self.displaced.wait_for(Option::is_some).await {
            Ok(why) => why.clone(),
            // The sender lives in the registry until this registration is dropped or
            // it was told why; neither leaves it closed with nothing said.
            Err(_) => None,
        };
        match why {
            Some(why) => why,
            None => std::future::pending().await,
        }
    }

    /// Why this reader was displaced, if it was.
    pub(crate) fn displaced_now(&self) -> Option<Rejection> {
        self.displaced.borrow().clone()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut groups = self.readers.lock();
        if let Some(readers) = groups.by_group.get_mut(&self.group) {
            readers.retain(|r| r.id != self.id);
            if readers.is_empty() {
                groups.by_group.remove(&self.group);
            }
        }
    }
}

fn displaced_by(new: &Claim, old: &Claim) -> Rejection {
    Rejection::new(
        LINK_STOLEN,
        format!(
            "New receiver '{}' with higher epoch of '{}' is created hence current receiver '{}' with epoch '{}' is getting disconnected. If you are recreating the receiver, make sure a higher epoch is used.",
            new.name(),
            new.epoch_text(),
            old.name(),
            old.epoch_text(),
        ),
    )
}

fn lower_epoch_refused(owner: &Claim, new: &Claim) -> Rejection {
    Rejection::new(
        LINK_STOLEN,
        format!(
            "Receiver '{}' with a higher epoch '{}' already exists. Receiver '{}' with epoch {} cannot be created. Make sure you are creating receiver with increasing epoch value to ensure connectivity, or ensure all old epoch receivers are closed or disconnected.",
            owner.name(),
            owner.epoch_text(),
            new.name(),
            new.epoch_text(),
        ),
    )
}

fn non_epoch_refused(owner: &Claim) -> Rejection {
    Rejection::new(
        LINK_STOLEN,
        format!(
            "At least one receiver for the endpoint is created with epoch of '{}', and so non-epoch receiver is not allowed. Either reconnect with a higher epoch, or make sure all epoch receivers are closed or disconnected.",
            owner.epoch_text(),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(epoch: Option<i64>) -> Claim {
        Claim { epoch, name: None }
    }

    #[test]
    fn places_are_given_up_when_registrations_drop() {
        let readers = Readers::default();
        let owner = readers.join("$Default", claim(Some(3))).unwrap();
        assert!(readers.join("$default", claim(None)).is_err());
        assert!(readers.join("other", claim(None)).is_ok());
        drop(owner);
        assert!(readers.join("$DEFAULT", claim(None)).is_ok());
        assert!(readers.lock().by_group.is_empty());
    }

    #[test]
    fn an_equal_epoch_displaces_and_a_lower_one_is_refused() {
        let readers = Readers::default();
        let first = readers.join("g", claim(Some(1))).unwrap();
        let second = readers.join("g", claim(Some(1))).unwrap();
        let why = first.displaced_now().expect("displaced");
        assert_eq!(why.condition, LINK_STOLEN);
        assert!(second.displaced_now().is_none());
        let refused = readers.join("g", claim(Some(0))).unwrap_err();
        assert!(refused.description.contains("higher epoch '1'"));
        // The displaced reader's registration is gone from the registry already; its
        // drop must not remove the owner.
        drop(first);
        assert!(readers.join("g", claim(None)).is_err());
    }
}
