//! `haplane plan`: validate the inventory and render kubeadm, etcd, haplane, keepalived and
//! haproxy files plus a runbook for every node into a directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The cluster file.
    #[arg(long, short)]
    config: PathBuf,
    /// Output directory (created; files are overwritten).
    #[arg(long, short)]
    out: PathBuf,
    /// kubeadm API version of the rendered configs.
    #[arg(long, value_enum, default_value = "v1beta4")]
    kubeadm_api: KubeadmApiArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum KubeadmApiArg {
    V1beta4,
    V1beta3,
}

pub fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let path = &args.config;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let cluster = match plan::parse(&text, path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let findings = plan::validate(&cluster);
    for f in &findings {
        eprintln!("{f}");
    }
    if findings
        .iter()
        .any(|f| f.severity == config::Severity::Error)
    {
        eprintln!("{}: not rendered; fix the errors above", path.display());
        return Ok(ExitCode::from(1));
    }
    let options = plan::PlanOptions {
        kubeadm_api: match args.kubeadm_api {
            KubeadmApiArg::V1beta4 => plan::KubeadmApi::V1beta4,
            KubeadmApiArg::V1beta3 => plan::KubeadmApi::V1beta3,
        },
        ..plan::PlanOptions::default()
    };
    let rendered = plan::render(&cluster, &options)?;
    plan::write_plan(&rendered, &args.out)?;
    println!(
        "wrote {} files to {}; start with {}/README.md",
        rendered.files.len(),
        args.out.display(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
