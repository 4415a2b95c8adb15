//! The importer fuzz targets' kept corpora (`fuzz/corpus/keepalived`, `fuzz/corpus/haproxy`,
//! minimised by `scripts/fuzz cmin`) replayed on stable: every input imports into a cluster
//! file that parses back into the same cluster, or fails with a clear error, without a panic
//! (`fuzz/check.rs`). Inputs are given as text: includes are not read and server names resolve
//! from a fixed table, so no file or DNS answer outside the corpus changes the outcome.

use std::path::{Path, PathBuf};

#[path = "../fuzz/check.rs"]
mod check;

/// Every file of `fuzz/<kind>/<target>`, sorted (none when the directory does not exist).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Runs `check` on every input of `target`'s corpus and on the inputs the fuzzer found
/// crashing before their bug was fixed (`fuzz/regressions/<target>`, kept apart so `cmin`
/// never drops them); names the ones that panic.
fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = testkit::corpus(&fuzz.join("corpus").join(target), 50);
    files.extend(inputs("regressions", target));
    testkit::replay(&files, check);
}

#[test]
fn every_kept_keepalived_conf_imports_or_fails_clearly() {
    replay("keepalived", check::keepalived);
}

#[test]
fn every_kept_haproxy_cfg_imports_or_fails_clearly() {
    replay("haproxy", check::haproxy);
}

#[test]
fn a_file_given_as_text_imports_like_the_file_but_reports_its_includes() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import-corpus/seed004-lb-pair");
    let (k, h) = (case.join("keepalived.conf"), case.join("haproxy.cfg"));
    let from_files = plan::import(&k, Some(&h)).unwrap();
    let (kt, ht) = (
        std::fs::read_to_string(&k).unwrap(),
        std::fs::read_to_string(&h).unwrap(),
    );
    let from_text = plan::import_text(
        plan::Text {
            path: &k,
            text: &kt,
        },
        Some(plan::Text {
            path: &h,
            text: &ht,
        }),
        |_, _| Err(std::io::Error::other("no DNS here")),
    )
    .unwrap();
    assert_eq!(from_text.cluster, from_files.cluster);
    assert_eq!(from_text.cluster_yaml, from_files.cluster_yaml);

    let text = format!("include /etc/keepalived/extra.conf\n{kt}");
    let r = plan::import_text(
        plan::Text {
            path: &k,
            text: &text,
        },
        None,
        |_, _| Err(std::io::Error::other("no DNS here")),
    )
    .unwrap();
    assert!(
        r.unmapped
            .iter()
            .any(|u| u.line == 1 && u.reason.contains("includes are not read")),
        "{:?}",
        r.unmapped
    );
}

#[test]
fn control_characters_quoted_from_a_file_do_not_break_or_extend_the_imported_file() {
    // Found by the keepalived target (fuzz/regressions/keepalived/crash-98c675ae...): the
    // imported file quotes unmapped lines in comments, and YAML refuses a control character
    // even there; a CR ends a YAML line, so a quoted one could add a key.
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import-corpus/seed004-lb-pair");
    let k = case.join("keepalived.conf");
    let text = std::fs::read_to_string(&k).unwrap();
    let text = format!("unknown_key a\u{18}b\rcluster: injected\n{text}");
    let r = plan::import_text(
        plan::Text {
            path: &k,
            text: &text,
        },
        None,
        |_, _| Err(std::io::Error::other("no DNS here")),
    )
    .unwrap();
    let (again, _) = config::Cluster::from_yaml(&r.cluster_yaml, Path::new("imported.yaml"))
        .unwrap_or_else(|e| panic!("{e}\n{}", r.cluster_yaml));
    assert_eq!(again, r.cluster);
    assert_ne!(again.cluster, "injected");
    assert!(
        r.cluster_yaml
            .contains(r"unknown_key a\u{18}b\u{d}cluster: injected"),
        "{}",
        r.cluster_yaml
    );
}

#[test]
fn an_absurd_interval_falls_back_to_the_default_instead_of_an_unreadable_duration() {
    // Found by the keepalived target (fuzz/regressions/keepalived/crash-6222f9ce...): an
    // interval of 1.8e16 s saturated to u64::MAX ms, which the cluster file cannot hold, so
    // the imported file was refused. keepalived ignores an out-of-range value too.
    let case =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import-corpus/kubeadm-stacked-master");
    let k = case.join("keepalived.conf");
    let text = std::fs::read_to_string(&k)
        .unwrap()
        .replace("interval 3", "interval 18446744073709551615");
    assert!(text.contains("18446744073709551615"));
    let r = plan::import_text(
        plan::Text {
            path: &k,
            text: &text,
        },
        None,
        |_, _| Err(std::io::Error::other("no DNS here")),
    )
    .unwrap();
    check::keepalived(text.as_bytes());
    assert_eq!(r.cluster.vip.track[0].interval, config::Dur::from_secs(1));
}

#[test]
fn a_haproxy_time_too_long_for_the_cluster_file_is_not_imported_and_does_not_overflow() {
    // Found reading the haproxy reader while writing its target: `n * 1000` overflowed (a
    // panic in debug builds) for `timeout connect 18446744073709552s`, and a smaller but
    // absurd value became a duration the cluster file cannot hold.
    let cfg = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/import-corpus/seed004-lb-pair/haproxy.cfg"),
    )
    .unwrap();
    for t in [
        "18446744073709552s",
        "213503982334601d",
        "99999999999999999ms",
    ] {
        let text = cfg.replace("timeout connect 5s", &format!("timeout connect {t}"));
        assert!(text.contains(t), "the fixture sets timeout connect");
        check::haproxy(&[&[0u8][..], text.as_bytes()].concat());
    }
}
