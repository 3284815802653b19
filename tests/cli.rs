//! The `dev` command as a user runs it: ready output, pairing banner and QR code, port
//! conflicts, flag validation and signals.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{within, Dev};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

fn dev_command(project: &std::path::Path) -> Command {
    dev_command_on(project, "0", "0")
}

fn dev_command_on(project: &std::path::Path, port: &str, ws_port: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jetstart-rs"));
    cmd.arg("dev")
        .arg("--project")
        .arg(project)
        .args(["--port", port, "--ws-port", ws_port, "--bind", "127.0.0.1"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Sends a bare HTTP/1.1 GET and returns the whole response.
async fn http_get(port: u16, path: &str) -> String {
    let mut stream = within("HTTP connect", TcpStream::connect(("127.0.0.1", port)))
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    within("HTTP response", stream.read_to_string(&mut response))
        .await
        .expect("read");
    response
}

#[tokio::test]
async fn json_ready_event_reports_working_ports() {
    let project = common::project();
    let dev = Dev::start(project.path(), &[]).await;
    let ready = &dev.ready;
    assert_ne!(ready.http_port, 0);
    assert_ne!(ready.ws_port, 0);
    assert_eq!(ready.project_name, "demo");
    assert_eq!(ready.session_id.len(), 8);
    assert_eq!(ready.token.len(), 22);
    assert_eq!(
        ready.qr,
        format!(
            "127.0.0.1|{}|{}|{}|{}|demo",
            ready.http_port, ready.ws_port, ready.session_id, ready.token
        )
    );

    let health = http_get(ready.http_port, "/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let body: serde_json::Value =
        serde_json::from_str(health.split("\r\n\r\n").nth(1).expect("body")).expect("JSON body");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));

    let (_ws, connected) = dev.connect().await;
    assert_eq!(connected["projectName"], "demo");
}

#[tokio::test]
async fn name_flag_is_sanitized_everywhere() {
    let project = common::project();
    let long = format!("my|app\u{7}{}", "é".repeat(80));
    let dev = Dev::start(project.path(), &["--name", &long]).await;
    let expected: String = format!("my_app_{}", "é".repeat(57));
    assert_eq!(expected.chars().count(), 64);
    assert_eq!(dev.ready.project_name, expected);
    assert!(dev.ready.qr.ends_with(&format!("|{expected}")));
    assert_eq!(dev.ready.qr.split('|').count(), 6);
    let (_ws, connected) = dev.connect().await;
    assert_eq!(connected["projectName"], expected.as_str());
}

/// Rasterizes the half-block QR text as a terminal with a dark (or light) background shows it
/// (filled halves in the foreground colour) and decodes it with an ordinary QR decoder.
fn decode_terminal_qr(lines: &[String], light_background: bool) -> String {
    const SCALE: usize = 4;
    let width = lines[0].chars().count();
    let height = lines.len() * 2;
    // A dark margin stands for the terminal background around the block.
    let margin = 4 * SCALE;
    let (w, h) = (width * SCALE + 2 * margin, height * SCALE + 2 * margin);
    let (background, foreground) = if light_background { (255, 0) } else { (0, 255) };
    let mut pixels = vec![background; w * h];
    for (row, line) in lines.iter().enumerate() {
        for (col, ch) in line.chars().enumerate() {
            let (top, bottom) = match ch {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                ' ' => (false, false),
                other => panic!("unexpected character {other:?} in the QR block"),
            };
            for (half, filled) in [(0, top), (1, bottom)] {
                if !filled {
                    continue;
                }
                for dy in 0..SCALE {
                    for dx in 0..SCALE {
                        let y = margin + (row * 2 + half) * SCALE + dy;
                        let x = margin + col * SCALE + dx;
                        pixels[y * w + x] = foreground;
                    }
                }
            }
        }
    }
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * w + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "exactly one QR code in the block");
    let (_, content) = grids[0].decode().expect("QR decodes");
    content
}

#[tokio::test]
async fn human_banner_has_credentials_and_a_qr_code_that_decodes_to_the_payload() {
    banner_qr_scans(&[], false).await;
}

/// A light terminal (COLORFGBG says so, or --qr-invert) gets the QR code the other way round,
/// which scans there; the dark terminal's rendering would be a negative.
#[tokio::test]
async fn a_light_terminal_gets_a_qr_code_that_scans_on_it() {
    banner_qr_scans(&[("COLORFGBG", "0;15")], true).await;
}

async fn banner_qr_scans(env: &[(&str, &str)], light_background: bool) {
    let project = common::project();
    let mut child = dev_command(project.path())
        .args(["--host", "192.168.7.9"])
        .envs(env.iter().copied())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut all = Vec::new();
    within("the banner", async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            let done = line.starts_with("Token: ");
            all.push(line);
            if done {
                break;
            }
        }
    })
    .await;
    let find = |prefix: &str| {
        all.iter()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{}", all.join("\n")))
            .to_owned()
    };
    let session_id = find("Session: ");
    let token = find("Token: ");
    assert_eq!(session_id.len(), 8);
    assert_eq!(token.len(), 22);
    let network = find("  Network:  ");
    let http_port: u16 = network
        .rsplit(':')
        .next()
        .expect("port")
        .parse()
        .expect("port number");
    assert!(network.starts_with("http://192.168.7.9:"), "{network}");
    assert!(all
        .iter()
        .any(|l| l.contains("Local:") && l.contains("http://localhost:")));
    assert!(all.iter().any(|l| l.contains("Project:") && l.contains("demo")));

    let qr_lines: Vec<String> = all
        .iter()
        .filter(|l| !l.is_empty() && l.chars().all(|c| matches!(c, '█' | '▀' | '▄' | ' ')))
        .cloned()
        .collect();
    assert!(qr_lines.len() > 10, "a QR block is printed");
    let payload = decode_terminal_qr(&qr_lines, light_background);
    let ws_port = payload.split('|').nth(2).expect("wsPort").to_owned();
    assert_eq!(
        payload,
        format!("192.168.7.9|{http_port}|{ws_port}|{session_id}|{token}|demo")
    );
    child.kill().await.expect("kill");
}

