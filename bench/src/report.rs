//! The bench's results: one row per figure with its goal, printed as a table and written as
//! JSON with what it was measured on.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

/// How a row's figure is judged against its goal.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// Measured (a ratio or an absolute figure) must be at most this.
    AtMost(f64),
    /// Measured must be below this.
    Below(f64),
    /// Measured must be at least this.
    AtLeast(f64),
}

impl Goal {
    fn met(self, measured: f64) -> bool {
        match self {
            Goal::AtMost(limit) => measured <= limit,
            Goal::Below(limit) => measured < limit,
            Goal::AtLeast(limit) => measured >= limit,
        }
    }

    fn limit(self) -> f64 {
        match self {
            Goal::AtMost(l) | Goal::Below(l) | Goal::AtLeast(l) => l,
        }
    }

    fn describe(self, unit: &str) -> String {
        let (op, limit) = match self {
            Goal::AtMost(l) => ("<=", l),
            Goal::Below(l) => ("<", l),
            Goal::AtLeast(l) => (">=", l),
        };
        format!("{op} {}{unit}", number(limit))
    }
}

/// One figure.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub row: String,
    pub n: usize,
    /// What the figure is, e.g. "kubeoc / floor" or "MB".
    pub unit: String,
    pub goal: Goal,
    pub measured: f64,
    /// measured / goal limit (below 1 is inside the goal); the measured figure itself when
    /// the goal is zero.
    pub ratio: f64,
    pub pass: bool,
    /// The absolute figures behind the measurement, for context.
    pub detail: String,
}

impl Row {
    pub fn new(row: &str, n: usize, unit: &str, goal: Goal, measured: f64, detail: String) -> Self {
        let limit = goal.limit();
        // Against a goal of zero there is no ratio: the figure itself says how far off it is.
        let ratio = if limit == 0.0 {
            measured
        } else {
            measured / limit
        };
        Row {
            row: row.to_string(),
            n,
            unit: unit.to_string(),
            goal,
            measured,
            ratio,
            pass: goal.met(measured),
            detail,
        }
    }
}

/// The middle value (the mean of the two middle ones for an even count); NaN for none.
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => xs[len / 2],
        len => (xs[len / 2 - 1] + xs[len / 2]) / 2.0,
    }
}

/// Numbers as people read them: no trailing zeros, at most three decimals.
fn number(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let text = format!("{x:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// The table: row, N, goal, measured, ratio, pass/fail, then the detail.
pub fn table(rows: &[Row]) -> String {
    let header = ["ROW", "N", "GOAL", "MEASURED", "RATIO", "RESULT", "DETAIL"];
    let mut cells: Vec<[String; 7]> = vec![header.map(String::from)];
    for r in rows {
        let unit = if r.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", r.unit)
        };
        cells.push([
            r.row.clone(),
            r.n.to_string(),
            r.goal.describe(&unit),
            format!("{}{unit}", number(r.measured)),
            number(r.ratio),
            if r.pass { "pass" } else { "FAIL" }.into(),
            r.detail.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for c in &cells {
        let mut line = String::new();
        for (i, cell) in c.iter().enumerate() {
            if i == 6 {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}   ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Where the figures were measured.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub memory_kib: u64,
    pub kernel: String,
    pub kubernetes: String,
    pub commit: String,
}

impl Machine {
    pub fn read(kubernetes: String) -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(kubeoc_testbed::repo_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_kib,
            kernel,
            kubernetes,
            commit,
        }
    }
}

#[derive(Serialize)]
struct Results<'a> {
    machine: &'a Machine,
    rows: &'a [Row],
}

/// Writes the rows and the machine as JSON to `path`.
pub fn write_json(path: &Path, machine: &Machine, rows: &[Row]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(&Results { machine, rows })?;
    std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_judged_by_its_goal_and_its_ratio_is_against_the_limit() {
        let converge = Row::new("converge", 10, "x", Goal::AtMost(1.3), 0.65, String::new());
        assert!(converge.pass);
        assert!((converge.ratio - 0.5).abs() < 1e-9);
        let writes = Row::new(
            "steady writes",
            10,
            "/min",
            Goal::AtMost(0.0),
            2.0,
            String::new(),
        );
        assert!(!writes.pass);
        assert_eq!(writes.ratio, 2.0);
        let none = Row::new(
            "steady writes",
            10,
            "/min",
            Goal::AtMost(0.0),
            0.0,
            String::new(),
        );
        assert!(none.pass && none.ratio == 0.0);
        let throughput = Row::new("tp", 1, "", Goal::AtLeast(0.8), 0.7, String::new());
        assert!(!throughput.pass);
    }

    #[test]
    fn the_median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn the_table_has_a_header_and_a_line_a_row() {
        let rows = [
            Row::new(
                "memory",
                1000,
                "MB",
                Goal::AtMost(40.0),
                31.25,
                "VmHWM".into(),
            ),
            Row::new("cpu", 1000, "s", Goal::Below(5.0), 7.0, String::new()),
        ];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("ROW"), "{text}");
        assert!(
            lines[1].contains("<= 40 MB") && lines[1].contains("31.25 MB"),
            "{text}"
        );
        assert!(
            lines[1].contains("pass") && lines[2].contains("FAIL"),
            "{text}"
        );
    }
}
