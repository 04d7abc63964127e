//! `report.html` of a real run, opened in headless Chromium: the page renders, its charts are
//! in the DOM, and the screenshot shows them.
//!
//! Without Chromium the test says so and passes, except under CI (`$CI` set), which installs
//! Debian's `chromium` and must not skip.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use canary_e2e::xtask;
use harness::render::{self, CHART_IDS};

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 2000;

fn chromium() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/bin/chromium")).filter(|p| p.is_file()))
}

/// Runs Chromium headless on `page` with `extra` flags; kills it after a minute.
fn headless(chromium: &Path, profile: &Path, page: &Path, extra: &[String]) -> Output {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting chromium");
    // Drain both pipes while waiting, so a chatty Chromium never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("chromium did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

#[test]
fn the_report_page_renders_in_chromium() {
    let Some(chromium) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("no Chromium, and CI must run the browser test: install Debian's chromium");
        }
        // Straight to stderr: libtest captures eprintln!, and a skip must be seen.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED browser test: no Chromium (install Debian's chromium package)\n",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    xtask()
        .args(["e2e", "--mesh", "local", "--report-dir"])
        .arg(&reports)
        .assert()
        .success();
    let page = reports.join(render::REPORT_HTML);
    let profile = dir.path().join("chromium-profile");

    // The DOM as Chromium built it: every chart is there, as SVG.
    let dom = headless(&chromium, &profile, &page, &["--dump-dom".into()]);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert_eq!(
        dom_text.matches("<svg").count(),
        CHART_IDS.len(),
        "{dom_text}"
    );
    for id in CHART_IDS {
        assert!(
            dom_text.contains(&format!("id=\"{id}\"")),
            "{id} not in the DOM"
        );
    }
    assert!(dom_text.contains("PASSED"), "the headline is in the DOM");
    let log = String::from_utf8_lossy(&dom.stderr);
    for bad in ["CONSOLE", "Failed to load resource", "Uncaught"] {
        assert!(!log.contains(bad), "Chromium logged `{bad}`:\n{log}");
    }

    // The screenshot: a PNG of the window's size, with the charts' colors in it.
    let shot = dir.path().join("report.png");
    let run = headless(
        &chromium,
        &profile,
        &page,
        &[
            format!("--screenshot={}", shot.display()),
            format!("--window-size={WIDTH},{HEIGHT}"),
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&shot).expect("the screenshot exists"),
    ));
    let mut reader = decoder.read_info().expect("the screenshot is a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader
        .next_frame(&mut pixels)
        .expect("decoding the screenshot");
    assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let rgb: Vec<[u8; 3]> = pixels[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    let first = rgb[0];
    assert!(rgb.iter().any(|p| *p != first), "the screenshot is blank");
    let near = |p: &[u8; 3], c: [u8; 3]| p.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 12);
    // The baseline's blue and the canary's orange of the traffic and latency charts.
    for (name, color) in [
        ("baseline blue", [31, 119, 180]),
        ("canary orange", [230, 115, 0]),
    ] {
        let count = rgb.iter().filter(|p| near(p, color)).count();
        assert!(
            count > 200,
            "{count} pixels of the {name}: are the charts drawn?"
        );
    }
    if let Some(keep) = std::env::var_os("CANARY_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).expect("keeping the screenshot");
    }
}
