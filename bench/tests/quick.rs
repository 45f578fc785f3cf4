//! The quick benchmark, run by the test command so that the bench cannot rot: every
//! workload with small N against the debug server, failing if a connection failed or a
//! notification was lost. Its figures say nothing about speed (debug builds, tiny N).

use std::process::Command;

#[test]
fn the_quick_bench_runs_every_workload_and_loses_nothing() {
    let hub = e2e::server_bin();
    let out = tempfile::tempdir().unwrap();
    let results = out.path().join("results.md");
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("--quick")
        .arg("--hub")
        .arg(&hub)
        .arg("--out")
        .arg(&results)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let written = std::fs::read_to_string(&results).unwrap();
    for section in [
        "A: clock fan-out",
        "B: notification fan-out",
        "C: acknowledged",
        "D: replay storm",
        "E: idle",
        "F: notification fan-out across instances",
        "I: 200 subscribers over 2 instances",
        "J: a stream per user",
    ] {
        assert!(
            written.contains(section),
            "{section} missing from:\n{written}"
        );
    }
    assert!(stderr.contains("steps"), "progress is shown: {stderr}");
}
