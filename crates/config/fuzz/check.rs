//! The property the `cluster` fuzz target checks, shared with `tests/fuzz_corpus.rs` (which
//! replays the kept corpus under `cargo test`): arbitrary bytes through parse + every rule
//! return a value or a clear error, never panic; a file that is accepted renders back
//! (`to_yaml`, what `haplane import` prints) to a file that is accepted again and means the same.

use std::path::Path;

use config::Cluster;

/// Panics when `data` breaks the property.
pub fn cluster(data: &[u8]) {
    let path = Path::new("cluster.yaml");
    match Cluster::from_bytes(data, path) {
        Ok((cluster, _warnings)) => {
            let yaml = cluster.to_yaml();
            let (again, _) = Cluster::from_yaml(&yaml, path)
                .unwrap_or_else(|e| panic!("the rendered file is refused: {e}\n{yaml}"));
            assert_eq!(
                again, cluster,
                "the rendered file means something else:\n{yaml}"
            );
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty(), "an error without a message");
        }
    }
}
