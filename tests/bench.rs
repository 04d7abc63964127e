//! `cargo xtask bench`: its figures are never asserted (they depend on the machine); only that
//! each was measured, that every ratio and median is computed from numbers in the same
//! `bench.json`, and that `bench.md` is the rendering of `bench.json`. The smoke run takes one
//! second per rate and one tutorial run.

use canary_e2e::xtask;
use harness::bench::{
    BENCH_JSON, BENCH_MD, Bench, HARNESS, Machine, Rate, Tutorial, TutorialRun, fmt_ratio, median,
    parse_load_output, row, vm_hwm_kib,
};

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

    assert_eq!(bench.through_mesh[0].tool, HARNESS);
    assert!(bench.through_mesh[0].per_s.is_some(), "{json}");
    // With wrk installed (`.ci/run` installs it), its rate is measured and read from its
    // output, and the ratio is the two rates' quotient.
    if harness::bench::which("wrk").is_some() {
        let wrk = bench.through_mesh.iter().find(|r| r.tool == "wrk").unwrap();
        let (h, w) = (bench.through_mesh[0].per_s.unwrap(), wrk.per_s.unwrap());
        assert!(wrk.requests > 0, "{json}");
        assert_eq!(bench.harness_vs_wrk, Some(h / w), "{json}");
    } else {
        eprintln!("wrk is not installed: its rate is not checked");
    }
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

fn bench() -> Bench {
    Bench {
        date: "2026-12-02".into(),
        machine: Machine {
            cores: 2,
            cpu: "test cpu".into(),
            profile: "debug".into(),
            debug_assertions: true,
            load_1m: Some(1.5),
        },
        concurrency: 8,
        duration_s: 5.0,
        through_mesh: vec![
            Rate::measured(HARNESS, "ingress", 12_500, 0, 5.0),
            Rate::measured("wrk", "ingress", 10_000, 3, 4.0),
            Rate::skipped("oha", "ingress", "not on PATH"),
        ],
        harness_vs_wrk_rounds: Vec::new(),
        harness_vs_wrk: None,
        backends: vec![Rate::measured("wrk", "backend `ga`", 30_000, 0, 5.0)],
        tutorial: Tutorial::from_runs(
            [(7.0, 40_000), (9.0, 50_000), (8.0, 45_000)]
                .into_iter()
                .map(|(wall_s, kib)| TutorialRun {
                    wall_s,
                    exit_code: Some(0),
                    peak_rss_kib: Some(kib),
                    report_dir: "x".into(),
                    session_s: Some(wall_s - 1.0),
                })
                .collect(),
        ),
        verdicts: vec![row(
            "canary warm-up".into(),
            2,
            705.0,
            2274.0,
            1410.0 * 3.0,
            6,
        )],
        notes: vec!["oha is not on PATH".into()],
    }
    .finish()
}

#[test]
fn ratios_and_medians_come_from_the_same_numbers() {
    let b = bench();
    let json: serde_json::Value = serde_json::to_value(&b).unwrap();
    let h = json["through_mesh"][0]["per_s"].as_f64().unwrap();
    let w = json["through_mesh"][1]["per_s"].as_f64().unwrap();
    assert_eq!(h, 2500.0);
    assert_eq!(w, 2500.0);
    assert_eq!(json["harness_vs_wrk"].as_f64().unwrap(), h / w);
    let v = &json["verdicts"][0];
    assert_eq!(
        v["plan_ratio"].as_f64().unwrap(),
        v["plan_expected"].as_f64().unwrap() / v["fixed"].as_f64().unwrap()
    );
    assert_eq!(v["measured"].as_f64().unwrap(), 705.0);
    assert_eq!(
        v["measured_ratio"].as_f64().unwrap(),
        v["measured"].as_f64().unwrap() / v["fixed"].as_f64().unwrap()
    );
    assert_eq!(json["tutorial"]["median_wall_s"].as_f64(), Some(8.0));
    assert_eq!(
        json["tutorial"]["median_peak_rss_kib"].as_u64(),
        Some(45_000)
    );
    // The table shows exactly those numbers.
    let md = b.markdown();
    assert!(
        md.contains(
            "| harness prober through Envoy (ingress), c = 8 | 2500 req/s (12500 requests) |"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "| wrk through Envoy (ingress), c = 8 | 2500 req/s (10000 requests, 3 errors) |"
        ),
        "{md}"
    );
    assert!(
        md.contains(&format!(
            "| harness / wrk, same mesh and concurrency | {} |",
            fmt_ratio(h / w)
        )),
        "{md}"
    );
    assert!(
        md.contains("| oha through Envoy (ingress), c = 8 | skipped: not on PATH |"),
        "{md}"
    );
    assert!(
        md.contains("| tutorial wall (process), median of 3 | 8.00 s |"),
        "{md}"
    );
    assert!(
        md.contains(&format!("705 / 2274 = {}", fmt_ratio(705.0 / 2274.0))),
        "{md}"
    );
    assert!(
        md.contains("measured mean (6 verdicts) / fixed | 705 / 2274"),
        "{md}"
    );
    assert!(md.contains("43.9 / 48.8 MiB"), "{md}");
    // And the JSON reads back as it was written.
    let back: Bench = serde_json::from_value(json).unwrap();
    assert_eq!(back, b);
}

