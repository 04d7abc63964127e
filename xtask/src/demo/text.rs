//! What the demo shows besides the run itself: the VirtualService as YAML and its change per
//! stage, the traffic shift drawn with block characters, and small layout helpers.

use std::path::Path;

use console::Style;
use harness::render;
use harness::report::Report;
use similar::{ChangeTag, TextDiff};

use crate::project_root;

/// Colors of the story; all plain when colors are off.
pub struct Palette {
    pub title: Style,
    pub dim: Style,
    pub baseline: Style,
    pub canary: Style,
    pub pass: Style,
    pub fail: Style,
    pub removed: Style,
    pub added: Style,
    pub hunk: Style,
}

impl Palette {
    pub fn new() -> Self {
        Self {
            title: Style::new().bold(),
            dim: Style::new().dim(),
            baseline: Style::new().blue(),
            canary: Style::new().yellow(),
            pass: Style::new().green().bold(),
            fail: Style::new().red().bold(),
            removed: Style::new().red(),
            added: Style::new().green(),
            hunk: Style::new().cyan(),
        }
    }
}

/// The VirtualService as YAML, as `kubectl get -o yaml` would show its spec.
pub fn yaml(vs: &serde_json::Value) -> String {
    serde_saphyr::to_string(vs).unwrap_or_else(|e| format!("# cannot render as YAML: {e}\n"))
}

/// A unified diff of the VirtualService's YAML, colored on a terminal; empty when equal.
pub fn yaml_diff(
    before: &serde_json::Value,
    after: &serde_json::Value,
    stage: &str,
    p: &Palette,
) -> String {
    let (old, new) = (yaml(before), yaml(after));
    let diff = TextDiff::from_lines(&old, &new);
    let mut out = String::new();
    let name = after["metadata"]["name"].as_str().unwrap_or("?");
    for (i, hunk) in diff
        .unified_diff()
        .context_radius(3)
        .iter_hunks()
        .enumerate()
    {
        if i == 0 {
            out.push_str(&format!(
                "{}\n{}\n",
                p.removed
                    .apply_to(format!("--- VirtualService {name} (before)")),
                p.added
                    .apply_to(format!("+++ VirtualService {name} ({stage})"))
            ));
        }
        out.push_str(&format!("{}\n", p.hunk.apply_to(hunk.header())));
        for change in hunk.iter_changes() {
            let line = format!("{}{}", change.tag(), change.value().trim_end_matches('\n'));
            let styled = match change.tag() {
                ChangeTag::Delete => p.removed.apply_to(line),
                ChangeTag::Insert => p.added.apply_to(line),
                ChangeTag::Equal => p.dim.apply_to(line),
            };
            out.push_str(&format!("{styled}\n"));
        }
    }
    out
}

/// Answers per second of each version over the run, one column per slice of time, drawn
/// with block characters; plus the canary's share and the stages below.
pub fn traffic_text(report: &Report, p: &Palette) -> String {
    const COLUMNS: usize = 64;
    const LEVELS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let spans: Vec<(usize, render::Span)> = report
        .stages
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s.entries
                .iter()
                .flat_map(move |e| render::spans(e).into_iter().map(move |span| (i, span)))
        })
        .collect();
    let Some(end) = spans.iter().map(|(_, s)| s.to_s).reduce(f64::max) else {
        return "no answers were recorded".into();
    };
    let slice = end / COLUMNS as f64;
    // Answers per subset, errors, covered seconds, and the stage, per column.
    let mut counts = vec![vec![0.0; report.subsets.len()]; COLUMNS];
    let mut covered = vec![0.0; COLUMNS];
    let mut stage_of = vec![None; COLUMNS];
    for (stage, span) in &spans {
        for (c, column) in counts.iter_mut().enumerate() {
            let (from, to) = (c as f64 * slice, (c + 1) as f64 * slice);
            let overlap = (span.to_s.min(to) - span.from_s.max(from)).max(0.0);
            if overlap <= 0.0 {
                continue;
            }
            let part = overlap / span.seconds();
            for (k, subset) in report.subsets.iter().enumerate() {
                column[k] += part * span.counts.get(subset).copied().unwrap_or(0) as f64;
            }
            covered[c] += overlap;
            stage_of[c].get_or_insert(*stage);
        }
    }
    let rate = |c: usize, k: usize| {
        if covered[c] > 0.0 {
            counts[c][k] / covered[c]
        } else {
            0.0
        }
    };
    let top = (0..COLUMNS)
        .flat_map(|c| (0..report.subsets.len()).map(move |k| (c, k)))
        .map(|(c, k)| rate(c, k))
        .fold(0.0, f64::max)
        .max(1e-9);
    let level = |x: f64| {
        if x <= 0.0 {
            LEVELS[0]
        } else {
            LEVELS[((x * 8.0).ceil() as usize).clamp(1, 8)]
        }
    };
    let labels: Vec<String> = report
        .subsets
        .iter()
        .map(|s| match report.versions.get(s) {
            Some(v) => format!("{s} ({v})"),
            None => s.clone(),
        })
        .chain(["canary share".to_string(), "stage".to_string()])
        .collect();
    let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) + 2;
    let mut out = format!(
        "answers per second of each version over {:.1} s (full block = {:.0}/s; a column is {:.2} s):\n",
        end, top, slice
    );
    for (k, _) in report.subsets.iter().enumerate() {
        let line: String = (0..COLUMNS).map(|c| level(rate(c, k) / top)).collect();
        let style = if k == 0 { &p.baseline } else { &p.canary };
        out.push_str(&format!("{:<width$}{}\n", labels[k], style.apply_to(line)));
    }
    let share: String = (0..COLUMNS)
        .map(|c| {
            let total: f64 = counts[c].iter().sum();
            match counts[c].get(1) {
                Some(canary) if total > 0.0 => level(canary / total).to_string(),
                _ => " ".to_string(),
            }
        })
        .collect();
    out.push_str(&format!(
        "{:<width$}{}\n",
        labels[report.subsets.len()],
        p.canary.apply_to(share)
    ));
    let mut stages = String::new();
    let mut last = None;
    for stage in &stage_of {
        stages.push(match (stage, last) {
            (Some(s), l) if l != Some(*s) => {
                char::from_digit((*s as u32 + 1) % 36, 36).unwrap_or('?')
            }
            (Some(_), _) => '─',
            (None, _) => ' ',
        });
        if stage.is_some() {
            last = *stage;
        }
    }
    out.push_str(&format!(
        "{:<width$}{stages}\n",
        labels[report.subsets.len() + 1]
    ));
    let end_label = format!("{end:.1} s");
    out.push_str(&format!(
        "{:<width$}0 s{}{end_label}\n",
        "",
        " ".repeat(COLUMNS.saturating_sub(3 + end_label.len()))
    ));
    let legend: Vec<String> = report
        .stages
        .iter()
        .map(|s| format!("{} {}", s.index + 1, s.name))
        .collect();
    out.push_str(&format!("{:<width$}{}", "", legend.join(" · ")));
    out
}

/// Left-aligned columns; those from `numeric_from` on right-aligned.
pub fn table<const N: usize>(rows: &[[String; N]], numeric_from: usize) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c >= numeric_from {
                    format!("{cell:>w$}", w = widths[c])
                } else {
                    format!("{cell:<w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub fn bullets(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("• {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}", " ".repeat(by)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A path relative to the project root where it lies under it, without `..`.
pub fn display(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let root = std::fs::canonicalize(project_root()).unwrap_or_else(|_| project_root());
    path.strip_prefix(&root)
        .unwrap_or(&path)
        .display()
        .to_string()
}
