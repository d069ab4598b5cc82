//! Keeps the load generator working: the `tiny` preset, seconds long,
//! through both the SFU and the relay baseline, twice; and `tiny-churn`,
//! participants leaving and rejoining; and `tiny-grid`, simulcast cameras
//! seen at tile sizes. Performance figures live in the
//! benchmark runs, not here; this only checks the tool measures and checks.
//!
//! They run one after the other (one test): on a 2-core CI machine, two
//! load runs at once would starve each other.

use serde_json::Value;
use std::process::Command;

/// Runs `zync-load` with `args`, expecting success; returns its table and
/// its JSON report.
fn zync_load(name: &str, args: &[&str]) -> (String, Value) {
    let dir = std::env::temp_dir().join(format!("zync-load-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_zync-load"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("zync-load runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "zync-load {args:?} failed:\n{stdout}\n{stderr}"
    );
    let report = serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("json");
    let _ = std::fs::remove_dir_all(&dir);
    (stdout, report)
}

/// The figures every run of either forwarder must have.
fn assert_measured(side: &str, s: &Value, joined: u64) {
    assert_eq!(s["joined"], joined, "{side}: {s}");
    assert!(s["seconds"].as_f64().unwrap_or(0.0) > 1.0, "{side}: {s}");
    assert!(
        s["forwarded_pps"].as_f64().unwrap_or(0.0) > 100.0,
        "{side}: {s}"
    );
    assert!(
        s["cpu_us_per_packet"].as_f64().unwrap_or(0.0) > 0.0,
        "{side}: {s}"
    );
    assert!(
        s["loss_mean_percent"].as_f64().unwrap_or(100.0) < 5.0,
        "{side}: {s}"
    );
    assert!(
        s["latency_ms"]["samples"].as_u64().unwrap_or(0) > 0,
        "{side}: {s}"
    );
    assert!(s["failures"].as_array().is_some_and(Vec::is_empty), "{s}");
}

#[test]
fn tiny_presets_run_measure_and_check() {
    // 3 publishers, each heard by 2: several hundred packets a second.
    let (stdout, report) = zync_load("tiny", &["--preset", "tiny", "--baseline", "--rounds", "2"]);
    assert!(stdout.contains("CPU us per forwarded packet"), "{stdout}");
    assert!(stdout.contains("measured window s"), "{stdout}");
    for side in ["sfu", "baseline"] {
        assert_measured(side, &report[side], 3);
    }
    let sfu = &report["sfu"];
    // Everyone heard everyone's two streams, over offers of 2 m-lines.
    assert_eq!(sfu["delivery"]["pairs"], 12, "{sfu}");
    assert_eq!(sfu["delivery"]["failed"], 0, "{sfu}");
    assert_eq!(sfu["largest_sdp"]["m_lines"], 4, "{sfu}");
    assert!(report["baseline"]["largest_sdp"].is_null(), "{report}");
    assert!(report["cpu_ratio_sfu_to_baseline"].as_f64().is_some());
    assert_eq!(report["plan"]["duration"], 3.0, "{report}");
    // Both rounds ran both forwarders; the table names them.
    let rounds = report["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2, "{report}");
    for r in rounds {
        assert!(r["ratio"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
    }
    assert!(stdout.contains("the table is the median"), "{stdout}");

    // 10 leave/rejoin cycles among 5: afterwards everyone still hears
    // everyone, and offers stay at two m-lines per other participant.
    let (stdout, report) = zync_load("churn", &["--preset", "tiny-churn"]);
    let sfu = &report["sfu"];
    assert_measured("sfu", sfu, 5);
    assert_eq!(sfu["churn_cycles"], 10, "{sfu}");
    assert_eq!(sfu["delivery"]["pairs"], 5 * 4 * 2, "{sfu}");
    assert_eq!(sfu["delivery"]["failed"], 0, "{sfu}");
    let m_lines = sfu["largest_sdp"]["m_lines"].as_u64().unwrap_or(u64::MAX);
    assert!((8..=12).contains(&m_lines), "{sfu}");
    assert!(stdout.contains("churn cycles done"), "{stdout}");

    // 6 with simulcast cameras, each showing one large, two small and two
    // paged out: the large arrive at the top layer, the small at the
    // lowest, the paged-out not at all (paused at the SFU).
    let (stdout, report) = zync_load("grid", &["--preset", "tiny-grid"]);
    let sfu = &report["sfu"];
    assert_measured("sfu", sfu, 6);
    let delivery = &sfu["delivery"];
    assert_eq!(delivery["pairs"], 2 * 5 + 6 * 3, "{sfu}");
    assert_eq!(delivery["failed"], 0, "{sfu}");
    assert_eq!(delivery["wrong_layer"], 0, "{sfu}");
    assert_eq!(delivery["hidden"], 6 * 2, "{sfu}");
    assert_eq!(delivery["hidden_receiving"], 0, "{sfu}");
    let adaptation = &sfu["adaptation"];
    assert_eq!(adaptation["paused_tracks"], 12.0, "{sfu}");
    let shares = &adaptation["layer_shares"];
    let share = |layer: usize| shares[layer].as_f64().unwrap_or(-1.0);
    assert!(share(0) > 0.2 && share(1) == 0.0 && share(2) > 0.2, "{sfu}");
    assert!(
        adaptation["reduction"].as_f64().unwrap_or(0.0) > 1.5,
        "{sfu}"
    );
    assert!(
        stdout.contains("adaptation: video layers q/h/f %"),
        "{stdout}"
    );
}

#[test]
fn bad_input_is_refused_without_a_panic() {
    for args in [
        &["--preset", "nope"][..],
        &["--preset", "tiny", "--duration", "-1"],
        &["--preset", "tiny", "--duration", "NaN"],
        &["--preset", "tiny", "--join-rate", "0"],
        &["--preset", "tiny", "--bitrate-kbps", "4294967"],
        &["--preset", "tiny", "--cycles", "3"],
        &["--preset", "tiny-churn", "--baseline"],
        &["--preset", "tiny", "--participants", "1"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_zync-load"))
            .args(args)
            .output()
            .expect("zync-load runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