#[test]
fn the_ratio_to_wrk_is_the_median_of_the_rounds_ratios() {
    // (harness requests, wrk requests) per round, 5 s each: ratios 0.5, 0.9 and 0.8.
    let per_round = [(5_000u64, 10_000u64), (9_000, 10_000), (8_000, 10_000)];
    let mut b = bench();
    b.through_mesh = per_round
        .iter()
        .zip(1..)
        .flat_map(|(&(h, w), round)| {
            [
                Rate::measured(HARNESS, "ingress", h, 0, 5.0).in_round(round),
                Rate::measured("wrk", "ingress", w, 0, 5.0).in_round(round),
            ]
        })
        .collect();
    let b = b.finish();
    let each: Vec<f64> = per_round
        .iter()
        .map(|&(h, w)| h as f64 / w as f64)
        .collect();
    assert_eq!(b.harness_vs_wrk_rounds, each);
    let mut sorted = each.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(b.harness_vs_wrk, Some(sorted[1]));
    let md = b.markdown();
    assert!(
        md.contains(
            "| harness / wrk, same mesh and concurrency, median of 3 rounds (min–max) | 0.80 (0.50–0.90) |"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "| wrk through Envoy (ingress), c = 8, round 3 | 2000 req/s (10000 requests) |"
        ),
        "{md}"
    );
    // A round without wrk has no ratio, and the others still count.
    let mut b = b;
    b.through_mesh
        .retain(|r| !(r.tool == "wrk" && r.round == 2));
    let b = b.finish();
    assert_eq!(b.harness_vs_wrk_rounds, vec![each[0], each[2]]);
    assert_eq!(b.harness_vs_wrk, Some((each[0] + each[2]) / 2.0));
}

#[test]
fn reads_wrk_and_oha_output() {
    let wrk = "Running 5s test @ http://127.0.0.1:1/\n  2 threads and 8 connections\n  12345 requests in 5.01s, 2.1MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 4\nRequests/sec:   2464.07\n";
    assert_eq!(parse_load_output(wrk), Some((12345, 7, Some(5.01))));
    let oha = "Summary:\n  Success rate:\t100.00%\n  Total:\t5.0012 secs\n  Requests/sec:\t2000.0000\n\nStatus code distribution:\n  [200] 9990 responses\n  [503] 10 responses\n";
    assert_eq!(parse_load_output(oha), Some((10_000, 10, Some(5.0012))));
    assert_eq!(parse_load_output("nothing"), None);
    assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), Some(2.5));
    assert_eq!(vm_hwm_kib("Name:\tx\nVmHWM:\t   51200 kB\n"), Some(51200));
}

#[test]
fn every_figure_reads_back_from_bench_json_bit_for_bit() {
    // Rates are quotients of counts by measured durations, so they have all 17 significant
    // digits; `a_quick_bench_writes_consistent_figures` compares the ratio read back with the
    // quotient of the rates read back, which holds only if parsing gives the very same doubles.
    for i in 0..500u64 {
        let mut b = bench();
        let seconds = |k: u64| 5.0 + (i * 7919 + k) as f64 * 1.3e-7;
        b.through_mesh = vec![
            Rate::measured(HARNESS, "ingress", 60_000 + i * 37, 0, seconds(1)),
            Rate::measured("wrk", "ingress", 80_000 + i * 53, 0, seconds(2)),
        ];
        let b = b.finish();
        let text = serde_json::to_string(&b).unwrap();
        let back: Bench = serde_json::from_str(&text).unwrap();
        assert_eq!(back, b, "{text}");
        let (h, w) = (back.through_mesh[0].per_s, back.through_mesh[1].per_s);
        assert_eq!(back.harness_vs_wrk, Some(h.unwrap() / w.unwrap()), "{text}");
    }
}
