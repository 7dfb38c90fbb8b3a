//! `auralguard train`: a labelled CSV in, a model package out (optionally tracked in MLflow and
//! registered as a new model version).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use auralguard::audio::WindowConfig;
use auralguard::features::FeatureConfig;
use auralguard::model::manifest::{ArchitectureRef, WindowSpec, FORMAT_VERSION};
use auralguard::model::{arch, Aggregation, Manifest, ModelPackage};
use auralguard::train::dataset::{Clip, Dataset};
use auralguard::train::features::{self, FeatureSet, FeatureSpec};
use auralguard::train::metrics;
use auralguard::train::plots::{self, EpochPoint};
use auralguard::train::rng::SplitMix64;
use auralguard::train::trainer::{self, EpochRecord, Progress, TrainConfig};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::tracking::{RunTracker, TrackingArgs};

/// Arguments of `train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Labelled CSV: `filename,label` (real/fake) plus optional `split` (train/val/test),
    /// `source`, `speaker` and `family` columns; paths are relative to the CSV's folder.
    #[arg(long, value_name = "CSV")]
    pub data: PathBuf,

    /// Output package folder (auralguard.json, model.safetensors, MLmodel, training curves).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    #[command(flatten)]
    pub opts: TrainOptions,

    /// Decision threshold written into the package instead of the validation EER point, e.g.
    /// the one `auralguard crossval --protocol loso` calibrated on held-out speakers.
    #[arg(long, value_name = "P")]
    pub threshold: Option<f32>,

    /// Model name written into the manifest (default: the output folder's name).
    #[arg(long)]
    pub name: Option<String>,

    /// Replace the output folder if it exists.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub tracking: TrackingArgs,
}

/// How a model is trained: shared by `train` and `crossval`, so a cross-validated recipe is
/// exactly the one a package is then trained with.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainOptions {
    /// Architecture: `seed-cnn` (the original service's CNN), `compact-cnn` (≈ 80 k
    /// parameters, global pooling, input standardisation) or `whisper-head` (a layer mix and a
    /// small MLP on the `whisper` front-end's encoder statistics).
    #[arg(long, default_value = "seed-cnn")]
    pub arch: String,

    /// Most epochs (early stopping may end sooner).
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,

    /// Windows per optimiser step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,

    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub learning_rate: f64,

    /// Seed of weights, batch order, augmentation and the train/val split of CSVs without one.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Stop after this many epochs without a better validation loss (0: never).
    #[arg(long, default_value_t = 3)]
    pub patience: usize,

    /// Window length in seconds (the network's input; short clips are zero-padded to it).
    #[arg(long, default_value_t = 15.0)]
    pub window_seconds: f64,

    /// Front-end: `log-mel` (librosa-exact, what the original service used), `log-linear`
    /// (the same bands spaced evenly in hertz: finer where synthesis artefacts are) or `whisper`
    /// (per-layer statistics of the frozen pretrained encoder named by `--encoder`; use it with
    /// `--arch whisper-head`).
    #[arg(long, default_value = auralguard::features::LOG_MEL, value_parser = [
        auralguard::features::LOG_MEL,
        auralguard::features::LOG_LINEAR,
        auralguard::features::WHISPER,
    ])]
    pub front_end: String,

    /// Encoder of the `whisper` front-end, from the encoder store (`auralguard encoder list`);
    /// the package pins its sha256.
    #[arg(long, default_value = "whisper-tiny.en")]
    pub encoder: String,

    /// Do not weight the classes by inverse frequency.
    #[arg(long)]
    pub no_class_weights: bool,

    /// Do not mask random bands and frames of training windows.
    #[arg(long)]
    pub no_augment: bool,

    /// Do not standardise the input per mel band (architectures with input statistics only).
    #[arg(long)]
    pub no_normalize: bool,

    /// AdamW weight decay (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,

    /// Give every source (generator, real corpus) the same total weight within its class, so
    /// abundant engines do not define "fake" on their own.
    #[arg(long)]
    pub balance_sources: bool,

    /// Folder of cached features (default: beside the model cache, `~/.cache/auralguard/features`).
    #[arg(long, env = "AURALGUARD_FEATURE_CACHE")]
    pub feature_cache: Option<PathBuf>,

    /// Compute device: cpu, cuda or cuda:N.
    #[arg(long, env = "AURALGUARD_DEVICE", default_value = "cpu")]
    pub device: String,

    /// Never show progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

