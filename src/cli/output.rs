//! kubectl-style output shared by every noun: `-o table|wide|yaml|json|name`,
//! `-o jsonpath=...`, `-o custom-columns=...` and `--no-headers`.
//!
//! Table columns come straight from a CRD's `additionalPrinterColumns`
//! ([`PrinterColumn::from_crd`]) and render the way kubectl renders a custom resource's
//! server-side table: `NAME` first (after `NAMESPACE` with `-A`), then the declared columns in
//! order (priority 0 only, all of them with `-o wide`), headers upper-cased, columns aligned
//! like kubectl's tabwriter, `date` columns as a human age (kubectl's `HumanDuration`), a
//! missing value as an empty cell. A list of a kind whose columns are all the CRD's is printed
//! from the apiserver's own table instead ([`Printer::print_server_table`]).
//!
//! ```no_run
//! # use kubeoc::cli::output::{OutputArgs, Printer, PrinterColumn};
//! # fn demo(args: &OutputArgs, crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
//! #         items: &[serde_json::Value]) -> Result<(), kubeoc::cli::output::OutputError> {
//! Printer::new(args, PrinterColumn::from_crd(crd))
//!     .namespace("team-a", false)
//!     .print_list(items)?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::io::{self, Write};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition,
};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::Value;

pub use super::jsonpath::JsonPath;
use super::jsonpath::{Template, print_value};
use super::server_table::ServerTable;

/// The value of `-o/--output`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum OutputFormat {
    /// Human-readable table (kubectl's default output).
    #[default]
    Table,
    /// The table with every column, including priority > 0 ones.
    Wide,
    /// The full objects as YAML.
    Yaml,
    /// The full objects as JSON.
    Json,
    /// `<kind>.<group>/<name>` per object.
    Name,
    /// `jsonpath=TEMPLATE`: the template applied to the object (or to the `List` of them).
    JsonPath(Template),
    /// `custom-columns=HEADER:PATH,...`: a table of the given columns.
    CustomColumns(Vec<(String, JsonPath)>),
}

impl std::str::FromStr for OutputFormat {
    type Err = String;

    /// kubectl's spellings: `table` (the default), `wide`, `yaml`, `json`, `name`,
    /// `jsonpath=TEMPLATE` and `custom-columns=HEADER:PATH[,HEADER:PATH...]`.
    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "table" | "" => return Ok(Self::Table),
            "wide" => return Ok(Self::Wide),
            "yaml" => return Ok(Self::Yaml),
            "json" => return Ok(Self::Json),
            "name" => return Ok(Self::Name),
            _ => {}
        }
        if let Some(template) = value.strip_prefix("jsonpath=") {
            return Template::parse(template).map(Self::JsonPath);
        }
        if let Some(spec) = value.strip_prefix("custom-columns=") {
            return parse_custom_columns(spec).map(Self::CustomColumns);
        }
        if value == "jsonpath" || value == "custom-columns" {
            return Err(format!("{value} needs a value: -o {value}=..."));
        }
        Err(format!(
            "unknown output format {value:?}: use one of table, wide, yaml, json, name, jsonpath=TEMPLATE, custom-columns=HEADER:PATH,..."
        ))
    }
}

/// `HEADER:PATH,HEADER:PATH`, as kubectl's `-o custom-columns` takes it.
fn parse_custom_columns(spec: &str) -> Result<Vec<(String, JsonPath)>, String> {
    if spec.trim().is_empty() {
        return Err("custom-columns needs at least one HEADER:PATH".into());
    }
    spec.split(',')
        .map(|column| {
            let (header, path) = column.split_once(':').ok_or_else(|| {
                format!("custom-columns: {column:?} is not HEADER:PATH (e.g. NAME:.metadata.name)")
            })?;
            let path =
                JsonPath::parse(path).map_err(|e| format!("custom-columns {header}: {e}"))?;
            Ok((header.to_string(), path))
        })
        .collect()
}

/// Output flags that nouns flatten into their list/get commands.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutputArgs {
    /// Output format: table, wide, yaml, json, name, jsonpath=TEMPLATE or
    /// custom-columns=HEADER:PATH,... (as kubectl's).
    #[arg(short = 'o', long, value_name = "FORMAT", default_value = "table",
          value_parser = |v: &str| v.parse::<OutputFormat>())]
    pub output: OutputFormat,

    /// Don't print headers (table and wide output only).
    #[arg(long)]
    pub no_headers: bool,
}

/// The OpenAPI type of a printer column, which decides how its cells render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// Printed as is; non-string values print in their JSON form.
    String,
    /// Whole numbers; fractional values are truncated.
    Integer,
    /// Any number.
    Number,
    /// `true` / `false`.
    Boolean,
    /// An RFC 3339 timestamp, printed as the age relative to "now" (`5m`, `3d4h`).
    Date,
    /// kubeoc's own, never in a CRD: the time from the column's timestamp to the one at
    /// `until` (a JSONPath), or to now while that is unset; as kubectl's Job DURATION.
    Elapsed {
        /// Where the end time is, e.g. `.status.completionTime`.
        until: &'static str,
    },
}

impl ColumnType {
    /// Parses a CRD column `type`; unknown types render as strings.
    pub fn parse(type_: &str) -> Self {
        match type_ {
            "integer" => ColumnType::Integer,
            "number" => ColumnType::Number,
            "boolean" => ColumnType::Boolean,
            "date" => ColumnType::Date,
            _ => ColumnType::String,
        }
    }
}

/// One table column, as declared in a CRD's `additionalPrinterColumns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Column name as declared; the header is its upper-case form.
    pub name: String,
    /// How the cell value renders.
    pub type_: ColumnType,
    /// Simple JSONPath into the object, e.g. `.status.phase` (see [`JsonPath`]).
    pub json_path: String,
    /// 0 for the default table; anything else shows only with `-o wide`.
    pub priority: i32,
}

