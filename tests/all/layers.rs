//! The crate's layers point one way: domain (budget, cache, storage,
//! runtime, supervisor, auth, upload) below the configuration, below the
//! wiring (assemble, admin, app), below the transport (http). A module may
//! only import modules ranked below it, so no cycle can form.

use std::path::{Path, PathBuf};

use crate::common::root;

/// Every top-level module of `host/src`, lowest first.
const RANKS: &[&str] = &[
    "text",
    "budget",
    "cache",
    "lock",
    "storage",
    "jobs",
    "auth",
    "runtime",
    "metrics",
    "supervisor",
    "upload",
    "resumable",
    "config",
    "assemble",
    "admin",
    "app",
    "http",
    "loadgen",
];

fn rank(module: &str) -> usize {
    // The WIT bindings are the runtime's (`bindgen!` names its handle type).
    let module = if module == "bindings" {
        "runtime"
    } else {
        module
    };
    RANKS
        .iter()
        .position(|m| *m == module)
        .unwrap_or_else(|| panic!("module `{module}` has no rank in tests/all/layers.rs"))
}

fn sources(path: &Path) -> Vec<PathBuf> {
    if path.is_dir() {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(path).unwrap() {
            out.extend(sources(&entry.unwrap().path()));
        }
        out
    } else if path.extension().is_some_and(|e| e == "rs") {
        vec![path.to_path_buf()]
    } else {
        Vec::new()
    }
}

#[test]
fn no_module_imports_one_above_it() {
    let src = root().join("host/src");
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        if ["lib", "main", "cli"].contains(&name.as_str()) {
            continue;
        }
        let own = rank(&name);
        for file in sources(&path) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (at, _) in text.match_indices("crate::") {
                let used: String = text[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !used.is_empty() && rank(&used) > own {
                    wrong.push(format!("{} imports crate::{used}", file.display()));
                }
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}
