//! `summary.md`: a one-line headline and a compact table, for pull requests and CI summaries.

use std::fmt::Write as _;

use crate::report::Report;

use super::{HEADERS, findings, headline, latency_headers, rows};

/// The Markdown summary of a run.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let mark = if report.passed { "✅" } else { "❌" };
    let _ = writeln!(out, "### {mark} {}", cell(&headline(report)));
    let _ = writeln!(out);
    if let Some(reason) = &report.aborted {
        let _ = writeln!(out, "**The run stopped early:** {}", cell(reason));
        let _ = writeln!(out);
    }
    let mut headers: Vec<String> = HEADERS.iter().map(|h| h.to_string()).collect();
    headers.extend(latency_headers(report));
    headers.push("verdict".into());
    let _ = writeln!(out, "| {} |", headers.join(" | "));
    let align: Vec<&str> = headers
        .iter()
        .enumerate()
        .map(|(i, _)| if (3..9).contains(&i) { "--:" } else { "---" })
        .collect();
    let _ = writeln!(out, "| {} |", align.join(" | "));
    for row in rows(report) {
        let mut cells = vec![
            row.stage,
            row.entry,
            row.weights,
            row.expected,
            row.observed,
            row.interval,
            row.p_value,
            row.requests,
            row.errors,
        ];
        cells.extend(row.latency);
        cells.push(if row.passed { "✅ pass" } else { "❌ FAIL" }.into());
        let cells: Vec<String> = cells.iter().map(|c| cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    let mut topic = None;
    for f in findings(report) {
        if topic != Some(f.topic) {
            let _ = writeln!(out);
            let _ = writeln!(out, "**{}**", f.topic.title());
            let _ = writeln!(out);
            topic = Some(f.topic);
        }
        let mark = if f.passed { "✅" } else { "❌" };
        let _ = writeln!(out, "- {mark} **{}**: {}", cell(&f.title), cell(&f.detail));
    }
    let failed: Vec<_> = report.failed_entries().collect();
    if !failed.is_empty() {
        let _ = writeln!(out);
        for e in failed {
            let _ = writeln!(
                out,
                "- ❌ **{} / {}**: {}",
                cell(&e.stage_name),
                cell(&e.label()),
                cell(&e.reason)
            );
        }
    }
    out
}

/// Text that cannot break the table: pipes escaped, lines joined.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixture;

    #[test]
    fn a_row_per_stage_and_entry_under_a_headline() {
        let report = fixture::report(Some("canary warm-up"));
        let md = markdown(&report);
        let lines: Vec<&str> = md.lines().collect();
        assert!(
            lines[0].starts_with("### ❌ FAILED: scenario `tutorial`"),
            "{md}"
        );
        let rows = lines
            .iter()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| stage") && !l.starts_with("| ---"))
            .count();
        assert_eq!(rows, 8, "{md}");
        assert!(md.contains("| 2. canary warm-up | mesh |"), "{md}");
        assert!(md.contains("- ❌ **canary warm-up / mesh**"), "{md}");
        let columns = lines[2].matches(" | ").count() + 1;
        assert_eq!(columns, 12, "{md}");
    }
}
