//! `auralguard registry`: look at registered models and move their aliases (what `serve
//! --model models:/NAME@ALIAS` and the operator follow).

use std::process::ExitCode;

use auralguard::model::ModelRegistry;
use mlflow_client::ModelUri;

use super::{block_on, RegistryArgs};

/// Arguments of `registry`.
#[derive(Debug, clap::Args)]
pub struct RegistryCommandArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,

    #[command(subcommand)]
    pub action: Action,
}

/// What to do.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// List registered models (or one model's versions) with their aliases.
    List {
        /// A registered model: list its versions instead.
        name: Option<String>,
    },
    /// Point ALIAS of NAME at VERSION (e.g. `alias detector champion 3`).
    Alias {
        /// Registered model.
        name: String,
        /// Alias (letters, digits, `_`, `-`).
        alias: String,
        /// Version number.
        version: u64,
    },
    /// Point alias TO at the version alias FROM points at (default: challenger → champion).
    Promote {
        /// Registered model.
        name: String,
        /// Alias whose version is promoted.
        #[arg(long, default_value = "challenger")]
        from: String,
        /// Alias that moves.
        #[arg(long, default_value = "champion")]
        to: String,
    },
}

/// Runs `registry`.
pub fn run(args: RegistryCommandArgs) -> anyhow::Result<ExitCode> {
    let registry = args.registry.connect()?;
    block_on(act(&registry, args.action))??;
    Ok(ExitCode::SUCCESS)
}

async fn act(registry: &ModelRegistry, action: Action) -> anyhow::Result<()> {
    let client = registry.client();
    match action {
        Action::List { name: None } => {
            let models = client.list_registered_models().await?;
            if models.is_empty() {
                eprintln!("no registered models");
            }
            for m in models {
                let latest = m
                    .latest_versions
                    .iter()
                    .filter_map(|v| v.number().ok())
                    .max()
                    .map_or("-".into(), |v| v.to_string());
                let aliases: Vec<String> = m
                    .aliases
                    .iter()
                    .map(|a| format!("{}={}", a.alias, a.version))
                    .collect();
                println!("{}\tlatest {}\t{}", m.name, latest, aliases.join(" "));
            }
        }
        Action::List { name: Some(name) } => {
            // Version searches do not carry aliases; the registered model does.
            let model = client.get_registered_model(&name).await?;
            let mut versions = client.list_model_versions(&name).await?;
            versions.sort_by_key(|v| v.number().unwrap_or(0));
            anyhow::ensure!(!versions.is_empty(), "{name} has no versions");
            for v in versions {
                let aliases: Vec<&str> = model
                    .aliases
                    .iter()
                    .filter(|a| a.version == v.version)
                    .map(|a| a.alias.as_str())
                    .collect();
                println!(
                    "{}\t{:?}\trun {}\t{}",
                    v.version,
                    v.status,
                    if v.run_id.is_empty() { "-" } else { &v.run_id },
                    aliases.join(" ")
                );
            }
        }
        Action::Alias {
            name,
            alias,
            version,
        } => {
            // Refuse a version that does not exist with MLflow's own message.
            client.get_model_version(&name, version).await?;
            client.set_alias(&name, &alias, version).await?;
            println!("models:/{name}@{alias} -> {version}");
        }
        Action::Promote { name, from, to } => {
            let version = registry
                .resolve_version(&ModelUri::alias(name.clone(), from.clone()))
                .await?;
            client.set_alias(&name, &to, version).await?;
            println!("models:/{name}@{to} -> {version} (from @{from})");
        }
    }
    Ok(())
}
