//! `haplane plan` validates with the cluster file's rules (crates/config/tests/rules.rs and
//! deploy_rules.rs test each one); here only that render refuses what they reject.

use std::path::Path;

const GOOD: &str = r#"
cluster: demo
nodes:
  - {name: m1, address: 192.0.2.11, priority: 120}
  - {name: m2, address: 192.0.2.12, priority: 110}
  - {name: m3, address: 192.0.2.13, priority: 100}
vip:
  address: 192.0.2.100/24
  vrid: 51
"#;

#[test]
fn plan_validates_with_exactly_the_cluster_files_rules() {
    for text in [
        GOOD.to_string(),
        GOOD.replace("vrid: 51", "vrid: 0"),
        GOOD.to_string() + "apiServer: {port: 2379}\n",
    ] {
        let c = plan::parse(&text, Path::new("c.yaml")).unwrap();
        assert_eq!(plan::validate(&c), c.validate());
    }
}

#[test]
fn render_refuses_an_inventory_with_errors() {
    let text =
        GOOD.replace("  - {name: m3, address: 192.0.2.13, priority: 100}\n", "") + "etcd: {}\n";
    let c = plan::parse(&text, Path::new("c.yaml")).unwrap();
    let e = plan::render(&c, &plan::PlanOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("etcd has 2 members"), "{e}");
}
