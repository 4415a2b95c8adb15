//! `haplane demo`: the README's first command (lab up, drill every scenario with an HTML
//! report, the summary, lab down), or with --vrrp a two-node VRRP failover demo only.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use lab::{LabError, Scenario, drill, summary, up, view};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Only the two-node VRRP demo (elect, fail over, preempt, hand over).
    #[arg(long)]
    vrrp: bool,
    /// VRRP advert interval for the --vrrp demo.
    #[arg(long, default_value = "100ms", requires = "vrrp")]
    advert: String,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the haplane binary")?;
    if !args.vrrp {
        return lab_demo(exe);
    }
    let logs = std::env::temp_dir().join(format!("haplane-demo-{}", std::process::id()));
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    haplane::demo::run(&exe, &args.advert, &logs)?;
    Ok(ExitCode::SUCCESS)
}

/// `lab up`, `lab drill --report haplane-drill.html` over every scenario, the summary, `lab
/// down`. One lab per demo process (`demo<pid>`), so two demos on one machine never meet;
/// demos left behind by killed runs (their pid is gone) are removed first.
fn lab_demo(haplane: PathBuf) -> anyhow::Result<ExitCode> {
    let name = format!("demo{}", std::process::id());
    for old in lab::stale_demos() {
        if let Ok(msg) = up::down(&old) {
            println!("{msg}");
        }
    }
    println!("haplane lab: 3 masters (etcd + haplane), 1 worker, in network namespaces");
    let st = up::up(&up::UpOptions {
        name: name.clone(),
        masters: 3,
        workers: 1,
        lb_nodes: 0,
        apiserver: None,
        fencing: "quorum".to_string(),
        preempt: false,
        etcd_election_timeout_ms: 1000,
        haplane,
    })?;
    let result = (|| {
        let topo = netlab::Topology::open(&st.name)?;
        print!("{}", up::describe(&st, &view::lab_view(&st, &topo)));
        println!("\ndrill: eight failures, about 90 s ...");
        let r = drill::run(
            &st,
            &drill::DrillOptions::new(&Scenario::ALL, &[drill::Placement::AsFound]),
        )?;
        let path = PathBuf::from("haplane-drill.html");
        lab::write_report(&path, &r)?;
        print!("\n{}", summary::text(&r));
        println!("report: {}", path.display());
        Ok::<_, LabError>(r.passed())
    })();
    if !matches!(result, Ok(true)) {
        let keep = PathBuf::from("haplane-drill-logs");
        match lab::keep_logs(&st, &keep) {
            Ok(_) => println!("daemon logs kept in {}", keep.display()),
            Err(e) => eprintln!("cannot keep the daemon logs: {e}"),
        }
    }
    match up::down(&name) {
        Ok(msg) => println!("{msg}"),
        Err(e) => eprintln!("lab down: {e}"),
    }
    Ok(if result? {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
