//! Issue 13's rule for errors, checked over the workspace's sources: a variant either shows
//! its cause in its message or returns it from `source()`, never both. (Both made every
//! printer de-duplicate substrings; `haplane` now prints `{:#}` of the chain as it is.)
//! thiserror makes a field a source when it is named `source` or marked `#[source]` or
//! `#[from]`; `#[error(transparent)]` forwards both and is fine.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "target" && n != "fuzz") {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Each `#[error(...)]` variant as (message, body): the attribute's text and what follows
/// up to the variant's end (its fields).
fn variants(src: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find("#[error(") {
        let after = &rest[i + 8..];
        let Some(end) = after.find(")]") else { break };
        let message = after[..end].to_string();
        let body_start = &after[end + 2..];
        // The variant ends at the first `,` at depth 0 after its name and fields.
        let mut depth = 0i32;
        let mut stop = body_start.len();
        for (k, c) in body_start.char_indices() {
            match c {
                '{' | '(' => depth += 1,
                '}' | ')' => {
                    depth -= 1;
                    if depth < 0 {
                        stop = k;
                        break;
                    }
                }
                ',' if depth == 0 => {
                    stop = k;
                    break;
                }
                _ => {}
            }
        }
        out.push((message, body_start[..stop].to_string()));
        rest = body_start;
    }
    out
}

fn breaks_the_rule(message: &str, body: &str) -> bool {
    if message.contains("transparent") {
        return false;
    }
    let named_source = body
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .any(|w| w == "source:")
        || body.contains("source :");
    let is_source = named_source || body.contains("#[source]") || body.contains("#[from]");
    let shows = message.contains("{source")
        || ((body.contains("#[from]") || body.contains("#[source]")) && message.contains("{0"));
    is_source && shows
}

#[test]
fn no_error_variant_both_shows_and_returns_its_source() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(
        files.len() > 50,
        "found the workspace's sources ({})",
        files.len()
    );
    let mut offenders = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (message, body) in variants(&text) {
            if breaks_the_rule(&message, &body) {
                offenders.push(format!(
                    "{}: #[error({message})] {}",
                    f.display(),
                    body.trim()
                ));
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

#[test]
fn the_rule_catches_both_kinds_of_double_cause() {
    assert!(breaks_the_rule(
        "\"cannot read {path}: {source}\"",
        " Read { path: PathBuf, source: std::io::Error }"
    ));
    assert!(breaks_the_rule(
        "\"netlab: {0}\"",
        " Netlab(#[from] netlab::Error)"
    ));
    assert!(!breaks_the_rule(
        "\"cannot read {path}: {error}\"",
        " Read { path: PathBuf, error: std::io::Error }"
    ));
    assert!(!breaks_the_rule(
        "transparent",
        " Config(#[from] ConfigError)"
    ));
}
