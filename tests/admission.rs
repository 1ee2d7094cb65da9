//! Admission tests against the testbed's real kube-apiserver (start it with
//! `bash testbed/scripts/cluster-up.sh`; it writes `.testbed/kubeconfig`).
//!
//! - Every manifest of `examples/` applies unchanged with `kubectl apply --server-side
//!   --validate=strict` (or `kubectl create` for `generateName`) and reads back with the same
//!   spec. With feature `upstream-tests` (`make test-upstream`), so does every upstream example
//!   object of group kubeopencode.io (`$KUBEOC_UPSTREAM_EXAMPLES`), and `kubectl get agents -o
//!   wide` shows upstream's printer columns plus STATUS and URL.
//! - `kubectl explain` prints our doc comments.
//! - The corpus `tests/admission/invalid/*.yaml` (malformed objects, one defect each) is
//!   rejected with 422 Invalid, a message that contains the case's `# expect:` text and names
//!   its `# field:` path. The offline emulation of the same rules lives in `tests/crds.rs`.
//!
//! Each test installs the CRDs first (idempotent server-side apply) and works in a namespace
//! of its own, which it deletes at the end.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kubeoc::api;
use kubeoc_testbed::{TestNamespace, admin_client, repo_root, wait_until};
use serde_json::{Value, json};
use support::{install_kubeoc, kubectl_run};

/// Connects to the testbed and makes sure the current CRDs are installed and served.
async fn setup() -> anyhow::Result<Client> {
    let client = admin_client().await?;
    install_kubeoc(&client).await?;
    Ok(client)
}

fn yaml_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// All non-empty YAML documents of a text, as JSON values.
fn yaml_documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Our kinds: kind -> (API resource, namespaced), from the CRDs themselves.
fn our_kinds() -> BTreeMap<String, (ApiResource, bool)> {
    api::crds()
        .into_iter()
        .map(|crd| {
            let names = &crd.spec.names;
            let gvk = GroupVersionKind::gvk(api::GROUP, api::VERSION, &names.kind);
            let resource = ApiResource::from_gvk_with_plural(&gvk, &names.plural);
            (
                names.kind.clone(),
                (resource, crd.spec.scope == "Namespaced"),
            )
        })
        .collect()
}

fn dynamic_api(
    client: &Client,
    kinds: &BTreeMap<String, (ApiResource, bool)>,
    kind: &str,
    namespace: &str,
) -> anyhow::Result<Api<DynamicObject>> {
    let (resource, namespaced) = kinds
        .get(kind)
        .with_context(|| format!("no CRD for kind {kind}"))?;
    Ok(if *namespaced {
        Api::namespaced_with(client.clone(), namespace, resource)
    } else {
        Api::all_with(client.clone(), resource)
    })
}