impl PrinterColumn {
    /// A column from its parts.
    pub fn new(
        name: impl Into<String>,
        type_: ColumnType,
        json_path: impl Into<String>,
        priority: i32,
    ) -> Self {
        PrinterColumn {
            name: name.into(),
            type_,
            json_path: json_path.into(),
            priority,
        }
    }

    /// A column from one of a CRD version's `additionalPrinterColumns`.
    pub fn from_definition(def: &CustomResourceColumnDefinition) -> Self {
        PrinterColumn {
            name: def.name.clone(),
            type_: ColumnType::parse(&def.type_),
            json_path: def.json_path.clone(),
            priority: def.priority.unwrap_or(0),
        }
    }

    /// The printer columns of a CRD's storage version (else its first version).
    pub fn from_crd(crd: &CustomResourceDefinition) -> Vec<Self> {
        let versions = &crd.spec.versions;
        versions
            .iter()
            .find(|v| v.storage)
            .or_else(|| versions.first())
            .and_then(|v| v.additional_printer_columns.as_ref())
            .map(|cols| cols.iter().map(Self::from_definition).collect())
            .unwrap_or_default()
    }
}

/// Errors while printing objects.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Writing to stdout/stderr failed.
    #[error("cannot write output: {0}")]
    Io(#[from] io::Error),
    /// An object could not be encoded as JSON.
    #[error("cannot encode output as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// An object could not be encoded as YAML.
    #[error("cannot encode output as YAML: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
    /// `-o name` needs `kind` and `metadata.name` on every object.
    #[error("cannot print an object with -o name: it has no {0}")]
    MissingField(&'static str),
}

/// What a printer would write: the text for stdout and for stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// The objects, table, or names.
    pub stdout: String,
    /// Notices such as `No resources found in team-a namespace.`.
    pub stderr: String,
}

/// Prints Kubernetes objects (full JSON with apiVersion, kind, metadata) like `kubectl get`.
#[derive(Debug, Clone)]
pub struct Printer {
    format: OutputFormat,
    no_headers: bool,
    columns: Vec<PrinterColumn>,
    namespace: String,
    all_namespaces: bool,
    now: Timestamp,
}

impl Printer {
    /// A printer for the user's `-o`/`--no-headers` choice and the kind's printer columns.
    /// Ages are relative to the current time; the namespace defaults to `default`.
    pub fn new(args: &OutputArgs, columns: Vec<PrinterColumn>) -> Self {
        Printer {
            format: args.output.clone(),
            no_headers: args.no_headers,
            columns,
            namespace: "default".to_owned(),
            all_namespaces: false,
            now: Timestamp::now(),
        }
    }

    /// The namespace that was listed (for "No resources found in NS namespace.") and whether
    /// the listing spans all namespaces (`-A`: adds the `NAMESPACE` column).
    pub fn namespace(mut self, namespace: impl Into<String>, all_namespaces: bool) -> Self {
        self.namespace = namespace.into();
        self.all_namespaces = all_namespaces;
        self
    }

    /// Renders ages relative to `now` instead of the current time (for tests).
    pub fn now(mut self, now: Timestamp) -> Self {
        self.now = now;
        self
    }

    /// Prints the result of a list (`agent list`): YAML/JSON as a `v1` `List` even with zero
    /// or one item, as kubectl does; an empty table prints `No resources found ...` on stderr.
    pub fn print_list(&self, items: &[Value]) -> Result<(), OutputError> {
        emit(self.render_list(items)?)
    }

    /// Prints objects fetched by name (`agent get a [b ...]`): one object prints as itself
    /// in YAML/JSON, several as a `v1` `List`.
    pub fn print_objects(&self, items: &[Value]) -> Result<(), OutputError> {
        emit(self.render_objects(items)?)
    }

    /// What [`Printer::print_list`] writes.
    pub fn render_list(&self, items: &[Value]) -> Result<Rendered, OutputError> {
        self.render(items, true)
    }

    /// What [`Printer::print_objects`] writes.
    pub fn render_objects(&self, items: &[Value]) -> Result<Rendered, OutputError> {
        self.render(items, false)
    }

    fn render(&self, items: &[Value], list: bool) -> Result<Rendered, OutputError> {
        let mut out = Rendered::default();
        match &self.format {
            OutputFormat::JsonPath(template) => {
                out.stdout = template.render(&document(items, list));
            }
            OutputFormat::CustomColumns(columns) => {
                if items.is_empty() {
                    out.stderr = self.no_resources();
                } else {
                    out.stdout = self.custom_table(columns, items);
                }
            }
            OutputFormat::Table | OutputFormat::Wide => {
                if items.is_empty() {
                    out.stderr = self.no_resources();
                } else {
                    out.stdout = self.table(items);
                }
            }
            OutputFormat::Name => {
                for item in items {
                    out.stdout.push_str(&resource_name(item)?);
                    out.stdout.push('\n');
                }
            }
            OutputFormat::Json => {
                let value = document(items, list);
                let mut buf = Vec::new();
                let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
                let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
                value.serialize(&mut ser)?;
                buf.push(b'\n');
                out.stdout = String::from_utf8_lossy(&buf).into_owned();
            }
            OutputFormat::Yaml => {
                let value = document(items, list);
                let mut yaml = serde_saphyr::to_string(&value)?;
                if !yaml.ends_with('\n') {
                    yaml.push('\n');
                }
                out.stdout = yaml;
            }
        }
        Ok(out)
    }

    /// Prints a table the apiserver made ([`server_table`](super::server_table)), laid out as
    /// [`Printer::print_list`] lays out a table: NAMESPACE with `-A`, priority-0 columns unless
    /// `-o wide`, kubectl's notice when it is empty.
    pub fn print_server_table(&self, table: &ServerTable) -> Result<(), OutputError> {
        emit(self.render_server_table(table))
    }

