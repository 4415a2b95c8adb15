//! `haplane generate` (hidden): man pages and shell completions from the real clap definitions.
//!
//! A hidden subcommand rather than a build script or an xtask binary: the definitions live in
//! the binary crate, so only the binary itself can render them without moving them into a
//! library, and what it renders can never drift from what it parses. `scripts/package` runs it
//! on the release binary it packages.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, FromArgMatches};
use clap_complete::Shell;

/// The subcommand's name.
pub const NAME: &str = "generate";

/// Write man pages and shell completions (used by scripts/package).
#[derive(Debug, Args)]
struct GenerateArgs {
    /// Write one man page per subcommand (haplane.1, haplane-run.1, ...) into this directory.
    #[arg(long)]
    man: Option<PathBuf>,
    /// Write bash, zsh and fish completions into this directory.
    #[arg(long)]
    completions: Option<PathBuf>,
}

/// What the packaged man page adds to clap's text: the files and where to read on.
const ROOT_PAGE_EXTRA: &str = r#".SH FILES
.TP
\fI/etc/haplane/cluster.yaml\fR
The cluster file, the same on every node; \fBhaplane run\fR and \fBhaplane.service\fR read it.
.TP
\fI/etc/haplane/cluster.yaml.example\fR
A commented example to start from.
.TP
\fI/var/lib/haplane\fR
State: the VIP fencing marker and, by default, scheduled etcd snapshots.
.SH SEE ALSO
\fBhaplane-run\fR(1), \fBhaplane-check\fR(1), \fBhaplane-plan\fR(1),
\fBkeepalived\fR(8), \fBhaproxy\fR(1), \fBsystemd.exec\fR(5).
/usr/share/doc/haplane/ holds the README and install notes.
"#;

/// The hidden subcommand, to add to the root command at parse time.
pub fn command() -> clap::Command {
    GenerateArgs::augment_args(
        clap::Command::new(NAME)
            .hide(true)
            .about("Write man pages and shell completions (used by scripts/package)"),
    )
}

/// Render the pages and completions of `cmd` (the real `Cli::command()`).
pub fn run(matches: &clap::ArgMatches, cmd: clap::Command) -> anyhow::Result<()> {
    let args = GenerateArgs::from_arg_matches(matches)?;
    if args.man.is_none() && args.completions.is_none() {
        anyhow::bail!("generate: nothing to do; pass --man DIR and/or --completions DIR");
    }
    if let Some(dir) = &args.man {
        man_pages(cmd.clone(), dir)?;
    }
    if let Some(dir) = &args.completions {
        completions(cmd, dir)?;
    }
    Ok(())
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn man_pages(cmd: clap::Command, dir: &Path) -> anyhow::Result<()> {
    create_dir(dir)?;
    let name = cmd.get_name().to_string();
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    let root = dir.join(format!("{name}.1"));
    let mut page = std::fs::OpenOptions::new()
        .append(true)
        .open(&root)
        .with_context(|| format!("cannot open {}", root.display()))?;
    page.write_all(ROOT_PAGE_EXTRA.as_bytes())
        .with_context(|| format!("cannot write {}", root.display()))?;
    Ok(())
}

fn completions(mut cmd: clap::Command, dir: &Path) -> anyhow::Result<()> {
    create_dir(dir)?;
    let name = cmd.get_name().to_string();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, &name, dir)
            .with_context(|| format!("cannot write {shell} completions into {}", dir.display()))?;
    }
    Ok(())
}
