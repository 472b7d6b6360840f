//! Link addresses: the three shapes the SDKs use, normalised.

/// What a link address points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// `$cbs`
    Cbs,
    /// `$management`
    Management,
    /// `<hub>`: the gateway, which routes by partition key or round-robin.
    Gateway { hub: String },
    /// `<hub>/Partitions/<id>`
    Partition { hub: String, partition: String },
    /// `<hub>/ConsumerGroups/<cg>/Partitions/<id>`
    Consumer {
        hub: String,
        consumer_group: String,
        partition: String,
    },
    /// Anything else; carries the normalised path for error messages.
    Unknown(String),
}

/// The path of an address or URI without leading or trailing slashes: `amqps://h:1/a/b/`
/// and `/a/b` both give `a/b`.
pub(crate) fn path(address: &str) -> &str {
    let path = match address.find("://") {
        Some(i) => {
            let rest = &address[i + 3..];
            rest.find('/').map(|j| &rest[j..]).unwrap_or("")
        }
        None => address,
    };
    path.trim_start_matches('/').trim_end_matches('/')
}

/// Normalises `hub/...`, `/hub/...` and `amqps://host[:port]/hub/...` and classifies it.
pub(crate) fn parse(address: &str) -> Node {
    let path = path(address);
    let parts: Vec<&str> = path.split('/').collect();
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    match parts.as_slice() {
        [n] if *n == "$cbs" => Node::Cbs,
        [n] if *n == "$management" => Node::Management,
        // Rust and JS address management as `<hub>/$management`.
        [_, n] if *n == "$management" => Node::Management,
        [hub] if !hub.is_empty() => Node::Gateway {
            hub: (*hub).to_owned(),
        },
        [hub, p, id] if eq(p, "Partitions") => Node::Partition {
            hub: (*hub).to_owned(),
            partition: (*id).to_owned(),
        },
        [hub, c, cg, p, id] if eq(c, "ConsumerGroups") && eq(p, "Partitions") => Node::Consumer {
            hub: (*hub).to_owned(),
            consumer_group: (*cg).to_owned(),
            partition: (*id).to_owned(),
        },
        _ => Node::Unknown(path.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(hub: &str, p: &str) -> Node {
        Node::Partition {
            hub: hub.into(),
            partition: p.into(),
        }
    }

    #[test]
    fn the_three_address_shapes_mean_the_same_partition() {
        assert_eq!(parse("eh1/Partitions/0"), partition("eh1", "0"));
        assert_eq!(parse("/eh1/Partitions/0"), partition("eh1", "0"));
        assert_eq!(
            parse("amqps://ns.servicebus.windows.net/eh1/Partitions/0"),
            partition("eh1", "0")
        );
        assert_eq!(
            parse("amqp://127.0.0.1:5672/eh1/partitions/0"),
            partition("eh1", "0")
        );
    }

    #[test]
    fn gateway_consumer_and_control_nodes_are_recognised() {
        assert_eq!(parse("eh1"), Node::Gateway { hub: "eh1".into() });
        assert_eq!(parse("amqps://h/eh1"), Node::Gateway { hub: "eh1".into() });
        assert_eq!(parse("$cbs"), Node::Cbs);
        assert_eq!(parse("$management"), Node::Management);
        assert_eq!(parse("amqps://h/eh1/$management"), Node::Management);
        assert_eq!(
            parse("/eh1/ConsumerGroups/$Default/Partitions/3"),
            Node::Consumer {
                hub: "eh1".into(),
                consumer_group: "$Default".into(),
                partition: "3".into()
            }
        );
    }

    #[test]
    fn other_paths_are_unknown() {
        assert_eq!(parse(""), Node::Unknown(String::new()));
        assert_eq!(parse("a/b"), Node::Unknown("a/b".into()));
        assert_eq!(parse("a/Partitions"), Node::Unknown("a/Partitions".into()));
    }
}
