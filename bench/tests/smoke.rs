//! `make bench` cannot rot: a small run (20 Agents on fake nodes, a short idle window) on the
//! testbed prints every row of the table and writes the JSON. The figures are not judged
//! here: they come from `make bench` on a quiet machine.

use std::path::PathBuf;

use anyhow::{Context as _, ensure};
use serde_json::Value;

/// The plugin binary `cargo test --workspace` built beside this test.
fn kubeoc_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("the test's target directory")?;
    let binary = dir.join("kubectl-kubeoc");
    ensure!(
        binary.is_file(),
        "{} is missing: build it with `cargo build --bin kubectl-kubeoc` (make test does)",
        binary.display()
    );
    Ok(binary)
}

#[tokio::test]
async fn a_small_run_prints_every_row_and_writes_the_json() -> anyhow::Result<()> {
    let out = tempfile_path("kubeoc-bench-smoke.json");
    let _ = std::fs::remove_file(&out);
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubeoc-bench"))
        .args([
            "--n",
            "20",
            "--idle",
            "10",
            "--cli-runs",
            "1",
            "--frames",
            "20",
        ])
        .args(["--samples", "1", "--burst", "2", "--kubeoc"])
        .arg(kubeoc_binary()?)
        .arg("--out")
        .arg(&out)
        .output();
    let run = tokio::time::timeout(std::time::Duration::from_secs(600), run)
        .await
        .context("the smoke run took over 10 minutes")??;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    ensure!(
        run.status.success(),
        "kubeoc-bench failed ({}):\n{stdout}\n{stderr}",
        run.status
    );

    let rows = [
        "TUI frame",
        "converge",
        "memory",
        "memory (anon)",
        "steady writes",
        "steady reads",
        "cpu",
        "restart",
        "CLI",
        "attach",
        "attach start",
        "task to Running",
        "task to Completed",
        "task throughput",
        "task throughput (pods)",
    ];
    let header = stdout.lines().next().unwrap_or_default();
    for column in ["ROW", "N", "GOAL", "MEASURED", "RATIO", "RESULT"] {
        ensure!(header.contains(column), "no {column} column in:\n{stdout}");
    }
    for row in rows {
        ensure!(
            stdout.lines().any(|l| l.starts_with(&format!("{row} "))),
            "no {row} row in:\n{stdout}"
        );
    }

    let json: Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    for field in ["cpus", "memory_kib", "kernel", "kubernetes", "commit"] {
        ensure!(
            !json["machine"][field].is_null(),
            "no machine.{field} in {json}"
        );
    }
    ensure!(
        json["machine"]["kubernetes"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1.")),
        "{json}"
    );
    let written: Vec<&str> = json["rows"]
        .as_array()
        .context("rows")?
        .iter()
        .filter_map(|r| r["row"].as_str())
        .collect();
    ensure!(written == rows, "rows in the JSON: {written:?}");
    for row in json["rows"].as_array().into_iter().flatten() {
        for field in ["n", "goal", "measured", "ratio", "pass", "detail"] {
            ensure!(!row[field].is_null(), "no {field} in {row}");
        }
    }
    Ok(())
}

fn tempfile_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{}-{name}", std::process::id()))
}
