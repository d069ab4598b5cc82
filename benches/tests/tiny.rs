//! Keeps the load generator working: the `tiny` preset, seconds long,
//! through both the SFU and the relay baseline, twice. Performance figures live
//! in the benchmark runs, not here; this only checks the tool measures.

use std::process::Command;

#[test]
fn tiny_preset_runs_through_the_sfu_and_the_baseline() {
    let dir = std::env::temp_dir().join(format!("zync-load-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_zync-load"))
        .args(["--preset", "tiny", "--baseline", "--rounds", "2", "--json"])
        .arg(&json)
        .output()
        .expect("zync-load runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "zync-load failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("CPU us per forwarded packet"), "{stdout}");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("json");
    for side in ["sfu", "baseline"] {
        let s = &report[side];
        assert_eq!(s["joined"], 3, "{side}: {s}");
        // 3 publishers, each heard by 2: several hundred packets a second.
        assert!(
            s["received_pps"].as_f64().unwrap_or(0.0) > 100.0,
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
    }
    assert!(report["cpu_ratio_sfu_to_baseline"].as_f64().is_some());
    // Both rounds ran both forwarders; the table names them.
    let rounds = report["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2, "{report}");
    for r in rounds {
        assert!(r["ratio"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
    }
    assert!(stdout.contains("the table is the median"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
