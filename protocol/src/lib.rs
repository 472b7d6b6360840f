//! What a client and a broker of Azure Event Hubs agree on, with no AMQP implementation
//! of its own: the names and numbers of the protocol (annotations, capabilities, error
//! conditions, the batched-message format), the partition-key hash
//! ([`partition_key`]), shared access signatures ([`sas`]) and idempotent producer
//! sequence numbers ([`sequence`]); with the `websockets` feature, AMQP over
//! WebSockets (`web_socket`: the service's path and subprotocol, and a byte stream
//! over a WebSocket); with the `records` feature, the checksummed records of the
//! files on disk (`record`).
//!
//! The producer (`streaming-producer`) and the emulator (`eventhubs-emulator`) both
//! depend on this crate, so the two sides of every test speak from one definition.
//! The names are those the Azure SDKs send and read; the message format is the
//! service's batched-message format.
//!
//! ```
//! use eventhubs_protocol::data_section_size;
//!
//! // A 100-byte event costs a `data` section of 3 + 2 + 100 bytes in a batch;
//! // from 255 bytes on the binary needs a 4-byte length.
//! assert_eq!(data_section_size(100), 105);
//! assert_eq!(data_section_size(255), 263);
//! ```
#![forbid(unsafe_code)]

pub mod partition_key;
#[cfg(feature = "records")]
pub mod record;
pub mod sas;
pub mod sequence;
#[cfg(feature = "websockets")]
pub mod web_socket;

/// The path of the service's endpoint for AMQP over WebSockets (azure-sdk-for-python's
/// `_configuration.py` appends it to the host; .NET's `AmqpConnectionScope` has it with
/// a trailing `/`, which a server takes as the same).
pub const WEB_SOCKET_PATH: &str = "/$servicebus/websocket";

/// Message-format code of a batched message: the body is N `data` sections, each a
/// complete encoded message (one event).
pub const BATCH_FORMAT: u32 = 0x8001_3700;

/// Message annotation: the partition key of an event.
pub const PARTITION_KEY: &str = "x-opt-partition-key";
/// Message annotation set by the service: the event's sequence number in its partition.
pub const SEQUENCE_NUMBER: &str = "x-opt-sequence-number";
/// Message annotation set by the service: the event's offset.
pub const OFFSET: &str = "x-opt-offset";
/// Message annotation set by the service: when the event was stored.
pub const ENQUEUED_TIME: &str = "x-opt-enqueued-time";
/// Message annotation set by the service: the replication epoch of the sequence number,
/// an `int`, -1 on a namespace without geo-replication.
pub const SEQUENCE_NUMBER_EPOCH: &str = "x-opt-sequence-number-epoch";

/// Link property of a reading link: its owner level (epoch), a `long`. The receiver
/// with the highest epoch owns the partition for its consumer group.
pub const CONSUMER_EPOCH: &str = "com.microsoft:epoch";
/// Link property of a reading link: the name the service quotes in epoch errors.
pub const RECEIVER_NAME: &str = "com.microsoft:receiver-name";
/// Link capability a reader desires to have each delivery annotated with the
/// partition's last enqueued event (the `LAST_ENQUEUED_*` delivery annotations).
pub const RECEIVER_RUNTIME_METRIC: &str = "com.microsoft:enable-receiver-runtime-metric";
/// Delivery annotation: sequence number of the partition's last enqueued event, a `long`.
pub const LAST_ENQUEUED_SEQUENCE_NUMBER: &str = "last_enqueued_sequence_number";
/// Delivery annotation: replication epoch of that sequence number, an `int`.
pub const LAST_ENQUEUED_SEQUENCE_NUMBER_EPOCH: &str = "last_enqueued_sequence_number_epoch";
/// Delivery annotation: offset of the partition's last enqueued event, a `string`.
pub const LAST_ENQUEUED_OFFSET: &str = "last_enqueued_offset";
/// Delivery annotation: enqueued time of the partition's last event, a `timestamp`.
pub const LAST_ENQUEUED_TIME: &str = "last_enqueued_time_utc";
/// Delivery annotation: when the service read the values above, a `timestamp`.
pub const RUNTIME_INFO_RETRIEVAL_TIME: &str = "runtime_info_retrieval_time_utc";

