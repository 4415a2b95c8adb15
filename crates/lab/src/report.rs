//! The drill's report: one self-contained HTML file (inline CSS and SVG, no scripts, nothing
//! fetched), a summary table and a timeline per scenario.

use std::fmt::Write;

use crate::drill::{DrillResult, ScenarioResult};
use crate::summary::{leader_cell, recovery_cell, spread};
use crate::timeline::Segment;

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const NODE_COLORS: [&str; 7] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f",
];

/// The fill of a lane value: clients ok/down, `none`, several holders (split brain), a node.
fn color(value: &str) -> &'static str {
    match value {
        "ok" => "#59a14f",
        "down" => "#e15759",
        "none" => "#d9d9d9",
        v if v.contains('+') => "#d62728",
        v => {
            // Node names end in their index: m1 -> first color.
            let i: usize = v
                .trim_start_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .unwrap_or(1);
            NODE_COLORS[i.saturating_sub(1) % NODE_COLORS.len()]
        }
    }
}

const LEFT: f64 = 190.0;
const WIDTH: f64 = 1100.0;
const LANE: f64 = 22.0;
const GAP: f64 = 8.0;

fn lane(svg: &mut String, y: f64, label: &str, segs: &[Segment], dur: u64, scale: f64) {
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" class="lane">{}</text>"#,
        LEFT - 8.0,
        y + LANE * 0.7,
        esc(label)
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{y}" width="{}" height="{LANE}" fill="#f4f4f4"/>"##,
        dur as f64 * scale
    );
    for s in segs {
        let x = LEFT + s.from as f64 * scale;
        let w = ((s.to - s.from) as f64 * scale).max(0.5);
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.1}" y="{y}" width="{w:.1}" height="{LANE}" fill="{}"><title>{}: {} ({:.2}–{:.2} s)</title></rect>"#,
            color(&s.value),
            esc(label),
            esc(&s.value),
            s.from as f64 / 1000.0,
            s.to as f64 / 1000.0
        );
        // Name the holder/leader inside segments wide enough for text.
        if w > 26.0 && s.value != "ok" {
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{}" class="in">{}</text>"#,
                x + 4.0,
                y + LANE * 0.7,
                esc(&s.value)
            );
        }
    }
}

