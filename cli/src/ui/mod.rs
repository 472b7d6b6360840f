//! `hubcat emulator --ui ADDR`: a page that shows what is in the emulator, refreshed
//! live: hubs, partitions with their sequence numbers and rates, the newest events of
//! a partition in full, consumer groups and the faults in force.
//!
//! One HTML page with its script inline (no build step), over two JSON resources:
//! `GET /api/state` (hubs, partitions, groups, faults) and
//! `GET /api/hubs/{hub}/partitions/{id}/events?max=N` (the newest N events).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use eventhubs_emulator::{EmulatorView, StoredEvent};
use serde_json::{json, Value};

const PAGE: &str = include_str!("page.html");

/// How many samples of each partition's sequence number the rate is taken over, one a
/// second.
const RATE_SAMPLES: usize = 5;
/// The most bytes of a body the page is sent; the rest is left out (and said so).
const BODY_SHOWN: usize = 64 << 10;
/// The most events one request returns.
const MAX_EVENTS: usize = 200;

type Samples = HashMap<(String, String), VecDeque<(Instant, i64)>>;

#[derive(Clone)]
struct Ui {
    view: EmulatorView,
    samples: Arc<Mutex<Samples>>,
}

impl Ui {
    /// Records every partition's last sequence number now, keeping the last few.
    fn sample(&self) {
        let now = Instant::now();
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        for hub in self.view.hubs() {
            for (id, info) in &hub.partitions {
                let s = samples.entry((hub.name.clone(), id.clone())).or_default();
                s.push_back((now, info.last_sequence_number));
                while s.len() > RATE_SAMPLES {
                    s.pop_front();
                }
            }
        }
    }

    /// Events per second into a partition over the samples kept; `None` before there
    /// are two.
    fn rate(&self, hub: &str, partition: &str) -> Option<f64> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let s = samples.get(&(hub.to_owned(), partition.to_owned()))?;
        let ((t0, n0), (t1, n1)) = (s.front()?, s.back()?);
        let secs = t1.duration_since(*t0).as_secs_f64();
        (secs > 0.0).then(|| (n1 - n0) as f64 / secs)
    }
}

/// Serves the page on `addr` until the process ends. Returns the address served (the
/// port picked, for port 0).
pub(crate) async fn serve(addr: SocketAddr, view: EmulatorView) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let ui = Ui {
        view,
        samples: Arc::default(),
    };
    let sampler = ui.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            sampler.sample();
        }
    });
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/state", get(state))
        .route("/api/hubs/{hub}/partitions/{partition}/events", get(events))
        .with_state(ui);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the page's listener stopped");
        }
    });
    Ok(addr)
}

async fn state(State(ui): State<Ui>) -> Response {
    let hubs: Vec<Value> = ui
        .view
        .hubs()
        .into_iter()
        .map(|hub| {
            let partitions: Vec<Value> = hub
                .partitions
                .iter()
                .map(|(id, p)| {
                    json!({
                        "id": id,
                        "begin_sequence_number": p.begin_sequence_number,
                        "last_sequence_number": p.last_sequence_number,
                        "last_offset": p.last_offset,
                        "last_enqueued_time_ms": p.last_enqueued_time_ms,
                        "retained": p.retained,
                        "is_empty": p.is_empty,
                        "rate": ui.rate(&hub.name, id),
                    })
                })
                .collect();
            json!({
                "name": hub.name,
                "created_at_ms": hub.created_at_ms,
                "consumer_groups": hub.consumer_groups,
                "partitions": partitions,
            })
        })
        .collect();
    let faults: Vec<Value> = ui
        .view
        .faults()
        .into_iter()
        .map(|f| json!({"spec": f.fault.to_string(), "seen": f.seen, "fired": f.fired}))
        .collect();
    no_store(Json(json!({"hubs": hubs, "faults": faults})))
}

async fn events(
    State(ui): State<Ui>,
    Path((hub, partition)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let max = match q.get("max").map(|m| m.parse::<usize>()) {
        None => 20,
        Some(Ok(n)) => n.clamp(1, MAX_EVENTS),
        Some(Err(_)) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "max: a number of events"})),
            )
                .into_response()
        }
    };
    match ui.view.latest_events(&hub, &partition, max) {
        Some(events) => {
            let events: Vec<Value> = events.iter().rev().map(event_json).collect();
            no_store(Json(json!({ "events": events })))
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no partition '{partition}' in a hub '{hub}'")})),
        )
            .into_response(),
    }
}

/// Every answer is of the state now: no cache may keep it.
fn no_store(body: impl IntoResponse) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], body).into_response()
}

fn pairs(pairs: Vec<(String, String)>) -> Value {
    Value::Array(pairs.into_iter().map(|(k, v)| json!([k, v])).collect())
}

fn event_json(e: &StoredEvent) -> Value {
    let body = e.body();
    let shown = &body[..body.len().min(BODY_SHOWN)];
    let text = std::str::from_utf8(shown).ok();
    let parsed = text.and_then(|t| serde_json::from_str::<Value>(t).ok());
    let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
    let sections = e.sections().unwrap_or_default();
    json!({
        "sequence_number": e.sequence_number,
        "offset": e.offset,
        "enqueued_time_ms": e.enqueued_time_ms,
        "partition_key": e.partition_key(),
        "size": body.len(),
        "truncated": body.len() > shown.len(),
        "body_text": text,
        "body_json": parsed,
        "body_hex": hex,
        "properties": pairs(sections.properties),
        "application_properties": pairs(sections.application_properties),
        "annotations": pairs(sections.annotations),
    })
}
