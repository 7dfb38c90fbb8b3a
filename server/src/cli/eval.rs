//! `auralguard eval`: judge every clip of a labelled CSV the way the server would, and report
//! accuracy, precision, recall, F1, ROC-AUC, EER, the confusion matrix and a per-source
//! breakdown (JSON on stdout; SVG plots and a Markdown report with `--plots`).

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use auralguard::audio::AudioSource;
use auralguard::pipeline::{Detector, DetectorOptions};
use auralguard::train::dataset::Dataset;
use auralguard::train::metrics::{self, GroupSummary, Summary};
use auralguard::train::plots::{self, EpochPoint};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::ModelArgs;

/// Arguments of `eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Labelled CSV (`filename,label[,split][,source]`; paths relative to its folder).
    #[arg(long, value_name = "CSV")]
    pub data: PathBuf,

    #[command(flatten)]
    pub model: ModelArgs,

    /// Rows of this split only (default: `test` when the CSV has a split column, else all).
    #[arg(long)]
    pub split: Option<String>,

    /// Fake-probability at or above which a clip counts as fake (default: the model's).
    #[arg(long)]
    pub threshold: Option<f32>,

    /// Write roc.svg, det.svg, scores.svg, training_curves.svg and report.md into this folder.
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,

    /// Windows per network call.
    #[arg(long, default_value_t = auralguard::pipeline::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,

    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// The JSON `eval` prints.
#[derive(Debug, Serialize)]
struct Report {
    model: ModelInfo,
    data: String,
    split: String,
    metrics: Summary,
    by_source: Vec<GroupSummary>,
    failed: Vec<Failure>,
}

#[derive(Debug, Serialize)]
struct ModelInfo {
    name: String,
    version: String,
    architecture: String,
    source: String,
}

#[derive(Debug, Serialize)]
struct Failure {
    filename: String,
    error: String,
}

