//! The page of `hubcat emulator --ui` as its JSON serves it (the page itself, in a
//! browser, is `tests/ui/run.sh`).

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{emulator_process, http_get};

/// What the page is built on: its HTML and its two JSON resources.
#[test]
fn the_page_and_its_json_show_hubs_events_and_faults() {
    let (mut child, cs) = emulator_process(
        &[
            "--bind",
            "127.0.0.1:0",
            "--no-health",
            "--ui",
            "127.0.0.1:0",
            "--hub",
            "eh1:2",
            "--consumer-group",
            "eh1:audit",
            "--fault",
            "throttle,every=1000",
        ],
        Stdio::piped(),
    );
    // Kept open to the end: the process goes on writing to it.
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let page = stderr
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("hubcat emulator: page at http://")
                .map(|a| a.trim_end_matches('/').to_owned())
        })
        .expect("the page's address on stderr");
    let (status, html) = http_get(&page, "/");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(html.contains("<title>hubcat emulator</title>"), "{html}");

    let (ok, _, err) = common::run(
        &[
            "send",
            "--connection-string",
            &cs,
            "--hub",
            "eh1",
            "--key-field",
            "customer",
            "--idempotent",
        ],
        None,
        "{\"customer\":\"c-42\",\"n\":1}\n",
    );
    assert!(ok, "{err}");
    let (status, state) = http_get(&page, "/api/state");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let hub = &state["hubs"][0];
    assert_eq!(hub["name"], "eh1");
    assert_eq!(
        hub["consumer_groups"],
        serde_json::json!(["$Default", "audit"])
    );
    let partitions = hub["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 2);
    let stored: Vec<&serde_json::Value> = partitions
        .iter()
        .filter(|p| p["last_sequence_number"] == 0)
        .collect();
    assert_eq!(stored.len(), 1, "{partitions:?}");
    assert_eq!(state["faults"][0]["spec"], "throttle,every=1000", "{state}");

    let id = stored[0]["id"].as_str().unwrap();
    let (status, events) = http_get(&page, &format!("/api/hubs/eh1/partitions/{id}/events"));
    assert_eq!(status, "HTTP/1.1 200 OK");
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    let e = &events["events"][0];
    assert_eq!(e["body_text"], "{\"customer\":\"c-42\",\"n\":1}");
    assert_eq!(e["body_json"]["n"], 1);
    assert_eq!(e["body_hex"].as_str().unwrap().len(), 2 * 25);
    assert_eq!(e["partition_key"], "c-42");
    let annotations: Vec<&str> = e["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv[0].as_str().unwrap())
        .collect();
    assert!(
        annotations.contains(&"com.microsoft:producer-sequence-number")
            && annotations.contains(&"x-opt-partition-key"),
        "{annotations:?}"
    );

    let (status, _) = http_get(&page, "/api/hubs/nope/partitions/0/events");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, why) = http_get(&page, "/api/hubs/eh1/partitions/0/events?max=lots");
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    assert!(why.contains("max"), "{why}");
    let _ = child.kill();
    let _ = child.wait();
}
