//! `report.html`: one self-contained page (inline CSS, inline SVG charts, no scripts, nothing
//! fetched) that shows whether the canary split held, and how the traffic moved.

use std::fmt::Write as _;

use crate::report::Report;

use super::charts::{latency_chart, latency_gate_chart, split_chart, traffic_chart};
use super::{HEADERS, headline, label, latency_headers, pct, rows, verdict_word};

const STYLE: &str = r#"
:root { color-scheme: light; --pass: #1a7f37; --fail: #cc0000; --muted: #57606a; --line: #d0d7de; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1180px; padding: 24px; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; background: #fff; }
header { border-left: 8px solid var(--pass); padding: 8px 16px; margin-bottom: 16px; background: #f6f8fa; }
header.failed { border-color: var(--fail); }
h1 { margin: 0 0 4px; font-size: 26px; }
h1 .verdict { color: var(--pass); }
h1 code { font-size: inherit; }
header.failed h1 .verdict { color: var(--fail); }
h2 { font-size: 19px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.muted { color: var(--muted); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
figure { margin: 8px 0 16px; }
figure svg { display: block; width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 6px; text-align: left; white-space: nowrap; }
th { white-space: normal; vertical-align: bottom; }
.table { overflow-x: auto; }
td.num { text-align: right; }
th { background: #f6f8fa; }
tr.fail td { background: #fff0f0; }
.pass { color: var(--pass); font-weight: 600; }
.fail { color: var(--fail); font-weight: 600; }
ul.reasons { padding-left: 20px; }
ul.reasons li { margin: 2px 0; }
.aborted { border: 1px solid var(--fail); background: #fff0f0; padding: 8px 12px; border-radius: 6px; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 13px; }
"#;

/// The HTML page of a run.
pub fn html(report: &Report) -> anyhow::Result<String> {
    let mut out = String::new();
    let word = verdict_word(report);
    let class = if report.passed { "passed" } else { "failed" };
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">"
    );
    let _ = writeln!(
        out,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    );
    let _ = writeln!(
        out,
        "<title>{word}: canary {} on the {} mesh</title>\n<style>{STYLE}</style>\n</head>\n<body>",
        escape(&report.scenario),
        escape(&report.mesh)
    );

    let _ = writeln!(out, "<header class=\"{class}\">");
    let _ = writeln!(
        out,
        "<h1><span class=\"verdict\">{word}</span> · canary <code>{}</code> on the {} mesh</h1>",
        escape(&report.scenario),
        escape(&report.mesh)
    );
    let _ = writeln!(out, "<p id=\"headline\">{}</p>", escape(&headline(report)));
    if let Some(description) = &report.description {
        let _ = writeln!(out, "<p class=\"muted\">{}</p>", escape(description));
    }
    let _ = writeln!(out, "</header>");
    if let Some(reason) = &report.aborted {
        let _ = writeln!(
            out,
            "<p class=\"aborted\"><strong>The run stopped early:</strong> {}</p>",
            escape(reason)
        );
    }

    let versions: Vec<String> = report.subsets.iter().map(|s| label(report, s)).collect();
    let facts = [
        ("scenario file", report.scenario_file.display().to_string()),
        ("started", report.started_at.clone()),
        ("wall time", format!("{:.1} s", report.wall_time_s)),
        (
            "subsets",
            format!("{} (baseline, canary)", versions.join(", ")),
        ),
        (
            "entry points",
            report
                .entry_points
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "statistics",
            format!(
                "α = {} for the run (false failure), split over {} tests; β = {} (missed shift); δ = {} points (smallest shift that must be caught)",
                report.budget.alpha,
                report.tests_in_run,
                report.budget.beta,
                report.budget.delta * 100.0
            ),
        ),
    ];
    let _ = writeln!(out, "<dl class=\"facts\">");
    for (term, value) in facts {
        let _ = writeln!(out, "<dt>{term}</dt><dd>{}</dd>", escape(&value));
    }
    let _ = writeln!(out, "</dl>");

    let charts = [
        (
            "Canary share per stage",
            split_chart(report)?,
            "The line marks the share each stage's weights ask for; each dot is the share \
             observed on one entry point, its bar the exact Clopper–Pearson interval at \
             1 − α per test. A red cross marks a failed verdict.",
        ),
        (
            "Traffic shift",
            traffic_chart(report)?,
            "Good answers per second of each version, over the whole run. Shaded bands are the \
             stages; within a stage the entry points are sampled one after the other.",
        ),
        (
            "Request latency for each deployment",
            latency_chart(report)?,
            "Latency of good answers as the prober measured it, per version, stage and entry \
             point (the first entry point in full color, the second lighter).",
        ),
        (
            "Canary latency against the baseline, with the gates",
            latency_gate_chart(report)?,
            "Each relative latency gate as judged at each stage, on the answers of all its \
             tests: the dot is the estimate of canary ÷ baseline latency (Hodges–Lehmann \
             shift of the log latencies, or the ratio of the gate's quantiles), the bar runs \
             down to the one-sided bound the gate compares at its α, the dash is the gate's \
             limit. A gate fails when that bound lies above its limit (red cross).",
        ),
    ];
    for (title, svg, caption) in charts {
        let _ = writeln!(out, "<h2>{title}</h2>\n<figure>\n{svg}");
        let _ = writeln!(
            out,
            "<figcaption>{}</figcaption>\n</figure>",
            escape(caption)
        );
    }

    let _ = writeln!(
        out,
        "<h2 id=\"stages\">Stages</h2>\n<div class=\"table\">\n<table>\n<thead><tr>"
    );
    let mut headers: Vec<String> = HEADERS.iter().map(|h| h.to_string()).collect();
    headers.extend(latency_headers(report));
    headers.push("verdict".into());
    for h in &headers {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    let _ = writeln!(out, "</tr></thead>\n<tbody>");
    for row in rows(report) {
        let _ = write!(
            out,
            "<tr class=\"{}\">",
            if row.passed { "pass-row" } else { "fail" }
        );
        for text in [&row.stage, &row.entry, &row.weights] {
            let _ = write!(out, "<td>{}</td>", escape(text));
        }
        for text in [
            &row.expected,
            &row.observed,
            &row.interval,
            &row.p_value,
            &row.requests,
            &row.errors,
        ] {
            let _ = write!(out, "<td class=\"num\">{}</td>", escape(text));
        }
        for text in &row.latency {
            let _ = write!(out, "<td class=\"num\">{}</td>", escape(text));
        }
        let _ = writeln!(
            out,
            "<td>{}</td></tr>",
            if row.passed {
                "<span class=\"pass\">PASS</span>"
            } else {
                "<span class=\"fail\">FAIL</span>"
            }
        );
    }
    let _ = writeln!(out, "</tbody>\n</table>\n</div>");

    let _ = writeln!(
        out,
        "<h2 id=\"verdicts\">Verdicts</h2>\n<ul class=\"reasons\">"
    );
    for e in report.stages.iter().flat_map(|s| &s.entries) {
        let (class, word) = if e.passed {
            ("pass", "PASS")
        } else {
            ("fail", "FAIL")
        };
        let _ = writeln!(
            out,
            "<li><span class=\"{class}\">{word}</span> {}. {} / {}: {}{}</li>",
            e.stage + 1,
            escape(&e.stage_name),
            escape(&e.label()),
            escape(&e.reason),
            if e.errors > 0 {
                format!(
                    " <span class=\"muted\">({} errors, {})</span>",
                    e.errors,
                    pct(e.error_rate)
                )
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(out, "</ul>");
    let mut topic = None;
    for f in super::findings(report) {
        if topic != Some(f.topic) {
            if topic.is_some() {
                let _ = writeln!(out, "</ul>");
            }
            let _ = writeln!(
                out,
                "<h2>{}</h2>\n<ul class=\"reasons release\">",
                escape(f.topic.title())
            );
            topic = Some(f.topic);
        }
        let (class, word) = if f.passed {
            ("pass", "PASS")
        } else {
            ("fail", "FAIL")
        };
        let _ = writeln!(
            out,
            "<li><span class=\"{class}\">{word}</span> {}: <span class=\"muted\">{}</span></li>",
            escape(&f.title),
            escape(&f.detail)
        );
    }
    if topic.is_some() {
        let _ = writeln!(out, "</ul>");
    }
    let _ = writeln!(
        out,
        "<p class=\"muted\">The data of this page is in <code>report.json</code> beside it; \
         <code>junit.xml</code> and <code>summary.md</code> say the same for CI.</p>\n</body>\n</html>"
    );
    Ok(out)
}

/// Text safe inside HTML and SVG elements and attributes.
pub(crate) fn escape(text: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{CHART_IDS, fixture};

    #[test]
    fn the_page_holds_every_chart_and_nothing_from_outside() {
        let report = fixture::report(Some("full promotion"));
        let page = html(&report).unwrap();
        assert_eq!(page.matches("<svg").count(), CHART_IDS.len());
        for id in CHART_IDS {
            assert!(
                page.contains(&format!("<svg id=\"{id}\""))
                    || page.contains(&format!(" id=\"{id}\""))
            );
        }
        for bad in [
            "src=\"http",
            "href=\"http",
            "<script",
            "<link",
            "url(http",
            "@import",
        ] {
            assert!(!page.contains(bad), "{bad}");
        }
        assert!(page.contains("&lt;between&gt;"), "descriptions are escaped");
        assert!(page.contains("<tr class=\"fail\">"));
        assert!(page.contains("<h1><span class=\"verdict\">FAILED</span>"));
    }
}
