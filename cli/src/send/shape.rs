//! What one input becomes: an event with its key, partition, properties and content
//! type, or the input handed back with why it was refused.

use serde_json::Value;
use streaming_producer::EventData;

use super::args::SendArgs;

/// Where an event's partition key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyFrom {
    None,
    Fixed(String),
    /// A JSON pointer into the event.
    Field(String),
    /// The bytes before this delimiter.
    Split(u8),
}

/// How inputs are shaped into events, from the flags.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    key: KeyFrom,
    partition: Option<String>,
    headers: Vec<(String, String)>,
    content_type: Option<String>,
    strict_utf8: bool,
}

/// `user.id` as the JSON pointer `/user/id`; a path that starts with `/` is one
/// already.
fn pointer(path: &str) -> String {
    if path.starts_with('/') {
        return path.to_owned();
    }
    path.split('.')
        .map(|segment| format!("/{}", segment.replace('~', "~0").replace('/', "~1")))
        .collect()
}

impl Shape {
    pub(crate) fn new(args: &SendArgs) -> Self {
        let key = match (&args.key, &args.key_field, args.key_delimiter) {
            (Some(k), _, _) => KeyFrom::Fixed(k.clone()),
            (_, Some(path), _) => KeyFrom::Field(pointer(path)),
            (_, _, Some(d)) => KeyFrom::Split(d),
            _ => KeyFrom::None,
        };
        Self {
            key,
            partition: args.partition.clone(),
            headers: args.headers.clone(),
            content_type: args.content_type.clone(),
            strict_utf8: args.strict_utf8,
        }
    }

    /// The event for `input`, or `input` back with the reason it cannot be one.
    pub(crate) fn event(&self, mut input: Vec<u8>) -> Result<EventData, (Vec<u8>, String)> {
        if self.strict_utf8 {
            if let Err(e) = std::str::from_utf8(&input) {
                return Err((input, format!("not UTF-8 ({e})")));
            }
        }
        let key = match &self.key {
            KeyFrom::None => None,
            KeyFrom::Fixed(k) => Some(k.clone()),
            KeyFrom::Field(pointer) => match field(&input, pointer) {
                Ok(k) => Some(k),
                Err(why) => return Err((input, why)),
            },
            KeyFrom::Split(delimiter) => {
                let Some(at) = input.iter().position(|b| b == delimiter) else {
                    return Err((input, "no key delimiter".into()));
                };
                let Ok(key) = std::str::from_utf8(&input[..at]).map(str::to_owned) else {
                    return Err((input, "the key is not UTF-8".into()));
                };
                input.drain(..=at);
                Some(key)
            }
        };
        let mut event = EventData::new(input);
        if let Some(p) = &self.partition {
            event = event.with_partition_id(p.clone());
        }
        if let Some(key) = key {
            event = event.with_partition_key(key);
        }
        for (name, value) in &self.headers {
            event = event.with_property(name.clone(), value.as_str());
        }
        if let Some(ct) = &self.content_type {
            event = event.with_content_type(ct.clone());
        }
        Ok(event)
    }
}

