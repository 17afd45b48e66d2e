//! `skiff info`: the host report (`runtime::host`), as text or JSON.

use super::{Context, Format, print_json};
use anyhow::Result;
use skiff::runtime::host;

pub fn run(ctx: &Context) -> Result<()> {
    let report = host::report(&ctx.root);
    // Through a JSON value: its keys come out sorted, as skiff info has always shown them.
    let value = serde_json::to_value(&report)?;
    if ctx.format == Format::Json {
        return print_json(&value);
    }
    for (k, v) in value.as_object().expect("object") {
        if k == "hints" {
            continue;
        }
        outln!(
            "{k:>22}: {}",
            match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            }
        );
    }
    for h in &report.hints {
        outln!("hint: {h}");
    }
    Ok(())
}
