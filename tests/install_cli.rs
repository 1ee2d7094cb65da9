//! Tests of `kubectl kubeoc install` / `uninstall` / exit codes, running the real binary
//! against the testbed (start it with `bash testbed/scripts/cluster-up.sh`).
//!
//! No test here runs a successful `uninstall`: the CRDs are shared by every test.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::{Api, Client};
use kubeoc::api::{Agent, AgentSpec};
use kubeoc::cluster::install;
use kubeoc_testbed::{TestNamespace, admin_client, wait_until};
use serde_json::Value;
use support::{BINARY, kubectl_run, kubeoc, run};

/// Tests that apply the install objects run one at a time, so one's apply cannot land between
/// the other's before/after reads.
static INSTALL_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// resourceVersion of every install object, by `kind/name`.
async fn resource_versions(client: &Client) -> anyhow::Result<BTreeMap<String, String>> {
    let mut versions = BTreeMap::new();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), install::SYSTEM_NAMESPACE);
    for object in install::objects().map_err(|e| anyhow::anyhow!("{e}"))? {
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let rv = match kind {
            "CustomResourceDefinition" => crds.get(name).await?.metadata.resource_version,
            "Namespace" => namespaces.get(name).await?.metadata.resource_version,
            "ClusterRole" => roles.get(name).await?.metadata.resource_version,
            "ServiceAccount" => accounts.get(name).await?.metadata.resource_version,
            other => anyhow::bail!("unexpected install object kind {other}"),
        };
        versions.insert(
            format!("{}/{name}", kind.to_lowercase()),
            rv.unwrap_or_default(),
        );
    }
    Ok(versions)
}

/// 5. `install --dry-run -o yaml` needs no cluster, prints parseable YAML documents equal to
///    the install objects, and that output applies with kubectl.
#[tokio::test]
async fn dry_run_yaml_needs_no_cluster_and_applies_with_kubectl() -> anyhow::Result<()> {
    let out = run(
        BINARY,
        &[
            "--kubeconfig",
            "/nonexistent",
            "install",
            "--dry-run",
            "-o",
            "yaml",
        ],
        None,
    )
    .await?;
    ensure!(
        out.code == Some(0),
        "install --dry-run failed without a cluster:\n{out}"
    );
    let docs: Vec<Value> = serde_saphyr::from_multiple(&out.stdout)
        .map_err(|e| anyhow::anyhow!("dry-run output is not YAML: {e}"))?;
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    let expected = install::objects().map_err(|e| anyhow::anyhow!("{e}"))?;
    let names = |list: &[Value]| -> Vec<String> {
        list.iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap_or("?"),
                    o["metadata"]["name"].as_str().unwrap_or("?")
                )
            })
            .collect()
    };
    ensure!(
        names(&docs) == names(&expected),
        "dry-run objects {:?}, install objects {:?}",
        names(&docs),
        names(&expected)
    );
    ensure!(
        docs == expected,
        "the dry-run YAML differs from install::objects()"
    );
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    ensure!(
        kinds
            .iter()
            .filter(|k| **k == "CustomResourceDefinition")
            .count()
            == 5,
        "{kinds:?}"
    );

    let json_out = run(
        BINARY,
        &[
            "--kubeconfig",
            "/nonexistent",
            "install",
            "--dry-run",
            "-o",
            "json",
        ],
        None,
    )
    .await?;
    ensure!(
        json_out.code == Some(0),
        "install --dry-run -o json:\n{json_out}"
    );
    let list: Value =
        serde_json::from_str(&json_out.stdout).context("dry-run -o json is not JSON")?;
    ensure!(
        list["kind"] == "List" && list["items"].as_array().map(Vec::len) == Some(expected.len()),
        "unexpected -o json output"
    );

    // The output applies. Same field manager as install, so it is a no-op when kubeoc is
    // installed and does not disturb the resourceVersions the other test compares.
    let _guard = INSTALL_LOCK.lock().await;
    let applied = kubectl_run(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            install::FIELD_MANAGER,
            "-f",
            "-",
        ],
        Some(&out.stdout),
    )
    .await?;
    ensure!(
        applied.code == Some(0),
        "kubectl apply of the dry-run output failed:\n{applied}"
    );
    let lines: Vec<&str> = applied
        .stdout
        .lines()
        .filter(|l| l.ends_with("serverside-applied"))
        .collect();
    ensure!(
        lines.len() == expected.len(),
        "kubectl applied {} of {} objects:\n{applied}",
        lines.len(),
        expected.len()
    );
    Ok(())
}