/// The value at `pointer` in the JSON object `input`, as a key.
fn field(input: &[u8], pointer: &str) -> Result<String, String> {
    let value = match serde_json::from_slice::<Value>(input) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return Err("not a JSON object".into()),
        Err(e) => return Err(format!("not JSON: {e}")),
    };
    match value.pointer(pointer) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        Some(_) => Err(format!("field '{pointer}' is not a string or number")),
        None => Err(format!("no field '{pointer}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use streaming_producer::{PropertyValue, Routing};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        send: SendArgs,
    }

    fn shape(flags: &[&str]) -> Shape {
        let cli =
            Cli::try_parse_from(["send", "--connection-string", "x"].iter().chain(flags)).unwrap();
        Shape::new(&cli.send)
    }

    #[test]
    fn the_key_field_of_a_json_line_becomes_the_partition_key() {
        let s = shape(&["--key-field", "user"]);
        let e = s.event(br#"{"user":"u1","n":1}"#.to_vec()).unwrap();
        assert_eq!(e.routing(), &Routing::PartitionKey("u1".into()));
        let e = s.event(br#"{"user":42}"#.to_vec()).unwrap();
        assert_eq!(e.routing(), &Routing::PartitionKey("42".into()));
        assert_eq!(e.body().as_ref(), br#"{"user":42}"#);
        for nested in ["user.id", "/user/id"] {
            let e = shape(&["--key-field", nested])
                .event(br#"{"user":{"id":"deep"}}"#.to_vec())
                .unwrap();
            assert_eq!(
                e.routing(),
                &Routing::PartitionKey("deep".into()),
                "{nested}"
            );
        }
        let e = shape(&["--key-field", "a/b"])
            .event(br#"{"a/b":"slash"}"#.to_vec())
            .unwrap();
        assert_eq!(e.routing(), &Routing::PartitionKey("slash".into()));
    }

    #[test]
    fn lines_without_the_key_are_refused_with_a_reason() {
        let s = shape(&["--key-field", "user"]);
        for (line, why) in [
            ("not json", "not JSON"),
            ("[1,2]", "not a JSON object"),
            (r#"{"other":1}"#, "no field '/user'"),
            (r#"{"user":{"a":1}}"#, "not a string or number"),
        ] {
            let (back, reason) = s.event(line.as_bytes().to_vec()).unwrap_err();
            assert_eq!(back, line.as_bytes());
            assert!(reason.contains(why), "{line}: {reason}");
        }
    }

    #[test]
    fn a_key_delimiter_splits_the_key_from_the_body() {
        let s = shape(&["--key-delimiter", "\\t"]);
        let e = s.event(b"k1\tthe body\twith a tab".to_vec()).unwrap();
        assert_eq!(e.routing(), &Routing::PartitionKey("k1".into()));
        assert_eq!(e.body().as_ref(), b"the body\twith a tab");
        let (back, why) = s.event(b"no tab".to_vec()).unwrap_err();
        assert_eq!(back, b"no tab");
        assert!(why.contains("no key delimiter"), "{why}");
    }

    #[test]
    fn fixed_keys_partitions_headers_and_content_types_go_on_every_event() {
        let e = shape(&[
            "--key",
            "k",
            "-H",
            "source=cli",
            "-H",
            "n=1",
            "--content-type",
            "text/plain",
        ])
        .event(b"x".to_vec())
        .unwrap();
        assert_eq!(e.routing(), &Routing::PartitionKey("k".into()));
        assert_eq!(e.content_type(), Some("text/plain"));
        assert_eq!(
            e.properties(),
            [
                ("source".to_owned(), PropertyValue::String("cli".into())),
                ("n".to_owned(), PropertyValue::String("1".into())),
            ]
        );
        let e = shape(&["--partition", "3"])
            .event(b"plain".to_vec())
            .unwrap();
        assert_eq!(e.routing(), &Routing::PartitionId("3".into()));
    }

    #[test]
    fn only_one_source_of_routing_is_accepted() {
        let both = Cli::try_parse_from([
            "send",
            "--connection-string",
            "x",
            "--key",
            "k",
            "--partition",
            "1",
        ]);
        assert!(both.is_err());
    }

    #[test]
    fn a_line_that_is_not_utf8_is_published_as_bytes_or_refused_when_strict() {
        let bytes = b"caf\xe9 \xff".to_vec();
        let e = shape(&[]).event(bytes.clone()).unwrap();
        assert_eq!(e.body().as_ref(), bytes.as_slice());
        let (back, why) = shape(&["--strict-utf8"]).event(bytes.clone()).unwrap_err();
        assert_eq!(back, bytes);
        assert!(why.contains("not UTF-8"), "{why}");
    }
}
