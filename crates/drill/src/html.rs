//! The drill report as one self-contained HTML page (inline CSS and SVG, no external
//! resources, so it can be mailed or archived as it is): the verdict, the achieved RTO and
//! RPO against the objectives, the timeline of the steps, each resource's verification, and
//! the trend of achieved RTO and RPO over past drills.
//!
//! A few lines of script, run once the page is laid out, count the timeline bars and trend
//! points the browser actually drew (`data-timeline-steps`, `data-trend-points` on the root
//! element), so a headless browser can tell that the page renders.

use std::fmt::Write;

use crate::report::{DrillReport, StepStatus, TrendPoint, duration_text, plural, time_text};

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1000px;color:#1d2327;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h3{font-size:1em;margin:1em 0 .2em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.verdict{display:inline-block;padding:.15em .6em;border-radius:4px;color:#fff;font-weight:600}
.pass{background:#2e7d32}.fail{background:#c62828}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:.35em .5em;text-align:left;vertical-align:top}
td,li,p{overflow-wrap:anywhere}td:first-child,td:last-child{overflow-wrap:normal;white-space:nowrap}
th{color:#555;font-weight:600}.met{color:#2e7d32;font-weight:600}.missed{color:#c62828;font-weight:600}
.problems li{color:#c62828}.muted{color:#777}code{font-size:.92em}
svg text{font:12px system-ui,sans-serif;fill:#333}
.status-ok{fill:#2e7d32}.status-failed{fill:#c62828}.status-not_run{fill:none;stroke:#9e9e9e;stroke-dasharray:3 2}
";

/// The whole page for `report`, with `trend` (past drills, oldest first, this one included).
pub fn render(report: &DrillReport, trend: &[TrendPoint]) -> String {
    let mut page = String::new();
    let verdict = if report.passed {
        r#"<span class="verdict pass">PASSED</span>"#
    } else {
        r#"<span class="verdict fail">FAILED</span>"#
    };
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>lifeboat drill {id}: {plan}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
         <h1>Drill of <code>{plan}</code> {verdict}</h1>\n\
         <p class=\"muted\">drill {id} · started {started} · finished {finished} · site <code>{site}</code>{declared}</p>\n",
        id = escape(&report.drill),
        plan = escape(&report.plan),
        started = time_text(report.started),
        finished = time_text(report.finished),
        site = escape(&report.site),
        declared = if report.declared_site {
            " (declared in the plan)"
        } else {
            " (a derived sandbox)"
        },
    );
    summary(&mut page, report);
    if !report.problems.is_empty() {
        page.push_str("<h2>Problems</h2>\n<ul class=\"problems\">\n");
        for p in &report.problems {
            let _ = writeln!(page, "<li>{}</li>", escape(p));
        }
        page.push_str("</ul>\n");
    }
    page.push_str("<h2>Timeline</h2>\n");
    timeline(&mut page, report);
    resources(&mut page, report);
    page.push_str("<h2>Trend</h2>\n");
    trend_section(&mut page, trend);
    page.push_str(
        "<script>\n(function () {\n  function drawn(selector) {\n    var n = 0;\n    \
         document.querySelectorAll(selector).forEach(function (e) {\n      \
         var r = e.getBoundingClientRect();\n      if (r.width > 0 && r.height > 0) { n++; }\n    });\n    \
         return String(n);\n  }\n  var root = document.documentElement;\n  \
         root.setAttribute('data-timeline-steps', drawn('#timeline .step-bar'));\n  \
         root.setAttribute('data-trend-points', drawn('#trend .trend-point'));\n})();\n</script>\n\
         </body>\n</html>\n",
    );
    page
}

fn verdict_cell(met: bool) -> &'static str {
    if met {
        r#"<span class="met">met</span>"#
    } else {
        r#"<span class="missed">missed</span>"#
    }
}

fn summary(page: &mut String, r: &DrillReport) {
    page.push_str("<table>\n<tr><th></th><th>achieved</th><th>objective</th><th></th></tr>\n");
    let _ = writeln!(
        page,
        "<tr><td>RTO (sandbox up, restored, verified, started, checked)</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        r.achieved_rto_ms
            .map_or_else(|| "not achieved".to_string(), duration_text),
        duration_text(r.rto_objective_ms),
        verdict_cell(r.rto_met)
    );
    let _ = writeln!(
        page,
        "<tr><td>RPO (age of restore point <code>{}</code>, taken {})</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        escape(&r.point[..r.point.len().min(8)]),
        time_text(r.point_time),
        duration_text(r.achieved_rpo_ms),
        duration_text(r.rpo_objective_ms),
        verdict_cell(r.rpo_met)
    );
    let _ = writeln!(
        page,
        "<tr><td>Teardown</td><td colspan=\"3\">{}</td></tr>\n</table>",
        if r.teardown_complete {
            "complete: nothing left behind".to_string()
        } else if r.kept {
            "kept for inspection, as asked: <code>lifeboat drill --cleanup</code> removes it"
                .to_string()
        } else {
            format!(
                "<span class=\"missed\">incomplete</span>: {}",
                escape(&r.left_behind.join("; "))
            )
        }
    );
}

const WIDTH: f64 = 960.0;
const LABEL: f64 = 190.0;
const ROW: f64 = 24.0;

fn timeline(page: &mut String, r: &DrillReport) {
    let span = r
        .steps
        .iter()
        .map(|s| s.started_ms + s.duration_ms)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let area = WIDTH - LABEL - 20.0;
    let x = |ms: f64| LABEL + ms / span * area;
    let height = 34.0 + ROW * r.steps.len() as f64;
    let _ = writeln!(
        page,
        "<svg id=\"timeline\" role=\"img\" aria-label=\"timeline of the drill's steps\" \
         width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\">"
    );
    for i in 0..=4 {
        let ms = span * f64::from(i) / 4.0;
        let _ = writeln!(
            page,
            "<line x1=\"{x:.1}\" y1=\"4\" x2=\"{x:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{x:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\">{t}</text>",
            x = x(ms),
            y = height - 22.0,
            ty = height - 8.0,
            t = duration_text(ms as u64)
        );
    }
    for (i, s) in r.steps.iter().enumerate() {
        let y = 6.0 + ROW * i as f64;
        let class = match s.status {
            StepStatus::Ok => "ok",
            StepStatus::Failed => "failed",
            StepStatus::NotRun => "not_run",
        };
        let (bx, bw) = match s.status {
            StepStatus::NotRun => (LABEL, 40.0),
            _ => (
                x(s.started_ms as f64),
                (s.duration_ms as f64 / span * area).max(2.0),
            ),
        };
        // The duration goes after the bar, or before it when the bar ends near the edge.
        let room = bx + bw + 70.0 < WIDTH;
        let label = match s.status {
            StepStatus::NotRun => "not run".to_string(),
            _ => duration_text(s.duration_ms),
        };
        let _ = writeln!(
            page,
            "<text x=\"{lx}\" y=\"{ty:.1}\">{step}</text>\
             <rect class=\"step-bar status-{class}\" data-step=\"{step}\" x=\"{bx:.1}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{h}\" rx=\"2\">\
             <title>{step}: {label}{detail}</title></rect>\
             <text x=\"{tx:.1}\" y=\"{ty:.1}\" text-anchor=\"{anchor}\">{label}</text>",
            lx = 4,
            ty = y + 13.0,
            step = escape(&s.step),
            h = ROW - 8.0,
            detail = s
                .detail
                .as_deref()
                .map(|d| format!(" — {}", escape(d)))
                .unwrap_or_default(),
            tx = if room { bx + bw + 6.0 } else { bx - 6.0 },
            anchor = if room { "start" } else { "end" },
        );
    }
    if let Some(rto) = r.achieved_rto_ms {
        let _ = writeln!(
            page,
            "<line x1=\"{x:.1}\" y1=\"2\" x2=\"{x:.1}\" y2=\"{y:.1}\" stroke=\"#1565c0\" stroke-width=\"2\"/>\
             <text x=\"{tx:.1}\" y=\"12\" fill=\"#1565c0\">RTO {t}</text>",
            x = x(rto as f64),
            y = height - 22.0,
            tx = (x(rto as f64) + 4.0).min(WIDTH - 80.0),
            t = duration_text(rto)
        );
    }
    if (r.rto_objective_ms as f64) <= span {
        let _ = writeln!(
            page,
            "<line x1=\"{x:.1}\" y1=\"2\" x2=\"{x:.1}\" y2=\"{y:.1}\" stroke=\"#c62828\" stroke-dasharray=\"5 3\"/>\
             <text x=\"{tx:.1}\" y=\"26\" fill=\"#c62828\">objective {t}</text>",
            x = x(r.rto_objective_ms as f64),
            y = height - 22.0,
            tx = (x(r.rto_objective_ms as f64) + 4.0).min(WIDTH - 100.0),
            t = duration_text(r.rto_objective_ms)
        );
    }
    page.push_str("</svg>\n");
    let _ = writeln!(
        page,
        "<p class=\"muted\">The RTO objective is {}{}.</p>",
        duration_text(r.rto_objective_ms),
        if (r.rto_objective_ms as f64) > span {
            ", beyond the end of this timeline"
        } else {
            " (dashed line)"
        }
    );
}

fn resources(page: &mut String, r: &DrillReport) {
    page.push_str(
        "<h2>Resources</h2>\n<table>\n<tr><th>resource</th><th>restored to</th>\
         <th>verification</th><th>changed at the live site since the point</th><th>RPO</th></tr>\n",
    );
    for res in &r.resources {
        let mut verified: Vec<String> = res.verified.iter().map(|v| escape(v)).collect();
        verified.extend(
            res.problems
                .iter()
                .map(|p| format!("<span class=\"missed\">{}</span>", escape(p))),
        );
        let changes = match &res.changes {
            None => "<span class=\"muted\">not measured</span>".to_string(),
            Some(c) => match (c.count, &c.unreadable) {
                (Some(n), _) => format!(
                    "{} at <code>{}</code>{}",
                    escape(&plural(n, &c.unit)),
                    escape(&c.site),
                    if c.examples.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "<br><span class=\"muted\">{}</span>",
                            escape(&c.examples.join(", "))
                        )
                    }
                ),
                (None, why) => format!(
                    "<span class=\"muted\">unreadable: {}</span>",
                    escape(why.as_deref().unwrap_or("?"))
                ),
            },
        };
        let _ = writeln!(
            page,
            "<tr><td><code>{}</code> <span class=\"muted\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{} (rpo {})</td></tr>",
            escape(&res.resource),
            escape(&res.kind),
            res.restored_to.as_deref().map(escape).unwrap_or_default(),
            if verified.is_empty() {
                "<span class=\"muted\">nothing</span>".to_string()
            } else {
                verified.join("<br>")
            },
            changes,
            verdict_cell(res.rpo_met),
            duration_text(res.rpo_objective_ms)
        );
    }
    page.push_str("</table>\n");
}

/// The newest drills shown in the trend.
const TREND_LIMIT: usize = 30;

fn trend_section(page: &mut String, trend: &[TrendPoint]) {
    let shown = &trend[trend.len().saturating_sub(TREND_LIMIT)..];
    let _ = writeln!(
        page,
        "<div id=\"trend\">\n<p class=\"muted\">The last {} drill(s) of this plan, oldest first.</p>",
        shown.len()
    );
    chart(
        page,
        "Achieved RTO",
        shown,
        |p| p.achieved_rto_ms,
        |p| p.rto_objective_ms,
    );
    chart(
        page,
        "Achieved RPO (age of the restore point)",
        shown,
        |p| Some(p.achieved_rpo_ms),
        |p| p.rpo_objective_ms,
    );
    page.push_str(
        "<table>\n<tr><th>drill</th><th>started</th><th>RTO</th><th>RPO</th><th>verdict</th></tr>\n",
    );
    for p in shown.iter().rev() {
        let _ = writeln!(
            page,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&p.drill),
            time_text(p.started),
            p.achieved_rto_ms
                .map_or_else(|| "not achieved".to_string(), duration_text),
            duration_text(p.achieved_rpo_ms),
            if p.passed {
                "<span class=\"met\">passed</span>"
            } else if p.interrupted {
                "<span class=\"missed\">interrupted</span>"
            } else {
                "<span class=\"missed\">failed</span>"
            }
        );
    }
    page.push_str("</table>\n</div>\n");
}

