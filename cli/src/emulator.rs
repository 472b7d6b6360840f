//! `hubcat emulator`: the emulator as a process, with its flags, Microsoft's health
//! probe and ready line, and the page.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;
use eventhubs_emulator::{Emulator, EmulatorBuilder, Fault, HubConfig, Retention, TlsIdentity};

use crate::{config_file, health, ui};

/// Runs the emulator until SIGINT or SIGTERM.
pub(crate) async fn run(args: EmulatorArgs) -> ExitCode {
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hubcat emulator: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The hubs to serve: the config file's, then `--hub`'s, then those only the data
/// directory holds (listed so that the flags apply to them too), or `eh1:4`; with the
/// consumer groups and retention the flags give.
fn hubs(args: &EmulatorArgs) -> Result<Vec<HubConfig>, String> {
    let mut hubs = args
        .config
        .as_deref()
        .map(config_file::read)
        .transpose()?
        .unwrap_or_default();
    hubs.extend(args.hubs.iter().cloned());
    if let Some(dir) = &args.data_dir {
        for old in eventhubs_emulator::stored_hubs(dir).map_err(|e| e.to_string())? {
            if !hubs
                .iter()
                .any(|h| h.name().eq_ignore_ascii_case(old.name()))
            {
                hubs.push(old);
            }
        }
    }
    if hubs.is_empty() {
        hubs.push(HubConfig::new("eh1", 4));
    }
    for (hub, group) in &args.consumer_groups {
        let names = || {
            hubs.iter()
                .map(HubConfig::name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(i) = hubs.iter().position(|h| h.name().eq_ignore_ascii_case(hub)) else {
            return Err(format!(
                "--consumer-group {hub}:{group}: there is no hub '{hub}' (hubs: {})",
                names()
            ));
        };
        hubs[i] = hubs[i].clone().consumer_group(group.clone());
    }
    Ok(hubs
        .into_iter()
        .map(|mut hub| {
            if let Some(bytes) = args.retention_bytes {
                hub = hub.retention(Retention::Bytes(bytes as usize));
            }
            if let Some(time) = args.retention_time {
                hub = hub.retention_time(time);
            }
            hub
        })
        .collect())
}

/// The emulator the flags describe, and the CA it made for TLS, if it made one.
fn builder(args: &EmulatorArgs) -> Result<(EmulatorBuilder, Option<String>), String> {
    let mut builder = Emulator::builder()
        .bind(args.bind)
        .max_message_size(args.max_message_size)
        .key(&args.key_name, &args.key)
        .accept_jwt(args.accept_jwt);
    for hub in hubs(args)? {
        builder = builder.hub_config(hub);
    }
    if let Some(dir) = &args.data_dir {
        builder = builder.data_dir(dir);
    }
    for fault in &args.faults {
        tracing::info!(%fault, "fault injected");
        builder = builder.fault(fault.clone());
    }
    let mut made_ca = None;
    if let Some(addr) = args.tls_bind {
        let identity = tls_identity(args.tls_cert.as_deref(), args.tls_key.as_deref())
            .map_err(|e| format!("--tls-bind: {e}"))?;
        made_ca = identity.ca_pem().map(str::to_owned);
        builder = builder.tls(identity, addr);
    }
    if let Some(addr) = args.ws_bind {
        builder = builder.web_sockets(addr);
    }
    if let Some(addr) = args.wss_bind {
        builder = builder.web_sockets_tls(addr);
    }
    Ok((builder, made_ca))
}

async fn serve(args: EmulatorArgs) -> Result<(), String> {
    let (builder, made_ca) = builder(&args)?;
    let emulator = builder.start().await.map_err(|e| e.to_string())?;
    // Served once AMQP is: whoever sees it healthy may connect at once.
    let health = if args.no_health {
        None
    } else {
        let addr = args
            .health_bind
            .unwrap_or_else(|| health::default_addr(args.bind));
        Some(health::serve(addr).await.map_err(|e| {
            format!(
                "cannot serve the health probe on {addr}: {e} \
                 (--health-bind HOST:PORT picks another address, --no-health serves none)"
            )
        })?)
    };
    let page = match args.ui {
        Some(addr) => Some(
            ui::serve(addr, emulator.view())
                .await
                .map_err(|e| format!("cannot serve the page on {addr} (--ui): {e}"))?,
        ),
        None => None,
    };
    // The handlers go in before the connection string goes out: whoever reads it may
    // signal at once.
    let stop = crate::stop_signal();
    // The CA is written before the connection strings go out: whoever reads them may
    // use it at once.
    match (made_ca, &args.tls_ca_out) {
        (Some(ca), Some(path)) => {
            std::fs::write(path, ca).map_err(|e| format!("cannot write {}: {e}", path.display()))?
        }
        (Some(ca), None) => eprintln!(
            "hubcat emulator: TLS on {} with a certificate for localhost and 127.0.0.1, \
             signed by this CA (trust it in the client, or write it to a file with \
             --tls-ca-out FILE):\n{ca}",
            emulator
                .tls_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        ),
        (None, _) => {}
    }
    // One line per listener, in this order, each only if asked for: plain AMQP, TLS,
    // WebSockets, WebSockets with TLS.
    println!("{}", emulator.connection_string());
    let further = [
        emulator.tls_connection_string("localhost"),
        emulator.ws_connection_string(),
        emulator.wss_connection_string("localhost"),
    ];
    for line in further.into_iter().flatten() {
        println!("{line}");
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    tracing::info!(addr = %emulator.addr(), "emulator ready");
    if let Some(addr) = health {
        eprintln!("hubcat emulator: health probe at http://{addr}/health");
    }
    if let Some(addr) = page {
        eprintln!("hubcat emulator: page at http://{addr}/");
    }
    // The line Microsoft's emulator logs when it is ready, which harnesses written for
    // it wait for; always written, whatever the log filter.
    eprintln!("Emulator Service is Successfully Up!");
    stop.await;
    tracing::info!("shutting down");
    emulator.shutdown().await;
    Ok(())
}

/// `hubcat emulator`'s flags.
#[derive(Debug, Args)]
pub(crate) struct EmulatorArgs {
    /// Address to listen on, as HOST:PORT (`127.0.0.1:5672`, `localhost:0`, `[::1]:5672`);
    /// port 0 picks a free port.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:5672", value_parser = parse_bind)]
    bind: SocketAddr,
    /// A hub as NAME:PARTITIONS; repeat for several hubs (default, with no --config:
    /// eh1:4).
    #[arg(long = "hub", value_name = "NAME:PARTITIONS", value_parser = parse_hub)]
    hubs: Vec<HubConfig>,
    /// Hubs and consumer groups from a configuration file of Microsoft's Event Hubs
    /// emulator (`Config.json`: `UserConfig.NamespaceConfig[0].Entities`); --hub adds
    /// more.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// A consumer group as HUB:GROUP; repeatable. `$Default` always exists; a reader on
    /// a group that was not declared is refused, as the service refuses it.
    #[arg(long = "consumer-group", value_name = "HUB:GROUP", value_parser = parse_group)]
    consumer_groups: Vec<(String, String)>,
    /// The max-message-size announced and enforced on publishing links.
    #[arg(long, value_name = "BYTES", default_value_t = eventhubs_emulator::DEFAULT_MAX_MESSAGE_SIZE)]
    max_message_size: u64,
    /// Shared access key name that tokens must be signed with.
    #[arg(long, default_value = eventhubs_emulator::DEFAULT_KEY_NAME)]
    key_name: String,
    /// Shared access key that tokens must be signed with.
    #[arg(long, default_value = eventhubs_emulator::DEFAULT_KEY)]
    key: String,
    /// Also accept JWT tokens (only their expiry is checked).
    #[arg(long)]
    accept_jwt: bool,
    /// A fault to inject, e.g. `reject,condition=amqp:internal-error,every=10`; repeatable.
    #[arg(long = "fault", value_name = "SPEC", value_parser = crate::parse_fault)]
    faults: Vec<Fault>,
    /// Encoded bytes kept per partition; older events are dropped (default 256 MiB).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    retention_bytes: Option<u64>,
    /// How long events are kept, e.g. `1h`, `30m`, `7days` (default: with --data-dir one
    /// hour, as Microsoft's emulator keeps them; without, no limit but the size).
    #[arg(long, value_name = "DURATION", value_parser = parse_retention_time)]
    retention_time: Option<std::time::Duration>,
    /// Keep hubs, events, sequence numbers, offsets and idempotent producers' state in
    /// this directory (created if missing), across restarts and crashes: an event is
    /// written before it is acknowledged. Hubs it holds are served again without
    /// --hub; a hub given again keeps its events.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// Also listen with TLS here (as the service does on 5671), e.g. 127.0.0.1:5671; a
    /// further stdout line gives its connection string (host localhost).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_bind)]
    tls_bind: Option<SocketAddr>,
    /// With --tls-bind: the certificate chain to present, PEM (without it, a CA and a
    /// certificate for localhost and 127.0.0.1 are made at start).
    #[arg(long, value_name = "FILE", requires_all = ["tls_bind", "tls_key"])]
    tls_cert: Option<std::path::PathBuf>,
    /// With --tls-cert: its private key, PEM.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// With --tls-bind and no --tls-cert: write the made CA's certificate (PEM) here for
    /// clients to trust, rather than to stderr.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_bind",
        conflicts_with = "tls_cert"
    )]
    tls_ca_out: Option<std::path::PathBuf>,
    /// Also listen for AMQP over WebSockets without TLS here (ws://HOST:PORT/$servicebus/
    /// websocket, subprotocol AMQPWSB10 or amqp); a further stdout line gives its
    /// connection string, for clients that connect over WebSockets.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_bind)]
    ws_bind: Option<SocketAddr>,
    /// With --tls-bind: also listen for AMQP over WebSockets with TLS here (wss://, as
    /// the service on 443), presenting the same certificate; a further stdout line gives
    /// its connection string (host localhost).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_bind, requires = "tls_bind")]
    wss_bind: Option<SocketAddr>,
    /// Serve the health probe of Microsoft's emulator here: `GET /health` answers 200
    /// `{"status":"healthy",...}` once AMQP is served. Default: --bind's host, port 5300
    /// (a free port when --bind's port is 0).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_bind, conflicts_with = "no_health")]
    health_bind: Option<SocketAddr>,
    /// Serve no health probe.
    #[arg(long)]
    no_health: bool,
    /// Serve a page here that shows what is in the emulator, refreshed live: hubs,
    /// partitions with their sequence numbers and rates, a partition's newest events in
    /// full, consumer groups and faults (e.g. 127.0.0.1:8080; it shows event bodies, so
    /// keep it on loopback unless everyone who can reach it may read them).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_bind)]
    ui: Option<SocketAddr>,
}

/// The TLS identity `--tls-bind` asks for: the files given, or one made now.
fn tls_identity(
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> Result<TlsIdentity, String> {
    match (cert, key) {
        (Some(cert), Some(key)) => {
            let read = |path: &std::path::Path| {
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
            };
            TlsIdentity::from_pem(&read(cert)?, &read(key)?).map_err(|e| e.to_string())
        }
        _ => TlsIdentity::generate(&["localhost", "127.0.0.1"]).map_err(|e| e.to_string()),
    }
}

/// `--retention-time DURATION`: humantime's units, more than nothing.
fn parse_retention_time(s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d >= std::time::Duration::from_secs(1) => Ok(d),
        Ok(_) => Err("at least 1s: a shorter retention keeps nothing".into()),
        Err(e) => Err(format!("{e} (e.g. 1h, 30m, 7days)")),
    }
}

/// `--consumer-group HUB:GROUP`.
fn parse_group(s: &str) -> Result<(String, String), String> {
    let Some((hub, group)) = s
        .split_once(':')
        .filter(|(hub, group)| !hub.is_empty() && !group.is_empty())
    else {
        return Err(format!("'{s}' is not HUB:GROUP, e.g. eh1:cg1"));
    };
    if group.eq_ignore_ascii_case("$default") {
        return Err(format!(
            "'{group}': '$Default' always exists and is not declared"
        ));
    }
    Ok((hub.to_owned(), group.to_owned()))
}

/// `HOST:PORT`, the host an IP address or a name (resolved now: the first address).
fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let expected = "expected HOST:PORT, e.g. 127.0.0.1:5672, localhost:0 or [::1]:5672";
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("'{s}' has no port: {expected}"));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("'{s}' is not an address: {expected}"));
    }
    use std::net::ToSocketAddrs as _;
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{host}': {e}"))?
        .collect();
    // IPv4 first, for a name with both (`localhost`): any client reaches that one.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("'{host}' resolves to no address"))
}

fn parse_hub(s: &str) -> Result<HubConfig, String> {
    let (name, count) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("'{s}' is not NAME:PARTITIONS"))?;
    let count: u32 = count
        .parse()
        .map_err(|_| format!("partition count '{count}' is not a number"))?;
    if name.is_empty() {
        return Err("the hub name is empty".into());
    }
    Ok(HubConfig::new(name, count))
}
