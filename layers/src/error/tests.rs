//! The error's predicates, texts and conversions.

use super::*;

fn rejected(condition: &str) -> Error {
    Error::rejected(condition, "x")
}

#[test]
fn throttling_and_transient_conditions_are_retryable() {
    assert!(rejected("com.microsoft:server-busy").is_retryable());
    assert!(rejected("amqp:internal-error").is_retryable());
    assert!(Error::connection("reset").is_retryable());
    assert!(Error::released().is_retryable());
    assert!(Error::timeout().is_retryable());
}

#[test]
fn permanent_failures_are_not_retryable() {
    for c in [
        "amqp:link:message-size-exceeded",
        "amqp:unauthorized-access",
        "amqp:not-found",
        "com.microsoft:out-of-order-sequence",
        "com.microsoft:producer-epoch-stolen",
        "com.microsoft:argument-out-of-range",
    ] {
        assert!(!rejected(c).is_retryable(), "{c}");
    }
    assert!(!Error::closed().is_retryable());
    assert!(!Error::connection_string("x").is_retryable());
    assert!(rejected("amqp:link:message-size-exceeded").is_too_large());
}

#[test]
fn boxed_errors_come_back_as_they_were() {
    let boxed: BoxError = Box::new(rejected("amqp:not-found").into_ambiguous());
    let e = Error::from(boxed);
    assert!(e.is_not_found() && e.is_ambiguous(), "{e}");
    let io: BoxError = Box::new(std::io::Error::other("disk"));
    let e = Error::from(io);
    assert!(!e.is_retryable());
    assert_eq!(std::error::Error::source(&e).unwrap().to_string(), "disk");
    assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
}

#[test]
fn display_names_this_level_and_source_chains() {
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
    let e = Error::connection("lost the connection to 127.0.0.1:5672").with_source(io);
    assert_eq!(
        e.to_string(),
        "connection failed: lost the connection to 127.0.0.1:5672"
    );
    let source = std::error::Error::source(&e).expect("source");
    assert_eq!(source.to_string(), "reset by peer");
}

#[test]
fn a_clone_keeps_the_kind_the_doubt_and_the_source_itself() {
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
    let e = Error::rejected("com.microsoft:server-busy", "busy")
        .with_source(io)
        .into_ambiguous();
    let copy = e.clone();
    assert_eq!(copy.to_string(), e.to_string());
    assert!(copy.is_retryable() && copy.is_ambiguous());
    assert_eq!(copy.condition(), Some("com.microsoft:server-busy"));
    let source = std::error::Error::source(&copy).expect("source");
    let io = source
        .downcast_ref::<std::io::Error>()
        .expect("the same type");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
}