impl TrainOptions {
    /// The trainer's configuration.
    pub fn config(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            seed: self.seed,
            patience: self.patience,
            class_weights: !self.no_class_weights,
            augment: !self.no_augment,
            normalize: !self.no_normalize,
            weight_decay: self.weight_decay,
            balance_sources: self.balance_sources,
        }
    }

    /// The window the network sees, as the manifest records it.
    pub fn window(&self) -> WindowSpec {
        WindowSpec {
            seconds: self.window_seconds,
            hop_seconds: self.window_seconds,
            min_final_seconds: (self.window_seconds / 4.0).min(1.0),
        }
    }

    /// Front-end, windowing and feature cache, as the server will compute them.
    pub fn feature_spec(&self) -> anyhow::Result<FeatureSpec> {
        let features = if self.front_end == auralguard::features::WHISPER {
            FeatureConfig {
                kind: self.front_end.clone(),
                n_fft: auralguard::whisper::mel::N_FFT,
                hop_length: auralguard::whisper::mel::HOP,
                n_mels: 80,
                top_db: None,
                encoder: Some(auralguard::whisper::store::pin(&self.encoder)?),
                ..FeatureConfig::default()
            }
        } else {
            FeatureConfig {
                kind: self.front_end.clone(),
                ..FeatureConfig::default()
            }
        };
        features.validate()?;
        let window = self.window();
        let cache_dir = self
            .feature_cache
            .clone()
            .unwrap_or_else(|| auralguard::model::registry::default_cache_root().join("features"));
        Ok(FeatureSpec {
            window: WindowConfig::from_seconds(
                window.seconds,
                window.hop_seconds,
                window.min_final_seconds,
                features.sample_rate,
            )?,
            features,
            cache_dir: Some(cache_dir),
        })
    }
}

/// Progress bars per epoch, plus a summary line per epoch.
pub(super) struct Bars {
    current: std::cell::RefCell<Option<ProgressBar>>,
    hidden: bool,
}

impl Bars {
    /// Bars on stderr, or none when `hidden`.
    pub(super) fn new(hidden: bool) -> Self {
        Self {
            current: Default::default(),
            hidden,
        }
    }
}

impl Progress for Bars {
    fn batch(&self, epoch: usize, batch: usize, batches: usize, loss: f64, accuracy: f64) {
        let mut cur = self.current.borrow_mut();
        let bar = cur.get_or_insert_with(|| {
            let b = if self.hidden {
                ProgressBar::hidden()
            } else {
                ProgressBar::new(batches as u64)
            };
            b.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix:>3} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix(epoch.to_string());
            b
        });
        bar.set_position(batch as u64);
        bar.set_message(format!("loss {loss:.4} acc {accuracy:.3}"));
    }

    fn epoch(&self, r: &EpochRecord) {
        if let Some(bar) = self.current.borrow_mut().take() {
            bar.finish_and_clear();
        }
        eprintln!(
            "epoch {:>3}: train loss {:.4} acc {:.3} | val loss {:.4} acc {:.3} | {:.1} s",
            r.epoch, r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy, r.seconds
        );
    }
}

