//! `vip.authHmac` and the secrets rules: keepalived 2.4's defaults, errors that name the key
//! but never its value, and the audit of files that hold secrets (`haplane check`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use config::{AntiReplay, Cluster, ConfigError, HmacMode, Severity, audit_secret_files};

const KEY1: &str = "hex:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn cluster(auth: &str) -> String {
    format!(
        r#"
cluster: demo
nodes:
  - {{name: m1, address: 192.0.2.11, priority: 110}}
  - {{name: m2, address: 192.0.2.12}}
  - {{name: m3, address: 192.0.2.13, priority: 90}}
vip:
  address: 192.0.2.100/24
  vrid: 51
  advertInterval: 100ms
{auth}"#
    )
}

fn load(text: &str) -> Result<(Cluster, Vec<config::Finding>), ConfigError> {
    Cluster::from_yaml(text, Path::new("cluster.yaml"))
}

fn error_text(text: &str) -> String {
    match load(text) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted:\n{text}"),
    }
}

#[test]
fn one_key_gets_keepalived_defaults() {
    let (c, warnings) = load(&cluster(&format!(
        "  authHmac:\n    keys:\n      1: \"{KEY1}\"\n"
    )))
    .unwrap();
    let h = c.vip.auth_hmac.unwrap();
    assert_eq!(h.active(), Some(1), "the only key signs");
    assert_eq!(h.anti_replay, AntiReplay::Time);
    assert_eq!(h.mode, HmacMode::Enforce);
    // max(3 × 100 ms, 5 s)
    assert_eq!(h.window(Duration::from_millis(100)), Duration::from_secs(5));
    assert_eq!(h.window(Duration::from_secs(3)), Duration::from_secs(9));
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn every_key_of_the_block_parses() {
    let text = cluster(&format!(
        "  authHmac:\n    keys:\n      1: \"{KEY1}\"\n      2: an-ascii-key-of-forty-characters-123456\n      3: file:/etc/haplane/vrrp3.key\n    activeKey: 2\n    antiReplay: monotonic\n    mode: receive-only\n"
    ));
    let (c, warnings) = load(&text).unwrap();
    let h = c.vip.auth_hmac.clone().unwrap();
    assert_eq!(h.keys.len(), 3);
    assert_eq!(h.active(), Some(2));
    assert_eq!(h.mode, HmacMode::ReceiveOnly);
    assert!(
        warnings.iter().any(|w| w.path == "vip.authHmac.mode"),
        "{warnings:?}"
    );
    // Rendering keeps the keys as written (haplane import writes them out).
    let again = load(&c.to_yaml()).unwrap().0;
    assert_eq!(again, c);
}

#[test]
fn bad_keys_are_named_without_their_value() {
    let short = cluster("  authHmac:\n    keys:\n      1: hunter2hunter2\n");
    let e = error_text(&short);
    assert!(e.contains("vip.authHmac.keys.1: key 1: 14 bytes"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let hex = cluster(
        "  authHmac:\n    keys:\n      4: hex:zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
    );
    let e = error_text(&hex);
    assert!(
        e.contains("vip.authHmac.keys.4") && !e.contains("0102"),
        "{e}"
    );
    let rel = cluster("  authHmac:\n    keys:\n      1: file:keys/vrrp\n");
    assert!(error_text(&rel).contains("must be an absolute path"));
    let zero = cluster(&format!("  authHmac:\n    keys:\n      0: \"{KEY1}\"\n"));
    assert!(error_text(&zero).contains("vip.authHmac.keys.0: key ids are 1..=255"));
}

#[test]
fn the_active_key_must_exist_and_be_named_when_there_are_several() {
    let two = format!("  authHmac:\n    keys:\n      1: \"{KEY1}\"\n      2: file:/k2\n");
    assert!(error_text(&cluster(&two)).contains("vip.authHmac.activeKey: several keys"));
    let missing = format!("  authHmac:\n    keys:\n      1: \"{KEY1}\"\n    activeKey: 3\n");
    assert!(error_text(&cluster(&missing)).contains("vip.authHmac.activeKey: 3 is not one of"));
}

#[test]
fn the_time_window_is_whole_seconds_up_to_300() {
    for w in ["0s", "301s", "1.5s"] {
        let t = format!("  authHmac:\n    keys:\n      1: \"{KEY1}\"\n    timeWindow: {w}\n");
        assert!(
            error_text(&cluster(&t)).contains("vip.authHmac.timeWindow"),
            "{w}"
        );
    }
}

/// keepalived: auth_hmac and the authentication block exclude each other.
#[test]
fn auth_pass_and_auth_hmac_exclude_each_other() {
    let t = format!("  version: 2\n  advertInterval: 1s\n  authPass: secret\n  authHmac:\n    keys:\n      1: \"{KEY1}\"\n")
        .replace("  advertInterval: 100ms\n", "");
    let text = cluster(&t).replace("  advertInterval: 100ms\n", "");
    let e = error_text(&text);
    assert!(
        e.contains("vip.authPass: authPass and authHmac exclude each other"),
        "{e}"
    );
    assert!(!e.contains("secret\n") && !e.contains(": secret"), "{e}");
}

#[test]
fn debug_output_of_a_cluster_never_shows_a_secret() {
    let t = format!(
        "  authHmac:\n    keys:\n      1: \"{KEY1}\"\n      2: file:/run/credentials/haplane.service/vrrp2\n    activeKey: 1\n"
    );
    let (c, _) = load(&cluster(&t)).unwrap();
    let text = format!("{c:?}");
    assert!(!text.contains("0102030405"), "{text}");
    assert!(
        text.contains("file:/run/credentials"),
        "file names are not secret: {text}"
    );
    let v2 =
        cluster("  version: 2\n  authPass: s3cr3tpw\n").replace("  advertInterval: 100ms\n", "");
    let (c, _) = load(&v2).unwrap();
    assert!(!format!("{c:?}").contains("s3cr3tpw"));
}

/// `status.listen` away from loopback shows the cluster's state to the network: a warning.
#[test]
fn a_status_port_off_loopback_warns() {
    let (_, w) = load(&(cluster("") + "status: {listen: \"0.0.0.0:9470\"}\n")).unwrap();
    assert!(
        w.iter()
            .any(|f| f.path == "status.listen" && f.message.contains("not a loopback")),
        "{w:?}"
    );
    let (_, w) = load(&(cluster("") + "status: {listen: \"[::1]:9470\"}\n")).unwrap();
    assert!(w.is_empty(), "{w:?}");
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `haplane check`: a key file or a cluster file with inline secrets that its group or other
/// users can read is a warning; a key file that cannot be used is an error. No finding shows a key.
#[test]
fn secret_files_readable_by_group_or_others_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vrrp2.key");
    std::fs::write(&key, "haplane-fixture-rotation-key-number-two\n").unwrap();
    let file = dir.path().join("cluster.yaml");
    let text = cluster(&format!(
        "  authHmac:\n    keys:\n      1: \"{KEY1}\"\n      2: file:{}\n      3: file:{}\n    activeKey: 1\n",
        key.display(),
        dir.path().join("missing.key").display()
    ));
    std::fs::write(&file, &text).unwrap();
    let (c, _) = load(&text).unwrap();

    chmod(&key, 0o644);
    chmod(&file, 0o644);
    let found = audit_secret_files(&c, &file);
    let at = |p: &str, s: Severity| found.iter().any(|f| f.path == p && f.severity == s);
    assert!(at("vip.authHmac.keys.1", Severity::Warning), "{found:#?}");
    assert!(at("vip.authHmac.keys.2", Severity::Warning), "{found:#?}");
    assert!(at("vip.authHmac.keys.3", Severity::Error), "{found:#?}");
    for f in &found {
        assert!(
            !f.message.contains("haplane-fixture") && !f.message.contains("0102030405"),
            "{f}"
        );
    }
    // Group-readable is readable by someone else too (the daemon runs as root).
    chmod(&key, 0o640);
    chmod(&file, 0o640);
    let found = audit_secret_files(&c, &file);
    let at = |p: &str| {
        found
            .iter()
            .any(|f| f.path == p && f.severity == Severity::Warning)
    };
    assert!(
        at("vip.authHmac.keys.1") && at("vip.authHmac.keys.2"),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|f| f.message.contains("mode 0640")),
        "{found:#?}"
    );
    chmod(&key, 0o600);
    chmod(&file, 0o600);
    let found = audit_secret_files(&c, &file);
    assert_eq!(found.len(), 1, "only the missing file is left: {found:#?}");
}

/// The parser's snippet of the lines around a syntax error would quote a secret on one of
/// them; the error shows those lines redacted, and still points at the line.
#[test]
fn a_parse_error_next_to_a_secret_does_not_quote_it() {
    let block = cluster(&format!(
        "  authPass: s3cr3tpw\n  authHmac:\n    keys:\n      1: \"{KEY1}\"\n  bogus: 1\n"
    ));
    let flow = "cluster: demo\nnodes:\n  - {name: m1, address: 192.0.2.11}\nvip: {address: 192.0.2.100/24, vrid: 51, authPass: s3cr3tpw, bogus: 1}\n";
    // The error is in the secret itself: an invalid escape inside the quoted key.
    let inside =
        cluster("  authHmac:\n    keys:\n      1: \"s3cr3tpw-s3cr3tpw-s3cr3tpw-s3cr3tpw\\q\"\n");
    for text in [block.as_str(), flow, inside.as_str()] {
        let message = error_text(text);
        assert!(
            !message.contains("s3cr3tpw") && !message.contains("0102030405"),
            "{message}"
        );
        assert!(message.contains("line "), "{message}");
        assert!(message.contains("<redacted>"), "{message}");
    }
    assert!(
        error_text(&block).contains("bogus: 1"),
        "the error line itself is shown"
    );
}