    /// What [`Printer::print_server_table`] writes.
    pub fn render_server_table(&self, table: &ServerTable) -> Rendered {
        if table.rows.is_empty() {
            return Rendered {
                stdout: String::new(),
                stderr: self.no_resources(),
            };
        }
        let wide = self.format == OutputFormat::Wide;
        let shown: Vec<usize> = (0..table.column_definitions.len())
            .filter(|&i| wide || table.column_definitions[i].priority == 0)
            .collect();
        let mut rows: Vec<Vec<String>> = Vec::with_capacity(table.rows.len() + 1);
        if !self.no_headers {
            let mut header = Vec::with_capacity(shown.len() + 1);
            if self.all_namespaces {
                header.push("NAMESPACE".to_owned());
            }
            header.extend(
                shown
                    .iter()
                    .map(|&i| table.column_definitions[i].name.to_uppercase()),
            );
            rows.push(header);
        }
        for row in &table.rows {
            let mut line = Vec::with_capacity(shown.len() + 1);
            if self.all_namespaces {
                line.push(sanitize(row.namespace().unwrap_or("")));
            }
            line.extend(shown.iter().map(|&i| {
                sanitize(&match row.cells.get(i) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) if !(n.is_i64() || n.is_u64()) => {
                        n.as_f64().map_or_else(|| n.to_string(), go_float)
                    }
                    Some(other) => print_value(other),
                })
            }));
            rows.push(line);
        }
        Rendered {
            stdout: tabulate(&rows),
            stderr: String::new(),
        }
    }

    /// kubectl's notice for an empty table.
    fn no_resources(&self) -> String {
        if self.all_namespaces {
            "No resources found\n".to_owned()
        } else {
            format!("No resources found in {} namespace.\n", self.namespace)
        }
    }

    /// `-o custom-columns`: the given columns only (no NAME or NAMESPACE of its own), cells
    /// joined by commas when a path finds several values, `<none>` when it finds nothing.
    fn custom_table(&self, columns: &[(String, JsonPath)], items: &[Value]) -> String {
        let mut rows: Vec<Vec<String>> = Vec::with_capacity(items.len() + 1);
        if !self.no_headers {
            rows.push(columns.iter().map(|(header, _)| header.clone()).collect());
        }
        for item in items {
            rows.push(
                columns
                    .iter()
                    .map(|(_, path)| {
                        let values: Vec<String> =
                            path.eval(item).into_iter().map(print_value).collect();
                        if values.is_empty() {
                            NONE.to_owned()
                        } else {
                            sanitize(&values.join(","))
                        }
                    })
                    .collect(),
            );
        }
        tabulate(&rows)
    }

    /// The table text for `items` (no trailing notice; `items` may be empty).
    fn table(&self, items: &[Value]) -> String {
        let wide = self.format == OutputFormat::Wide;
        let columns: Vec<(&PrinterColumn, Option<JsonPath>)> = self
            .columns
            .iter()
            .filter(|c| wide || c.priority == 0)
            .map(|c| (c, JsonPath::parse(&c.json_path).ok()))
            .collect();
        let ends: Vec<Option<JsonPath>> = columns
            .iter()
            .map(|(c, _)| match c.type_ {
                ColumnType::Elapsed { until } => JsonPath::parse(until).ok(),
                _ => None,
            })
            .collect();

        let mut rows: Vec<Vec<String>> = Vec::with_capacity(items.len() + 1);
        if !self.no_headers {
            let mut header = Vec::with_capacity(columns.len() + 2);
            if self.all_namespaces {
                header.push("NAMESPACE".to_owned());
            }
            header.push("NAME".to_owned());
            header.extend(columns.iter().map(|(c, _)| c.name.to_uppercase()));
            rows.push(header);
        }
        for item in items {
            let mut row = Vec::with_capacity(columns.len() + 2);
            if self.all_namespaces {
                let ns = item.pointer("/metadata/namespace").and_then(Value::as_str);
                row.push(sanitize(ns.unwrap_or("")));
            }
            let name = item.pointer("/metadata/name").and_then(Value::as_str);
            row.push(sanitize(name.unwrap_or(NONE)));
            for ((column, path), end) in columns.iter().zip(&ends) {
                let cell = match path {
                    Some(path) => {
                        let value = path.eval(item).into_iter().next();
                        let end = end.as_ref().and_then(|e| e.eval(item).into_iter().next());
                        match column.type_ {
                            ColumnType::Elapsed { .. } => elapsed(value, end, self.now),
                            type_ => cell(type_, value, self.now),
                        }
                    }
                    None => Some(INVALID.to_owned()),
                };
                // kubectl leaves a missing value's cell empty (custom columns say <none>).
                row.push(sanitize(cell.as_deref().unwrap_or("")));
            }
            rows.push(row);
        }
        tabulate(&rows)
    }
}

/// Converts typed resources (e.g. `kube` custom resources) into the JSON objects the printer
/// takes.
pub fn to_values<T: Serialize>(items: &[T]) -> Result<Vec<Value>, OutputError> {
    items
        .iter()
        .map(|item| serde_json::to_value(item).map_err(OutputError::from))
        .collect()
}

fn emit(rendered: Rendered) -> Result<(), OutputError> {
    let write = |w: &mut dyn Write, text: &str| -> io::Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        w.write_all(text.as_bytes())?;
        w.flush()
    };
    let result = write(&mut io::stdout().lock(), &rendered.stdout)
        .and_then(|()| write(&mut io::stderr().lock(), &rendered.stderr));
    match result {
        // `kubectl kubeoc agent list | head` is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(OutputError::from),
    }
}

/// A missing value in a table cell.
const NONE: &str = "<none>";
/// A value kubectl cannot interpret (bad timestamp, bad column path).
const INVALID: &str = "<invalid>";