/// Runs `train`.
pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let opts = &args.opts;
    let architecture = arch::lookup(&opts.arch)?;
    // Read before training: the code that trains is the code checked out now.
    let commit = git_commit();
    let dataset = Dataset::load(&args.data)?;
    let (train_clips, val_clips) = split(&dataset, opts.seed)?;
    let name = args.name.clone().unwrap_or_else(|| {
        args.out
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "auralguard".into())
    });
    if args.out.exists() && !args.force {
        anyhow::bail!(
            "{} already exists (pass --force to replace it)",
            args.out.display()
        );
    }
    if let Some(t) = args.threshold {
        anyhow::ensure!(
            t.is_finite() && t > 0.0 && t < 1.0,
            "--threshold must lie strictly between 0 and 1, got {t}"
        );
    }
    let spec = opts.feature_spec()?;
    let (features, window) = (spec.features.clone(), opts.window());
    let hidden = opts.no_progress;
    let train_set = extract("train", &train_clips, &spec, hidden)?;
    let val_set = extract("val", &val_clips, &spec, hidden)?;
    let data_sha256 = data_hash(&train_set, &val_set);
    eprintln!(
        "data {}: train {} clips / {} windows, val {} clips / {} windows, input {}×{}",
        &data_sha256[..12],
        train_set.clips.len(),
        train_set.len(),
        val_set.clips.len(),
        val_set.len(),
        train_set.n_mels,
        train_set.frames
    );

    let cfg = opts.config();
    let mut tracker = RunTracker::start(&args.tracking, &name)?;
    if let Some(t) = tracker.as_mut() {
        t.log_params(&params_of(&args, &cfg, &data_sha256, &train_set, &val_set))?;
        t.set_tags(&[("auralguard.data_sha256", data_sha256.as_str())])?;
    }
    let device = super::open_device(&opts.device)?;
    let bars = TrackedBars {
        bars: Bars::new(hidden),
        tracker: std::cell::RefCell::new(tracker),
    };
    let outcome = trainer::train(architecture, &train_set, &val_set, &cfg, &device, &bars);
    let mut tracker = bars.tracker.into_inner();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            if let Some(t) = tracker.as_mut() {
                t.fail();
            }
            return Err(e.into());
        }
    };

    // Clip-level validation scores (mean of windows, as the server aggregates) choose the
    // threshold: the equal-error point.
    let (labels, scores) = clip_scores(&val_set, &outcome.val_scores);
    let summary = metrics::summarize(&labels, &scores, 0.5);
    let threshold = args.threshold.unwrap_or_else(|| eer_threshold(&summary));
    // Accuracy as the package will actually decide: at its threshold, not at 0.5.
    let decided = metrics::summarize(&labels, &scores, threshold);
    let best = &outcome.history[outcome.best_epoch - 1];
    let mut manifest = Manifest {
        format_version: FORMAT_VERSION,
        name: name.clone(),
        version: tracker
            .as_ref()
            .map(|t| t.run_id().to_string())
            .unwrap_or_else(|| "local".into()),
        architecture: ArchitectureRef {
            name: architecture.name().into(),
            version: architecture.version(),
        },
        features,
        window,
        labels: ["real".into(), "fake".into()],
        threshold,
        aggregation: Aggregation::Mean,
        description: Some(format!(
            "{} trained by `auralguard train` on {} ({} train / {} val clips)",
            architecture.name(),
            args.data.display(),
            train_set.clips.len(),
            val_set.clips.len()
        )),
        training: Default::default(),
        metrics: Default::default(),
    };
    let t = &mut manifest.training;
    t.insert("data_sha256".into(), data_sha256.clone().into());
    t.insert("data_csv".into(), args.data.display().to_string().into());
    t.insert("config".into(), serde_json::to_value(&cfg)?);
    t.insert("best_epoch".into(), outcome.best_epoch.into());
    t.insert(
        "threshold_source".into(),
        if args.threshold.is_some() {
            "--threshold"
        } else {
            "validation EER"
        }
        .into(),
    );
    t.insert("history".into(), serde_json::to_value(&outcome.history)?);
    t.insert("train_clips".into(), train_set.clips.len().into());
    t.insert("val_clips".into(), val_set.clips.len().into());
    if let Some(commit) = &commit {
        t.insert("git_commit".into(), commit.clone().into());
    }
    t.insert(
        "auralguard_version".into(),
        env!("CARGO_PKG_VERSION").into(),
    );
    let m = &mut manifest.metrics;
    m.insert("val_loss".into(), best.val_loss);
    m.insert("val_window_accuracy".into(), best.val_accuracy);
    m.insert("val_accuracy".into(), decided.accuracy);
    m.insert("val_accuracy_at_0_5".into(), summary.accuracy);
    if let Some(v) = summary.roc_auc {
        m.insert("val_roc_auc".into(), v);
    }
    if let Some(v) = summary.eer {
        m.insert("val_eer".into(), v);
    }

    let package = ModelPackage::save(&args.out, &manifest, &outcome.params, args.force)?;
    let points: Vec<EpochPoint> = outcome
        .history
        .iter()
        .map(|r| EpochPoint {
            epoch: r.epoch,
            train_loss: r.train_loss,
            val_loss: r.val_loss,
            train_accuracy: r.train_accuracy,
            val_accuracy: r.val_accuracy,
        })
        .collect();
    plots::training_curves_svg(&args.out.join("training_curves.svg"), &points)?;
    super::tracking::write_mlmodel(&args.out, &manifest, tracker.as_ref().map(|t| t.run_id()))?;
    eprintln!(
        "best epoch {} of {}: val loss {:.4}, clip accuracy {:.3}, EER {}, threshold {:.3}",
        outcome.best_epoch,
        outcome.history.len(),
        best.val_loss,
        decided.accuracy,
        summary
            .eer
            .map_or("n/a".into(), |e| format!("{:.2} %", e * 100.0)),
        threshold
    );
    eprintln!("wrote {}", package.dir().display());
    if let Some(t) = tracker.as_mut() {
        t.log_final(&manifest.metrics)?;
        t.finish(&args.out, args.tracking.register.as_deref())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress bars that also send each epoch's metrics to MLflow.
struct TrackedBars {
    bars: Bars,
    tracker: std::cell::RefCell<Option<RunTracker>>,
}

impl Progress for TrackedBars {
    fn batch(&self, epoch: usize, batch: usize, batches: usize, loss: f64, accuracy: f64) {
        self.bars.batch(epoch, batch, batches, loss, accuracy);
    }

    fn epoch(&self, record: &EpochRecord) {
        self.bars.epoch(record);
        if let Some(t) = self.tracker.borrow_mut().as_mut() {
            if let Err(e) = t.log_epoch(record) {
                // Training goes on; the run will show the gap and the final metrics.
                tracing::warn!(error = %e, epoch = record.epoch, "cannot log epoch metrics to MLflow");
                eprintln!("warning: cannot log epoch {} to MLflow: {e}", record.epoch);
            }
        }
    }
}

/// Train and validation clips: the CSV's split column, or a seeded 85/15 split by clip.
fn split(dataset: &Dataset, seed: u64) -> anyhow::Result<(Vec<&Clip>, Vec<&Clip>)> {
    let (train, val) = if dataset.has_split {
        (dataset.split(Some("train")), dataset.split(Some("val")))
    } else {
        let mut order: Vec<&Clip> = dataset.clips.iter().collect();
        SplitMix64::new(seed ^ 0x5EED_5EED).shuffle(&mut order);
        let n_val = (order.len() as f64 * 0.15).ceil() as usize;
        let val = order.split_off(order.len() - n_val.min(order.len().saturating_sub(1)));
        (order, val)
    };
    for (what, clips) in [("train", &train), ("val", &val)] {
        let (real, fake) = Dataset::label_counts(clips);
        anyhow::ensure!(
            real > 0 && fake > 0,
            "{}: the {what} split needs real and fake clips (has {real} real, {fake} fake)",
            dataset.csv.display()
        );
    }
    Ok((train, val))
}

pub(super) fn extract(
    what: &str,
    clips: &[&Clip],
    spec: &FeatureSpec,
    hidden: bool,
) -> anyhow::Result<FeatureSet> {
    let bar = if hidden {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(clips.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "features {prefix:>5} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    let set = features::extract(clips, spec, &|| bar.inc(1))
        .with_context(|| format!("computing the {what} features"))?;
    bar.finish_and_clear();
    Ok(set)
}

/// SHA-256 over every clip's (filename, label, content hash) of both splits, in order.
fn data_hash(train: &FeatureSet, val: &FeatureSet) -> String {
    let mut h = Sha256::new();
    for (split, set) in [("train", train), ("val", val)] {
        for c in &set.clips {
            h.update(format!(
                "{split}\t{}\t{}\t{}\n",
                c.filename, c.fake, c.sha256
            ));
        }
    }
    hex::encode(h.finalize())
}

/// The validation set's equal-error point, kept away from 0 and 1: a package's default
/// threshold.
pub(super) fn eer_threshold(summary: &metrics::Summary) -> f32 {
    summary
        .eer_threshold
        .filter(|t| t.is_finite())
        .unwrap_or(0.5)
        .clamp(0.01, 0.99)
}

/// Mean window score per clip, with the clip's label.
pub(super) fn clip_scores(set: &FeatureSet, window_scores: &[f32]) -> (Vec<bool>, Vec<f32>) {
    let mut sum = vec![0.0f64; set.clips.len()];
    let mut count = vec![0usize; set.clips.len()];
    for (w, &c) in set.clip_of_window.iter().enumerate() {
        if let Some(s) = window_scores.get(w) {
            sum[c] += *s as f64;
            count[c] += 1;
        }
    }
    let labels = set.clips.iter().map(|c| c.fake).collect();
    let scores = sum
        .iter()
        .zip(&count)
        .map(|(s, &n)| if n == 0 { 0.5 } else { (s / n as f64) as f32 })
        .collect();
    (labels, scores)
}

fn params_of(
    args: &TrainArgs,
    cfg: &TrainConfig,
    data_sha256: &str,
    train: &FeatureSet,
    val: &FeatureSet,
) -> Vec<(String, String)> {
    vec![
        ("arch".into(), args.opts.arch.clone()),
        ("epochs".into(), cfg.epochs.to_string()),
        ("batch_size".into(), cfg.batch_size.to_string()),
        ("learning_rate".into(), cfg.learning_rate.to_string()),
        ("seed".into(), cfg.seed.to_string()),
        ("patience".into(), cfg.patience.to_string()),
        ("class_weights".into(), cfg.class_weights.to_string()),
        ("augment".into(), cfg.augment.to_string()),
        ("normalize".into(), cfg.normalize.to_string()),
        (
            "window_seconds".into(),
            args.opts.window_seconds.to_string(),
        ),
        ("data_csv".into(), args.data.display().to_string()),
        ("data_sha256".into(), data_sha256.to_string()),
        ("train_windows".into(), train.len().to_string()),
        ("val_windows".into(), val.len().to_string()),
        ("device".into(), args.opts.device.clone()),
    ]
}

/// The commit of the AuralGuard checkout this binary was built from, with `+dirty` when its
/// tracked files differ from it (the weights then came from code no commit holds); `None` for
/// a binary installed away from its source. Asked in the source tree, not the working folder:
/// training from inside a dataset's own repository must not record that repository's commit.
pub fn git_commit() -> Option<String> {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    if !source.join("Cargo.toml").is_file() {
        return None;
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(source)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
    };
    let out = git(&["rev-parse", "HEAD"])?;
    let hash = String::from_utf8(out.stdout).ok()?.trim().to_string();
    if !out.status.success() || hash.len() != 40 {
        return None;
    }
    let clean = git(&["diff", "--quiet", "HEAD"]).is_some_and(|o| o.status.success());
    Some(if clean { hash } else { format!("{hash}+dirty") })
}
