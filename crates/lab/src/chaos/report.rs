//! The chaos run's summary table (what the CLI prints) and its HTML report: one
//! self-contained file (inline CSS and SVG, no script) with the schedule on the timeline.

use std::fmt::Write;

use super::run::ChaosResult;
use crate::report::esc;
use crate::summary::table;
use crate::timeline::Segment;

fn secs(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

/// The command that reproduces the run.
pub fn reproduce(r: &ChaosResult) -> String {
    let kinds: Vec<&str> = r.schedule.kinds.iter().map(|k| k.name()).collect();
    let all = kinds.len() == super::schedule::Kind::ALL.len();
    format!(
        "haplane lab chaos --name {} --seed {} --duration {}ms{}",
        r.lab,
        r.seed,
        r.schedule.duration_ms,
        if all {
            String::new()
        } else {
            format!(" --faults {}", kinds.join(","))
        }
    )
}

/// The summary: faults by kind with the gaps they caused, the longest gaps, the daemons'
/// growth, the violations and the verdict (naming the seed).
pub fn text(r: &ChaosResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "chaos on lab {} (fencing {}), seed {}: {} faults injected, {} skipped; final heal at {}, {}",
        r.lab,
        r.fencing,
        r.seed,
        r.injected.len(),
        r.skipped.len(),
        secs(r.final_heal_ms),
        match r.recovery_ms {
            Some(ms) => format!("healthy {} later", secs(ms)),
            None => "NOT healthy again".to_string(),
        }
    );
    let _ = writeln!(
        out,
        "samples: {} ARP probes, {} address samples, {} /proc sweeps, {} /status sweeps; writes acknowledged: {}",
        r.samples.arp,
        r.samples.addr,
        r.samples.proc_sweeps,
        r.samples.status_sweeps,
        r.samples
            .acked
            .iter()
            .map(|(p, n)| format!(
                "{p} {n}/{}",
                r.samples.attempts.get(p).copied().unwrap_or(0)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(out);
    let mut rows = vec![
        [
            "KIND",
            "FAULTS",
            "VIP GAP p50/p99/max",
            "NODE-LOCAL GAP p50/p99/max",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let spread = |k: &super::figures::KindGaps, p: &str| {
        k.gap_ms
            .get(p)
            .map_or("-".into(), |s| format!("{}/{}/{} ms", s.p50, s.p99, s.max))
    };
    for k in &r.gaps_by_kind {
        rows.push(vec![
            k.kind.clone(),
            k.injected.to_string(),
            spread(k, "vip"),
            spread(k, "node-local"),
        ]);
    }
    out.push_str(&table(&rows));
    let _ = writeln!(out);
    let mut rows = vec![
        ["LONGEST GAPS", "MS", "FROM", "TO", "FAULTS ACTIVE"]
            .map(String::from)
            .to_vec(),
    ];
    for g in &r.longest_gaps {
        rows.push(vec![
            g.path.clone(),
            (g.to_ms - g.from_ms).to_string(),
            secs(g.from_ms),
            secs(g.to_ms),
            g.faults
                .iter()
                .map(|f| format!("#{f}"))
                .collect::<Vec<_>>()
                .join(" "),
        ]);
    }
    out.push_str(&table(&rows));
    let _ = writeln!(out);
    let mut rows = vec![
        [
            "DAEMON",
            "PID",
            "LIVED",
            "RSS MiB first/last/max",
            "FDS first/last/max",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for g in &r.growth {
        rows.push(vec![
            format!("{} {}", g.node, g.daemon.name()),
            g.pid.to_string(),
            secs(g.to_ms.saturating_sub(g.born_ms)),
            format!(
                "{}/{}/{}",
                mib(g.rss_first_kb),
                mib(g.rss_last_kb),
                mib(g.rss_max_kb)
            ),
            format!("{}/{}/{}", g.fds_first, g.fds_last, g.fds_max),
        ]);
    }
    out.push_str(&table(&rows));
    let _ = writeln!(out);
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    for v in &r.relapses {
        let _ = writeln!(
            out,
            "after recovery, {}..{}: {}",
            secs(v.from_ms),
            secs(v.to_ms),
            v.detail
        );
    }
    if !r.address_on_two.is_empty() {
        let ms: u64 = r.address_on_two.iter().map(|v| v.to_ms - v.from_ms).sum();
        let _ = writeln!(
            out,
            "address on two nodes behind the kernel gate (not answered, no violation): {} stretches, {} ms in all, the longest {} ms",
            r.address_on_two.len(),
            ms,
            r.address_on_two
                .iter()
                .map(|v| v.to_ms - v.from_ms)
                .max()
                .unwrap_or(0)
        );
    }
    for s in &r.skipped {
        let _ = writeln!(out, "skipped #{}: {}", s.id, s.reason);
    }
    if r.violations.is_empty() {
        let _ = writeln!(out, "violations: none");
        let _ = writeln!(out, "PASSED (seed {})", r.seed);
    } else {
        let _ = writeln!(out, "violations: {}", r.violations.len());
        for v in &r.violations {
            let _ = writeln!(
                out,
                "  {}..{} {}: {}",
                secs(v.from_ms),
                secs(v.to_ms),
                v.invariant.name(),
                v.detail
            );
        }
        let first = &r.violations[0];
        let _ = writeln!(
            out,
            "FAILED: seed {}, first violation {} at {}..{}; reproduce with: {}",
            r.seed,
            first.invariant.name(),
            secs(first.from_ms),
            secs(first.to_ms),
            reproduce(r)
        );
    }
    out
}

const COLORS: [&str; 7] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f",
];

fn color(value: &str, names: &[String]) -> &'static str {
    match value {
        "ok" => "#59a14f",
        "down" => "#e15759",
        "none" => "#d9d9d9",
        v if v.contains('+') => "#d62728",
        v => COLORS[names.iter().position(|n| n == v).unwrap_or(6) % COLORS.len()],
    }
}

const LEFT: f64 = 200.0;
const WIDTH: f64 = 1200.0;
const LANE: f64 = 18.0;

struct Svg {
    body: String,
    y: f64,
    scale: f64,
}

impl Svg {
    fn lane(&mut self, label: &str, segs: &[Segment], names: &[String]) {
        let y = self.y;
        let _ = writeln!(
            self.body,
            r#"<text x="{}" y="{}" class="l">{}</text>"#,
            LEFT - 6.0,
            y + LANE * 0.75,
            esc(label)
        );
        for s in segs {
            let x = LEFT + s.from as f64 * self.scale;
            let w = ((s.to - s.from) as f64 * self.scale).max(0.5);
            let _ = writeln!(
                self.body,
                r#"<rect x="{x:.1}" y="{y}" width="{w:.1}" height="{LANE}" fill="{}"><title>{}: {} ({}–{})</title></rect>"#,
                color(&s.value, names),
                esc(label),
                esc(&s.value),
                secs(s.from),
                secs(s.to)
            );
        }
        self.y += LANE + 4.0;
    }
}

/// The HTML report.
pub fn html(r: &ChaosResult) -> String {
    let t = &r.timeline;
    let names: Vec<String> = r
        .schedule
        .nodes
        .masters
        .iter()
        .chain(&r.schedule.nodes.workers)
        .cloned()
        .collect();
    let mut svg = Svg {
        body: String::new(),
        y: 24.0,
        scale: WIDTH / t.duration_ms.max(1) as f64,
    };
    for (p, segs) in &t.clients {
        svg.lane(&format!("client {p}"), segs, &names);
    }
    svg.lane("answers ARP for the VIP", &t.answers, &names);
    svg.lane("has the VIP", &t.vip, &names);
    for (e, segs) in &t.singletons {
        svg.lane(&format!("{e} singleton runs on"), segs, &names);
    }
    for (l, segs) in &t.leaders {
        svg.lane(&format!("leader: {l}"), segs, &names);
    }
    // The schedule: one row per fault, packed into as few rows as overlap allows.
    let mut rows_end: Vec<u64> = Vec::new();
    let top = svg.y + 6.0;
    for f in &t.faults {
        let row = match rows_end.iter().position(|end| *end <= f.from) {
            Some(i) => i,
            None => {
                rows_end.push(0);
                rows_end.len() - 1
            }
        };
        rows_end[row] = f.to + 300;
        let y = top + row as f64 * (LANE + 3.0);
        let x = LEFT + f.from as f64 * svg.scale;
        let w = ((f.to - f.from) as f64 * svg.scale).max(1.0);
        let kind_i = super::schedule::Kind::ALL
            .iter()
            .position(|k| k.name() == f.kind)
            .unwrap_or(0);
        let _ = writeln!(
            svg.body,
            r#"<rect x="{x:.1}" y="{y}" width="{w:.1}" height="{LANE}" fill="{}" opacity="0.8"><title>#{} {} ({}–{})</title></rect><text x="{:.1}" y="{}" class="f">#{}</text>"#,
            COLORS[kind_i % COLORS.len()],
            f.id,
            esc(&f.what),
            secs(f.from),
            secs(f.to),
            x + 2.0,
            y + LANE * 0.75,
            f.id
        );
    }
    let _ = writeln!(
        svg.body,
        r#"<text x="{}" y="{}" class="l">faults</text>"#,
        LEFT - 6.0,
        top + LANE * 0.75
    );
    let height = top + rows_end.len().max(1) as f64 * (LANE + 3.0) + 20.0;
    // The final heal and the violations as vertical marks.
    let mark = |svg: &mut Svg, at: u64, colour: &str, label: &str| {
        let x = LEFT + at as f64 * svg.scale;
        let _ = writeln!(
            svg.body,
            r#"<line x1="{x:.1}" x2="{x:.1}" y1="14" y2="{height}" stroke="{colour}" stroke-width="1.5"><title>{}</title></line>"#,
            esc(label)
        );
    };
    mark(&mut svg, t.final_heal_ms, "#000", "final heal");
    for v in &r.violations {
        mark(
            &mut svg,
            v.from_ms,
            "#d62728",
            &format!("{}: {}", v.invariant.name(), v.detail),
        );
    }
    let mut ticks = String::new();
    let step = ((t.duration_ms / 10_000).max(1) * 1000) as f64;
    let mut at = 0.0;
    while at <= t.duration_ms as f64 {
        let _ = write!(
            ticks,
            r#"<text x="{:.1}" y="10" class="t">{:.0}s</text>"#,
            LEFT + at * svg.scale,
            at / 1000.0
        );
        at += step;
    }
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!doctype html><html><head><meta charset="utf-8"><title>haplane lab chaos, seed {seed}</title>
<style>body{{font:14px sans-serif;margin:20px}} pre{{background:#f6f6f6;padding:8px}} .l{{font:11px sans-serif;text-anchor:end}} .t{{font:10px sans-serif}} .f{{font:9px sans-serif;fill:#fff}} .bad{{color:#d62728}}</style></head><body>
<h1>haplane lab chaos: seed {seed} — {verdict}</h1>
<p>Reproduce: <code>{repro}</code></p>
<pre>{summary}</pre>
<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}">{ticks}{body}</svg>
<h2>Schedule</h2><pre>{sched}</pre>
</body></html>
"#,
        seed = r.seed,
        verdict = if r.passed() {
            "passed".to_string()
        } else {
            format!(
                "<span class=\"bad\">{} violation(s)</span>",
                r.violations.len()
            )
        },
        repro = esc(&reproduce(r)),
        summary = esc(&text(r)),
        w = LEFT + WIDTH + 20.0,
        body = svg.body,
        sched = esc(&super::schedule::text(&r.schedule)),
    );
    h
}