#[tokio::test]
async fn no_qr_still_prints_the_details() {
    let project = common::project();
    let mut child = dev_command(project.path()).arg("--no-qr").spawn().expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut all = Vec::new();
    within("the banner", async {
        while let Some(line) = lines.next_line().await.expect("read") {
            let done = line.starts_with("Token: ");
            all.push(line);
            if done {
                break;
            }
        }
    })
    .await;
    assert!(all.iter().any(|l| l.starts_with("Session: ")));
    assert!(!all.iter().any(|l| l.contains('█')), "no QR block with --no-qr");
    child.kill().await.expect("kill");
}

#[tokio::test]
async fn second_instance_on_the_same_port_fails_naming_the_port_and_flag() {
    let project = common::project();
    let first = Dev::start(project.path(), &[]).await;
    let port = first.ready.http_port.to_string();
    // Another project: on the same one the project lock would refuse it first.
    let other = common::project();
    let project = &other;
    let output = within(
        "the second instance to fail",
        dev_command_on(project.path(), &port, "0").arg("--json").output(),
    )
    .await
    .expect("run");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        output.stdout.is_empty(),
        "nothing is printed before both ports are bound"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "{stderr}");
    assert!(
        error_lines[0].contains(&port) && error_lines[0].contains("--port"),
        "{stderr}"
    );

    let ws_port = first.ready.ws_port.to_string();
    let output = dev_command_on(project.path(), "0", &ws_port)
        .output()
        .await
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--ws-port"));
}

#[tokio::test]
async fn public_host_is_refused_as_bad_usage() {
    let project = common::project();
    let output = dev_command(project.path())
        .args(["--host", "8.8.8.8"])
        .output()
        .await
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("public"));
}

#[tokio::test]
async fn missing_project_folder_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_jetstart-rs"))
        .args([
            "dev",
            "--project",
            "/definitely/not/here",
            "--port",
            "0",
            "--ws-port",
            "0",
        ])
        .output()
        .await
        .expect("run");
    assert_eq!(output.status.code(), Some(2), "bad usage");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/definitely/not/here") && stderr.contains("--project"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line, the OS error not repeated: {stderr}"
    );
}

#[tokio::test]
async fn sigterm_stops_cleanly_within_two_seconds() {
    let project = common::project();
    let mut dev = Dev::start(project.path(), &[]).await;
    let (_ws, _) = dev.connect().await;
    let started = Instant::now();
    dev.sigterm();
    let status = dev.wait_exit().await;
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{}",
        dev.stderr()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // The stdout reader may still be catching up with the last line; the channel ends at EOF.
    dev.event("stopped").await;
}

#[tokio::test]
async fn version_flag_prints_the_version() {
    for flag in ["--version", "-V"] {
        let out = within(
            "jetstart-rs --version",
            Command::new(env!("CARGO_BIN_EXE_jetstart-rs"))
                .arg(flag)
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .expect("run");
        assert!(out.status.success(), "{flag}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("jetstart-rs {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}
