//! `hubcat emulator` as a process: the one-line stdout contract, flags, bad input.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{emulator_process, http_get, hubcat, Emulator};

#[test]
fn prints_exactly_the_connection_string_and_stops_on_sigterm() {
    let mut child = hubcat()
        .args([
            "emulator",
            "--bind",
            "127.0.0.1:0",
            "--hub",
            "a:2",
            "--hub",
            "b:8",
        ])
        .args([
            "--key-name",
            "Policy",
            "--key",
            "secret",
            "--fault",
            "throttle,every=5,hub=b",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hubcat");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("first line");
    let line = line.trim_end();
    let port = line
        .strip_prefix("Endpoint=sb://127.0.0.1:")
        .and_then(|rest| rest.split(';').next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
    assert_ne!(port, 0);
    assert!(
        line.ends_with(
            ";SharedAccessKeyName=Policy;SharedAccessKey=secret;UseDevelopmentEmulator=true"
        ),
        "{line}"
    );
    // It listens on the printed port.
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("listening");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "exit status {exit:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "", "nothing but the connection string on stdout");
}

#[test]
fn bad_flags_fail_with_a_message_naming_the_problem() {
    let cases: [(&[&str], &str); 6] = [
        (&["emulator", "--hub", "nocount"], "NAME:PARTITIONS"),
        (&["emulator", "--hub", "eh1:lots"], "not a number"),
        (
            &["emulator", "--hub", "eh1:0", "--bind", "127.0.0.1:0"],
            "1..=1024",
        ),
        (&["emulator", "--fault", "explode"], "unknown kind"),
        (&["emulator", "--fault", "delay,ms=soon"], "not a number"),
        (&["emulator", "--retention-bytes", "0"], "--retention-bytes"),
    ];
    for (args, needle) in cases {
        let out = hubcat().args(args).output().expect("run hubcat");
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    }
}

#[test]
fn a_port_in_use_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = hubcat()
        .args(["emulator", "--bind", &addr])
        .output()
        .expect("run hubcat");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot bind"));
}

#[tokio::test]
async fn retention_bytes_keeps_only_the_newest_events() {
    use futures_util::StreamExt;
    let (mut child, cs) = emulator_process(
        &[
            "--bind",
            "127.0.0.1:0",
            "--hub",
            "a:1",
            "--retention-bytes",
            "4096",
        ],
        Stdio::null(),
    );
    let (mut producer, mut outcomes) = streaming_producer::Producer::builder()
        .connection_string(&cs)
        .hub("a")
        .build()
        .await
        .expect("a producer on the emulator");
    for i in 0..200u32 {
        let body = format!("{i:0>100}");
        producer
            .enqueue(streaming_producer::EventData::new(body))
            .await
            .expect("accepted");
    }
    producer.flush().await.expect("flushed");
    let properties = producer
        .partition_properties("0")
        .await
        .expect("properties");
    producer.close().await.expect("closed");
    let mut stored = 0;
    while let Some(o) = outcomes.next().await {
        assert!(o.is_success(), "{:?}", o.result);
        stored += o.events.len();
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(stored, 200);
    assert_eq!(properties.last_enqueued_sequence_number, 199);
    let kept = properties.last_enqueued_sequence_number - properties.begin_sequence_number + 1;
    // Each stored event takes more than its 100-byte body.
    assert!(
        (1..=40).contains(&kept),
        "kept {kept} events of 200 in 4096 bytes"
    );
}

#[test]
fn the_emulator_serves_tls_with_a_ca_it_writes_out_and_send_trusts_it_with_tls_ca() {
    let dir = std::env::temp_dir().join(format!("hubcat-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    let ca_arg = ca.to_str().unwrap();
    let emulator = Emulator::start_with(&["--tls-bind", "127.0.0.1:0", "--tls-ca-out", ca_arg]);
    let tls = emulator.tls_connection_string.clone().unwrap();
    assert!(tls.starts_with("Endpoint=sb://localhost:"), "{tls}");
    assert!(!tls.contains("UseDevelopmentEmulator"), "{tls}");
    let send = |extra: &[&str]| {
        let mut args = vec!["send", "--connection-string", &tls, "--hub", "eh1"];
        args.extend_from_slice(extra);
        common::run(&args, None, "over tls\n")
    };
    let (ok, _, err) = send(&["--tls-ca", ca_arg]);
    assert!(ok, "{err}");
    let (ok, _, err) = send(&[]);
    assert!(!ok);
    assert!(
        err.contains("not signed by a certificate authority"),
        "{err}"
    );
    assert!(err.contains("trust it with --tls-ca FILE"), "{err}");
    assert!(!err.contains("add_root_certificate_pem"), "{err}");
    // What went over TLS is there over plain AMQP too: one emulator, two listeners.
    let (ok, out, err) = common::run(
        &[
            "tail",
            "--connection-string",
            &emulator.connection_string,
            "--hub",
            "eh1",
        ],
        None,
        "",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "over tls\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a test harness written for Microsoft's emulator waits on: the log line and
/// `GET /health`, both there once AMQP is served.
#[test]
fn logs_the_ready_line_and_serves_the_health_probe_once_amqp_is_up() {
    let (mut child, line) =
        emulator_process(&["--bind", "127.0.0.1:0", "--hub", "eh1:2"], Stdio::piped());
    let amqp_port: u16 = line
        .strip_prefix("Endpoint=sb://127.0.0.1:")
        .and_then(|rest| rest.split(';').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
    let mut probe = None;
    let mut ready = false;
    for line in BufReader::new(child.stderr.take().expect("stderr")).lines() {
        let line = line.expect("stderr");
        if let Some(url) = line.strip_prefix("hubcat emulator: health probe at http://") {
            probe = Some(
                url.strip_suffix("/health")
                    .expect("a /health URL")
                    .to_owned(),
            );
        }
        if line == "Emulator Service is Successfully Up!" {
            ready = true;
            break;
        }
    }
    assert!(ready, "no ready line on stderr");
    let probe = probe.expect("the probe's address, before the ready line");
    assert!(probe.starts_with("127.0.0.1:"), "{probe}");
    assert!(
        !probe.ends_with(":0") && !probe.ends_with(":5300"),
        "{probe}"
    );
    // Ready means ready: AMQP answers, and so does the probe.
    std::net::TcpStream::connect(("127.0.0.1", amqp_port)).expect("AMQP listening");
    let (status, body) = http_get(&probe, "/health");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        body,
        serde_json::json!({"status": "healthy", "message": "Service is healthy."})
    );
    let (status, _) = http_get(&probe, "/nothing");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_health_port_in_use_is_reported_and_no_health_serves_none() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = hubcat()
        .args(["emulator", "--bind", "127.0.0.1:0", "--health-bind", &addr])
        .output()
        .expect("run hubcat");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot serve the health probe"), "{stderr}");
    assert!(stderr.contains("--no-health"), "{stderr}");
    // Without a probe the ready line still comes, and no probe is announced.
    let mut child = hubcat()
        .args(["emulator", "--bind", "127.0.0.1:0", "--no-health"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hubcat");
    let mut before_ready = Vec::new();
    let mut ready = false;
    for line in BufReader::new(child.stderr.take().expect("stderr")).lines() {
        let line = line.expect("stderr");
        if line == "Emulator Service is Successfully Up!" {
            ready = true;
            break;
        }
        before_ready.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "no ready line: {before_ready:?}");
    assert!(
        !before_ready.iter().any(|l| l.contains("health probe")),
        "{before_ready:?}"
    );
}

/// Microsoft's default `Config.json` (Azure/azure-event-hubs-emulator-installer,
/// `EventHub-Emulator/Config/Config.json`): hub eh1, 2 partitions, group cg1.
const MICROSOFT_CONFIG: &str = include_str!("data/microsoft-config.json");

#[test]
fn microsofts_config_file_declares_the_hubs_and_groups_and_others_are_refused() {
    let dir = std::env::temp_dir().join(format!("hubcat-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("Config.json");
    std::fs::write(&config, MICROSOFT_CONFIG).unwrap();
    let config_arg = config.to_str().expect("a UTF-8 path");
    let (mut child, cs) = emulator_process(
        &[
            "--bind",
            "127.0.0.1:0",
            "--config",
            config_arg,
            "--consumer-group",
            "eh1:extra",
        ],
        Stdio::null(),
    );
    let (ok, _, err) = common::run(
        &["send", "--connection-string", &cs, "--hub", "eh1"],
        None,
        "one\ntwo\nthree\n",
    );
    assert!(ok, "{err}");
    let tail = |group: &str| {
        common::run(
            &[
                "tail",
                "--connection-string",
                &cs,
                "--hub",
                "eh1",
                "--consumer-group",
                group,
            ],
            None,
            "",
        )
    };
    for group in ["$Default", "cg1", "CG1", "extra"] {
        let (ok, out, err) = tail(group);
        assert!(ok, "{group}: {err}");
        let mut got: Vec<&str> = out.lines().collect();
        got.sort();
        assert_eq!(got, ["one", "three", "two"], "{group}");
    }
    let (ok, _, err) = tail("cg2");
    assert!(!ok, "an undeclared group is refused");
    assert!(err.contains("has no consumer group 'cg2'"), "{err}");
    // Two partitions, as the file says.
    let (ok, out, err) = common::run(
        &["info", "--connection-string", &cs, "--hub", "eh1"],
        None,
        "",
    );
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().eq(["partitions", "2"])),
        "{out}"
    );
    let _ = child.kill();
    let _ = child.wait();

    // A file Microsoft's emulator would refuse is refused, naming the field.
    std::fs::write(&config, MICROSOFT_CONFIG.replace("\"2\"", "\"two\"")).unwrap();
    let out = hubcat()
        .args(["emulator", "--bind", "127.0.0.1:0", "--config"])
        .arg(&config)
        .output()
        .expect("run hubcat");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("UserConfig.NamespaceConfig[0].Entities[0].PartitionCount: \"two\"")
            && stderr.contains("allowed: 1 to 1024"),
        "{stderr}"
    );
    // A group for a hub that is not there is refused too.
    std::fs::write(&config, MICROSOFT_CONFIG).unwrap();
    let out = hubcat()
        .args(["emulator", "--bind", "127.0.0.1:0", "--config"])
        .arg(&config)
        .args(["--consumer-group", "eh2:cg1"])
        .output()
        .expect("run hubcat");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("there is no hub 'eh2' (hubs: eh1)"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_retention_time_must_be_a_duration_of_a_second_or_more() {
    for (value, says) in [("0s", "at least 1s"), ("soon", "e.g. 1h, 30m, 7days")] {
        let out = hubcat()
            .args([
                "emulator",
                "--bind",
                "127.0.0.1:0",
                "--retention-time",
                value,
            ])
            .output()
            .expect("run hubcat");
        assert!(!out.status.success(), "{value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--retention-time") && stderr.contains(says),
            "{value}: {stderr}"
        );
    }
}
