//! kubectl-style output shared by every noun: `-o table|wide|yaml|json|name` and
//! `--no-headers`.
//!
//! Table columns come straight from a CRD's `additionalPrinterColumns`
//! ([`PrinterColumn::from_crd`]) and render the way kubectl renders a custom resource's
//! server-side table: `NAME` first (after `NAMESPACE` with `-A`), then the declared columns in
//! order (priority 0 only, all of them with `-o wide`), headers upper-cased, columns aligned
//! like kubectl's tabwriter, `date` columns as a human age (kubectl's `HumanDuration`).
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

/// The value of `-o/--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
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
}

/// Output flags that nouns flatten into their list/get commands.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT", default_value_t = OutputFormat::Table)]
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
            format: args.output,
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
        match self.format {
            OutputFormat::Table | OutputFormat::Wide => {
                if items.is_empty() {
                    out.stderr = if self.all_namespaces {
                        "No resources found\n".to_owned()
                    } else {
                        format!("No resources found in {} namespace.\n", self.namespace)
                    };
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

    /// The table text for `items` (no trailing notice; `items` may be empty).
    fn table(&self, items: &[Value]) -> String {
        let wide = self.format == OutputFormat::Wide;
        let columns: Vec<(&PrinterColumn, Option<JsonPath>)> = self
            .columns
            .iter()
            .filter(|c| wide || c.priority == 0)
            .map(|c| (c, JsonPath::parse(&c.json_path).ok()))
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
            for (column, path) in &columns {
                let cell = match path {
                    Some(path) => {
                        let value = path.eval(item).into_iter().next();
                        cell(column.type_, value, self.now)
                    }
                    None => Some(INVALID.to_owned()),
                };
                row.push(sanitize(cell.as_deref().unwrap_or(NONE)));
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

/// The JSONPath subset that CRD printer columns use (kubectl evaluates the same for
/// `additionalPrinterColumns`):
///
/// - fields: `.a.b`, `.a\.b` (escaped dot in a key), `['a.b']`, `["a"]`
/// - indexes: `[0]`, `[-1]` (from the end), wildcards `[*]` / `.*`
/// - filters: `[?(@.type=="Ready")]`, with `==`, `!=`, `<`, `<=`, `>`, `>=` against a string,
///   number, `true`/`false` or `null`, or `[?(@.field)]` for "field exists"
///
/// An optional leading `$` and surrounding `{}` are accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    path: JsonPath,
    test: Option<(Op, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl JsonPath {
    /// Parses a path such as `.status.conditions[?(@.type=="Ready")].status`.
    pub fn parse(path: &str) -> Result<Self, String> {
        let trimmed = path.trim();
        let inner = trimmed
            .strip_prefix('{')
            .and_then(|p| p.strip_suffix('}'))
            .unwrap_or(trimmed)
            .trim();
        let inner = inner.strip_prefix('$').unwrap_or(inner);
        let chars: Vec<char> = inner.chars().collect();
        let mut parser = PathParser {
            chars: &chars,
            pos: 0,
        };
        let parsed = parser
            .steps(false)
            .map_err(|e| format!("invalid JSONPath {path:?}: {e}"))?;
        if parser.pos != chars.len() {
            return Err(format!(
                "invalid JSONPath {path:?}: unexpected {:?} at offset {}",
                chars[parser.pos], parser.pos
            ));
        }
        Ok(parsed)
    }

    /// Every value the path selects in `root`, in document order (empty when nothing
    /// matches).
    pub fn eval<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for value in current {
                match (step, value) {
                    (Step::Field(name), Value::Object(map)) => next.extend(map.get(name)),
                    (Step::Index(i), Value::Array(items)) => {
                        let len = items.len() as i64;
                        let at = if *i < 0 { len + i } else { *i };
                        if (0..len).contains(&at) {
                            next.extend(items.get(at as usize));
                        }
                    }
                    (Step::Wildcard, Value::Array(items)) => next.extend(items.iter()),
                    (Step::Wildcard, Value::Object(map)) => next.extend(map.values()),
                    (Step::Filter(filter), Value::Array(items)) => {
                        next.extend(items.iter().filter(|item| filter.matches(item)));
                    }
                    _ => {}
                }
            }
            current = next;
        }
        current
    }
}

impl Filter {
    fn matches(&self, item: &Value) -> bool {
        let Some(left) = self.path.eval(item).into_iter().next() else {
            return false;
        };
        let Some((op, right)) = &self.test else {
            return true;
        };
        let ordering = match (left, right) {
            (Value::Number(a), Value::Number(b)) => a
                .as_f64()
                .zip(b.as_f64())
                .and_then(|(a, b)| a.partial_cmp(&b)),
            (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
            (a, b) if a == b => Some(std::cmp::Ordering::Equal),
            _ => None,
        };
        use std::cmp::Ordering::*;
        match (op, ordering) {
            (Op::Eq, Some(Equal)) => true,
            (Op::Ne, o) => o != Some(Equal),
            (Op::Lt, Some(Less)) => true,
            (Op::Le, Some(Less | Equal)) => true,
            (Op::Gt, Some(Greater)) => true,
            (Op::Ge, Some(Greater | Equal)) => true,
            _ => false,
        }
    }
}

struct PathParser<'a> {
    chars: &'a [char],
    pos: usize,
}

impl PathParser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Steps until the end, or (inside a filter) until an operator or `)`.
    fn steps(&mut self, in_filter: bool) -> Result<JsonPath, String> {
        let mut steps = Vec::new();
        while let Some(c) = self.peek() {
            match c {
                '.' => {
                    self.pos += 1;
                    if self.peek() == Some('.') {
                        return Err("recursive descent (..) is not supported".into());
                    }
                    if self.eat('*') {
                        steps.push(Step::Wildcard);
                    } else {
                        steps.push(Step::Field(self.field_name()?));
                    }
                }
                '[' => {
                    self.pos += 1;
                    steps.push(self.bracket()?);
                }
                c if in_filter && (c.is_whitespace() || "=!<>)".contains(c)) => break,
                c => return Err(format!("unexpected {c:?} at offset {}", self.pos)),
            }
        }
        Ok(JsonPath { steps })
    }

    fn field_name(&mut self) -> Result<String, String> {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            match c {
                '\\' => {
                    self.pos += 1;
                    match self.peek() {
                        Some(escaped) => name.push(escaped),
                        None => return Err("dangling \\ at the end".into()),
                    }
                    self.pos += 1;
                }
                '.' | '[' | ']' | '(' | ')' | '=' | '!' | '<' | '>' | ' ' => break,
                c => {
                    name.push(c);
                    self.pos += 1;
                }
            }
        }
        if name.is_empty() {
            return Err(format!("expected a field name at offset {}", self.pos));
        }
        Ok(name)
    }

    /// After `[`: an index, `*`, a quoted key or a filter, through the closing `]`.
    fn bracket(&mut self) -> Result<Step, String> {
        self.skip_spaces();
        let step = match self.peek() {
            Some('*') => {
                self.pos += 1;
                Step::Wildcard
            }
            Some('\'' | '"') => Step::Field(self.quoted()?),
            Some('?') => {
                self.pos += 1;
                self.skip_spaces();
                if !self.eat('(') {
                    return Err("expected ( after ?".into());
                }
                let filter = self.filter()?;
                self.skip_spaces();
                if !self.eat(')') {
                    return Err(format!("expected ) at offset {}", self.pos));
                }
                Step::Filter(filter)
            }
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let start = self.pos;
                self.pos += 1;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                Step::Index(
                    text.parse()
                        .map_err(|_| format!("invalid index {text:?}"))?,
                )
            }
            _ => return Err(format!("unsupported expression at offset {}", self.pos)),
        };
        self.skip_spaces();
        if !self.eat(']') {
            return Err(format!("expected ] at offset {}", self.pos));
        }
        Ok(step)
    }

    fn quoted(&mut self) -> Result<String, String> {
        let Some(quote) = self.peek() else {
            return Err("expected a quoted string".into());
        };
        self.pos += 1;
        let mut text = String::new();
        loop {
            match self.peek() {
                None => return Err("unterminated string".into()),
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c) => text.push(c),
                        None => return Err("unterminated string".into()),
                    }
                    self.pos += 1;
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(text);
                }
                Some(c) => {
                    text.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// After `(`: `@<path> [op literal]`.
    fn filter(&mut self) -> Result<Filter, String> {
        self.skip_spaces();
        if !self.eat('@') {
            return Err(format!("filter must start with @ at offset {}", self.pos));
        }
        let path = self.steps(true)?;
        self.skip_spaces();
        let op = if self.eat('=') {
            if !self.eat('=') {
                return Err("expected == in filter".into());
            }
            Some(Op::Eq)
        } else if self.eat('!') {
            if !self.eat('=') {
                return Err("expected != in filter".into());
            }
            Some(Op::Ne)
        } else if self.eat('<') {
            Some(if self.eat('=') { Op::Le } else { Op::Lt })
        } else if self.eat('>') {
            Some(if self.eat('=') { Op::Ge } else { Op::Gt })
        } else {
            None
        };
        let test = match op {
            Some(op) => {
                self.skip_spaces();
                Some((op, self.literal()?))
            }
            None => None,
        };
        Ok(Filter { path, test })
    }

    fn literal(&mut self) -> Result<Value, String> {
        if matches!(self.peek(), Some('\'' | '"')) {
            return Ok(Value::String(self.quoted()?));
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        match text.as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            "null" | "nil" => Ok(Value::Null),
            _ => serde_json::from_str::<serde_json::Number>(&text)
                .map(Value::Number)
                .map_err(|_| format!("invalid literal {text:?} in filter")),
        }
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

    /// Upstream's Task columns plus kubeoc's QUEUE.
    fn task_columns() -> Vec<PrinterColumn> {
        [
            json!({"name": "Phase", "type": "string", "jsonPath": ".status.phase"}),
            json!({"name": "Agent", "type": "string", "jsonPath": ".status.agentRef.name"}),
            json!({"name": "Template", "type": "string", "jsonPath": ".status.templateRef.name", "priority": 1}),
            json!({"name": "Pod", "type": "string", "jsonPath": ".status.podName"}),
            json!({"name": "Queue", "type": "integer", "jsonPath": ".status.queuePosition", "priority": 1}),
            json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}),
        ]
        .into_iter()
        .map(column)
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
    fn jsonpath_fields_and_indexes() {
        let obj = json!({
            "metadata": {
                "name": "a",
                "annotations": {"kubeopencode.io/stop": "true"},
            },
            "spec": {"contexts": [{"name": "c0"}, {"name": "c1"}]},
        });
        let eval = |p: &str| -> Vec<Value> {
            JsonPath::parse(p)
                .unwrap()
                .eval(&obj)
                .into_iter()
                .cloned()
                .collect()
        };
        assert_eq!(eval(".metadata.name"), [json!("a")]);
        assert_eq!(eval("{.metadata.name}"), [json!("a")]);
        assert_eq!(eval("$.metadata.name"), [json!("a")]);
        assert_eq!(eval(".spec.contexts[1].name"), [json!("c1")]);
        assert_eq!(eval(".spec.contexts[-1].name"), [json!("c1")]);
        assert_eq!(eval(".spec.contexts[2].name"), Vec::<Value>::new());
        assert_eq!(eval(".spec.contexts[*].name"), [json!("c0"), json!("c1")]);
        assert_eq!(eval(".spec.contexts.*.name"), [json!("c0"), json!("c1")]);
        assert_eq!(
            eval(r".metadata.annotations.kubeopencode\.io/stop"),
            [json!("true")]
        );
        assert_eq!(
            eval(".metadata.annotations['kubeopencode.io/stop']"),
            [json!("true")]
        );
        assert_eq!(
            eval(r#".metadata["annotations"]["kubeopencode.io/stop"]"#),
            [json!("true")]
        );
        assert_eq!(eval(".metadata.missing.deeper"), Vec::<Value>::new());
        assert_eq!(eval(".metadata.name.length"), Vec::<Value>::new());
        assert_eq!(eval(""), std::slice::from_ref(&obj));
    }

    #[test]
    fn jsonpath_filters() {
        let obj = json!({"status": {"conditions": [
            {"type": "ServerReady", "status": "True", "count": 3},
            {"type": "Ready", "status": "False", "reason": "InvalidSpec", "count": 1},
            {"type": "Stopped", "status": "True", "ok": true},
        ]}});
        let eval = |p: &str| -> Vec<Value> {
            JsonPath::parse(p)
                .unwrap()
                .eval(&obj)
                .into_iter()
                .cloned()
                .collect()
        };
        assert_eq!(
            eval(r#".status.conditions[?(@.type=="Ready")].status"#),
            [json!("False")]
        );
        assert_eq!(
            eval(r#".status.conditions[?(@.type == 'Ready')].reason"#),
            [json!("InvalidSpec")]
        );
        assert_eq!(
            eval(r#".status.conditions[?(@.status!="True")].type"#),
            [json!("Ready")]
        );
        assert_eq!(
            eval(".status.conditions[?(@.reason)].type"),
            [json!("Ready")]
        );
        assert_eq!(
            eval(".status.conditions[?(@.count>1)].type"),
            [json!("ServerReady")]
        );
        assert_eq!(
            eval(".status.conditions[?(@.count<=3)].type"),
            [json!("ServerReady"), json!("Ready")]
        );
        assert_eq!(
            eval(".status.conditions[?(@.ok==true)].type"),
            [json!("Stopped")]
        );
        assert_eq!(
            eval(r#".status.conditions[?(@.type=="Nope")].status"#),
            Vec::<Value>::new()
        );
        // A filter on a non-array selects nothing.
        assert_eq!(eval(r#".status[?(@.type=="Ready")]"#), Vec::<Value>::new());
    }

    #[test]
    fn jsonpath_rejects_what_it_does_not_support() {
        for bad in [
            "..name",
            ".a[",
            ".a[0",
            ".a[?(@.x==)]",
            ".a[?(.x)]",
            ".a[1:2]",
            "a.b",
            ".a['x]",
            ".",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn upstream_printer_column_paths_parse() {
        for path in [
            ".spec.profile",
            ".spec.executorImage",
            ".spec.serviceAccountName",
            ".spec.maxConcurrentTasks",
            ".status.ready",
            ".metadata.creationTimestamp",
            ".status.phase",
            ".status.agentRef.name",
            ".status.templateRef.name",
            ".status.podName",
            ".spec.schedule",
            ".spec.suspend",
            ".status.active",
            ".status.lastScheduleTime",
            ".status.nextScheduleTime",
        ] {
            JsonPath::parse(path).unwrap();
        }
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
    }
}
