//! `hubcat info`: the hub's properties and each partition's.

use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, ValueEnum};
use serde_json::json;
use streaming_producer::PartitionProperties;

use crate::hub::HubArgs;

#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    #[command(flatten)]
    hub: HubArgs,
    /// A table for people, or one JSON object.
    #[arg(long, value_enum, default_value_t = InfoFormat::Table)]
    format: InfoFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InfoFormat {
    Table,
    Json,
}

/// A time as RFC 3339 in UTC, or `-` for none.
pub(crate) fn rfc3339(time: Option<SystemTime>) -> String {
    time.map_or_else(
        || "-".to_owned(),
        |t| humantime::format_rfc3339_millis(t).to_string(),
    )
}

pub(crate) async fn run(args: InfoArgs) -> ExitCode {
    match info(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hubcat info: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn info(args: &InfoArgs) -> Result<(), String> {
    if args.hub.amqp_url.is_some() {
        return Err(
            "--amqp-url: a generic broker has no hub or partition properties to \
                    show; hubcat info reads Event Hubs'"
                .to_owned(),
        );
    }
    let reader = args.hub.reader("$Default").await?;
    let hub = reader
        .hub_properties()
        .await
        .map_err(|e| args.hub.explain(&e))?;
    let mut partitions = Vec::with_capacity(hub.partition_ids.len());
    for id in &hub.partition_ids {
        let p = reader
            .partition_properties(id)
            .await
            .map_err(|e| format!("partition {id}: {}", args.hub.explain(&e)))?;
        partitions.push(p);
    }
    reader.close().await;
    let text = match args.format {
        InfoFormat::Json => {
            let partitions: Vec<_> = partitions.iter().map(partition_json).collect();
            let value = json!({
                "name": hub.name,
                "created_at": hub.created_at.map(|t| rfc3339(Some(t))),
                "partition_ids": hub.partition_ids,
                "partitions": partitions,
            });
            format!("{value}\n")
        }
        InfoFormat::Table => table(&hub.name, hub.created_at, &partitions),
    };
    print!("{text}");
    Ok(())
}

fn partition_json(p: &PartitionProperties) -> serde_json::Value {
    json!({
        "id": p.id,
        "begin_sequence_number": p.begin_sequence_number,
        "last_enqueued_sequence_number": p.last_enqueued_sequence_number,
        "last_enqueued_offset": p.last_enqueued_offset,
        "last_enqueued_time": p.last_enqueued_time.map(|t| rfc3339(Some(t))),
        "is_empty": p.is_empty,
    })
}

fn table(name: &str, created: Option<SystemTime>, partitions: &[PartitionProperties]) -> String {
    let mut rows = vec![[
        "PARTITION".to_owned(),
        "FIRST SEQ".to_owned(),
        "LAST SEQ".to_owned(),
        "EVENTS".to_owned(),
        "LAST OFFSET".to_owned(),
        "LAST ENQUEUED".to_owned(),
    ]];
    for p in partitions {
        // Sequence numbers are consecutive, so the retained count follows from them.
        let retained = if p.is_empty {
            0
        } else {
            p.last_enqueued_sequence_number - p.begin_sequence_number + 1
        };
        rows.push([
            p.id.clone(),
            p.begin_sequence_number.to_string(),
            p.last_enqueued_sequence_number.to_string(),
            retained.to_string(),
            p.last_enqueued_offset.clone(),
            rfc3339(p.last_enqueued_time),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "hub         {name}\ncreated     {}\npartitions  {}\n\n",
        rfc3339(created),
        partitions.len()
    );
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
