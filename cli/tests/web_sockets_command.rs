//! hubcat over WebSockets, as processes: `hubcat emulator --ws-bind/--wss-bind` and
//! their stdout lines, `send`, `tail` and `info` with `--web-sockets`, through a proxy
//! with `--proxy`, and the errors in hubcat's words.

mod common;

// The CONNECT relay of the library's WebSocket tests, shared rather than copied.
#[path = "../../tests/web_sockets/relay.rs"]
mod relay;

use common::Emulator;

/// `--connection-string CS --hub eh1` and `extra`, after `command`.
fn hub_args<'a>(command: &'a str, cs: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![command, "--connection-string", cs, "--hub", "eh1"];
    args.extend_from_slice(extra);
    args
}

#[test]
fn the_emulator_prints_a_line_per_listener_and_send_tail_info_go_over_web_sockets() {
    let dir = std::env::temp_dir().join(format!("hubcat-ws-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let any = "127.0.0.1:0";
    let emulator = Emulator::start_with(&[
        "--tls-bind",
        any,
        "--tls-ca-out",
        ca,
        "--ws-bind",
        any,
        "--wss-bind",
        any,
    ]);
    // Plain, TLS, ws, wss: in that order, each its own port.
    let [tls, ws, wss] = [0, 1, 2].map(|i| emulator.further[i].clone());
    assert!(tls.starts_with("Endpoint=sb://localhost:"), "{tls}");
    assert!(ws.starts_with("Endpoint=sb://127.0.0.1:"), "{ws}");
    assert!(ws.ends_with(";UseDevelopmentEmulator=true"), "{ws}");
    assert!(wss.starts_with("Endpoint=sb://localhost:"), "{wss}");
    assert!(!wss.contains("UseDevelopmentEmulator"), "{wss}");
    let port = |cs: &str| cs.split([':', ';']).nth(2).unwrap().to_owned();
    let ports = [&emulator.connection_string, &tls, &ws, &wss].map(|cs| port(cs));
    for (i, p) in ports.iter().enumerate() {
        assert!(!ports[..i].contains(p), "{ports:?}");
    }

    let (ok, _, err) = common::run(&hub_args("send", &ws, &["--web-sockets"]), None, "ws\n");
    assert!(ok, "{err}");
    let wss_send = hub_args("send", &wss, &["--web-sockets", "--tls-ca", ca]);
    let (ok, _, err) = common::run(&wss_send, None, "wss\n");
    assert!(ok, "{err}");
    let (ok, out, err) = common::run(&hub_args("tail", &ws, &["--web-sockets"]), None, "");
    assert!(ok, "{err}");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["ws", "wss"]);
    let (ok, out, err) = common::run(&hub_args("info", &ws, &["--web-sockets"]), None, "");
    assert!(ok && out.contains("eh1"), "{out}{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn send_goes_through_a_proxy_and_says_what_a_refusing_one_answered() {
    let emulator = Emulator::start_with(&["--ws-bind", "127.0.0.1:0"]);
    let ws = emulator.further[0].clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let relay = runtime.block_on(relay::Relay::start(None));
    let args = hub_args("send", &ws, &["--web-sockets", "--proxy", &relay.url]);
    let (ok, _, err) = common::run(&args, None, "proxied\n");
    assert!(ok, "{err}");
    let asked = relay.asked();
    let target = ws.split([';', '/']).nth(2).unwrap();
    assert!(
        !asked.is_empty()
            && asked
                .iter()
                .all(|a| a.target == target && a.authorization.is_none()),
        "{asked:?}"
    );

    let refusing = runtime.block_on(relay::Relay::start(Some("403 Forbidden")));
    let args = hub_args("send", &ws, &["--web-sockets", "--proxy", &refusing.url]);
    let (ok, _, err) = common::run(&args, None, "refused\n");
    assert!(!ok);
    assert!(
        err.contains("refused the tunnel") && err.contains("403 Forbidden"),
        "{err}"
    );
}

#[test]
fn web_socket_mistakes_are_explained_in_hubcats_flags() {
    let emulator = Emulator::start();
    let cs = &emulator.connection_string;
    // The plain AMQP port does not speak WebSockets.
    let (ok, _, err) = common::run(&hub_args("send", cs, &["--web-sockets"]), None, "x\n");
    assert!(!ok);
    assert!(err.contains("does not speak WebSockets"), "{err}");
    assert!(err.contains("drop --web-sockets"), "{err}");
    // A proxy carries WebSockets only.
    let args = hub_args("info", cs, &["--proxy", "http://127.0.0.1:3128"]);
    let (ok, _, err) = common::run(&args, None, "");
    assert!(!ok);
    assert!(err.contains("add --web-sockets"), "{err}");
    // --wss-bind presents the TLS listener's certificate, so it needs --tls-bind.
    let out = common::hubcat()
        .args([
            "emulator",
            "--bind",
            "127.0.0.1:0",
            "--wss-bind",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-bind"));
}