/// Source filter of a reading link: where in the partition it starts, as an SQL-like
/// expression over the annotations above (`amqp.annotation.x-opt-offset > '-1'`).
pub const SELECTOR_FILTER: &str = "apache.org:selector-filter:string";
/// The descriptor code of [`SELECTOR_FILTER`]'s value (Apache's domain 0x468C, filter 4).
pub const SELECTOR_FILTER_CODE: u64 = 0x0000_468C_0000_0004;

/// Link capability asking for idempotent publishing.
pub const IDEMPOTENT_PRODUCER: &str = "com.microsoft:idempotent-producer";
/// Link property and message annotation: the idempotent producer group id.
pub const PRODUCER_ID: &str = "com.microsoft:producer-id";
/// Link property and message annotation: the producer group's epoch.
pub const PRODUCER_EPOCH: &str = "com.microsoft:producer-epoch";
/// Link property and message annotation: the producer sequence number.
pub const PRODUCER_SEQUENCE: &str = "com.microsoft:producer-sequence-number";

/// Error condition: an idempotent batch's numbers do not follow the last stored ones.
pub const OUT_OF_ORDER_SEQUENCE: &str = "com.microsoft:out-of-order-sequence";
/// Error condition: a producer with a higher epoch took over the producer group.
pub const PRODUCER_EPOCH_STOLEN: &str = "com.microsoft:producer-epoch-stolen";
/// Error condition: the namespace is throttled.
pub const SERVER_BUSY: &str = "com.microsoft:server-busy";
/// Error condition: the service did not finish the operation in time.
pub const TIMEOUT: &str = "com.microsoft:timeout";
/// Error condition: the service cancelled the operation.
pub const OPERATION_CANCELLED: &str = "com.microsoft:operation-cancelled";
/// Error condition: the entity changed while the operation ran.
pub const ENTITY_UPDATED: &str = "com.microsoft:entity-updated";
/// Error condition: the service closed the container the link was on.
pub const CONTAINER_CLOSE: &str = "com.microsoft:container-close";
/// Error condition: a request's argument is invalid.
pub const ARGUMENT_ERROR: &str = "com.microsoft:argument-error";
/// Error condition: a request's argument is out of range (a partition id, say).
pub const ARGUMENT_OUT_OF_RANGE: &str = "com.microsoft:argument-out-of-range";

/// AMQP error condition the service uses: no valid token for the entity.
pub const UNAUTHORIZED_ACCESS: &str = "amqp:unauthorized-access";
/// AMQP error condition the service uses: the hub, partition or consumer group does
/// not exist.
pub const NOT_FOUND: &str = "amqp:not-found";
/// AMQP error condition the service uses: the message is larger than the link's
/// `max-message-size`.
pub const MESSAGE_SIZE_EXCEEDED: &str = "amqp:link:message-size-exceeded";
/// AMQP error condition the service uses: a transient failure of its own.
pub const INTERNAL_ERROR: &str = "amqp:internal-error";
/// AMQP error condition the service uses: a reader was displaced, or refused, by a
/// receiver with a higher epoch on its partition and consumer group.
pub const LINK_STOLEN: &str = "amqp:link:stolen";

/// `$management` entity type of an event hub.
pub const EVENTHUB_ENTITY: &str = "com.microsoft:eventhub";
/// `$management` entity type of a partition.
pub const PARTITION_ENTITY: &str = "com.microsoft:partition";

/// Binaries shorter than this are written as `vbin8` (a 1-byte length), the others as
/// `vbin32` (a 4-byte one). serde_amqp, which fe2o3 uses, writes `vbin8` only up to
/// 254 bytes; a batch the producer writes itself does the same, so that its size is
/// the one fe2o3 would write.
pub const VBIN8_LIMIT: usize = 255;

/// Bytes an event of `len` encoded bytes takes in a batched message: a `data` section
/// holding it (a 3-byte descriptor, then `vbin8` or `vbin32`, see [`VBIN8_LIMIT`]).
pub fn data_section_size(len: usize) -> usize {
    3 + if len < VBIN8_LIMIT { 2 } else { 5 } + len
}