/// Checks that every field present in `input` is in `stored` with the same value (fields the
/// apiserver adds, such as CRD defaults, are fine). Returns the differences.
fn missing_or_changed(input: &Value, stored: &Value, path: &str, out: &mut Vec<String>) {
    match (input, stored) {
        (Value::Object(want), Value::Object(have)) => {
            for (key, value) in want {
                match have.get(key) {
                    Some(got) => missing_or_changed(value, got, &format!("{path}.{key}"), out),
                    None => out.push(format!("{path}.{key} was dropped (input: {value})")),
                }
            }
        }
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => {
            for (index, (value, got)) in want.iter().zip(have).enumerate() {
                missing_or_changed(value, got, &format!("{path}[{index}]"), out);
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        _ if input == stored => {}
        _ => out.push(format!("{path}: input {input} read back as {stored}")),
    }
}

/// Rewrites `metadata.namespace` of every document (and nothing else, which is checked).
fn with_namespace(text: &str, namespace: &str) -> anyhow::Result<String> {
    let rewritten: String = text
        .lines()
        .map(|line| {
            if line.starts_with("  namespace: ") {
                format!("  namespace: {namespace}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    let mut expected = yaml_documents(text)?;
    for doc in &mut expected {
        if doc["metadata"].get("namespace").is_some() {
            doc["metadata"]["namespace"] = json!(namespace);
        }
    }
    ensure!(
        yaml_documents(&rewritten)? == expected,
        "rewriting metadata.namespace changed more than metadata.namespace"
    );
    Ok(rewritten)
}

/// What applying a folder of example files found.
#[derive(Default)]
struct ExampleRun {
    applied: usize,
    compared: usize,
    skipped: Vec<String>,
    problems: Vec<String>,
}

/// Applies every YAML file of `dirs` under `base` unchanged into a fresh namespace (strict field
/// validation, so no field is unknown to our schema) and checks that each object of our group
/// reads back with the same spec. Objects with `generateName` are created, as `kubectl create`
/// does (apply needs a name).
async fn apply_examples(
    client: &Client,
    prefix: &str,
    base: &Path,
    dirs: &[&str],
) -> anyhow::Result<ExampleRun> {
    let kinds = our_kinds();
    let ns = TestNamespace::create(client, prefix).await?;
    let scratch = std::env::temp_dir().join(format!("kubeoc-admission-{}", ns.name));
    std::fs::create_dir_all(&scratch)?;
    let mut run_result = ExampleRun::default();
    let outcome = async {
        let ExampleRun {
            applied,
            compared,
            skipped,
            problems,
        } = &mut run_result;
        for dir in dirs {
            for file in yaml_files(&base.join(dir))? {
                let label = format!(
                    "{dir}/{}",
                    file.file_name().and_then(|n| n.to_str()).unwrap_or("?")
                );
                let text = std::fs::read_to_string(&file)?;
                let docs = yaml_documents(&text).with_context(|| format!("parsing {label}"))?;
                // A Namespace (upstream's namespace.yaml creates "test") is cluster-scoped, not
                // ours, and not safe to create in a shared cluster.
                if docs.iter().any(|d| d["kind"] == "Namespace") {
                    skipped.push(label);
                    continue;
                }
                // Files whose objects name a namespace (`test`, `kubeopencode-system`) are applied
                // into the test namespace instead: only their metadata.namespace is rewritten.
                // `test` may not exist and `kubeopencode-system` is shared with other tests (an
                // Agent there would also make `uninstall` refuse).
                let path = if docs
                    .iter()
                    .any(|d| d["metadata"].get("namespace").is_some())
                {
                    let copy = scratch.join(file.file_name().context("file name")?);
                    std::fs::write(&copy, with_namespace(&text, &ns.name)?)?;
                    copy
                } else {
                    file.clone()
                };
                let path_arg = path.to_string_lossy().into_owned();
                // KubeOpenCodeConfig is the cluster-scoped singleton `cluster` that the controllers
                // of concurrently running tests read (proxy, cleanup): it is applied with
                // --dry-run=server, which runs the same admission (schema, CEL, strict fields) and
                // returns the object as it would be stored, without changing shared state.
                let singleton = docs.iter().any(|d| d["kind"] == "KubeOpenCodeConfig");
                let generated = docs
                    .iter()
                    .any(|d| d["metadata"].get("generateName").is_some());
                let mut args = if generated {
                    vec!["create", "--validate=strict", "-o", "json"]
                } else {
                    vec!["apply", "--server-side", "--validate=strict"]
                };
                args.extend(["-f", &path_arg, "-n", &ns.name]);
                if singleton {
                    args.extend(["--dry-run=server", "--force-conflicts", "-o", "json"]);
                }
                let run = kubectl_run(&args, None).await?;
                if !run.success() {
                    problems.push(format!(
                        "{label}: kubectl {} failed: {}",
                        args[0],
                        run.stderr.trim()
                    ));
                    continue;
                }
                *applied += 1;
                // Objects as the server answered: the dry run's, or those created with a
                // generated name.
                let answered: Vec<Value> = if singleton || generated {
                    let out: Value = serde_json::from_str(&run.stdout)
                        .with_context(|| format!("{label}: kubectl output"))?;
                    match out["kind"].as_str() {
                        Some("List") => out["items"].as_array().cloned().unwrap_or_default(),
                        _ => vec![out],
                    }
                } else {
                    Vec::new()
                };
                for (index, doc) in docs.iter().enumerate() {
                    if doc["apiVersion"] != api::API_VERSION {
                        continue;
                    }
                    let kind = doc["kind"].as_str().unwrap_or_default();
                    let mut name = doc["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    if let Some(prefix) = doc["metadata"]["generateName"].as_str() {
                        let created = answered.iter().find(|o| {
                            o["kind"] == kind
                                && o["metadata"]["name"]
                                    .as_str()
                                    .is_some_and(|n| n.starts_with(prefix))
                        });
                        name = created
                            .and_then(|o| o["metadata"]["name"].as_str())
                            .unwrap_or_default()
                            .to_string();
                    }
                    let origin = format!("{label} #{index} ({kind} {name})");
                    let stored = if singleton {
                        if name != api::config::CONFIG_NAME {
                            problems.push(format!(
                                "{origin}: a KubeOpenCodeConfig must be named `cluster`"
                            ));
                        }
                        answered
                            .iter()
                            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name.as_str())
                            .cloned()
                    } else {
                        let api = dynamic_api(client, &kinds, kind, &ns.name)?;
                        api.get_opt(&name)
                            .await
                            .with_context(|| format!("{origin}: reading back"))?
                            .map(serde_json::to_value)
                            .transpose()?
                    };
                    let Some(stored) = stored else {
                        problems.push(format!("{origin}: not found after apply"));
                        continue;
                    };
                    let before = problems.len();
                    missing_or_changed(
                        &doc["spec"],
                        &stored["spec"],
                        &format!("{origin}: spec"),
                        problems,
                    );
                    if problems.len() == before {
                        *compared += 1;
                    }
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    std::fs::remove_dir_all(&scratch).ok();
    ns.delete().await?;
    outcome?;
    Ok(run_result)
}

/// 1. The project's own manifests (`examples/`) apply unchanged and read back equal, every kind.
#[tokio::test]
async fn our_examples_apply_unchanged_and_read_back_equal() -> anyhow::Result<()> {
    let client = setup().await?;
    let run = apply_examples(
        &client,
        "kubeoc-admission-ours",
        &repo_root(),
        &["examples"],
    )
    .await?;
    println!(
        "applied {} example files, {} objects read back equal",
        run.applied, run.compared
    );
    assert!(
        run.problems.is_empty(),
        "{} problems:\n{}",
        run.problems.len(),
        run.problems.join("\n")
    );
    let files = yaml_files(&repo_root().join("examples"))?.len();
    assert_eq!(run.applied, files, "every file of examples/ applies");
    assert!(run.skipped.is_empty(), "skipped {:?}", run.skipped);
    // team-agent, team-base, review-agent, the Task and the CronTask.
    assert!(run.compared >= 5, "only {} objects compared", run.compared);
    Ok(())
}

fn normalize_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// 2. `kubectl explain agent.spec.persistence` prints our doc comment.
#[tokio::test]
async fn explain_prints_our_doc_text() -> anyhow::Result<()> {
    setup().await?;
    let crds = api::crds();
    let agent = crds
        .iter()
        .find(|c| c.spec.names.kind == "Agent")
        .context("Agent CRD")?;
    let schema = agent.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .context("Agent schema")?;
    let description = schema
        .properties
        .as_ref()
        .and_then(|p| p.get("spec"))
        .and_then(|s| s.properties.as_ref())
        .and_then(|p| p.get("persistence"))
        .and_then(|p| p.description.clone())
        .context("spec.persistence has no description")?;
    // The first sentence of the field's doc comment.
    let sentence = normalize_whitespace(
        description
            .split_inclusive(". ")
            .next()
            .unwrap_or(&description),
    );
    ensure!(
        sentence.len() > 40,
        "doc sentence too short to be distinctive: {sentence:?}"
    );
    // The apiserver publishes the OpenAPI of a changed CRD a little after it is Established.
    let output = wait_until(
        "kubectl explain agent.spec.persistence to print the doc comment",
        Duration::from_secs(60),
        || async {
            let run = kubectl_run(&["explain", "agent.spec.persistence"], None).await?;
            if !run.success() {
                bail!("kubectl explain failed: {}", run.stderr.trim());
            }
            let text = normalize_whitespace(&run.stdout);
            Ok(text.contains(sentence.trim_end()).then_some(run.stdout))
        },
    )
    .await?;
    println!("{output}");
    for field in ["sessions", "workspace"] {
        assert!(
            output.contains(field),
            "explain output lacks field {field}:\n{output}"
        );
    }
    Ok(())
}

/// One malformed object of the corpus.
struct InvalidCase {
    file: String,
    expect: String,
    field: String,
    /// `status`: the object is created without its status, then the status is written
    /// through the status subresource (which is where status enums are validated).
    via_status: bool,
    object: Value,
}

fn read_corpus() -> anyhow::Result<Vec<InvalidCase>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/admission/invalid");
    let mut cases = Vec::new();
    for path in yaml_files(&dir)? {
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read_to_string(&path)?;
        let mut lines = text.lines();
        let expect = lines.next().and_then(|l| l.strip_prefix("# expect: "));
        let field = lines.next().and_then(|l| l.strip_prefix("# field: "));
        let (Some(expect), Some(field)) = (expect, field) else {
            bail!("{file}: the first two lines must be `# expect: ...` and `# field: ...`");
        };
        let via_status = lines.next().is_some_and(|l| l.trim() == "# via: status");
        let mut docs = yaml_documents(&text).with_context(|| format!("parsing {file}"))?;
        ensure!(docs.len() == 1, "{file}: exactly one object per file");
        cases.push(InvalidCase {
            file,
            expect: expect.trim().to_string(),
            field: field.trim().to_string(),
            via_status,
            object: docs.remove(0),
        });
    }
    Ok(cases)
}

/// Sends one case to the apiserver; the rejection's (code, reason, message, cause fields), or
/// an error saying it was accepted.
async fn submit(
    client: &Client,
    kinds: &BTreeMap<String, (ApiResource, bool)>,
    namespace: &str,
    case: &InvalidCase,
) -> anyhow::Result<kube::core::Status> {
    let kind = case.object["kind"].as_str().unwrap_or_default();
    let (_, namespaced) = kinds
        .get(kind)
        .with_context(|| format!("no CRD for kind {kind}"))?;
    let api = dynamic_api(client, kinds, kind, namespace)?;
    let mut object = case.object.clone();
    if *namespaced {
        object["metadata"]["namespace"] = json!(namespace);
    }
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let outcome = if case.via_status {
        let status = object
            .as_object_mut()
            .and_then(|o| o.remove("status"))
            .context("a `via: status` case needs a status")?;
        let base: DynamicObject = serde_json::from_value(object)?;
        api.create(&PostParams::default(), &base)
            .await
            .context("creating the base object of a status case (its spec must be valid)")?;
        let patched = api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await;
        api.delete(&name, &Default::default())
            .await
            .with_context(|| format!("deleting {kind} {name}"))?;
        patched
    } else {
        let object: DynamicObject = serde_json::from_value(object)?;
        // The cluster-scoped KubeOpenCodeConfig singleton is shared by every test: dry-run
        // (full validation, nothing stored) so a wrongly accepted case changes nothing.
        let params = PostParams {
            dry_run: !*namespaced,
            ..PostParams::default()
        };
        api.create(&params, &object).await
    };
    match outcome {
        Ok(_) => bail!("accepted"),
        Err(kube::Error::Api(status)) => Ok(*status),
        Err(other) => Err(other.into()),
    }
}

/// 3. Every malformed object of the corpus is rejected with 422 Invalid, and the message
///    contains the expected text and names the field.
#[tokio::test]
async fn malformed_objects_are_rejected_naming_the_field() -> anyhow::Result<()> {
    let client = setup().await?;
    let kinds = our_kinds();
    let cases = read_corpus()?;
    assert!(
        cases.len() >= 60,
        "the corpus has only {} cases",
        cases.len()
    );
    let ns = TestNamespace::create(&client, "kubeoc-admission-invalid").await?;
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut per_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut without_cause_field = Vec::new();
    for case in &cases {
        let kind = case.object["kind"].as_str().unwrap_or("?").to_string();
        match submit(&client, &kinds, &ns.name, case).await {
            Err(err) => failures.push(format!("{}: {err:#}", case.file)),
            Ok(status) => {
                let causes: Vec<&str> = status
                    .details
                    .as_ref()
                    .map(|d| d.causes.iter().map(|c| c.field.as_str()).collect())
                    .unwrap_or_default();
                let mut wrong = Vec::new();
                if status.code != 422 || status.reason != "Invalid" {
                    wrong.push(format!(
                        "HTTP {} {} (want 422 Invalid)",
                        status.code, status.reason
                    ));
                }
                if !status.message.contains(&case.expect) {
                    wrong.push(format!("message lacks {:?}", case.expect));
                }
                if !status.message.contains(&case.field) {
                    wrong.push(format!("message does not name field {:?}", case.field));
                }
                if wrong.is_empty() {
                    *per_kind.entry(kind).or_default() += 1;
                    // Not a failure (the message names the field), but worth seeing: the
                    // machine-readable cause does not carry the field path.
                    if !causes.contains(&case.field.as_str()) {
                        without_cause_field
                            .push(format!("{} (cause fields {causes:?})", case.file));
                    }
                } else {
                    failures.push(format!(
                        "{}: {}; apiserver said: {} (cause fields {causes:?})",
                        case.file,
                        wrong.join(", "),
                        status.message
                    ));
                }
            }
        }
    }
    let rejected: usize = per_kind.values().sum();
    println!(
        "{rejected} of {} malformed objects rejected with 422 Invalid naming the expected field ({per_kind:?}) in {:?}",
        cases.len(),
        started.elapsed()
    );
    if !without_cause_field.is_empty() {
        println!(
            "note: rejected with the field named only in the message text, not in details.causes[].field: {without_cause_field:?}"
        );
    }
    ns.delete().await?;
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    Ok(())
}

/// The spec comparison of the examples test reports dropped and changed fields and accepts
/// added ones (offline).
#[test]
fn spec_comparison_reports_dropped_and_changed_fields() {
    let input = json!({"port": 4096, "contexts": [{"type": "Git", "git": {"ref": "main"}}], "config": {"model": "m"}});
    let mut problems = Vec::new();
    let with_defaults = json!({"port": 4096, "contexts": [{"type": "Git", "git": {"ref": "main", "depth": 1}}], "config": {"model": "m"}});
    missing_or_changed(&input, &with_defaults, "spec", &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    let pruned = json!({"port": 4097, "contexts": [{"type": "Git", "git": {}}]});
    missing_or_changed(&input, &pruned, "spec", &mut problems);
    assert_eq!(
        problems,
        [
            "spec.config was dropped (input: {\"model\":\"m\"})",
            "spec.contexts[0].git.ref was dropped (input: \"main\")",
            "spec.port: input 4096 read back as 4097",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Upstream's published YAML: `make test-upstream` (feature `upstream-tests`), with the files at
// $KUBEOC_UPSTREAM_EXAMPLES.

#[cfg(feature = "upstream-tests")]
mod upstream_tests {
    use super::*;

    /// Upstream KubeOpenCode's published YAML (test data).
    fn upstream_dir() -> PathBuf {
        std::env::var_os("KUBEOC_UPSTREAM_EXAMPLES")
            .map(PathBuf::from)
            .expect("set KUBEOC_UPSTREAM_EXAMPLES to the folder of upstream's published YAML")
    }

    /// Every upstream example of our group applies unchanged and reads back with the same spec.
    #[tokio::test]
    async fn upstream_examples_apply_unchanged_and_read_back_equal() -> anyhow::Result<()> {
        let client = setup().await?;
        let run = apply_examples(
            &client,
            "kubeoc-admission-examples",
            &upstream_dir(),
            &["resources", "docs"],
        )
        .await?;
        println!(
            "applied {} upstream example files, {} objects read back equal; skipped {:?}",
            run.applied, run.compared, run.skipped
        );
        assert!(
            run.problems.is_empty(),
            "{} problems:\n{}",
            run.problems.len(),
            run.problems.join("\n")
        );
        assert!(
            run.compared >= 40,
            "only {} example objects compared",
            run.compared
        );
        Ok(())
    }

    /// Column names of an `additionalPrinterColumns` list, upper-cased as kubectl prints them.
    fn column_headers(columns: &Value) -> Vec<String> {
        columns
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .map(str::to_uppercase)
            .collect()
    }

    /// `kubectl get agents -o wide` shows upstream's columns (in upstream's order) plus STATUS
    ///    and URL.
    #[tokio::test]
    async fn get_agents_wide_shows_upstream_columns_plus_status_and_url() -> anyhow::Result<()> {
        let client = setup().await?;
        let ns = TestNamespace::create(&client, "kubeoc-admission-columns").await?;
        let result = async {
        let upstream_file = upstream_dir().join("crds/kubeopencode.io_agents.yaml");
        let upstream = yaml_documents(&std::fs::read_to_string(&upstream_file)?)?;
        let upstream_columns = column_headers(&upstream[0]["spec"]["versions"][0]["additionalPrinterColumns"]);
        ensure!(upstream_columns.len() >= 5, "upstream columns: {upstream_columns:?}");

        let agent = json!({
            "apiVersion": api::API_VERSION, "kind": "Agent",
            "metadata": {"name": "columns-agent"},
            "spec": {"profile": "Printer column check", "executorImage": "ghcr.io/kubeopencode/kubeopencode-agent-devbox:dev",
                     "workspaceDir": "/workspace", "serviceAccountName": "kubeopencode-agent", "maxConcurrentTasks": 3}
        });
        let run = kubectl_run(&["apply", "--server-side", "-n", &ns.name, "-f", "-"], Some(&agent.to_string())).await?;
        ensure!(run.success(), "creating the Agent: {}", run.stderr);

        let run = kubectl_run(&["get", "agents", "-o", "wide", "-n", &ns.name], None).await?;
        ensure!(run.success(), "kubectl get agents -o wide: {}", run.stderr);
        let mut lines = run.stdout.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
        let row = lines.next().unwrap_or_default();
        println!("{}", run.stdout);
        ensure!(header.first() == Some(&"NAME"), "header: {header:?}");
        let mut last = 0;
        for column in &upstream_columns {
            let position = header.iter().position(|h| h == column);
            ensure!(position.is_some(), "column {column} missing from {header:?}");
            let position = position.unwrap_or_default();
            ensure!(position > last, "column {column} out of upstream's order in {header:?} (upstream: {upstream_columns:?})");
            last = position;
        }
        for column in ["STATUS", "URL"] {
            ensure!(header.contains(&column), "column {column} missing from {header:?}");
        }
        for value in ["columns-agent", "kubeopencode-agent", "ghcr.io/kubeopencode/kubeopencode-agent-devbox:dev", "3"] {
            ensure!(row.split_whitespace().any(|cell| cell == value), "row {row:?} lacks {value}");
        }
        Ok(())
    }
    .await;
        ns.delete().await?;
        result
    }
}
