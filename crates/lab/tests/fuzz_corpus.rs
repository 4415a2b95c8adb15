//! The `status_answer` fuzz target's kept corpus (`fuzz/corpus/status_answer`, minimised by
//! `scripts/fuzz cmin`) replayed on stable: whatever another node answers, `haplane status`
//! reads it without a panic and prints a table without control characters, one row per node
//! (`fuzz/check.rs`).

use std::path::Path;

use lab::http::{Response, parse_response};
use lab::status::{DaemonStatus, read_daemon_status};

#[path = "../fuzz/check.rs"]
mod check;

#[test]
fn every_kept_answer_is_read_without_a_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/status_answer");
    testkit::replay(&testkit::corpus(&dir, 5), check::status_answer);
}

#[test]
fn a_hostile_node_cannot_write_control_characters_to_the_operators_terminal() {
    // Found while writing the fuzz property: states and election names from another node's
    // /status went to the table verbatim, ESC sequences and newlines included.
    let body = r#"{"vrrp":[{"state":"MASTER\u001b[2J\nm9  master  fake","holds_vip":true}],
        "elections":[{"name":"sched\u001b]0;owned\u0007","role":"leader","leader":"m1\r"}]}"#;
    check::status_answer(format!("HTTP/1.0 200 OK\r\n\r\n{body}").as_bytes());
}

#[test]
fn a_daemon_answer_is_read_field_by_field() {
    let r = parse_response(
        b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"vrrp\":[{\"state\":\"BACKUP\",\
          \"effective_priority\":90,\"holds_vip\":false}],\"load_balancer\":{\"backends\":\
          [{\"up\":true},{\"up\":false}]},\"elections\":[{\"name\":\"scheduler\",\"role\":\"leader\",\
          \"leader\":\"m2@192.0.2.12\"}],\"fence\":{\"current_holder\":\"m1\"}}",
    )
    .unwrap();
    let d = read_daemon_status(&r).unwrap();
    assert_eq!(
        d,
        DaemonStatus {
            runs: None,
            vrrp_state: Some("BACKUP".into()),
            priority: Some(90),
            holds_vip: false,
            lb: Some((1, 2)),
            leads: vec!["scheduler".into()],
            leaders: vec![
                ("scheduler".into(), "m2@192.0.2.12".into()),
                ("vip-fence".into(), "m1".into())
            ],
            fence: Some(status_api::Fence {
                current_holder: Some("m1".into()),
                ..Default::default()
            }),
            etcd_client: None,
        }
    );
    let not_ok = Response {
        status: 503,
        body: "{}".into(),
    };
    assert_eq!(read_daemon_status(&not_ok), None, "only a 200 is an answer");
    assert!(parse_response(b"garbage").is_err(), "no status line");
}
