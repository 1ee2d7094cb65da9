//! kubectl's JSONPath for `-o jsonpath=...`, `-o custom-columns=...` and CRD printer
//! columns: path expressions ([`JsonPath`]) and templates with text, quoted strings and
//! `{range ...}{end}` ([`Template`]), printed as kubectl prints them.

use serde_json::Value;

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

/// A kubectl JSONPath template, as `-o jsonpath=TEMPLATE` takes it: text, `{PATH}`
/// (results joined by spaces), `{"quoted text"}` (with `\n`, `\t` escapes) and
/// `{range PATH}...{end}`, whose body sees each element as the current object (`{.field}` or
/// `{@.field}`). A path that finds nothing prints nothing, as `kubectl get` does.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Path(JsonPath),
    Range(JsonPath, Vec<Part>),
}

impl Template {
    /// Parses a template; the error names what is wrong and where.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut stack: Vec<(Option<JsonPath>, Vec<Part>)> = vec![(None, Vec::new())];
        let mut rest = template;
        while !rest.is_empty() {
            let Some(open) = rest.find('{') else {
                push_text(&mut stack, rest);
                break;
            };
            push_text(&mut stack, &rest[..open]);
            let action_start = &rest[open + 1..];
            let close = closing_brace(action_start)
                .ok_or_else(|| format!("invalid template {template:?}: unclosed {{"))?;
            let action = action_start[..close].trim();
            rest = &action_start[close + 1..];
            if action == "end" {
                if stack.len() < 2 {
                    return Err(format!(
                        "invalid template {template:?}: {{end}} without {{range}}"
                    ));
                }
                if let Some((Some(path), body)) = stack.pop()
                    && let Some((_, parts)) = stack.last_mut()
                {
                    parts.push(Part::Range(path, body));
                }
            } else if let Some(path) = action.strip_prefix("range ") {
                let path = JsonPath::parse(strip_current(path.trim()))
                    .map_err(|e| format!("invalid template {template:?}: {e}"))?;
                stack.push((Some(path), Vec::new()));
            } else if action.starts_with('"') || action.starts_with('\'') {
                push_text(
                    &mut stack,
                    &unquote(action).map_err(|e| format!("invalid template {template:?}: {e}"))?,
                );
            } else {
                let path = JsonPath::parse(strip_current(action))
                    .map_err(|e| format!("invalid template {template:?}: {e}"))?;
                if let Some((_, parts)) = stack.last_mut() {
                    parts.push(Part::Path(path));
                }
            }
        }
        if stack.len() != 1 {
            return Err(format!(
                "invalid template {template:?}: {{range}} without {{end}}"
            ));
        }
        let parts = stack.pop().map(|(_, parts)| parts).unwrap_or_default();
        Ok(Template { parts })
    }

    /// The template applied to `root`.
    pub fn render(&self, root: &Value) -> String {
        let mut out = String::new();
        render_parts(&self.parts, root, &mut out);
        out
    }
}

fn push_text(stack: &mut [(Option<JsonPath>, Vec<Part>)], text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some((_, parts)) = stack.last_mut() {
        match parts.last_mut() {
            Some(Part::Text(previous)) => previous.push_str(text),
            _ => parts.push(Part::Text(text.to_string())),
        }
    }
}

/// The offset of the `}` that closes an action, skipping braces inside quoted strings.
fn closing_brace(action: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in action.char_indices() {
        match (quote, c) {
            (Some(_), _) if escaped => escaped = false,
            (Some(_), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '}') => return Some(i),
            (None, _) => {}
        }
    }
    None
}

/// `@.a` (the current object in a range) is `.a`; a bare `@` is the object itself.
fn strip_current(path: &str) -> &str {
    path.strip_prefix('@').unwrap_or(path)
}

/// A quoted action's text, with kubectl's escapes.
fn unquote(action: &str) -> Result<String, String> {
    let quote = action.chars().next().unwrap_or('"');
    let inner = action
        .strip_prefix(quote)
        .and_then(|a| a.strip_suffix(quote))
        .ok_or_else(|| format!("unterminated string {action}"))?;
    let mut text = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => text.push('\n'),
            Some('t') => text.push('\t'),
            Some('r') => text.push('\r'),
            Some(other) => text.push(other),
            None => return Err(format!("dangling \\ in {action}")),
        }
    }
    Ok(text)
}

fn render_parts(parts: &[Part], current: &Value, out: &mut String) {
    for part in parts {
        match part {
            Part::Text(text) => out.push_str(text),
            Part::Path(path) => {
                let values: Vec<String> = path.eval(current).into_iter().map(print_value).collect();
                out.push_str(&values.join(" "));
            }
            Part::Range(path, body) => {
                let found = path.eval(current);
                // `{range .items}` walks the list itself, `{range .items[*]}` its elements.
                let items: Vec<&Value> = match found.as_slice() {
                    [Value::Array(items)] => items.iter().collect(),
                    _ => found,
                };
                for item in items {
                    render_parts(body, item, out);
                }
            }
        }
    }
}

/// A value as kubectl's JSONPath prints it: strings bare, everything else as JSON.
pub fn print_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    fn agents() -> Value {
        json!({"apiVersion": "v1", "kind": "List", "items": [
            {"metadata": {"name": "a", "labels": {"team": "x"}}, "status": {"ready": true, "conditions": [
                {"type": "Ready", "status": "True"}, {"type": "ServerHealthy", "status": "True"}]}},
            {"metadata": {"name": "b"}, "status": {"ready": false, "conditions": [
                {"type": "Ready", "status": "False"}]}}
        ]})
    }

    #[test]
    fn templates_print_paths_text_and_ranges_like_kubectl() {
        let cases = [
            ("{.items[*].metadata.name}", "a b"),
            ("{.items[0].metadata.name}", "a"),
            ("names: {.items[*].metadata.name}!", "names: a b!"),
            (
                r#"{range .items[*]}{.metadata.name}{"\t"}{.status.ready}{"\n"}{end}"#,
                "a\ttrue\nb\tfalse\n",
            ),
            (r#"{range .items[*]}{@.metadata.name},{end}"#, "a,b,"),
            (r#"{range .items}[{.metadata.name}]{end}"#, "[a][b]"),
            (
                r#"{.items[?(@.metadata.name=="b")].status.conditions[0].status}"#,
                "False",
            ),
            ("{.items[0].metadata.labels}", r#"{"team":"x"}"#),
            ("{.items[0].metadata.missing}", ""),
            (
                r#"{range .items[*]}{range .status.conditions[*]}{.type}={.status} {end}{"\n"}{end}"#,
                "Ready=True ServerHealthy=True \nReady=False \n",
            ),
            (r#"{"}{ inside quotes"}"#, "}{ inside quotes"),
            ("no actions at all", "no actions at all"),
        ];
        for (template, want) in cases {
            let parsed = Template::parse(template).unwrap_or_else(|e| panic!("{template}: {e}"));
            assert_eq!(parsed.render(&agents()), want, "{template}");
        }
    }

    #[test]
    fn broken_templates_say_what_is_wrong() {
        for (template, words) in [
            ("{.items[*]", "unclosed"),
            ("{range .items[*]}{.a}", "without {end}"),
            ("{.a}{end}", "without {range}"),
            ("{.items[}", "invalid JSONPath"),
        ] {
            let err = Template::parse(template).expect_err(template);
            assert!(err.contains(words), "{template}: {err}");
        }
    }
}
