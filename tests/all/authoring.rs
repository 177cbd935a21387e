//! A plugin author's round trip, as the README and the guide show it, in
//! an empty directory outside the repo: `airlock plugin new`, edit one
//! line, `airlock plugin build`, `airlock plugin test` (which must catch
//! the edit until the fixture says the same), and the built component
//! running in `airlock serve`. For Rust (processor and extension) and
//! JavaScript (componentize-js from npm).

use std::path::{Path, PathBuf};
use std::process::Command;

use airlock::budget::Budget;
use airlock::config::FailurePolicy;
use airlock::runtime::HookKind;

use crate::common::*;
use crate::harness::{self, Backends};
use crate::served::ServeSetup;

/// `airlock` with `args` in `dir`; exit code and output. Rust projects
/// share one cargo target dir under the cache, so only the first build of
/// a run (or a machine) builds std.
fn airlock_in(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = airlock_output(dir, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Where these tests keep what outlives a run (build outputs, compiled
/// components).
fn cache() -> PathBuf {
    std::env::var_os("AIRLOCK_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("airlock-cache"))
}

/// [`airlock_in`]'s process output, stdout and stderr apart.
fn airlock_output(dir: &Path, args: &[&str]) -> std::process::Output {
    let cache = cache();
    Command::new(compiler())
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", cache.join("plugin-projects-target"))
        .env("XDG_CACHE_HOME", cache.join("authoring-xdg"))
        .output()
        .unwrap()
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// `plugin test --json`: (passed, failed).
fn test_json(dir: &Path) -> (u64, u64, serde_json::Value) {
    let out = airlock_output(dir, &["plugin", "test", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        report["passed"].as_u64().unwrap(),
        report["failed"].as_u64().unwrap(),
        report,
    )
}

/// New, edit, build, test (failing on the edit, then passing), and the
/// component in `airlock serve` answering an upload with the edited value.
async fn round_trip(lang: &str, source: &str, from: &str, to: &str) {
    let home = tempfile::tempdir().unwrap();
    let (code, out) = airlock_in(
        home.path(),
        &[
            "plugin",
            "new",
            "hello",
            "--world",
            "processor",
            "--lang",
            lang,
        ],
    );
    assert_eq!(code, 0, "{out}");
    let project = home.path().join("hello");
    edit(&project.join(source), from, to);

    let (code, out) = airlock_in(&project, &["plugin", "build"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("world:   processor"), "{out}");
    assert!(out.contains("airlock:plugin/log@"), "{out}");
    let component = project.join("dist/hello.wasm");
    assert!(component.is_file());

    // The fixture still expects "hello": the test names the difference.
    let (code, out) = airlock_in(&project, &["plugin", "test"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("metadata 'greeting' is 'hi', expected 'hello'"),
        "{out}"
    );
    let (passed, failed, _) = test_json(&project);
    assert_eq!((passed, failed), (1, 1));

    edit(
        &project.join("fixtures/hello.txt.toml"),
        "greeting = \"hello\"",
        "greeting = \"hi\"",
    );
    let (code, out) = airlock_in(&project, &["plugin", "test"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("hello: 2 passed, 0 failed"), "{out}");
    let (passed, failed, report) = test_json(&project);
    assert_eq!((passed, failed), (2, 0), "{report}");
    assert!(report["cases"][0]["fuel"].as_u64().unwrap() > 0, "{report}");

    // The built component, as an operator would run it.
    let setup = ServeSetup::new(Backends::Local, |config| {
        // The harness's entry for a repo plugin, made this one's.
        let mut entry = harness::plugin(
            "trivial",
            HookKind::Processor,
            5,
            FailurePolicy::FailClosed,
            Budget::default(),
        );
        entry.name = "hello".into();
        entry.component = component.clone();
        config.plugins = vec![entry];
        // The compiled component `plugin build` left in the CLI's cache: a
        // JavaScript component takes 10-20 s of CPU to compile, too long
        // for the harness's start-up wait on a busy machine.
        config.runtime.compiled_cache_dir = Some(cache().join("authoring-xdg/airlock/compiled"));
    });
    let server = setup.serve("authoring").await;
    let response = reqwest::Client::new()
        .post(server.url("/v1/uploads?filename=hello.txt"))
        .bearer_auth(harness::ALICE)
        .header("content-type", "text/plain")
        .body("hello, airlock\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", server.log());
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["metadata"]["greeting"], "hi", "{body}");
    let empty = reqwest::Client::new()
        .post(server.url("/v1/uploads?filename=empty.txt"))
        .bearer_auth(harness::ALICE)
        .header("content-type", "text/plain")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 422, "{}", server.log());
}

#[tokio::test]
async fn a_rust_processor_from_new_to_serve() {
    round_trip(
        "rust",
        "src/lib.rs",
        ".with(\"greeting\", \"hello\")",
        ".with(\"greeting\", \"hi\")",
    )
    .await;
}

#[tokio::test]
async fn a_javascript_processor_from_new_to_serve() {
    round_trip(
        "js",
        "src/plugin.js",
        "[['greeting', 'hello']]",
        "[['greeting', 'hi']]",
    )
    .await;
}

/// An extension project passes its own tests as written.
#[tokio::test]
async fn a_rust_extension_builds_and_passes_its_fixtures() {
    let home = tempfile::tempdir().unwrap();
    let (code, out) = airlock_in(
        home.path(),
        &["plugin", "new", "summary", "--world", "extension"],
    );
    assert_eq!(code, 0, "{out}");
    let project = home.path().join("summary");
    let (code, out) = airlock_in(&project, &["plugin", "build"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("world:   extension"), "{out}");
    let (code, out) = airlock_in(&project, &["plugin", "test"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("summary: 2 passed, 0 failed"), "{out}");
}

/// What an author gets wrong gets a message naming it.
#[tokio::test]
async fn mistakes_are_named() {
    let home = tempfile::tempdir().unwrap();
    let (code, out) = airlock_in(
        home.path(),
        &["plugin", "new", "Bad_Name", "--world", "processor"],
    );
    assert_ne!(code, 0);
    assert!(out.contains("invalid plugin name 'Bad_Name'"), "{out}");
    let (code, out) = airlock_in(
        home.path(),
        &["plugin", "new", "x", "--world", "middleware"],
    );
    assert_ne!(code, 0);
    assert!(out.contains("unknown world 'middleware'"), "{out}");
    let (code, out) = airlock_in(home.path(), &["plugin", "build"]);
    assert_ne!(code, 0);
    assert!(out.contains("not a plugin project"), "{out}");

    let (code, out) = airlock_in(
        home.path(),
        &["plugin", "new", "early", "--world", "processor"],
    );
    assert_eq!(code, 0, "{out}");
    let project = home.path().join("early");
    let (code, out) = airlock_in(&project, &["plugin", "test"]);
    assert_ne!(code, 0);
    assert!(
        out.contains("is not built yet: run `airlock plugin build` first"),
        "{out}"
    );
    let (code, out) = airlock_in(
        home.path(),
        &["plugin", "new", "early", "--world", "processor"],
    );
    assert_ne!(code, 0);
    assert!(out.contains("already exists and is not empty"), "{out}");
}

/// The JavaScript example in `plugins/` builds and passes its fixtures
/// (accepts `report.pdf`; rejects a double extension, a path and a bidi
/// override in the client's file name).
#[tokio::test]
async fn the_javascript_example_plugin_passes_its_fixtures() {
    let project = root().join("plugins/filename-policy-js");
    // It is laid out as `plugin new --lang js` makes a project: the same
    // build script.
    let script = std::fs::read_to_string(project.join("build.mjs")).unwrap();
    let template =
        std::fs::read_to_string(root().join("host/templates/plugin/js/build.mjs")).unwrap();
    assert!(
        script == template,
        "plugins/filename-policy-js/build.mjs differs from the template: \
         cp host/templates/plugin/js/build.mjs plugins/filename-policy-js/"
    );
    let (code, out) = airlock_in(&project, &["plugin", "build"]);
    assert_eq!(code, 0, "{out}");
    let (passed, failed, report) = test_json(&project);
    assert_eq!((passed, failed), (4, 0), "{report}");
}
