//! The command line: `haplane check` names every bad key, never panics, and exits non-zero.

use std::process::{Command, Output};

fn haplane(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_haplane"))
        .args(args)
        .output()
        .expect("run haplane")
}

fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, text).unwrap();
    let out = haplane(&["check", "--config", path.to_str().unwrap()]);
    let all =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!all.contains("panicked"), "haplane panicked:\n{all}");
    (out.status.code().unwrap_or(-1), all)
}

const GOOD: &str = "cluster: demo
nodes:
  - {name: m1, address: 192.0.2.11, priority: 110}
  - {name: m2, address: 192.0.2.12, priority: 100}
vip: {address: 192.0.2.100/24, interface: eth0, vrid: 51}
";

#[test]
fn a_good_file_passes_with_a_summary() {
    let (code, out) = check(GOOD);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok (2 nodes, VIP 192.0.2.100/24, VRID 51"),
        "{out}"
    );
}

#[test]
fn every_error_is_printed_with_the_path_of_its_key() {
    let bad = GOOD
        .replace("vrid: 51", "vrid: 0")
        .replace("priority: 100", "priority: 0");
    let (code, out) = check(&bad);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error: vip.vrid:"), "{out}");
    assert!(out.contains("error: nodes[1].priority:"), "{out}");
}

#[test]
fn yaml_syntax_errors_carry_line_and_column() {
    let (code, out) = check("cluster: [\n");
    assert_eq!(code, 1);
    assert!(out.contains("line 1 column"), "{out}");
}

#[test]
fn arbitrary_garbage_is_an_error_not_a_panic() {
    for text in [
        "",
        "\0\0\0",
        "- - - -",
        "nodes: 7",
        "cluster: x\nnodes: [{}]\n",
        "{{{{",
        "vip: !!binary AAAA",
    ] {
        let (code, _) = check(text);
        assert_eq!(code, 1, "{text:?} must be rejected");
    }
}

#[test]
fn a_missing_file_is_named() {
    let out = haplane(&["check", "--config", "/nonexistent/cluster.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read /nonexistent/cluster.yaml"),
        "{err}"
    );
}

#[test]
fn unknown_arguments_are_rejected_with_usage() {
    let out = haplane(&["run", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));
}

#[test]
fn run_with_an_unknown_node_explains_how_to_pick_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, GOOD).unwrap();
    let out = haplane(&["run", "--config", path.to_str().unwrap(), "--node", "m9"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node \"m9\" is not listed under nodes; known nodes: m1, m2"),
        "{err}"
    );
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = haplane(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let head = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short=12",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let want = match (std::env::var("HAPLANE_GIT_REVISION"), head) {
        (Ok(r), _) if !r.trim().is_empty() => format!("git {}", r.trim()),
        (_, Some(h)) => format!("git {h}"),
        // A tarball without .git says so instead of guessing.
        (_, None) => "git revision unknown: built outside a git checkout".into(),
    };
    assert_eq!(
        line,
        format!("haplane {} ({want})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn generate_writes_a_man_page_per_subcommand_and_completions_without_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (man, comp) = (dir.path().join("man"), dir.path().join("comp"));
    let out = haplane(&[
        "generate",
        "--man",
        man.to_str().unwrap(),
        "--completions",
        comp.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for page in [
        "haplane.1",
        "haplane-run.1",
        "haplane-check.1",
        "haplane-plan.1",
        "haplane-preflight.1",
        "haplane-import.1",
        "haplane-etcd-snapshot.1",
        "haplane-lab-up.1",
        "haplane-status.1",
    ] {
        let text =
            std::fs::read_to_string(man.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH "),
            "{page} is not roff"
        );
    }
    let run = std::fs::read_to_string(man.join("haplane-run.1")).unwrap();
    assert!(
        run.contains("\\-\\-config"),
        "haplane-run.1 documents --config"
    );
    let root = std::fs::read_to_string(man.join("haplane.1")).unwrap();
    assert!(
        root.contains("/etc/haplane/cluster.yaml"),
        "haplane.1 has a FILES section"
    );
    for f in ["haplane.bash", "_haplane", "haplane.fish"] {
        let text = std::fs::read_to_string(comp.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(text.contains("preflight"), "{f} completes the subcommands");
        assert!(
            !text.contains("generate"),
            "{f} offers the hidden generate subcommand"
        );
    }
    assert!(
        !std::fs::read_dir(&man).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("generate")),
        "no man page for the hidden subcommand"
    );
    let help = haplane(&["--help"]);
    assert!(!String::from_utf8_lossy(&help.stdout).contains("generate"));
}

#[test]
fn generate_without_a_directory_says_what_it_needs() {
    let out = haplane(&["generate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pass --man DIR and/or --completions DIR")
    );
}

/// The `error: KEY: MESSAGE` lines of a command's output, sorted.
fn error_lines(out: &Output) -> Vec<String> {
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let mut lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("error: "))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[test]
fn check_and_plan_agree_on_every_error() {
    // Issue 9: kubeadm's MASTER 101 with a weight -2 script and backups at 91 and 81 passed
    // `check` but failed `plan`. Both now run the same rules and print the same errors.
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "weight",
            "cluster: k\nnodes:\n  - {name: m1, address: 192.0.2.11, priority: 101}\n  - {name: m2, address: 192.0.2.12, priority: 91}\n  - {name: m3, address: 192.0.2.13, priority: 81}\nvip:\n  address: 192.0.2.100/24\n  vrid: 51\n  track:\n    - {name: check_apiserver, command: [/etc/keepalived/check_apiserver.sh], weight: -2}\n",
            true,
        ),
        ("two-etcd", &format!("{GOOD}etcd: {{}}\n"), true),
        ("good", GOOD, false),
    ];
    for (name, text, bad) in cases {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).unwrap();
        let path = path.to_str().unwrap();
        let check = haplane(&["check", "--config", path]);
        let out = dir.path().join(format!("{name}-plan"));
        let plan = haplane(&["plan", "--config", path, "--out", out.to_str().unwrap()]);
        assert_eq!(check.status.success(), !bad, "check {name}: {check:?}");
        assert_eq!(plan.status.success(), !bad, "plan {name}: {plan:?}");
        assert_eq!(error_lines(&check), error_lines(&plan), "{name}");
        assert_eq!(!error_lines(&check).is_empty(), bad, "{name}");
    }
}