fn chart(
    page: &mut String,
    title: &str,
    points: &[TrendPoint],
    value: impl Fn(&TrendPoint) -> Option<u64>,
    objective: impl Fn(&TrendPoint) -> u64,
) {
    const HEIGHT: f64 = 170.0;
    const LEFT: f64 = 70.0;
    const TOP: f64 = 10.0;
    const BOTTOM: f64 = 24.0;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let top = points
        .iter()
        .flat_map(|p| [value(p).unwrap_or(0), objective(p)])
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.1;
    let n = points.len().max(1) as f64;
    let step = (WIDTH - LEFT - 20.0) / n;
    let px = |i: usize| LEFT + step * (i as f64 + 0.5);
    let py = |ms: f64| TOP + plot_h - ms / top * plot_h;
    let _ = writeln!(
        page,
        "<h3>{t}</h3>\n<svg role=\"img\" aria-label=\"{t}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\">\
         <line x1=\"{LEFT}\" y1=\"{y0:.1}\" x2=\"{x1:.1}\" y2=\"{y0:.1}\" stroke=\"#ccc\"/>\
         <text x=\"{lx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\">{max}</text>\
         <text x=\"{lx:.1}\" y=\"{y0:.1}\" text-anchor=\"end\">0</text>",
        t = escape(title),
        y0 = TOP + plot_h,
        x1 = WIDTH - 20.0,
        lx = LEFT - 6.0,
        ty = TOP + 4.0,
        max = duration_text(top as u64),
    );
    // The objective as a dashed step line (it may change between drills).
    let objective_path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "{:.1},{:.1} {:.1},{:.1}",
                px(i) - step / 2.0,
                py(objective(p) as f64),
                px(i) + step / 2.0,
                py(objective(p) as f64)
            )
        })
        .collect();
    if !objective_path.is_empty() {
        let _ = writeln!(
            page,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#c62828\" stroke-dasharray=\"5 3\"><title>objective</title></polyline>",
            objective_path.join(" ")
        );
    }
    let line: Vec<String> = points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| value(p).map(|v| format!("{:.1},{:.1}", px(i), py(v as f64))))
        .collect();
    if line.len() > 1 {
        let _ = writeln!(
            page,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#1565c0\" stroke-width=\"2\"/>",
            line.join(" ")
        );
    }
    for (i, p) in points.iter().enumerate() {
        let (y, label) = match value(p) {
            Some(v) => (py(v as f64), duration_text(v)),
            None => (TOP, "not achieved".to_string()),
        };
        let fill = if p.passed && value(p).is_some() {
            "#2e7d32"
        } else {
            "#c62828"
        };
        let _ = writeln!(
            page,
            "<circle class=\"trend-point\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"5\" fill=\"{fill}\">\
             <title>{drill}: {label}</title></circle>",
            x = px(i),
            drill = escape(&p.drill),
        );
        // As many dates as fit side by side (and always the newest).
        let every = (130.0 / step).ceil().max(1.0) as usize;
        if i % every == 0 || i + 1 == points.len() && i % every >= every / 2 {
            let _ = writeln!(
                page,
                "<text x=\"{x:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\">{d}</text>",
                x = px(i),
                ty = HEIGHT - 6.0,
                d = escape(&p.started.strftime("%Y-%m-%d %H:%M").to_string()),
            );
        }
    }
    page.push_str("</svg>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Changes, ResourceOutcome, StepTiming};

    fn report() -> DrillReport {
        DrillReport {
            drill: "20261201T030000.000Z-drill".into(),
            plan: "shop".into(),
            site: "drill".into(),
            declared_site: false,
            sandbox: "/tmp/lifeboat-drill-20261201T030000.000-1a2b3c4d".into(),
            only: vec![],
            point: "0123456789abcdef".repeat(4),
            point_time: "2026-12-01T02:55:00Z".parse().unwrap(),
            points: Default::default(),
            started: "2026-12-01T03:00:00Z".parse().unwrap(),
            finished: "2026-12-01T03:00:09Z".parse().unwrap(),
            steps: vec![
                StepTiming {
                    step: "provision:drill".into(),
                    status: StepStatus::Ok,
                    started_ms: 10,
                    duration_ms: 2000,
                    detail: Some("temporary PostgreSQL server".into()),
                },
                StepTiming {
                    step: "restore:db".into(),
                    status: StepStatus::Failed,
                    started_ms: 2010,
                    duration_ms: 3000,
                    detail: Some("pack <damaged> & unreadable".into()),
                },
                StepTiming {
                    step: "verify:db".into(),
                    status: StepStatus::NotRun,
                    started_ms: 0,
                    duration_ms: 0,
                    detail: None,
                },
                StepTiming {
                    step: "teardown".into(),
                    status: StepStatus::Ok,
                    started_ms: 5100,
                    duration_ms: 900,
                    detail: None,
                },
            ],
            resources: vec![ResourceOutcome {
                changes: Some(Changes {
                    site: "primary".into(),
                    count: Some(2),
                    unit: "table".into(),
                    examples: vec!["public.orders".into()],
                    unreadable: None,
                }),
                problems: vec!["restore failed: pack <damaged>".into()],
                rpo_met: true,
                ..ResourceOutcome::new("db", "postgres", 3_600_000)
            }],
            achieved_rto_ms: None,
            rto_objective_ms: 4000,
            rto_met: false,
            achieved_rpo_ms: 300_000,
            rpo_objective_ms: 3_600_000,
            rpo_met: true,
            teardown_complete: true,
            left_behind: vec![],
            kept: false,
            interrupted: false,
            problems: vec!["`db`: restore failed: pack <damaged>".into()],
            passed: false,
        }
    }

    fn trend() -> Vec<TrendPoint> {
        let mut earlier = TrendPoint::from(&report());
        earlier.drill = "20261124T030000.000Z-drill".into();
        earlier.started = "2026-11-24T03:00:00Z".parse().unwrap();
        earlier.achieved_rto_ms = Some(4200);
        earlier.passed = true;
        vec![earlier, TrendPoint::from(&report())]
    }

    #[test]
    fn the_page_is_self_contained_escaped_and_shows_every_step() {
        let page = render(&report(), &trend());
        for step in ["provision:drill", "restore:db", "verify:db", "teardown"] {
            assert!(page.contains(&format!("data-step=\"{step}\"")), "{step}");
        }
        assert!(page.contains("pack &lt;damaged&gt; &amp; unreadable"));
        assert!(!page.contains("<damaged>"));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no external resources"
        );
        assert_eq!(
            page.matches("class=\"trend-point\"").count(),
            4,
            "two charts × two drills"
        );
        assert!(page.contains("FAILED"));
    }

    #[test]
    fn the_page_is_stable() {
        expect_test::expect_file!["../tests/snapshots/report.html"]
            .assert_eq(&render(&report(), &trend()));
    }
}
