//! The WIT as documentation, kept true: every copy of the contract that
//! travels with a plugin project equals `wit/airlock.wit`, and the
//! reference pages in `wit/reference/` are exactly what
//! `airlock plugin wit-docs` makes of it.

use crate::common::*;

#[test]
fn every_copy_of_the_wit_is_the_hosts() {
    let wit = std::fs::read_to_string(root().join("wit/airlock.wit")).unwrap();
    for copy in [
        "plugins/sdk/wit/airlock.wit",
        "plugins/filename-policy-js/wit/airlock.wit",
    ] {
        let text = std::fs::read_to_string(root().join(copy)).unwrap();
        assert!(
            text == wit,
            "{copy} differs from wit/airlock.wit: copy it over (cp wit/airlock.wit {copy})"
        );
    }
}

#[test]
fn the_reference_pages_are_generated_from_the_wit() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let (code, text) = airlock(&["plugin", "wit-docs", "--out", dir]);
    assert_eq!(code, 0, "{text}");
    let committed = root().join("wit/reference");
    let names = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        names(out.path()),
        names(&committed),
        "regenerate: airlock plugin wit-docs --out wit/reference"
    );
    for name in names(out.path()) {
        let made = std::fs::read_to_string(out.path().join(&name)).unwrap();
        let kept = std::fs::read_to_string(committed.join(&name)).unwrap();
        assert!(
            made == kept,
            "wit/reference/{name} is stale: regenerate with \
             `airlock plugin wit-docs --out wit/reference`"
        );
    }
    // Every interface has its page, with its functions.
    let cache = std::fs::read_to_string(committed.join("cache.md")).unwrap();
    for function in [
        "get", "set", "add", "wait", "delete", "get-many", "set-many",
    ] {
        assert!(cache.contains(&format!("### `{function}`")), "{function}");
    }
    let types = std::fs::read_to_string(committed.join("types.md")).unwrap();
    assert!(types.contains("#### `content.sha256`"), "{types}");
}