/// kubectl's tabwriter: min cell width 6, padding 3, pad with spaces; the last column is not
/// padded.
fn tabulate(rows: &[Vec<String>]) -> String {
    const MIN_WIDTH: usize = 6;
    const PADDING: usize = 3;
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            let text = rows
                .iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0);
            (text + PADDING).max(MIN_WIDTH)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// Like kubectl: a cell ends at its first line break (marked with `...`); terminal escapes are
/// made visible; tabs become spaces so they cannot break the alignment.
fn sanitize(text: &str) -> String {
    let (line, truncated) = match text.find(['\n', '\r', '\x0c']) {
        Some(at) => (&text[..at], true),
        None => (text, false),
    };
    let mut out = String::with_capacity(line.len() + 3);
    for c in line.chars() {
        match c {
            '\x1b' => out.push_str("^["),
            '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    if truncated {
        out.push_str("...");
    }
    out
}

/// A table cell per kubectl's CRD table convertor; `None` when the value is missing or of
/// the wrong type.
fn cell(type_: ColumnType, value: Option<&Value>, now: Timestamp) -> Option<String> {
    let value = value?;
    match (type_, value) {
        (_, Value::Null) => None,
        (ColumnType::String, Value::String(s)) => Some(s.clone()),
        (ColumnType::String, Value::Number(n)) => Some(match n.as_f64() {
            Some(f) if !(n.is_i64() || n.is_u64()) => go_float(f),
            _ => n.to_string(),
        }),
        (ColumnType::String, other) => Some(other.to_string()),
        (ColumnType::Integer, Value::Number(n)) => n
            .as_i64()
            .map(|i| i.to_string())
            .or_else(|| n.as_u64().map(|u| u.to_string()))
            // kubectl: int64(float) truncates toward zero.
            .or_else(|| n.as_f64().map(|f| (f.trunc() as i64).to_string())),
        (ColumnType::Number, Value::Number(n)) => n.as_f64().map(go_float),
        (ColumnType::Boolean, Value::Bool(b)) => Some(b.to_string()),
        (ColumnType::Date, Value::String(s)) => Some(match s.parse::<Timestamp>() {
            Ok(ts) => human_age(ts, now),
            Err(_) => INVALID.to_owned(),
        }),
        _ => None,
    }
}

/// An [`ColumnType::Elapsed`] cell: `None` until the start is set; a start or end that is
/// not a timestamp prints as kubectl's invalid marker.
fn elapsed(start: Option<&Value>, end: Option<&Value>, now: Timestamp) -> Option<String> {
    let start = start?.as_str()?;
    let parse = |s: &str| s.parse::<Timestamp>().ok();
    let end = match end.and_then(Value::as_str) {
        Some(end) => parse(end),
        None => Some(now),
    };
    Some(match (parse(start), end) {
        (Some(start), Some(end)) => human_duration(end.duration_since(start)),
        _ => INVALID.to_owned(),
    })
}

/// A float the way Go's `fmt.Sprint(float64)` prints it (`%g` with the shortest
/// representation: exponent form below 1e-4 and from 1e21).
fn go_float(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".to_owned()
        } else if f > 0.0 {
            "+Inf".to_owned()
        } else {
            "-Inf".to_owned()
        };
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        // Rust: "1.5e-5" / "1e21"; Go: "1.5e-05" / "1e+21".
        let s = format!("{f:e}");
        return match s.split_once('e') {
            Some((mantissa, exp)) => {
                let (sign, digits) = match exp.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', exp),
                };
                format!("{mantissa}e{sign}{digits:0>2}")
            }
            None => s,
        };
    }
    format!("{f}")
}

/// The age of `timestamp` at `now`, as kubectl prints it; `<unknown>` for Go's zero time.
pub fn human_age(timestamp: Timestamp, now: Timestamp) -> String {
    // metav1.Time's zero value serializes as this; kubectl prints <unknown>.
    if timestamp.as_second() == GO_ZERO_TIME_UNIX {
        return "<unknown>".to_owned();
    }
    human_duration(now.duration_since(timestamp))
}

/// `0001-01-01T00:00:00Z` in Unix seconds.
const GO_ZERO_TIME_UNIX: i64 = -62_135_596_800;

/// kubectl's `duration.HumanDuration` (k8s.io/apimachinery/pkg/util/duration): a succinct
/// duration with about 2-3 significant figures, e.g. `45s`, `3m20s`, `12m`, `5h`, `3d4h`,
/// `12d`, `2y34d`, `9y`. Up to one second in the future counts as now (`0s`); further is
/// `<invalid>`.
pub fn human_duration(d: SignedDuration) -> String {
    // Go: int(d.Seconds()) truncates toward zero, as as_secs() does.
    let seconds = d.as_secs();
    if seconds < -1 {
        return INVALID.to_owned();
    } else if seconds < 0 {
        return "0s".to_owned();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        format!("{hours}h{m}m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        format!("{}d{h}h", hours / 24)
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        format!("{}y{dy}d", hours / 24 / 365)
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

/// `<kind lowercase>.<group>/<name>` (`agent.kubeopencode.io/team-agent`); core-group
/// objects print `<kind>/<name>`.
fn resource_name(item: &Value) -> Result<String, OutputError> {
    let kind = item
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or(OutputError::MissingField("kind"))?;
    let name = item
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .ok_or(OutputError::MissingField("metadata.name"))?;
    let group = item
        .get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.rsplit_once('/'))
        .map(|(group, _)| group)
        .filter(|g| !g.is_empty());
    let kind = kind.to_lowercase();
    Ok(match group {
        Some(group) => format!("{kind}.{group}/{name}"),
        None => format!("{kind}/{name}"),
    })
}

/// The YAML/JSON document: one object by name prints as itself, anything else as a `v1`
/// `List`; keys sorted as kubectl (Go's encoding of maps) sorts them.
fn document(items: &[Value], list: bool) -> Value {
    if let (false, [one]) = (list, items) {
        return sorted(one);
    }
    sorted(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": items,
        "metadata": { "resourceVersion": "" },
    }))
}

