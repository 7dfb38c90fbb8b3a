//! `auralguard predict`: files and folders in, one verdict per file out.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use auralguard::audio::AudioSource;
use auralguard::model::manifest::WindowSpec;
use auralguard::model::Aggregation;
use auralguard::pipeline::{Detector, DetectorOptions};
use auralguard::verdict::Verdict;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::ModelArgs;

/// Extensions picked up when a folder is given (files named explicitly are always tried).
const AUDIO_EXTENSIONS: &[&str] = &[
    "wav", "wave", "flac", "mp3", "ogg", "oga", "m4a", "mp4", "aac", "aif", "aiff", "caf", "mka",
    "mkv", "webm",
];

/// Output formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// One JSON object for one file, a JSON array for several.
    Json,
    /// A header line and one row per file.
    Csv,
}

/// Arguments of `predict`.
#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// Audio files (WAV, FLAC, MP3, OGG/Vorbis, M4A/AAC, ...) or folders to search recursively.
    #[arg(required = true, value_name = "FILE_OR_DIR")]
    pub inputs: Vec<PathBuf>,

    #[command(flatten)]
    pub model: ModelArgs,

    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,

    /// Windows per network call.
    #[arg(long, default_value_t = auralguard::pipeline::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,

    /// Seconds between window starts (default: the model's).
    #[arg(long)]
    pub hop_seconds: Option<f64>,

    /// A trailing window with less audio than this is dropped unless it is the only one
    /// (default: the model's).
    #[arg(long)]
    pub min_final_seconds: Option<f64>,

    /// How window scores combine (default: the model's).
    #[arg(long, value_enum)]
    pub aggregation: Option<Aggregation>,

    /// Fake-probability at or above which a file is called fake (default: the model's).
    #[arg(long)]
    pub threshold: Option<f32>,

    /// Refuse files longer than this many seconds.
    #[arg(long)]
    pub max_duration: Option<f64>,

    /// Show a progress bar even when stderr is not a terminal (hide with --no-progress).
    #[arg(long, conflicts_with = "no_progress")]
    pub progress: bool,

    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// Expands folders (recursively, sorted) and keeps explicit files as given.
fn collect_inputs(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = walkdir::WalkDir::new(input)
                .follow_links(true)
                .into_iter()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_file())
                .map(|e| e.into_path())
                .filter(|p| is_audio_name(p))
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(input.clone());
        }
    }
    anyhow::ensure!(!out.is_empty(), "no audio files found in the given folders");
    Ok(out)
}

fn is_audio_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Runs `predict`.
pub fn run(args: PredictArgs) -> anyhow::Result<ExitCode> {
    let files = collect_inputs(&args.inputs)?;
    let model = args.model.load()?;
    let window = match (args.hop_seconds, args.min_final_seconds) {
        (None, None) => None,
        (hop, min) => {
            let base = model.manifest.window.clone();
            Some(WindowSpec {
                seconds: base.seconds,
                hop_seconds: hop.unwrap_or(base.hop_seconds),
                min_final_seconds: min.unwrap_or(base.min_final_seconds),
            })
        }
    };
    let detector = Detector::new(
        model,
        &DetectorOptions {
            batch_size: Some(args.batch_size),
            window,
            aggregation: args.aggregation,
            threshold: args.threshold,
            max_duration_seconds: args.max_duration,
        },
    )?;
    let show = !args.no_progress && (args.progress || std::io::stderr().is_terminal());
    let bar = if show {
        let b = ProgressBar::new(files.len() as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let single = files.len() == 1 && matches!(args.format, Format::Json);
    let mut failures = 0usize;
    let mut write_err: Option<std::io::Error> = None;
    if matches!(args.format, Format::Csv) {
        writeln!(out, "{}", CSV_HEADER)?;
    } else if !single {
        write!(out, "[")?;
    }
    let sources = files.iter().map(|p| AudioSource::File(p.clone()));
    detector.predict_many(sources, |i, result| {
        bar.inc(1);
        let path = &files[i];
        if let Err(e) = &result {
            failures += 1;
            bar.suspend(|| eprintln!("error: {e}"));
        }
        let written = match args.format {
            Format::Json => {
                let value = match &result {
                    Ok(v) => serde_json::to_value(v).unwrap_or_default(),
                    Err(e) => error_json(path, e),
                };
                let sep = if single || i == 0 { "" } else { "," };
                let text = serde_json::to_string_pretty(&value).unwrap_or_default();
                if single {
                    writeln!(out, "{text}")
                } else {
                    write!(out, "{sep}\n{text}")
                }
            }
            Format::Csv => writeln!(out, "{}", csv_row(path, &result)),
        };
        if let Err(e) = written {
            write_err.get_or_insert(e);
        }
    });
    bar.finish_and_clear();
    if !single && matches!(args.format, Format::Json) {
        writeln!(out, "\n]")?;
    }
    out.flush()?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    if failures > 0 {
        eprintln!("{failures} of {} files could not be judged", files.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn error_json(path: &Path, e: &auralguard::Error) -> serde_json::Value {
    json!({
        "filename": path.file_name().map(|s| s.to_string_lossy().into_owned()),
        "path": path.display().to_string(),
        "error": {"code": e.code(), "message": e.to_string()},
    })
}

const CSV_HEADER: &str = "path,prediction,probability,confidence,fake_probability,duration_seconds,windows,model_name,model_version,processing_time_seconds,error_code,error_message";

fn csv_row(path: &Path, result: &auralguard::Result<Verdict>) -> String {
    let p = csv_field(&path.display().to_string());
    match result {
        Ok(v) => format!(
            "{p},{},{:.6},{:.6},{:.6},{:.3},{},{},{},{:.4},,",
            csv_field(&v.prediction),
            v.probability,
            v.confidence,
            v.fake_probability,
            v.duration_seconds,
            v.windows.len(),
            csv_field(&v.model.name),
            csv_field(&v.model.version),
            v.processing_time_seconds
        ),
        Err(e) => format!("{p},,,,,,,,,,{},{}", e.code(), csv_field(&e.to_string())),
    }
}

/// Quotes a CSV field when it holds a separator, quote or newline (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("a.wav"), "a.wav");
        assert_eq!(csv_field("a,b \"c\".wav"), "\"a,b \"\"c\"\".wav\"");
    }

    #[test]
    fn folder_filter_knows_audio_extensions() {
        assert!(is_audio_name(Path::new("x/Y.WAV")));
        assert!(is_audio_name(Path::new("a.m4a")));
        assert!(!is_audio_name(Path::new("notes.txt")));
    }
}
