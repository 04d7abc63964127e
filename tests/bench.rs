//! `cargo xtask bench`, smoke-run: one second per rate and one tutorial run. The figures are
//! never asserted (they depend on the machine); only that each was measured and that
//! `bench.md` is the rendering of `bench.json`.

use canary_e2e::xtask;
use harness::bench::{BENCH_JSON, BENCH_MD, Bench};

#[test]
fn a_quick_bench_writes_consistent_figures() {
    let dir = tempfile::tempdir().unwrap();
    let out = xtask()
        .args([
            "bench",
            "--runs",
            "1",
            "--quick",
            "--no-install",
            "--report-dir",
        ])
        .arg(dir.path())
        .timeout(std::time::Duration::from_secs(300))
        .assert()
        .code(0);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let json = std::fs::read_to_string(dir.path().join(BENCH_JSON)).unwrap();
    let bench: Bench = serde_json::from_str(&json).unwrap();
    let md = std::fs::read_to_string(dir.path().join(BENCH_MD)).unwrap();
    assert_eq!(md, bench.markdown());
    assert!(stdout.contains(&md), "the table is printed:\n{stdout}");

    assert_eq!(bench.through_mesh[0].tool, harness::bench::HARNESS);
    assert!(bench.through_mesh[0].per_s.is_some(), "{json}");
    assert_eq!(bench.backends.len(), 2, "one per subset: {json}");
    assert!(bench.backends.iter().all(|b| b.per_s.is_some()), "{json}");
    assert_eq!(bench.tutorial.runs.len(), 1);
    assert_eq!(bench.tutorial.passed, 1, "{json}");
    assert!(bench.tutorial.median_peak_rss_kib.is_some(), "{json}");
    let all = bench.verdicts.last().unwrap();
    assert_eq!(all.stage, "all tests");
    assert_eq!(
        all.measured_verdicts, 8,
        "4 stages × 2 entry points: {json}"
    );
}
