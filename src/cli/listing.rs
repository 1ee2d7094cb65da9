//! `list` and `get` of every noun, and their `-w`: kubectl's tables (the CRD's printer
//! columns), `-o`, `-l`, `-A`, and one row per change while watching.

use std::collections::{BTreeSet, HashMap};

use anyhow::bail;
use futures::StreamExt as _;
use kube::api::{DynamicObject, ListParams};
use kube::runtime::watcher;
use kube::runtime::{WatchStreamExt as _, watcher::Event as WatchEvent};
use kube::{Api, ResourceExt as _};

use super::noun::Noun;
use super::output::{OutputArgs, OutputFormat, Printer, PrinterColumn};
use super::print::{render_one, report_failures, write_stdout};
use super::server_table;
use crate::cluster::ClusterArgs;

/// `list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    /// Label selector, e.g. team=a,tier!=dev.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// After listing, print a row for every change until Ctrl-C.
    #[arg(short = 'w', long)]
    pub watch: bool,
}

/// `get`.
#[derive(Debug, Clone, clap::Args)]
pub struct GetArgs {
    /// Objects to show by name; none: all in the namespace.
    pub names: Vec<String>,
    #[command(flatten)]
    pub list: ListArgs,
}

/// `list` (no names) and `get NAME...` of `noun`.
pub async fn list(
    noun: &'static Noun,
    cluster_args: &ClusterArgs,
    names: &[String],
    args: ListArgs,
) -> anyhow::Result<()> {
    let cluster = cluster_args.connect().await?;
    if cluster.all_namespaces && !names.is_empty() {
        bail!(
            "a {} cannot be retrieved by name across all namespaces (drop -A, or pass -n)",
            noun.kind
        );
    }
    let namespace = cluster.namespace.clone();
    let scope = (!cluster.all_namespaces).then_some(namespace.as_str());
    let api = noun.dynamic_api(&cluster.client, scope);
    // Only a table needs the CRD's printer columns: one GET of a large object, sent beside
    // the list rather than before it.
    let columns = async {
        match args.output.output {
            OutputFormat::Table | OutputFormat::Wide => noun.columns(&cluster.client).await,
            _ => Vec::new(),
        }
    };
    if args.watch {
        let columns = columns.await;
        let printer = Printer::new(&args.output, columns.clone())
            .namespace(&namespace, cluster.all_namespaces);
        return watch(noun, api, &args, names, printer, columns).await;
    }
    let where_ = if cluster.all_namespaces {
        "in all namespaces".to_owned()
    } else {
        format!("in namespace {namespace:?}")
    };
    let list_error = |e: kube::Error| -> anyhow::Error {
        if matches!(&e, kube::Error::Api(s) if s.code == 404) {
            noun.missing_api(e)
        } else {
            crate::Error::kube(format!("listing {}s {where_}", noun.name), e).into()
        }
    };
    if names.is_empty() {
        let mut params = ListParams::default();
        if let Some(selector) = &args.selector {
            params = params.labels(selector);
        }
        let table = matches!(args.output.output, OutputFormat::Table | OutputFormat::Wide);
        if table && noun.printed_by_server() {
            let printed =
                server_table::list(&cluster.client, &api, &params, cluster.all_namespaces)
                    .await
                    .map_err(list_error)?;
            Printer::new(&args.output, Vec::new())
                .namespace(&namespace, cluster.all_namespaces)
                .print_server_table(&printed)?;
            return Ok(());
        }
        let (columns, listed) = tokio::join!(columns, api.list(&params));
        let listed = listed.map_err(list_error)?;
        let items = listed
            .items
            .into_iter()
            .map(|o| noun.to_value(o))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Printer::new(&args.output, columns)
            .namespace(&namespace, cluster.all_namespaces)
            .print_list(&items)?;
        return Ok(());
    }
    let printer =
        Printer::new(&args.output, columns.await).namespace(&namespace, cluster.all_namespaces);
    let mut items = Vec::new();
    let mut failures = Vec::new();
    for name in names {
        match api.get(name).await {
            Ok(object) => items.push(noun.to_value(object)?),
            Err(err) => failures.push(noun.error(err, "getting", name, &namespace)),
        }
    }
    if !items.is_empty() {
        printer.print_objects(&items)?;
    }
    report_failures(failures)
}

/// `-w`: the current table, then one row per change, as `kubectl get -w` prints them. After a
/// re-list (the watch expired) only objects whose resourceVersion moved are printed again.
async fn watch(
    noun: &Noun,
    api: Api<DynamicObject>,
    args: &ListArgs,
    names: &[String],
    printer: Printer,
    columns: Vec<PrinterColumn>,
) -> anyhow::Result<()> {
    let mut config = watcher::Config::default();
    if let Some(selector) = &args.selector {
        config = config.labels(selector);
    }
    if let [one] = names {
        config = config.fields(&format!("metadata.name={one}"));
    }
    let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let row_printer = Printer::new(
        &OutputArgs {
            output: args.output.output.clone(),
            no_headers: true,
        },
        columns,
    );
    let mut header_printed = args.output.no_headers;
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut initial: Option<Vec<DynamicObject>> = None;
    let mut first_list = true;
    let stream = watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    let print = |object: DynamicObject, header_printed: &mut bool| -> anyhow::Result<()> {
        let value = noun.to_value(object)?;
        let printer = if *header_printed {
            &row_printer
        } else {
            *header_printed = true;
            &printer
        };
        write_stdout(&render_one(printer, &value, &args.output.output)?)
    };
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                if first_list {
                    return Err(anyhow::Error::new(err).context(format!("watching {}s", noun.name)));
                }
                eprintln!("warning: watching {}s: {err} (retrying)", noun.name);
                continue;
            }
        };
        let keep = |o: &DynamicObject| wanted.is_empty() || wanted.contains(o.name_any().as_str());
        match event {
            WatchEvent::Init => initial = Some(Vec::new()),
            WatchEvent::InitApply(object) => {
                if let Some(buffer) = initial.as_mut()
                    && keep(&object)
                {
                    buffer.push(object);
                }
            }
            WatchEvent::InitDone => {
                let mut buffer = initial.take().unwrap_or_default();
                buffer.sort_by_key(|o| (o.namespace(), o.name_any()));
                if first_list {
                    first_list = false;
                    if !buffer.is_empty()
                        && matches!(args.output.output, OutputFormat::Table | OutputFormat::Wide)
                    {
                        let values = buffer
                            .iter()
                            .cloned()
                            .map(|o| noun.to_value(o))
                            .collect::<anyhow::Result<Vec<_>>>()?;
                        let text = printer.render_objects(&values)?.stdout;
                        header_printed = true;
                        write_stdout(&text)?;
                        for o in &buffer {
                            seen.insert(key(o), o.resource_version().unwrap_or_default());
                        }
                        continue;
                    }
                }
                for object in buffer {
                    let rv = object.resource_version().unwrap_or_default();
                    if seen.insert(key(&object), rv.clone()).as_deref() != Some(rv.as_str()) {
                        print(object, &mut header_printed)?;
                    }
                }
            }
            WatchEvent::Apply(object) => {
                if keep(&object) {
                    seen.insert(key(&object), object.resource_version().unwrap_or_default());
                    print(object, &mut header_printed)?;
                }
            }
            WatchEvent::Delete(object) => {
                if keep(&object) {
                    seen.remove(&key(&object));
                    print(object, &mut header_printed)?;
                }
            }
        }
    }
    Ok(())
}

fn key(object: &DynamicObject) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}