/// The SVG timeline of one scenario.
pub fn timeline_svg(s: &ScenarioResult) -> String {
    let t = &s.timeline;
    let dur = t.duration_ms.max(1);
    let scale = (WIDTH - LEFT - 20.0) / dur as f64;
    let mut lanes: Vec<(String, &Vec<Segment>)> = Vec::new();
    for (k, v) in &t.clients {
        lanes.push((format!("client via {k}"), v));
    }
    lanes.push(("VIP answers (ARP)".to_string(), &t.answers));
    lanes.push(("VIP address on".to_string(), &t.vip));
    for (k, v) in &t.leaders {
        lanes.push((format!("{k} leader"), v));
    }
    let top = 34.0;
    let height = top + lanes.len() as f64 * (LANE + GAP) + 30.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="timeline of {}">"#,
        esc(&s.name)
    );
    for (i, (label, segs)) in lanes.iter().enumerate() {
        lane(
            &mut svg,
            top + i as f64 * (LANE + GAP),
            label,
            segs,
            dur,
            scale,
        );
    }
    // Seconds along the bottom.
    let axis_y = top + lanes.len() as f64 * (LANE + GAP) + 4.0;
    let step = if dur > 20_000 { 5000 } else { 1000 };
    let mut ms = 0;
    while ms <= dur {
        let x = LEFT + ms as f64 * scale;
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{axis_y}" stroke="#ccc" stroke-width="0.5"/><text x="{x:.1}" y="{}" class="tick">{} s</text>"##,
            top - 4.0,
            axis_y + 12.0,
            ms / 1000
        );
        ms += step;
    }
    // Fault, heal and recovery markers, labels staggered so they do not overlap.
    for (i, m) in t.markers.iter().enumerate() {
        let x = LEFT + m.at as f64 * scale;
        let c = match m.kind.as_str() {
            "fault" => "#d62728",
            "heal" => "#1f77b4",
            _ => "#2ca02c",
        };
        let _ = writeln!(
            svg,
            r#"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{axis_y}" stroke="{c}" stroke-width="2" stroke-dasharray="4 2"/><text x="{:.1}" y="{}" class="mark" fill="{c}">{}: {}</text>"#,
            top - 14.0 + (i % 2) as f64 * 10.0 - 10.0,
            x + 3.0,
            top - 16.0 + (i % 2) as f64 * 10.0,
            esc(&m.kind),
            esc(&m.label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// An anchor for one run: `holder-crash-target-1`.
fn anchor(s: &ScenarioResult) -> String {
    format!("{}-{}-{}", s.name, s.etcd_leader, s.run)
}

fn good_bad(bad: bool) -> &'static str {
    if bad { "bad" } else { "good" }
}

fn summary_table(r: &DrillResult) -> String {
    let mut h = String::new();
    h.push_str("<table><thead><tr><th>scenario</th><th>etcd leader at the fault</th><th>run</th><th>VIP path: longest gap</th><th>no node answering ARP</th><th>no node holding the address</th><th>VIP path: failed</th><th>node-local: longest gap</th><th>node-local: failed</th><th>split brain (two answering)</th><th>address on two nodes</th><th>after the heal: no holder</th><th>after the heal: VIP gap</th><th>VIP moves</th><th>lost writes</th><th>recovery</th></tr></thead><tbody>\n");
    for s in &r.scenarios {
        let cell = |i: usize, f: &dyn Fn(&crate::drill::PathResult) -> String| {
            s.paths.get(i).map_or("-".to_string(), f)
        };
        let ret = |f: &dyn Fn(&crate::drill::AfterHeal) -> u64| {
            s.after_heal
                .as_ref()
                .map_or("-".to_string(), |a| format!("{} ms", f(a)))
        };
        let lost: u64 = s.paths.iter().map(|p| p.lost).sum();
        let _ = writeln!(
            h,
            "<tr><td><a href=\"#{a}\">{n}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{} ms</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{lost}</td><td>{}</td></tr>",
            esc(&leader_cell(s)),
            s.run,
            cell(0, &|p| format!("{} ms", p.longest_gap_ms)),
            s.longest_no_answer_ms,
            s.longest_no_holder_ms,
            cell(0, &|p| format!("{} / {}", p.failed, p.requests)),
            cell(1, &|p| format!("{} ms", p.longest_gap_ms)),
            cell(1, &|p| format!("{} / {}", p.failed, p.requests)),
            good_bad(s.split_brain_samples > 0),
            s.split_brain_samples,
            s.address_split_samples,
            ret(&|a| a.longest_no_holder_ms),
            ret(&|a| a.vip_gap_ms),
            s.vip_moves,
            good_bad(lost > 0),
            esc(&recovery_cell(s)),
            a = esc(&anchor(s)),
            n = esc(&s.name),
        );
    }
    h.push_str("</tbody></table>\n");
    h
}

fn stats_table(r: &DrillResult) -> String {
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<h2>Over {} rounds (p50 / p99 / worst, nearest rank)</h2>",
        r.repeat
    );
    h.push_str("<table><thead><tr><th>scenario</th><th>etcd leader</th><th>runs</th><th>VIP path: longest gap</th><th>no node answering</th><th>no node holding</th><th>node-local: longest gap</th><th>after the heal: no holder</th><th>after the heal: VIP gap</th><th>split brain</th><th>lost writes</th><th>failed runs</th></tr></thead><tbody>\n");
    for s in &r.stats {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            esc(&s.name),
            esc(&s.etcd_leader),
            s.runs,
            spread(&s.vip_gap_ms),
            spread(&s.no_answer_ms),
            spread(&s.no_holder_ms),
            spread(&s.local_gap_ms),
            spread(&s.return_no_holder_ms),
            spread(&s.return_vip_gap_ms),
            good_bad(s.split_brain_samples > 0),
            s.split_brain_samples,
            good_bad(s.lost > 0),
            s.lost,
            s.failed_runs,
        );
    }
    h.push_str("</tbody></table>\n");
    h
}

