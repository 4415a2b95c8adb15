//! The `cluster` fuzz target's kept corpus (`fuzz/corpus/cluster`, minimised by `scripts/fuzz
//! cmin`) replayed on stable: every input parses and validates to a cluster or a clear error,
//! without a panic, and every accepted one survives the render round trip (`fuzz/check.rs`).

use std::path::Path;

#[path = "../fuzz/check.rs"]
mod check;

/// The kept corpus `fuzz/corpus/cluster`, sorted.
fn corpus() -> Vec<std::path::PathBuf> {
    testkit::corpus(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/cluster"),
        50,
    )
}

#[test]
fn every_kept_fuzz_input_is_a_cluster_or_a_clear_error() {
    testkit::replay(&corpus(), check::cluster);
}

#[test]
fn the_corpus_holds_accepted_files_and_refused_ones() {
    // A corpus of only garbage would not exercise the rules or the round trip.
    let (mut ok, mut err) = (0, 0);
    for f in corpus() {
        match config::Cluster::from_bytes(&std::fs::read(&f).unwrap(), &f) {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
    }
    assert!(ok >= 5 && err >= 5, "accepted {ok}, refused {err}");
}

#[test]
fn bytes_that_are_not_utf8_are_refused_naming_the_offset() {
    let err = config::Cluster::from_bytes(b"cluster: a\xff\n", Path::new("c.yaml")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "c.yaml: not UTF-8 text (invalid byte at offset 10)"
    );
}
