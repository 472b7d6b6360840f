//! The selector filter of a reading link: where in the partition the reader starts.

use crate::rejection::Rejection;
use crate::store::StoredEvent;

/// Where a reader starts, from the selector filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartFilter {
    /// Events whose `field` is greater than (or equal to, if `inclusive`) `value`.
    After {
        field: Field,
        value: i64,
        inclusive: bool,
    },
    /// Only events stored after the link attached (`@latest`).
    Latest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Offset,
    SequenceNumber,
    EnqueuedTime,
}

impl StartFilter {
    pub(crate) fn admits(&self, e: &StoredEvent) -> bool {
        match *self {
            StartFilter::Latest => false,
            StartFilter::After {
                field,
                value,
                inclusive,
            } => {
                let v = match field {
                    Field::Offset => e.offset as i64,
                    Field::SequenceNumber => e.sequence_number,
                    Field::EnqueuedTime => e.enqueued_time_ms,
                };
                v > value || (inclusive && v == value)
            }
        }
    }

    /// The sequence number a reader with this filter starts at in `partition`. For
    /// sequence numbers that is exact even past the end; for offsets and times it is
    /// the first retained match or the tail (the reader keeps checking the filter on
    /// what arrives later).
    pub(crate) fn position(&self, partition: &crate::store::Partition) -> i64 {
        if let StartFilter::After {
            field: Field::SequenceNumber,
            value,
            inclusive,
        } = *self
        {
            return value.saturating_add(i64::from(!inclusive)).max(0);
        }
        partition.first_admitted(|e| self.admits(e))
    }

    /// Parses `amqp.annotation.x-opt-offset > '-1'` and its variants (quoted or not,
    /// `>` or `>=`, offset / sequence number / enqueued time, `@latest`).
    pub(crate) fn parse(expression: &str) -> Result<Self, Rejection> {
        let bad = || {
            Rejection::new(
                "amqp:invalid-field",
                format!("The selector filter '{expression}' is not supported."),
            )
        };
        let rest = expression
            .trim()
            .strip_prefix("amqp.annotation.")
            .ok_or_else(bad)?;
        let (field, rest) = [
            ("x-opt-offset", Field::Offset),
            ("x-opt-sequence-number", Field::SequenceNumber),
            ("x-opt-enqueued-time", Field::EnqueuedTime),
        ]
        .into_iter()
        .find_map(|(name, f)| rest.strip_prefix(name).map(|r| (f, r.trim_start())))
        .ok_or_else(bad)?;
        let (inclusive, rest) = if let Some(r) = rest.strip_prefix(">=") {
            (true, r)
        } else if let Some(r) = rest.strip_prefix('>') {
            (false, r)
        } else {
            return Err(bad());
        };
        let value = rest.trim();
        let value = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .unwrap_or(value);
        if value == "@latest" {
            return Ok(StartFilter::Latest);
        }
        let value: i64 = value.parse().map_err(|_| bad())?;
        Ok(StartFilter::After {
            field,
            value,
            inclusive,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(field: Field, value: i64, inclusive: bool) -> StartFilter {
        StartFilter::After {
            field,
            value,
            inclusive,
        }
    }

    #[test]
    fn every_sdk_form_of_the_selector_parses() {
        let cases = [
            (
                "amqp.annotation.x-opt-offset > '-1'",
                after(Field::Offset, -1, false),
            ),
            (
                "amqp.annotation.x-opt-offset > -1",
                after(Field::Offset, -1, false),
            ),
            (
                "amqp.annotation.x-opt-offset >= '120'",
                after(Field::Offset, 120, true),
            ),
            (
                "amqp.annotation.x-opt-sequence-number > '5'",
                after(Field::SequenceNumber, 5, false),
            ),
            (
                "amqp.annotation.x-opt-sequence-number >= 12345",
                after(Field::SequenceNumber, 12345, true),
            ),
            (
                "amqp.annotation.x-opt-enqueued-time > '1700000000000'",
                after(Field::EnqueuedTime, 1_700_000_000_000, false),
            ),
            (
                "amqp.annotation.x-opt-offset > '@latest'",
                StartFilter::Latest,
            ),
            (
                "amqp.annotation.x-opt-offset > @latest",
                StartFilter::Latest,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(StartFilter::parse(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn unsupported_selectors_are_refused() {
        for text in [
            "",
            "amqp.annotation.x-opt-offset",
            "amqp.annotation.x-opt-offset < '5'",
            "amqp.annotation.x-opt-other > '5'",
            "amqp.annotation.x-opt-offset > 'abc'",
            "sys.foo > 1",
        ] {
            let e = StartFilter::parse(text).unwrap_err();
            assert_eq!(e.condition, "amqp:invalid-field", "{text}");
        }
    }
}