/// `haplane check` audits the files that hold secrets: a key file its group or other users
/// can read is a warning, one that is missing is an error, and neither message shows a key.
#[test]
fn check_warns_about_secret_files_readable_by_group_or_others() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vrrp.key");
    std::fs::write(&key, "cli-test-key-0123456789abcdefghijklmnopq").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cluster = dir.path().join("cluster.yaml");
    let text = GOOD.replace(
        "vrid: 51}",
        &format!(
            "vrid: 51, authHmac: {{keys: {{1: \"file:{}\"}}}}}}",
            key.display()
        ),
    );
    std::fs::write(&cluster, &text).unwrap();
    std::fs::set_permissions(&cluster, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = || {
        let out = haplane(&["check", "--config", cluster.to_str().unwrap()]);
        let all = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), all)
    };
    let (code, out) = run();
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("warning: vip.authHmac.keys.1:")
            && out.contains("readable by its group or other users (mode 0644)"),
        "{out}"
    );
    assert!(!out.contains("cli-test-key"), "{out}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (code, out) = run();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("(mode 0640)"), "{out}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out) = run();
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("readable by"), "{out}");
    std::fs::remove_file(&key).unwrap();
    let (code, out) = run();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("error: vip.authHmac.keys.1: key 1: cannot read"),
        "{out}"
    );
}

#[test]
fn the_packaged_example_config_passes_check() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../packaging/cluster.yaml.example"
    );
    let out = haplane(&["check", "--config", example]);
    let all =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("ok (3 nodes"), "{all}");
    assert!(
        all.contains("0 warning(s)"),
        "the example must not teach a warning: {all}"
    );
}

#[test]
fn lab_chaos_dry_run_prints_the_same_schedule_for_the_same_seed_and_names_bad_kinds() {
    let run = |seed: &str| {
        let out = haplane(&[
            "lab",
            "chaos",
            "--dry-run",
            "--json",
            "--seed",
            seed,
            "--duration",
            "30s",
        ]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let a = run("11");
    assert_eq!(a, run("11"), "the seed alone reproduces the schedule");
    assert_ne!(a, run("12"));
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    assert_eq!(v["seed"], 11);
    assert!(!v["faults"].as_array().unwrap().is_empty());

    let text = haplane(&[
        "lab",
        "chaos",
        "--dry-run",
        "--seed",
        "11",
        "--faults",
        "loss",
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("seed 11") && text.contains("loss"), "{text}");
    assert!(!text.contains("partition"), "only loss: {text}");

    let bad = haplane(&["lab", "chaos", "--dry-run", "--faults", "meteor"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_ne!(bad.status.code(), Some(0));
    assert!(err.contains("meteor") && err.contains("kill-node"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Issue 13: logs an SRE can ship. A bad `--log` filter is said (not silently replaced), as
/// one JSON object per line with `--log-format json`, and as plain text without escape
/// sequences when stderr is not a terminal (a redirected demo was full of them).
#[test]
fn log_lines_are_json_objects_with_log_format_json_and_plain_text_when_redirected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, GOOD).unwrap();
    let config = path.to_str().unwrap();

    let json = haplane(&[
        "--log",
        "[bad",
        "--log-format",
        "json",
        "check",
        "-c",
        config,
    ]);
    assert!(json.status.success(), "{json:?}");
    let stderr = String::from_utf8_lossy(&json.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(!lines.is_empty(), "the bad filter is reported");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        assert_eq!(v["level"], "WARN", "{line}");
        assert!(
            v["message"].as_str().unwrap_or("").contains("[bad"),
            "{line}"
        );
    }

    let text = haplane(&["--log", "[bad", "check", "-c", config]);
    let stderr = String::from_utf8_lossy(&text.stderr);
    assert!(
        stderr.contains("WARN") && stderr.contains("[bad"),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "escape sequences: {stderr:?}");

    let bad = haplane(&["--log-format", "xml", "check", "-c", config]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("possible values: text, json"));
}

/// Never a panic: `haplane status | head` or `haplane import ... | less` quit early by the
/// reader ends the command quietly (Rust's println! panics on EPIPE while SIGPIPE is
/// ignored). The pipe's read end is closed before haplane starts, so its first write fails.
#[test]
fn a_reader_that_goes_away_ends_a_printing_command_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, GOOD).unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_haplane"))
        .args(["check", "-c", path.to_str().unwrap()])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run haplane");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    const SIGPIPE: i32 = 13;
    assert_eq!(out.status.signal(), Some(SIGPIPE), "{out:?}");
}
