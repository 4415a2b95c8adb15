//! The property the `status_answer` fuzz target checks, shared with `tests/fuzz_corpus.rs`
//! (which replays the kept corpus under `cargo test`): whatever bytes another node answers,
//! `haplane status` reads them (HTTP response, then its daemon's `/status` JSON and its etcd
//! member's `/health` and `/v3/maintenance/status` JSON) without a panic, prints a table whose
//! every line is free of control characters (a hostile node must not move the cursor, recolour
//! or add rows in the operator's terminal), one row per node, and its `--json` form.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use lab::http::parse_response;
use lab::status::{Target, gather, render_table};

/// Panics when `data`, as every answer of two nodes, breaks the property.
pub fn status_answer(data: &[u8]) {
    let answer = parse_response(data).ok();
    let target = |name: &str, last: u8| {
        let address = IpAddr::V4(Ipv4Addr::new(192, 0, 2, last));
        let answer = answer.clone();
        Target {
            name: name.to_string(),
            address,
            role: "master".to_string(),
            status_addr: SocketAddr::new(address, 9100),
            etcd_addr: Some(SocketAddr::new(address, 2379)),
            vip_present: Some(last == 11),
            fetch: Box::new(move |_, _, _, _| answer.clone()),
        }
    };
    let vip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
    let view = gather("fuzz", vip, &[target("m1", 11), target("m2", 12)]);
    let table = render_table(&view);
    for line in table.lines() {
        assert!(
            !line.chars().any(char::is_control),
            "a control character reaches the terminal: {line:?}"
        );
    }
    assert_eq!(
        table.lines().count(),
        1 + view.nodes.len() + 2 + view.election_leaders.len(),
        "rows added or lost:\n{table}"
    );
    serde_json::to_string(&view).expect("the --json view renders");
}