/// The whole report.
pub fn html(r: &DrillResult) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>haplane drill: lab {lab}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 17px; margin-top: 28px; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th {{ background: #f0f0f0; }} td:first-child {{ text-align: left; }}
td.bad {{ background: #f8d0d0; font-weight: bold; }} td.good {{ background: #e3f3e3; }}
.lane {{ font-size: 12px; text-anchor: end; }} .in {{ font-size: 11px; fill: #fff; }}
.tick {{ font-size: 10px; fill: #666; text-anchor: middle; }} .mark {{ font-size: 11px; }}
.legend span {{ display: inline-block; padding: 1px 8px; margin-right: 6px; color: #fff; font-size: 12px; }}
p.note {{ color: #a33; font-size: 13px; }}
</style></head><body>
<h1>haplane drill on lab {lab}</h1>
<p>Fencing: <b>{fencing}</b>, preempt: <b>{preempt}</b>, etcd election timeout: <b>{election} ms</b>. Balancers serve: {service}. Clients on a worker write sequenced keys (etcd v3 API) every 20 ms through the VIP and through the node-local balancer; a write fails after {timeout} ms, and a disconnected client sends a new SYN every {retry} ms. Every 10 ms the worker probes who answers ARP for the VIP, and the masters' interfaces are checked for the address.</p>
<p><b>Lost acknowledged writes: {lost}</b>. Split-brain samples (two nodes answering): <b>{split}</b> (address on two nodes: {asplit}). All scenarios completed and recovered: <b>{done}</b>.</p>
"#,
        lab = esc(&r.lab),
        fencing = esc(&r.fencing),
        service = esc(&r.service),
        lost = r.lost_writes,
        split = r.split_brain_samples,
        asplit = r.address_split_samples,
        done = r.all_completed,
        preempt = r.preempt,
        election = r.etcd_election_timeout_ms,
        timeout = r.client.request_timeout.as_millis(),
        retry = r.client.connect_retry.as_millis(),
    );
    if r.repeat > 1 {
        h.push_str(&stats_table(r));
        h.push_str("<h2>Every run</h2>\n");
    }
    h.push_str(&summary_table(r));
    for s in &r.skipped {
        let _ = writeln!(
            h,
            "<p class=\"note\">skipped: {}: {}</p>",
            esc(&s.name),
            esc(&s.reason)
        );
    }
    for n in &r.notes {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", esc(n));
    }
    h.push_str("<p class=\"legend\"><span style=\"background:#59a14f\">writes acknowledged</span><span style=\"background:#e15759\">no ack for over 200 ms</span><span style=\"background:#d62728\">VIP on several nodes</span><span style=\"background:#d9d9d9;color:#222\">nobody</span> node colours: ");
    for (i, c) in NODE_COLORS.iter().take(3).enumerate() {
        let _ = write!(h, "<span style=\"background:{c}\">m{}</span>", i + 1);
    }
    h.push_str("</p>\n");
    for s in &r.scenarios {
        let _ = writeln!(
            h,
            "<h2 id=\"{a}\">{n} (etcd leader {l}, run {r}): {d}</h2>\n<p>Holder before: {hb}; fault on: {t}; etcd leader at the fault: {el}; holder after: {ha}.</p>",
            a = esc(&anchor(s)),
            n = esc(&s.name),
            l = esc(&s.etcd_leader),
            r = s.run,
            el = esc(s.etcd_leader_before.as_deref().unwrap_or("none")),
            d = esc(&s.description),
            hb = esc(s.holder_before.as_deref().unwrap_or("none")),
            t = esc(s.target.as_deref().unwrap_or("-")),
            ha = esc(s.holder_after.as_deref().unwrap_or("none")),
        );
        h.push_str(&timeline_svg(s));
        for n in &s.notes {
            let _ = writeln!(h, "<p class=\"note\">{}</p>", esc(n));
        }
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_so_a_node_name_cannot_inject_markup() {
        assert_eq!(esc("<b>&\"</b>"), "&lt;b&gt;&amp;&quot;&lt;/b&gt;");
    }

    #[test]
    fn several_holders_are_drawn_as_split_brain() {
        assert_eq!(color("m1+m2"), "#d62728");
        assert_ne!(color("m1"), color("m2"));
    }
}