/// Runs `eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let dataset = Dataset::load(&args.data)?;
    let split = args
        .split
        .clone()
        .or_else(|| dataset.has_split.then(|| "test".to_string()));
    let clips = dataset.split(split.as_deref());
    anyhow::ensure!(
        !clips.is_empty(),
        "{}: no rows in split '{}'",
        args.data.display(),
        split.as_deref().unwrap_or("all")
    );
    let model = args.model.load()?;
    let detector = Detector::new(
        model,
        &DetectorOptions {
            batch_size: Some(args.batch_size),
            threshold: args.threshold,
            ..Default::default()
        },
    )?;
    let threshold = args
        .threshold
        .unwrap_or(detector.model().manifest.threshold);
    let bar = if args.no_progress || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(clips.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("eval [{bar:30}] {pos}/{len} clips ({elapsed}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut scores: Vec<Option<f32>> = vec![None; clips.len()];
    let mut failed = Vec::new();
    detector.predict_many(
        clips.iter().map(|c| AudioSource::File(c.path.clone())),
        |i, r| {
            bar.inc(1);
            match r {
                Ok(v) if v.fake_probability.is_finite() => scores[i] = Some(v.fake_probability),
                Ok(v) => failed.push(Failure {
                    filename: clips[i].filename.clone(),
                    error: format!(
                        "the model scored it {} (not a probability)",
                        v.fake_probability
                    ),
                }),
                Err(e) => failed.push(Failure {
                    filename: clips[i].filename.clone(),
                    error: e.to_string(),
                }),
            }
        },
    );
    bar.finish_and_clear();
    // Failed clips are reported and left out of the metrics (never scored as a guess); the exit
    // status says there were some.
    let kept: Vec<(usize, f32)> = scores
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .collect();
    let labels: Vec<bool> = kept.iter().map(|&(i, _)| clips[i].fake).collect();
    let kept_scores: Vec<f32> = kept.iter().map(|&(_, s)| s).collect();
    let sources: Vec<&str> = kept
        .iter()
        .map(|&(i, _)| clips[i].source.as_str())
        .collect();
    let summary = metrics::summarize(&labels, &kept_scores, threshold);
    let by_source = metrics::by_group(&sources, &labels, &kept_scores, threshold);
    let m = &detector.model().manifest;
    let report = Report {
        model: ModelInfo {
            name: m.name.clone(),
            version: m.version.clone(),
            architecture: m.architecture.name.clone(),
            source: args.model.model.to_string(),
        },
        data: args.data.display().to_string(),
        split: split.clone().unwrap_or_else(|| "all".into()),
        metrics: summary,
        by_source,
        failed,
    };
    if let Some(dir) = &args.plots {
        write_plots(dir, &report, &labels, &kept_scores, m)?;
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    for f in &report.failed {
        eprintln!("error: {}: {}", f.filename, f.error);
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn write_plots(
    dir: &std::path::Path,
    report: &Report,
    labels: &[bool],
    scores: &[f32],
    manifest: &auralguard::model::Manifest,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let roc = metrics::roc_curve(labels, scores);
    let s = &report.metrics;
    plots::roc_svg(&dir.join("roc.svg"), &roc, s.roc_auc)?;
    plots::det_svg(&dir.join("det.svg"), &metrics::det_curve(&roc), s.eer)?;
    plots::score_histogram_svg(&dir.join("scores.svg"), labels, scores, s.threshold)?;
    let history: Vec<EpochPoint> = manifest
        .training
        .get("history")
        .and_then(|h| serde_json::from_value(h.clone()).ok())
        .unwrap_or_default();
    if !history.is_empty() {
        plots::training_curves_svg(&dir.join("training_curves.svg"), &history)?;
    }
    let md = markdown(report, !history.is_empty());
    let path = dir.join("report.md");
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote plots and report.md to {}", dir.display());
    Ok(())
}

/// The Markdown report: headline metrics, confusion matrix, per-source table, plots.
fn markdown(r: &Report, curves: bool) -> String {
    let s = &r.metrics;
    let pct = |v: f64| format!("{:.2} %", v * 100.0);
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("n/a".into(), f);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Evaluation of {} (version {})\n",
        r.model.name, r.model.version
    );
    let _ = writeln!(
        md,
        "Model `{}` ({}), data `{}`, split `{}`: {} clips ({} fake), threshold {:.3}.\n",
        r.model.source, r.model.architecture, r.data, r.split, s.count, s.positives, s.threshold
    );
    let _ = writeln!(md, "| metric | value |\n|---|---|");
    let _ = writeln!(md, "| accuracy | {} |", pct(s.accuracy));
    let _ = writeln!(md, "| precision (fake) | {} |", pct(s.precision));
    let _ = writeln!(md, "| recall (fake) | {} |", pct(s.recall));
    let _ = writeln!(md, "| F1 | {:.4} |", s.f1);
    let _ = writeln!(
        md,
        "| ROC-AUC | {} |",
        opt(s.roc_auc, &|v| format!("{v:.4}"))
    );
    let _ = writeln!(md, "| EER | {} |", opt(s.eer, &pct));
    let _ = writeln!(
        md,
        "| EER threshold | {} |\n",
        s.eer_threshold.map_or("n/a".into(), |t| format!("{t:.3}"))
    );
    let c = &s.confusion;
    let _ = writeln!(
        md,
        "Confusion matrix (rows: truth, columns: verdict):\n\n| | called real | called fake |\n|---|---|---|"
    );
    let _ = writeln!(md, "| real | {} | {} |", c.tn, c.fp);
    let _ = writeln!(md, "| fake | {} | {} |\n", c.fn_, c.tp);
    let _ = writeln!(
        md,
        "Per source:\n\n| source | label | clips | accuracy | mean P(fake) |\n|---|---|---|---|---|"
    );
    for g in &r.by_source {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.3} |",
            g.group,
            g.label,
            g.count,
            pct(g.accuracy),
            g.mean_fake_probability
        );
    }
    let _ = writeln!(
        md,
        "\n![ROC](roc.svg) ![DET](det.svg) ![scores](scores.svg)"
    );
    if curves {
        let _ = writeln!(md, "\n![training curves](training_curves.svg)");
    }
    if !r.failed.is_empty() {
        let _ = writeln!(md, "\n{} clips could not be judged:\n", r.failed.len());
        for f in &r.failed {
            let _ = writeln!(md, "- `{}`: {}", f.filename, f.error);
        }
    }
    md
}
