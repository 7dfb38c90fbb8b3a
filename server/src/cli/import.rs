//! `auralguard import-keras`: the original service's `.h5`/`.keras` → a model package.

use std::path::PathBuf;
use std::process::ExitCode;

use auralguard::model::import::{import_keras, ImportOptions};

/// Arguments of `import-keras`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Keras model file (`.h5` from Keras 2 or 3, or `.keras`).
    pub source: PathBuf,

    /// Output package folder.
    #[arg(long)]
    pub out: PathBuf,

    /// Model name for the manifest (default: the file's stem).
    #[arg(long)]
    pub name: Option<String>,

    /// Model version for the manifest.
    #[arg(long, default_value = "1")]
    pub version: String,

    /// Replace the output folder if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Runs `import-keras`.
pub fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let pkg = import_keras(
        &args.source,
        &args.out,
        &ImportOptions {
            name: args.name,
            version: args.version,
            overwrite: args.force,
        },
    )?;
    let m = pkg.manifest();
    eprintln!(
        "wrote {} ({} version {}, architecture {})",
        pkg.dir().display(),
        m.name,
        m.version,
        m.architecture.name
    );
    Ok(ExitCode::SUCCESS)
}
