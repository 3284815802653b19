//! Emulators and USB devices through adb (the `a` key, `--adb`), with a stand-in `adb` in the
//! SDK's `platform-tools/` that records its arguments.

mod common;

use common::build::{env_refs, log_lines, BuildProject};
use common::term::PtyDev;
use common::{fixture, Dev};

/// An SDK folder holding only `platform-tools/adb` (the stand-in), and where it logs.
struct Sdk {
    dir: tempfile::TempDir,
}

impl Sdk {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("jetstart-adb-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("platform-tools")).expect("mkdir");
        std::fs::copy(fixture("adb"), dir.path().join("platform-tools/adb")).expect("copy adb");
        Self { dir }
    }

    fn log(&self) -> std::path::PathBuf {
        self.dir.path().join("adb.log")
    }

    fn env(&self, devices: &str) -> Vec<(&'static str, String)> {
        vec![
            ("ANDROID_HOME", self.dir.path().display().to_string()),
            ("FAKE_ADB_LOG", self.log().display().to_string()),
            ("FAKE_ADB_DEVICES", devices.to_owned()),
        ]
    }
}

#[tokio::test]
async fn adb_flag_reverses_ports_then_installs_and_starts_each_build_on_ready_devices() {
    let project = BuildProject::with_wrapper();
    let sdk = Sdk::new();
    let env = project.env(&sdk.env("emulator-5554 device,R58M123 device,ZX1 unauthorized"));
    let mut dev =
        Dev::start_with_env(project.path(), &["--adb", "--no-initial-build"], &env_refs(&env)).await;
    let (http, ws) = (dev.ready.http_port, dev.ready.ws_port);

    // At start-up: no APK yet, so only the ports.
    dev.wait_stderr(&format!(
        "adb R58M123: reverse tcp:{http} and tcp:{ws}; no APK built yet to install"
    ))
    .await;
    // After a build: installed and started, on both ready devices, never the unauthorized one.
    project.save("app/src/main/res/values/strings.xml", "<resources/>\n");
    dev.event("build-complete").await;
    let apk = project.apk().display().to_string();
    dev.wait_stderr(&format!(
        "adb emulator-5554: reverse tcp:{http} and tcp:{ws}; installed app-debug.apk; started com.example.demo"
    ))
    .await;
    dev.wait_stderr("adb R58M123: reverse").await;
    let calls = log_lines(&sdk.log());
    for serial in ["emulator-5554", "R58M123"] {
        for expected in [
            format!("adb -s {serial} reverse tcp:{http} tcp:{http}"),
            format!("adb -s {serial} reverse tcp:{ws} tcp:{ws}"),
            format!("adb -s {serial} install -r {apk}"),
            format!("adb -s {serial} shell monkey -p com.example.demo -c android.intent.category.LAUNCHER 1"),
        ] {
            assert!(calls.contains(&expected), "{expected:?} not in {calls:#?}");
        }
    }
    assert!(calls.iter().all(|c| !c.contains("ZX1")), "{calls:#?}");
}

#[tokio::test]
async fn a_failing_install_is_said_with_what_was_done() {
    let project = BuildProject::with_wrapper();
    let sdk = Sdk::new();
    let mut env = project.env(&sdk.env("emulator-5554 device"));
    env.push(("FAKE_ADB_FAIL", "install".to_owned()));
    let mut dev =
        Dev::start_with_env(project.path(), &["--adb", "--no-initial-build"], &env_refs(&env)).await;
    project.save("app/src/main/res/values/strings.xml", "<resources/>\n");
    dev.event("build-complete").await;
    dev.wait_stderr("; adb install failed: exit status: 1: adb: error: stand-in told to fail install")
        .await;
}

#[tokio::test]
async fn the_a_key_runs_it_and_no_adb_is_said_plainly() {
    let project = common::project();
    let sdk = Sdk::new();
    let env = sdk.env("emulator-5554 device");
    let mut dev = PtyDev::start(project.path(), &env_refs(&env));
    dev.wait_for("Press", 1).await;
    dev.press("a");
    dev.wait_for("adb emulator-5554: reverse tcp:", 1).await;
    dev.press("q");
    assert_eq!(dev.wait_exit().await, 0);

    // An SDK without platform tools, and no adb on PATH.
    let empty = tempfile::tempdir().expect("tempdir");
    let bare_path = empty.path().display().to_string();
    let env = [("ANDROID_HOME", bare_path.as_str()), ("PATH", "/usr/bin:/bin")];
    let mut dev = PtyDev::start(project.path(), &env);
    dev.wait_for("Press", 1).await;
    dev.press("a");
    dev.wait_for("adb not found ($ANDROID_HOME/platform-tools or PATH)", 1)
        .await;
    dev.press("q");
    assert_eq!(dev.wait_exit().await, 0);
}
