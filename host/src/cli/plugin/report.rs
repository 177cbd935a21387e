//! What `airlock plugin run` shows of an invocation: its outputs written to
//! files, and its outcome and budget use as a table or JSON.

use std::path::Path;

use anyhow::Context;

use airlock::budget::Limit;
use airlock::runtime::{HookOutput, InvokeError, Verdict};

pub(super) fn write_outputs(dir: &Path, output: &HookOutput) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let files: Vec<(String, &[u8])> = match output {
        HookOutput::Verdict(Verdict::Replace { bytes, .. }) => vec![("replacement".into(), bytes)],
        HookOutput::Derived(items) => items
            .iter()
            .map(|d| (d.name.clone(), d.bytes.as_ref()))
            .collect(),
        HookOutput::Verdict(_) => Vec::new(),
    };
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn outcome_json(outcome: &Result<HookOutput, InvokeError>) -> serde_json::Value {
    use serde_json::json;
    match outcome {
        Ok(HookOutput::Verdict(Verdict::Accept { metadata })) => {
            json!({ "result": "accept", "metadata": metadata })
        }
        Ok(HookOutput::Verdict(Verdict::Reject { reason })) => {
            json!({ "result": "reject", "reason": reason })
        }
        Ok(HookOutput::Verdict(Verdict::Replace {
            bytes,
            content_type,
            metadata,
        })) => json!({
            "result": "replace", "content_type": content_type, "size": bytes.len(), "metadata": metadata,
        }),
        Ok(HookOutput::Derived(items)) => json!({
            "result": "derived",
            "derived": items.iter().map(|d| json!({
                "name": d.name, "content_type": d.content_type, "size": d.bytes.len(),
            })).collect::<Vec<_>>(),
        }),
        Err(e) => json!({ "result": "error", "message": e.to_string(), "error": e }),
    }
}

pub(super) fn report_json(
    name: &str,
    plugin: &airlock::runtime::Plugin,
    invocation: &airlock::runtime::Invocation,
) -> serde_json::Value {
    serde_json::json!({
        "plugin": name,
        "world": plugin.hook().world(),
        "outcome": outcome_json(&invocation.outcome),
        "report": invocation.report,
    })
}

pub(super) fn print_report(
    name: &str,
    plugin: &airlock::runtime::Plugin,
    invocation: &airlock::runtime::Invocation,
) {
    println!("plugin {name} ({})", plugin.hook().world());
    match &invocation.outcome {
        Ok(HookOutput::Verdict(Verdict::Accept { metadata })) => {
            println!("accepted");
            for (k, v) in metadata {
                println!("  {k} = {v}");
            }
        }
        Ok(HookOutput::Verdict(Verdict::Reject { reason })) => println!("rejected: {reason}"),
        Ok(HookOutput::Verdict(Verdict::Replace {
            bytes,
            content_type,
            metadata,
        })) => {
            println!("replaced with {} bytes of {content_type}", bytes.len());
            for (k, v) in metadata {
                println!("  {k} = {v}");
            }
        }
        Ok(HookOutput::Derived(items)) => {
            println!("derived {} artifact(s)", items.len());
            for d in items {
                println!("  {} ({}, {} bytes)", d.name, d.content_type, d.bytes.len());
            }
        }
        Err(e @ InvokeError::BudgetExceeded { .. }) => println!("STOPPED: {e}"),
        Err(e) => println!("error: {e}"),
    }
    let report = &invocation.report;
    let hit = invocation
        .outcome
        .as_ref()
        .err()
        .and_then(InvokeError::limit);
    println!("budget:");
    for limit in Limit::ALL {
        let used = report.used(limit);
        let used = used.map_or_else(|| "off".to_string(), |u| u.to_string());
        let mark = if hit == Some(limit) {
            "  <-- exceeded"
        } else {
            ""
        };
        println!(
            "  {:<18} {:>14} / {}{mark}",
            limit.key(),
            used,
            limit.allowed_in(&report.budget)
        );
    }
}