/// 6. A second `install` changes nothing: every object reported `unchanged`, no
///    resourceVersion moves, the CRDs are Established.
#[tokio::test]
async fn install_twice_changes_nothing() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let _guard = INSTALL_LOCK.lock().await;
    let first = kubeoc(&["install"]).await?;
    ensure!(first.code == Some(0), "first install failed:\n{first}");
    let before = resource_versions(&client).await?;
    let second = kubeoc(&["install"]).await?;
    ensure!(second.code == Some(0), "second install failed:\n{second}");
    let after = resource_versions(&client).await?;

    let reported: BTreeMap<&str, &str> = second
        .stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(object, _)| before.contains_key(*object))
        .collect();
    for object in before.keys() {
        ensure!(
            reported.get(object.as_str()) == Some(&"unchanged"),
            "second install reported {object} as {:?}, want unchanged:\n{second}",
            reported.get(object.as_str())
        );
    }
    ensure!(
        before == after,
        "resourceVersions changed by the second install:\nbefore {before:?}\nafter  {after:?}"
    );
    ensure!(
        second.stdout.contains("kubeoc is installed"),
        "no final line:\n{second}"
    );

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in kubeoc::api::crds() {
        let name = crd.metadata.name.unwrap_or_default();
        let stored = crds.get(&name).await?;
        ensure!(
            install::established(&stored),
            "CRD {name} is not Established: {:?}",
            stored.status
        );
    }
    println!("second install:\n{}", second.stdout);
    Ok(())
}

/// 7. `uninstall` refuses without `--yes` when stdin is not a terminal, and with `--yes` but
///    without `--purge` while an Agent exists (naming it). Never uninstalls for real.
#[tokio::test]
async fn uninstall_refuses_without_confirmation_or_with_agents() -> anyhow::Result<()> {
    let client = admin_client().await?;
    install::apply(&client)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    install::wait_established(&client, Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());

    // Without --yes, stdin /dev/null: refused before the cluster is even asked.
    let refused = kubeoc(&["uninstall"]).await?;
    ensure!(
        refused.code == Some(1),
        "uninstall without --yes: want exit 1:\n{refused}"
    );
    ensure!(
        refused.stderr.contains("pass --yes") && refused.stderr.contains("not a terminal"),
        "the refusal should say why and what to do:\n{refused}"
    );
    crds.get("agents.kubeopencode.io")
        .await
        .context("the CRDs must still exist")?;

    // With --yes but without --purge while an Agent exists: refuses, naming the Agent.
    let ns = TestNamespace::create(&client, "kubeoc-install-uninstall").await?;
    let result = async {
        let agents: Api<Agent> = Api::namespaced(client.clone(), &ns.name);
        let spec = AgentSpec {
            workspace_dir: Some("/workspace".into()),
            service_account_name: Some("kubeopencode-agent".into()),
            ..AgentSpec::default()
        };
        agents
            .create(&PostParams::default(), &Agent::new("keep-me", spec))
            .await?;
        let qualified = format!("{}/keep-me", ns.name);
        // Guard: the refusal below depends on the Agent being listed; never run
        // `uninstall --yes` unless it is.
        wait_until(
            "the Agent to be listed cluster-wide",
            Duration::from_secs(30),
            || {
                let client = client.clone();
                let qualified = qualified.clone();
                async move {
                    let listed = install::existing_agents(&client)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    Ok(listed.contains(&qualified).then_some(()))
                }
            },
        )
        .await?;
        let refused = kubeoc(&["uninstall", "--yes"]).await?;
        ensure!(
            refused.code == Some(1),
            "uninstall --yes with an Agent: want exit 1:\n{refused}"
        );
        ensure!(
            refused.stderr.contains("--purge"),
            "the refusal should mention --purge:\n{refused}"
        );
        // The message lists at most five Agents; ours is named unless more exist.
        let total = install::existing_agents(&client)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .len();
        ensure!(
            refused.stderr.contains(&qualified) || total > 5,
            "the refusal should name the Agent {qualified}:\n{refused}"
        );
        ensure!(
            refused.stdout.is_empty(),
            "nothing should be deleted:\n{refused}"
        );
        crds.get("agents.kubeopencode.io")
            .await
            .context("the CRDs must still exist")?;
        Ok(())
    }
    .await;
    ns.delete().await?;
    result
}

/// 8. Exit codes: a usage error exits 2; `version --client` exits 0 without a cluster.
#[tokio::test]
async fn exit_codes_follow_kubectl() -> anyhow::Result<()> {
    let usage = run(BINARY, &["install", "--no-such-flag"], None).await?;
    ensure!(usage.code == Some(2), "unknown flag: want exit 2:\n{usage}");
    ensure!(
        usage.stderr.contains("--no-such-flag"),
        "the usage error should name the flag:\n{usage}"
    );
    ensure!(
        usage.stderr.contains("kubectl kubeoc"),
        "usage should show `kubectl kubeoc`:\n{usage}"
    );

    let version = run(
        BINARY,
        &["--kubeconfig", "/nonexistent", "version", "--client"],
        None,
    )
    .await?;
    ensure!(
        version.code == Some(0),
        "version --client: want exit 0:\n{version}"
    );
    ensure!(
        version
            .stdout
            .contains(&format!("Client Version: v{}", env!("CARGO_PKG_VERSION"))),
        "version --client output:\n{version}"
    );
    ensure!(
        !version.stdout.contains("Server Version"),
        "version --client must not contact the server:\n{version}"
    );
    Ok(())
}
