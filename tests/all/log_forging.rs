//! A plugin's log text cannot forge or hide lines of the host's log: control
//! characters are escaped in every log format, and the text stays inside
//! its line's message. Checked on what the real binary writes.

use std::process::Command;

use airlock::runtime::{InvokeError, Verdict};

use crate::common::*;
use crate::inline::*;

/// What log-forge tries to pass off as lines of the host's own.
const FORGED: &str = "2026-01-01T00:00:00Z ERROR airlock::admin: fake";

/// Runs log-forge with `airlock plugin run` in `format`; its stderr.
fn run_log_forge(format: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["--log-format", format, "plugin", "run"])
        .arg(plugin_path("log-forge"))
        .arg(fixture("picture.png"))
        .env("RUST_LOG", "info")
        .output()
        .expect("run airlock");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {stderr}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// Checks that hold in every format: the plugin's lines were written, and
/// none of them starts a line, moves the cursor or clears anything.
fn assert_not_forged(stderr: &str) {
    for what in [
        "fake admin token rotated",
        "fake carriage return",
        "fake escape",
    ] {
        assert!(
            stderr.contains(what),
            "the plugin's line with {what:?} was not logged:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains('\r'),
        "a raw CR reached the log:\n{stderr:?}"
    );
    for sequence in ["\x1b[2K", "\x1b[1G"] {
        assert!(
            !stderr.contains(sequence),
            "the plugin's escape sequence {sequence:?} reached the log:\n{stderr:?}"
        );
    }
    for line in stderr.split(['\n', '\r']) {
        assert!(
            !line.starts_with(FORGED),
            "a forged line starts a line of the log:\n{stderr}"
        );
    }
}

#[test]
fn plugin_log_text_cannot_forge_a_line_in_the_human_format() {
    let stderr = run_log_forge("human");
    assert_not_forged(&stderr);
    // Each of the plugin's messages is on a line that the host began.
    for line in stderr
        .lines()
        .filter(|l| l.contains("airlock::admin: fake"))
    {
        assert!(
            line.contains("log-forge"),
            "not attributed to the plugin: {line}"
        );
    }
}

#[test]
fn plugin_log_text_cannot_forge_a_line_in_the_json_format() {
    let stderr = run_log_forge("json");
    assert_not_forged(&stderr);
    // Every line is one JSON object: nothing the plugin wrote split one.
    let mut messages = 0;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let json: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line:?}"));
        if line.contains("airlock::admin: fake") {
            messages += 1;
            let message = json["fields"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(FORGED),
                "the plugin's text is not in the message field: {line}"
            );
            assert!(
                !message.contains(['\n', '\r', '\x1b']),
                "control characters survived in the message: {message:?}"
            );
        }
    }
    assert_eq!(messages, 3, "{stderr}");
}

/// Text a plugin returns rather than logs, with the same intent.
const RETURNED: &str =
    "no\r\n2026-01-01T00:00:00Z ERROR airlock::admin: fake\u{2028}\u{202e}\u{1b}[2K";

/// A processor whose result area (at 16) is `area`, with `RETURNED` at 1024.
fn returning_text(area: &str) -> airlock::runtime::Plugin {
    Component::processor(format!(
        "{}\n{}",
        data(1024, RETURNED.as_bytes()),
        process_returning_area(area)
    ))
    .load(roomy())
}

fn assert_one_visible_line(text: &str) {
    assert!(text.contains("ERROR airlock::admin: fake"), "{text}");
    let hidden = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{202e}');
    assert!(!text.chars().any(hidden), "{text:?}");
}

#[tokio::test]
async fn reject_reasons_and_plugin_errors_are_one_visible_line() {
    let len = RETURNED.len();
    // ok(reject(string at 1024))
    let reject = returning_text(&format!(
        r#"(i32.store8 (i32.const 16) (i32.const 0))
      (i32.store8 (i32.const 20) (i32.const 1))
      (i32.store (i32.const 24) (i32.const 1024))
      (i32.store (i32.const 28) (i32.const {len}))"#
    ));
    match verdict(invoke(&reject, "image/png", fixture_bytes("picture.png")).await) {
        Verdict::Reject { reason } => assert_one_visible_line(&reason),
        other => panic!("{other:?}"),
    }
    // err(plugin-error { message: string at 1024 })
    let failing = returning_text(&format!(
        r#"(i32.store8 (i32.const 16) (i32.const 1))
      (i32.store (i32.const 20) (i32.const 1024))
      (i32.store (i32.const 24) (i32.const {len}))"#
    ));
    match error(invoke(&failing, "image/png", fixture_bytes("picture.png")).await) {
        InvokeError::Failed { message, .. } => assert_one_visible_line(&message),
        other => panic!("{other:?}"),
    }
}