/// A copy of `value` with every object's keys in sorted order, whatever serde_json's map
/// type (`preserve_order` may be enabled by another crate in the build).
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let ordered: BTreeMap<&String, Value> =
                map.iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(ordered.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    fn ago(d: SignedDuration) -> String {
        (now() - d).to_string()
    }

    fn secs(s: i64) -> SignedDuration {
        SignedDuration::from_secs(s)
    }

    fn column(def: Value) -> PrinterColumn {
        PrinterColumn::from_definition(&serde_json::from_value(def).unwrap())
    }

    /// Upstream's Agent columns plus kubeoc's STATUS and URL (as src/api declares them).
    fn agent_columns() -> Vec<PrinterColumn> {
        [
            json!({"name": "Profile", "type": "string", "jsonPath": ".spec.profile", "priority": 1}),
            json!({"name": "Image", "type": "string", "jsonPath": ".spec.executorImage", "priority": 1}),
            json!({"name": "ServiceAccount", "type": "string", "jsonPath": ".spec.serviceAccountName"}),
            json!({"name": "MaxTasks", "type": "integer", "jsonPath": ".spec.maxConcurrentTasks", "priority": 1}),
            json!({"name": "Ready", "type": "boolean", "jsonPath": ".status.ready"}),
            json!({"name": "Status", "type": "string", "jsonPath": ".status.phase"}),
            json!({"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1}),
            json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}),
        ]
        .into_iter()
        .map(column)
        .collect()
    }

    /// Upstream's Task columns plus kubeoc's QUEUE and the computed DURATION.
    fn task_columns() -> Vec<PrinterColumn> {
        [
            json!({"name": "Phase", "type": "string", "jsonPath": ".status.phase"}),
            json!({"name": "Agent", "type": "string", "jsonPath": ".status.agentRef.name"}),
            json!({"name": "Template", "type": "string", "jsonPath": ".status.templateRef.name", "priority": 1}),
            json!({"name": "Pod", "type": "string", "jsonPath": ".status.podName"}),
            json!({"name": "Queue", "type": "integer", "jsonPath": ".status.queuePosition", "priority": 1}),
        ]
        .into_iter()
        .map(column)
        .chain([
            PrinterColumn::new(
                "Duration",
                ColumnType::Elapsed {
                    until: ".status.completionTime",
                },
                ".status.startTime",
                0,
            ),
            column(
                json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}),
            ),
        ])
        .collect()
    }

    fn agents() -> Vec<Value> {
        vec![
            json!({
                "apiVersion": "kubeopencode.io/v1alpha1",
                "kind": "Agent",
                "metadata": {
                    "name": "team-agent",
                    "namespace": "team-a",
                    "uid": "5f1c2a4e-1d2b-4c3d-9e8f-0a1b2c3d4e5f",
                    "generation": 2,
                    "creationTimestamp": ago(secs(3 * 86400 + 4 * 3600 + 17 * 60)),
                },
                "spec": {
                    "profile": "Shared team agent for the payments repo",
                    "executorImage": "ghcr.io/kubeopencode/kubeopencode-agent-devbox:v0.1.7",
                    "workspaceDir": "/workspace",
                    "serviceAccountName": "kubeopencode-agent",
                    "maxConcurrentTasks": 3,
                    "port": 4096,
                },
                "status": {
                    "observedGeneration": 2,
                    "ready": true,
                    "phase": "Ready",
                    "deploymentName": "team-agent-server",
                    "serviceName": "team-agent",
                    "url": "http://team-agent.team-a.svc.cluster.local:4096",
                    "conditions": [
                        {"type": "ServerReady", "status": "True", "reason": "DeploymentAvailable",
                         "lastTransitionTime": ago(secs(3 * 86400))},
                        {"type": "ServerHealthy", "status": "True", "reason": "Healthy",
                         "message": "OpenCode 1.18.33",
                         "lastTransitionTime": ago(secs(3 * 86400))},
                    ],
                },
            }),
            json!({
                "apiVersion": "kubeopencode.io/v1alpha1",
                "kind": "Agent",
                "metadata": {
                    "name": "docs",
                    "namespace": "team-a",
                    "creationTimestamp": ago(secs(200)),
                },
                "spec": {
                    "workspaceDir": "/workspace",
                    "serviceAccountName": "default",
                    "suspend": true,
                },
                "status": {"ready": false, "phase": "Suspended", "suspended": true},
            }),
            json!({
                "apiVersion": "kubeopencode.io/v1alpha1",
                "kind": "Agent",
                "metadata": {
                    "name": "fresh",
                    "namespace": "platform",
                    "creationTimestamp": ago(secs(5)),
                },
                "spec": {"templateRef": {"name": "devbox"}},
            }),
        ]
    }

    fn tasks() -> Vec<Value> {
        vec![
            json!({
                "apiVersion": "kubeopencode.io/v1alpha1",
                "kind": "Task",
                "metadata": {
                    "name": "fix-login-bug",
                    "namespace": "team-a",
                    "creationTimestamp": ago(secs(2 * 365 * 86400 + 34 * 86400 + 3600)),
                },
                "spec": {
                    "description": "Fix the login redirect loop.\nAdd a regression test.",
                    "agentRef": {"name": "team-agent"},
                },
                "status": {
                    "phase": "Completed",
                    "agentRef": {"name": "team-agent"},
                    "podName": "fix-login-bug-pod",
                    "startTime": ago(secs(2 * 365 * 86400 + 34 * 86400)),
                    "completionTime": ago(secs(2 * 365 * 86400 + 34 * 86400 - 154)),
                    "conditions": [
                        {"type": "Ready", "status": "True", "reason": "Succeeded"},
                    ],
                },
            }),
            json!({
                "apiVersion": "kubeopencode.io/v1alpha1",
                "kind": "Task",
                "metadata": {
                    "name": "summarize-repo",
                    "namespace": "team-a",
                    "creationTimestamp": ago(secs(12 * 60 + 30)),
                },
                "spec": {
                    "description": "Summarize the repository layout.",
                    "agentRef": {"name": "team-agent"},
                },
                "status": {
                    "phase": "Queued",
                    "agentRef": {"name": "team-agent"},
                    "queuePosition": 2,
                    "conditions": [
                        {"type": "Queued", "status": "True", "reason": "AgentAtCapacity"},
                    ],
                },
            }),
            json!({
                "apiVersion": "kubeopencode.io/v1alpha1",
                "kind": "Task",
                "metadata": {
                    "name": "nightly-audit",
                    "namespace": "team-a",
                    "creationTimestamp": ago(secs(3 * 60 + 20)),
                },
                "spec": {
                    "description": "Audit dependencies.",
                    "templateRef": {"name": "auditor"},
                },
                "status": {
                    "phase": "Running",
                    "templateRef": {"name": "auditor"},
                    "podName": "nightly-audit-pod",
                    "startTime": ago(secs(3 * 60 + 5)),
                },
            }),
        ]
    }

    fn args(output: OutputFormat, no_headers: bool) -> OutputArgs {
        OutputArgs { output, no_headers }
    }

    fn printer(output: OutputFormat, columns: Vec<PrinterColumn>) -> Printer {
        Printer::new(&args(output, false), columns)
            .namespace("team-a", false)
            .now(now())
    }

    fn stdout(printer: &Printer, items: &[Value]) -> String {
        let out = printer.render_list(items).unwrap();
        assert_eq!(out.stderr, "");
        out.stdout
    }

    #[test]
    fn agent_table() {
        let p = printer(OutputFormat::Table, agent_columns());
        insta::assert_snapshot!(stdout(&p, &agents()));
    }

    #[test]
    fn agent_wide() {
        let p = printer(OutputFormat::Wide, agent_columns());
        insta::assert_snapshot!(stdout(&p, &agents()));
    }

    #[test]
    fn agent_table_no_headers() {
        let p = Printer::new(&args(OutputFormat::Table, true), agent_columns())
            .namespace("team-a", false)
            .now(now());
        insta::assert_snapshot!(stdout(&p, &agents()));
    }

    #[test]
    fn agent_table_all_namespaces() {
        let p = printer(OutputFormat::Table, agent_columns()).namespace("team-a", true);
        insta::assert_snapshot!(stdout(&p, &agents()));
    }

    #[test]
    fn task_table() {
        let p = printer(OutputFormat::Table, task_columns());
        insta::assert_snapshot!(stdout(&p, &tasks()));
    }

    #[test]
    fn task_wide_all_namespaces() {
        let p = printer(OutputFormat::Wide, task_columns()).namespace("ignored", true);
        insta::assert_snapshot!(stdout(&p, &tasks()));
    }

    #[test]
    fn names() {
        let p = printer(OutputFormat::Name, agent_columns());
        let mut items = agents();
        items.extend(tasks());
        insta::assert_snapshot!(stdout(&p, &items));
    }

    #[test]
    fn name_of_core_and_incomplete_objects() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
        assert_eq!(resource_name(&pod).unwrap(), "pod/p");
        let no_kind = json!({"metadata": {"name": "p"}});
        assert!(matches!(
            resource_name(&no_kind),
            Err(OutputError::MissingField("kind"))
        ));
    }

    #[test]
    fn yaml_single_object() {
        let p = printer(OutputFormat::Yaml, agent_columns());
        let out = p.render_objects(&agents()[..1]).unwrap();
        insta::assert_snapshot!(out.stdout);
    }

    #[test]
    fn yaml_list() {
        let p = printer(OutputFormat::Yaml, task_columns());
        insta::assert_snapshot!(stdout(&p, &tasks()[..2]));
    }

    #[test]
    fn json_single_object() {
        let p = printer(OutputFormat::Json, task_columns());
        let out = p.render_objects(&tasks()[..1]).unwrap();
        insta::assert_snapshot!(out.stdout);
    }

    #[test]
    fn json_list() {
        let p = printer(OutputFormat::Json, agent_columns());
        insta::assert_snapshot!(stdout(&p, &agents()[1..]));
    }

    #[test]
    fn list_of_one_is_still_a_list_but_get_of_one_is_the_object() {
        let p = printer(OutputFormat::Json, agent_columns());
        let listed: Value = serde_json::from_str(&stdout(&p, &agents()[..1])).unwrap();
        assert_eq!(listed["kind"], "List");
        assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
        let got = p.render_objects(&agents()[..1]).unwrap().stdout;
        let got: Value = serde_json::from_str(&got).unwrap();
        assert_eq!(got, agents()[0]);
        let several = p.render_objects(&agents()[..2]).unwrap().stdout;
        let several: Value = serde_json::from_str(&several).unwrap();
        assert_eq!(several["kind"], "List");
    }

    #[test]
    fn yaml_round_trips() {
        let p = printer(OutputFormat::Yaml, agent_columns());
        let text = stdout(&p, &agents());
        let back: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back["items"], Value::Array(agents()));
        assert_eq!(back["apiVersion"], "v1");
    }

    #[test]
    fn empty_lists() {
        for format in [OutputFormat::Table, OutputFormat::Wide] {
            let p = printer(format, agent_columns());
            let out = p.render_list(&[]).unwrap();
            assert_eq!(out.stdout, "");
            assert_eq!(out.stderr, "No resources found in team-a namespace.\n");
            let out = p.namespace("x", true).render_list(&[]).unwrap();
            assert_eq!(out.stderr, "No resources found\n");
        }
        let p = printer(OutputFormat::Name, agent_columns());
        assert_eq!(p.render_list(&[]).unwrap(), Rendered::default());
        let p = printer(OutputFormat::Json, agent_columns());
        let out = p.render_list(&[]).unwrap();
        assert_eq!(out.stderr, "");
        insta::assert_snapshot!(out.stdout, @r#"
        {
            "apiVersion": "v1",
            "items": [],
            "kind": "List",
            "metadata": {
                "resourceVersion": ""
            }
        }
        "#);
        let p = printer(OutputFormat::Yaml, agent_columns());
        let yaml = p.render_list(&[]).unwrap().stdout;
        let back: Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(
            back,
            json!({"apiVersion": "v1", "items": [], "kind": "List", "metadata": {"resourceVersion": ""}})
        );
    }

    #[test]
    fn elapsed_runs_from_the_start_to_the_end_or_to_now() {
        let now: Timestamp = "2026-01-02T03:04:05Z".parse().expect("timestamp");
        let at = |s: &str| json!(s);
        let start = at("2026-01-02T03:00:00Z");
        let end = at("2026-01-02T03:02:34Z");
        assert_eq!(elapsed(Some(&start), Some(&end), now), Some("2m34s".into()));
        assert_eq!(elapsed(Some(&start), None, now), Some("4m5s".into()));
        assert_eq!(elapsed(None, Some(&end), now), None);
        assert_eq!(
            elapsed(Some(&at("yesterday")), None, now),
            Some(INVALID.into())
        );
    }

    #[test]
    fn cells_by_type() {
        let n = now();
        let v = |v: Value| cell(ColumnType::String, Some(&v), n);
        assert_eq!(v(json!("x")), Some("x".into()));
        assert_eq!(v(json!(3)), Some("3".into()));
        assert_eq!(v(json!(1.5)), Some("1.5".into()));
        assert_eq!(v(json!(true)), Some("true".into()));
        assert_eq!(v(json!(["a", 1])), Some(r#"["a",1]"#.into()));
        assert_eq!(v(Value::Null), None);
        assert_eq!(cell(ColumnType::String, None, n), None);

        let int = |v: Value| cell(ColumnType::Integer, Some(&v), n);
        assert_eq!(int(json!(7)), Some("7".into()));
        assert_eq!(int(json!(-2.9)), Some("-2".into()));
        assert_eq!(int(json!("7")), None);

        let num = |v: Value| cell(ColumnType::Number, Some(&v), n);
        assert_eq!(num(json!(2)), Some("2".into()));
        assert_eq!(num(json!(0.25)), Some("0.25".into()));
        assert_eq!(num(json!(1e21)), Some("1e+21".into()));
        assert_eq!(num(json!(0.000015)), Some("1.5e-05".into()));

        let boolean = |v: Value| cell(ColumnType::Boolean, Some(&v), n);
        assert_eq!(boolean(json!(false)), Some("false".into()));
        assert_eq!(boolean(json!("true")), None);

        let date = |v: Value| cell(ColumnType::Date, Some(&v), n);
        assert_eq!(date(json!("2026-03-01T11:55:00Z")), Some("5m".into()));
        assert_eq!(date(json!("yesterday")), Some("<invalid>".into()));
        assert_eq!(
            date(json!("0001-01-01T00:00:00Z")),
            Some("<unknown>".into())
        );
        assert_eq!(
            date(json!("2026-03-01T13:00:00Z")),
            Some("<invalid>".into())
        );
        assert_eq!(date(json!(12)), None);
    }

    #[test]
    fn table_alignment_and_sanitizing() {
        let columns = vec![
            PrinterColumn::new("Id", ColumnType::Integer, ".spec.id", 0),
            PrinterColumn::new("Note", ColumnType::String, ".spec.note", 0),
            PrinterColumn::new("Bad", ColumnType::String, ".spec..x", 0),
            PrinterColumn::new("Last", ColumnType::String, ".spec.last", 0),
        ];
        let items = [json!({
            "metadata": {"name": "a"},
            "spec": {"id": 1, "note": "line one\nline two", "last": "x\ty\u{1b}[31m"},
        })];
        let p = printer(OutputFormat::Table, columns);
        assert_eq!(
            stdout(&p, &items),
            "NAME   ID    NOTE          BAD         LAST\n\
             a      1     line one...   <invalid>   x y^[[31m\n"
        );
    }

    #[test]
    fn columns_from_crd() {
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "tasks.kubeopencode.io"},
            "spec": {
                "group": "kubeopencode.io",
                "names": {"kind": "Task", "plural": "tasks"},
                "scope": "Namespaced",
                "versions": [
                    {"name": "v1alpha0", "served": true, "storage": false,
                     "additionalPrinterColumns": [
                        {"name": "Old", "type": "string", "jsonPath": ".spec.old"}]},
                    {"name": "v1alpha1", "served": true, "storage": true,
                     "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Template", "type": "string",
                         "jsonPath": ".status.templateRef.name", "priority": 1},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]},
                ],
            },
        }))
        .unwrap();
        assert_eq!(
            PrinterColumn::from_crd(&crd),
            vec![
                PrinterColumn::new("Phase", ColumnType::String, ".status.phase", 0),
                PrinterColumn::new(
                    "Template",
                    ColumnType::String,
                    ".status.templateRef.name",
                    1
                ),
                PrinterColumn::new("Age", ColumnType::Date, ".metadata.creationTimestamp", 0),
            ]
        );
    }

    #[test]
    fn human_duration_matches_kubectl() {
        let cases: &[(i64, &str)] = &[
            (-3, "<invalid>"),
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (59, "59s"),
            (60, "60s"),
            (119, "119s"),
            (120, "2m"),
            (121, "2m1s"),
            (200, "3m20s"),
            (599, "9m59s"),
            (600, "10m"),
            (659, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60, "3h1m"),
            (5 * 3600, "5h"),
            (8 * 3600 - 1, "7h59m"),
            (8 * 3600, "8h"),
            (48 * 3600 - 1, "47h"),
            (48 * 3600, "2d"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (8 * 86400 - 1, "7d23h"),
            (8 * 86400, "8d"),
            (12 * 86400, "12d"),
            (2 * 365 * 86400 - 1, "729d"),
            (2 * 365 * 86400, "2y"),
            (2 * 365 * 86400 + 34 * 86400, "2y34d"),
            (8 * 365 * 86400 - 1, "7y364d"),
            (8 * 365 * 86400, "8y"),
            (20 * 365 * 86400, "20y"),
        ];
        for (s, want) in cases {
            assert_eq!(human_duration(secs(*s)), *want, "{s}s");
        }
        // Go truncates fractional seconds toward zero.
        assert_eq!(human_duration(SignedDuration::from_millis(-1999)), "0s");
        assert_eq!(
            human_duration(SignedDuration::from_millis(-2000)),
            "<invalid>"
        );
        assert_eq!(human_duration(SignedDuration::from_millis(119_999)), "119s");
    }

    #[test]
    fn output_flags_parse_like_kubectl() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cmd {
            #[command(flatten)]
            output: OutputArgs,
        }
        let cmd = Cmd::try_parse_from(["x"]).unwrap();
        assert_eq!(cmd.output.output, OutputFormat::Table);
        assert!(!cmd.output.no_headers);
        let cmd = Cmd::try_parse_from(["x", "-o", "wide", "--no-headers"]).unwrap();
        assert_eq!(cmd.output.output, OutputFormat::Wide);
        assert!(cmd.output.no_headers);
        for (flag, want) in [
            ("yaml", OutputFormat::Yaml),
            ("json", OutputFormat::Json),
            ("name", OutputFormat::Name),
            ("table", OutputFormat::Table),
        ] {
            let cmd = Cmd::try_parse_from(["x", "--output", flag]).unwrap();
            assert_eq!(cmd.output.output, want);
        }
        assert!(Cmd::try_parse_from(["x", "-o", "xml"]).is_err());
        let cmd = Cmd::try_parse_from(["x", "-o", "jsonpath={.metadata.name}"]).unwrap();
        assert!(matches!(cmd.output.output, OutputFormat::JsonPath(_)));
        let cmd = Cmd::try_parse_from(["x", "-o", "custom-columns=N:.metadata.name"]).unwrap();
        assert!(matches!(cmd.output.output, OutputFormat::CustomColumns(ref c) if c.len() == 1));
        for bad in [
            "jsonpath",
            "jsonpath={.a",
            "custom-columns=",
            "custom-columns=NAME",
        ] {
            assert!(Cmd::try_parse_from(["x", "-o", bad]).is_err(), "{bad}");
        }
    }

    fn two_agents() -> Vec<Value> {
        vec![
            json!({"apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
                   "metadata": {"name": "a", "namespace": "team"},
                   "status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}}),
            json!({"apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
                   "metadata": {"name": "b", "namespace": "team"}}),
        ]
    }

    fn format(flag: &str) -> OutputArgs {
        OutputArgs {
            output: flag.parse().expect("format"),
            no_headers: false,
        }
    }

    #[test]
    fn jsonpath_output_applies_the_template_to_the_list_or_the_object() {
        let list = Printer::new(
            &format(r#"jsonpath={range .items[*]}{.metadata.name}={.status.phase}{"\n"}{end}"#),
            vec![],
        )
        .render_list(&two_agents())
        .unwrap();
        assert_eq!(list.stdout, "a=Ready\nb=\n");
        let one = Printer::new(&format("jsonpath={.metadata.name}"), vec![])
            .render_objects(&two_agents()[..1])
            .unwrap();
        assert_eq!(one.stdout, "a");
    }

    #[test]
    fn a_server_table_prints_as_kubectl_prints_it() {
        let table: ServerTable = serde_json::from_value(json!({
            "columnDefinitions": [
                {"name": "Name", "priority": 0},
                {"name": "URL", "priority": 1},
                {"name": "Ready", "priority": 0},
                {"name": "MaxTasks", "priority": 0},
                {"name": "Age", "priority": 0}
            ],
            "rows": [
                {"cells": ["team-agent", "http://t", true, 3, "3d4h"],
                 "object": {"metadata": {"namespace": "team-a"}}},
                {"cells": ["fresh\nline", null, null, 0.5, "5s"],
                 "object": {"metadata": {"namespace": "b"}}}
            ]
        }))
        .unwrap();
        let table_text = printer(OutputFormat::Table, vec![])
            .namespace("team-a", true)
            .render_server_table(&table);
        assert_eq!(
            table_text.stdout,
            "NAMESPACE   NAME         READY   MAXTASKS   AGE\n\
             team-a      team-agent   true    3          3d4h\n\
             b           fresh...             0.5        5s\n"
        );
        let wide = printer(OutputFormat::Wide, vec![]).render_server_table(&table);
        assert!(
            wide.stdout.starts_with("NAME         URL        READY"),
            "{}",
            wide.stdout
        );
        let empty: ServerTable =
            serde_json::from_value(json!({"columnDefinitions": [], "rows": []})).unwrap();
        let none = printer(OutputFormat::Table, vec![])
            .namespace("team", false)
            .render_server_table(&empty);
        assert_eq!(
            (none.stdout.as_str(), none.stderr.as_str()),
            ("", "No resources found in team namespace.\n")
        );
    }

    #[test]
    fn custom_columns_print_a_table_of_the_given_paths() {
        let rendered = Printer::new(
            &format(r#"custom-columns=NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status"#),
            vec![],
        )
        .render_list(&two_agents())
        .unwrap();
        assert_eq!(
            rendered.stdout,
            "NAME   READY\na      True\nb      <none>\n"
        );
        let empty = Printer::new(&format("custom-columns=NAME:.metadata.name"), vec![])
            .namespace("team", false)
            .render_list(&[])
            .unwrap();
        assert_eq!(empty.stderr, "No resources found in team namespace.\n");
    }
}
