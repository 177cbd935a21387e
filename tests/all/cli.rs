//! `airlock plugin …` as a plugin author uses it.

use crate::common::*;

fn path(p: std::path::PathBuf) -> String {
    p.display().to_string()
}

#[test]
fn run_cache_storm_exits_3_naming_cache_calls_with_numbers() {
    let (code, text) = airlock(&[
        "plugin",
        "run",
        &path(plugin_path("cache-storm")),
        &path(fixture("picture.png")),
        "--cache-calls",
        "50",
    ]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("exceeded its cache_calls budget: used 51, allowed 50"),
        "{text}"
    );
}

#[test]
fn run_content_sniff_rejects_fake_png_and_accepts_real_one() {
    let sniff = path(plugin_path("content-sniff"));
    let (code, text) = airlock(&["plugin", "run", &sniff, &path(fixture("fake-png.png"))]);
    assert_eq!(code, 2, "{text}");
    let (code, text) = airlock(&["plugin", "run", &sniff, &path(fixture("picture.png"))]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn run_json_reports_usage() {
    let (code, text) = airlock(&[
        "plugin",
        "run",
        &path(plugin_path("thumbnail")),
        &path(fixture("picture.png")),
        "--json",
    ]);
    assert_eq!(code, 0, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["outcome"]["result"], "derived", "{json}");
    assert!(json["report"]["fuel_used"].as_u64().unwrap() > 0);
    assert_eq!(
        json["report"]["read_bytes"],
        fixture_bytes("picture.png").len()
    );
}

#[test]
fn run_with_a_budget_file_and_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("budget.toml");
    std::fs::write(&good, "fuel = 5000000\ntimeout_ms = 100\n").unwrap();
    let (code, text) = airlock(&[
        "plugin",
        "run",
        &path(plugin_path("infinite-loop")),
        &path(fixture("picture.png")),
        "--budget",
        &path(good),
    ]);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("fuel"), "{text}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "fuel = 1\nfule = 2\n").unwrap();
    let (code, text) = airlock(&[
        "plugin",
        "run",
        &path(plugin_path("trivial")),
        &path(fixture("picture.png")),
        "--budget",
        &path(bad),
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("fule"), "names the unknown key: {text}");
}

#[test]
fn run_writes_derived_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = airlock(&[
        "plugin",
        "run",
        &path(plugin_path("thumbnail")),
        &path(fixture("photo-with-gps.jpg")),
        "--out",
        &path(dir.path().to_path_buf()),
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(image::open(dir.path().join("thumbnail.png")).is_ok());
}

#[test]
fn check_reports_world_and_refuses_escapes() {
    let (code, text) = airlock(&["plugin", "check", &path(plugin_path("thumbnail"))]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("world:   extension"), "{text}");
    let (code, text) = airlock(&["plugin", "check", &path(plugin_path("wasi-escape"))]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("wasi:filesystem"), "{text}");
}

#[test]
fn serve_with_a_bad_config_fails_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("airlock.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\n[cache]\nbackend = \"memcached\"\n",
    )
    .unwrap();
    let (code, text) = airlock(&["serve", "--config", &path(config.clone())]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("memcached") && text.contains("backend"),
        "{text}"
    );
    // Unauthenticated on a public address is refused too.
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"0.0.0.0:0\"\n[storage]\npath = {:?}\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let (code, text) = airlock(&["serve", "--config", &path(config)]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("loopback"), "{text}");
}

#[test]
fn logs_written_to_a_pipe_have_no_colour_codes() {
    // As `airlock` runs it (stderr piped), minus a NO_COLOR that would hide
    // the difference. The panic plugin logs an error line before it traps.
    let out = std::process::Command::new(compiler())
        .args([
            "plugin",
            "run",
            &path(plugin_path("panic")),
            &path(fixture("picture.png")),
        ])
        .env("RUST_LOG", "error")
        .env_remove("NO_COLOR")
        .output()
        .expect("run airlock");
    let logs = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{logs}");
    assert!(logs.contains("ERROR"), "no log line was written: {logs}");
    assert!(
        !logs.contains("\x1b["),
        "colour codes in piped logs: {logs:?}"
    );
}
