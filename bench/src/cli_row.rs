//! `kubectl kubeoc agent list -A` against `kubectl get agents -A`, run in turn on the same
//! Agents.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::report::{Goal, Row, median};

fn timed(program: &Path, args: &[&str]) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!(
            "{} {}: {}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((took, out.stdout.iter().filter(|b| **b == b'\n').count()))
}

/// Median wall time of each over `runs` alternating runs (after one warm-up each), as a row.
pub fn run(kubeoc: &Path, kubeconfig: &Path, n: usize, runs: usize) -> anyhow::Result<Row> {
    let config = format!("--kubeconfig={}", kubeconfig.display());
    let ours = [config.as_str(), "agent", "list", "-A"];
    let theirs = [config.as_str(), "get", "agents", "-A"];
    let kubectl = Path::new("kubectl");
    let (_, our_lines) = timed(kubeoc, &ours)?;
    let (_, their_lines) = timed(kubectl, &theirs)?;
    if our_lines < n || their_lines < n {
        bail!(
            "expected at least {n} Agents listed: kubeoc printed {our_lines} lines, kubectl {their_lines}"
        );
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        a.push(timed(kubeoc, &ours)?.0.as_secs_f64());
        b.push(timed(kubectl, &theirs)?.0.as_secs_f64());
    }
    let ratios: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x / y).collect();
    let (a, b) = (median(a), median(b));
    Ok(Row::new(
        "CLI",
        n,
        "x kubectl",
        Goal::AtMost(0.5),
        median(ratios),
        format!(
            "agent list -A {:.0} ms, kubectl get agents -A {:.0} ms (medians of {runs} runs in turn)",
            a * 1e3,
            b * 1e3
        ),
    ))
}
