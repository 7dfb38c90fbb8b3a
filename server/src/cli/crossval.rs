//! `auralguard crossval`: the out-of-domain numbers a model is chosen by.
//!
//! For each group of the protocol (a speaker, a generator or a generator family) it trains a
//! model with exactly the options `auralguard train` takes, on the corpus without that group,
//! picks the fold's threshold on the fold's validation clips (as a package would), and scores
//! the held-out group. The report gives per fold the EER, ROC-AUC, false-alarm rate (real called
//! fake) and miss rate (fake called real) at that threshold, then the mean and the worst fold.
//! Under `loso` it also calibrates a package threshold: the score that keeps the pooled
//! held-out speakers' false-alarm rate at `--target-false-alarm`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use auralguard::model::arch;
use auralguard::train::dataset::{Clip, Dataset};
use auralguard::train::features::FeatureSet;
use auralguard::train::metrics;
use auralguard::train::protocol::{self, Fold, Protocol};
use auralguard::train::trainer;
use serde::Serialize;

use super::train::{clip_scores, eer_threshold, extract, Bars, TrainOptions};

/// Arguments of `crossval`.
#[derive(Debug, clap::Args)]
pub struct CrossvalArgs {
    /// Labelled CSV with a `split` column and the protocol's group column (`speaker` for loso,
    /// `source` of fakes for logo, `family` of fakes for lofo).
    #[arg(long, value_name = "CSV")]
    pub data: PathBuf,

    /// loso (leave one speaker out), logo (leave one generator out) or lofo (leave one
    /// generator family out, e.g. all neural TTS at once).
    #[arg(long, value_parser = parse_protocol)]
    pub protocol: Protocol,

    /// Only these held-out groups (repeatable); default: every group of the protocol.
    #[arg(long = "only", value_name = "GROUP")]
    pub only: Vec<String>,

    /// False-alarm rate on unseen speakers the calibrated threshold is chosen for (loso).
    #[arg(long, default_value_t = 0.02)]
    pub target_false_alarm: f64,

    /// Write report.json and report.md into this folder (the JSON also goes to stdout).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub opts: TrainOptions,
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    s.parse().map_err(|e: auralguard::Error| e.to_string())
}

/// One fold's outcome.
#[derive(Debug, Serialize)]
struct FoldReport {
    held_out: String,
    train_clips: usize,
    val_clips: usize,
    test_clips: usize,
    test_real: usize,
    test_fake: usize,
    best_epoch: usize,
    /// The fold's threshold: its validation EER point, as `train` picks a package's.
    threshold: f32,
    eer: Option<f64>,
    roc_auc: Option<f64>,
    /// Real test clips called fake at `threshold`.
    false_alarm_rate: f64,
    /// Fake test clips called real at `threshold`.
    miss_rate: f64,
    seconds: f64,
}

/// The fold with the worst value of one figure.
#[derive(Debug, Serialize)]
struct Worst {
    held_out: String,
    value: f64,
}

/// Across folds.
#[derive(Debug, Serialize)]
struct Aggregate {
    folds: usize,
    mean_eer: Option<f64>,
    worst_eer: Option<Worst>,
    mean_false_alarm_rate: f64,
    worst_false_alarm_rate: Option<Worst>,
    mean_miss_rate: f64,
    worst_miss_rate: Option<Worst>,
}

/// A package threshold chosen on held-out speakers' genuine speech (loso only).
#[derive(Debug, Serialize)]
struct Calibration {
    target_false_alarm_rate: f64,
    threshold: f32,
    /// Pooled over folds at `threshold`: what the package would do on unseen speakers.
    false_alarm_rate: f64,
    miss_rate: f64,
    real_clips: usize,
    fake_clips: usize,
}

/// The JSON `crossval` prints.
#[derive(Debug, Serialize)]
struct Report {
    protocol: Protocol,
    data: String,
    arch: String,
    front_end: String,
    config: trainer::TrainConfig,
    window_seconds: f64,
    folds: Vec<FoldReport>,
    summary: Aggregate,
    calibration: Option<Calibration>,
}

/// Runs `crossval`.
pub fn run(args: CrossvalArgs) -> anyhow::Result<ExitCode> {
    let opts = &args.opts;
    let architecture = arch::lookup(&opts.arch)?;
    let dataset = Dataset::load(&args.data)?;
    anyhow::ensure!(
        args.target_false_alarm > 0.0 && args.target_false_alarm < 1.0,
        "--target-false-alarm must lie strictly between 0 and 1"
    );
    let folds = protocol::folds(&dataset.clips, args.protocol, &args.only)?;
    for f in &folds {
        check_fold(&dataset.clips, f)?;
    }
    let spec = opts.feature_spec()?;
    let cfg = opts.config();
    let device = super::open_device(&opts.device)?;
    // Every clip any fold uses, extracted once (and cached on disk for the next run).
    let all: Vec<&Clip> = dataset.clips.iter().collect();
    let features = extract("corpus", &all, &spec, opts.no_progress)?;
    eprintln!(
        "{} folds of {} over {} clips ({} windows)",
        folds.len(),
        args.protocol.name(),
        all.len(),
        features.len()
    );

    let mut reports = Vec::new();
    let (mut pooled_labels, mut pooled_scores) = (Vec::new(), Vec::new());
    for (n, fold) in folds.iter().enumerate() {
        eprintln!(
            "fold {}/{}: holding out {} ({} train, {} val, {} test clips)",
            n + 1,
            folds.len(),
            fold.held_out,
            fold.train.len(),
            fold.val.len(),
            fold.test.len()
        );
        let started = std::time::Instant::now();
        let (train_set, val_set) = (features.subset(&fold.train), features.subset(&fold.val));
        let test_set = features.subset(&fold.test);
        let bars = Bars::new(opts.no_progress);
        let outcome = trainer::train(architecture, &train_set, &val_set, &cfg, &device, &bars)
            .with_context(|| format!("training the fold without {}", fold.held_out))?;
        let (val_labels, val_scores) = clip_scores(&val_set, &outcome.val_scores);
        let threshold = eer_threshold(&metrics::summarize(&val_labels, &val_scores, 0.5));
        let windows = trainer::score_windows(
            architecture,
            &outcome.params,
            &test_set,
            cfg.batch_size,
            &device,
        )?;
        let (labels, scores) = clip_scores(&test_set, &windows);
        let report = fold_report(fold, &test_set, &labels, &scores, threshold, &outcome);
        let report = FoldReport {
            seconds: started.elapsed().as_secs_f64(),
            ..report
        };
        eprintln!(
            "fold {}/{} {}: EER {}, false alarms {:.1} %, misses {:.1} % at {:.3} ({:.0} s)",
            n + 1,
            folds.len(),
            report.held_out,
            pct(report.eer),
            report.false_alarm_rate * 100.0,
            report.miss_rate * 100.0,
            report.threshold,
            report.seconds
        );
        reports.push(report);
        pooled_labels.extend(labels);
        pooled_scores.extend(scores);
    }

    let calibration = (args.protocol == Protocol::Loso)
        .then(|| calibrate(&pooled_labels, &pooled_scores, args.target_false_alarm))
        .flatten();
    let report = Report {
        protocol: args.protocol,
        data: args.data.display().to_string(),
        arch: architecture.name().to_string(),
        front_end: opts.front_end.clone(),
        config: cfg,
        window_seconds: opts.window_seconds,
        summary: aggregate(&reports),
        folds: reports,
        calibration,
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("report.json"), &json)?;
        std::fs::write(dir.join("report.md"), markdown(&report))?;
        eprintln!("wrote report.json and report.md to {}", dir.display());
    }
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}

/// A fold must be able to train (both classes in train and val) and to be judged (both in test).
fn check_fold(clips: &[Clip], fold: &Fold) -> anyhow::Result<()> {
    for (what, idx) in [
        ("train", &fold.train),
        ("val", &fold.val),
        ("test", &fold.test),
    ] {
        let fake = idx.iter().filter(|&&i| clips[i].fake).count();
        let real = idx.len() - fake;
        anyhow::ensure!(
            real > 0 && fake > 0,
            "the fold holding out {} has {real} real and {fake} fake {what} clips; it needs both",
            fold.held_out
        );
    }
    Ok(())
}

fn fold_report(
    fold: &Fold,
    test_set: &FeatureSet,
    labels: &[bool],
    scores: &[f32],
    threshold: f32,
    outcome: &trainer::TrainOutcome,
) -> FoldReport {
    let s = metrics::summarize(labels, scores, threshold);
    let c = s.confusion;
    FoldReport {
        held_out: fold.held_out.clone(),
        train_clips: fold.train.len(),
        val_clips: fold.val.len(),
        test_clips: test_set.clips.len(),
        test_real: c.fp + c.tn,
        test_fake: c.tp + c.fn_,
        best_epoch: outcome.best_epoch,
        threshold,
        eer: s.eer,
        roc_auc: s.roc_auc,
        false_alarm_rate: rate(c.fp, c.fp + c.tn),
        miss_rate: rate(c.fn_, c.tp + c.fn_),
        seconds: 0.0,
    }
}

fn aggregate(folds: &[FoldReport]) -> Aggregate {
    let worst = |f: &dyn Fn(&FoldReport) -> Option<f64>| {
        folds
            .iter()
            .filter_map(|r| f(r).map(|v| (r, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(r, v)| Worst {
                held_out: r.held_out.clone(),
                value: v,
            })
    };
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    Aggregate {
        folds: folds.len(),
        mean_eer: mean(folds.iter().filter_map(|r| r.eer).collect()),
        worst_eer: worst(&|r| r.eer),
        mean_false_alarm_rate: mean(folds.iter().map(|r| r.false_alarm_rate).collect())
            .unwrap_or(0.0),
        worst_false_alarm_rate: worst(&|r| Some(r.false_alarm_rate)),
        mean_miss_rate: mean(folds.iter().map(|r| r.miss_rate).collect()).unwrap_or(0.0),
        worst_miss_rate: worst(&|r| Some(r.miss_rate)),
    }
}

/// The lowest threshold whose pooled false-alarm rate on genuine clips is at most `target`
/// (a clip is called fake at `score >= threshold`), with the rates it gives.
fn calibrate(labels: &[bool], scores: &[f32], target: f64) -> Option<Calibration> {
    let mut real: Vec<f32> = labels
        .iter()
        .zip(scores)
        .filter(|(fake, _)| !**fake)
        .map(|(_, &s)| if s.is_nan() { 0.5 } else { s })
        .collect();
    let fakes = labels.len() - real.len();
    if real.is_empty() || fakes == 0 {
        return None;
    }
    real.sort_by(|a, b| b.total_cmp(a));
    // At most `allowed` genuine clips may score at or above the threshold: put it just above
    // the next one down.
    let allowed = (target * real.len() as f64).floor() as usize;
    let threshold = match real.get(allowed) {
        Some(&s) => next_up(s).min(1.0),
        None => 0.0,
    };
    let s = metrics::summarize(labels, scores, threshold);
    let c = s.confusion;
    Some(Calibration {
        target_false_alarm_rate: target,
        threshold,
        false_alarm_rate: rate(c.fp, c.fp + c.tn),
        miss_rate: rate(c.fn_, c.tp + c.fn_),
        real_clips: c.fp + c.tn,
        fake_clips: c.tp + c.fn_,
    })
}

/// `num / den`, or 0 when there is nothing to count (a fold with no clip of one class).
fn rate(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// The smallest f32 above `x` (for `x` in [0, 1]).
fn next_up(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    f32::from_bits(if x >= 0.0 {
        x.to_bits() + 1
    } else {
        x.to_bits() - 1
    })
}

fn pct(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{:.2} %", v * 100.0))
}

/// The Markdown report: the out-of-domain headline, then one row per fold.
fn markdown(r: &Report) -> String {
    let mut md = String::new();
    let s = &r.summary;
    let _ = writeln!(
        md,
        "# Cross-validation: {} ({} folds)\n",
        r.protocol.name(),
        s.folds
    );
    let _ = writeln!(
        md,
        "`{}` on `{}` trained with `auralguard train` options (epochs {}, batch {}, lr {}, \
         seed {}, patience {}, window {} s) on `{}`, once per held-out group.\n",
        r.arch,
        r.front_end,
        r.config.epochs,
        r.config.batch_size,
        r.config.learning_rate,
        r.config.seed,
        r.config.patience,
        r.window_seconds,
        r.data
    );
    let worst = |w: &Option<Worst>| {
        w.as_ref().map_or("n/a".into(), |w| {
            format!("{:.2} % ({})", w.value * 100.0, w.held_out)
        })
    };
    let _ = writeln!(md, "| figure | mean | worst (group) |\n|---|---:|---:|");
    let _ = writeln!(
        md,
        "| EER | {} | {} |",
        pct(s.mean_eer),
        worst(&s.worst_eer)
    );
    let _ = writeln!(
        md,
        "| false alarms at the fold threshold | {:.2} % | {} |",
        s.mean_false_alarm_rate * 100.0,
        worst(&s.worst_false_alarm_rate)
    );
    let _ = writeln!(
        md,
        "| misses at the fold threshold | {:.2} % | {} |\n",
        s.mean_miss_rate * 100.0,
        worst(&s.worst_miss_rate)
    );
    if let Some(c) = &r.calibration {
        let _ = writeln!(
            md,
            "Calibrated on held-out speakers for {:.1} % false alarms: threshold {:.4}, which \
             pooled over the folds gives {:.2} % false alarms ({} real clips) and {:.2} % misses \
             ({} fake clips).\n",
            c.target_false_alarm_rate * 100.0,
            c.threshold,
            c.false_alarm_rate * 100.0,
            c.real_clips,
            c.miss_rate * 100.0,
            c.fake_clips
        );
    }
    let _ = writeln!(
        md,
        "| held out | test real / fake | EER | AUC | threshold | false alarms | misses | epochs |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for f in &r.folds {
        let _ = writeln!(
            md,
            "| {} | {} / {} | {} | {} | {:.3} | {:.2} % | {:.2} % | {} |",
            f.held_out,
            f.test_real,
            f.test_fake,
            pct(f.eer),
            f.roc_auc.map_or("n/a".into(), |v| format!("{v:.4}")),
            f.threshold,
            f.false_alarm_rate * 100.0,
            f.miss_rate * 100.0,
            f.best_epoch
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_keeps_false_alarms_at_or_under_the_target() {
        // 100 genuine clips scoring 0.00..0.99, 10 fakes at 0.90.
        let mut labels = vec![false; 100];
        let mut scores: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        labels.extend([true; 10]);
        scores.extend([0.90; 10]);
        let c = calibrate(&labels, &scores, 0.05).unwrap();
        assert!(c.false_alarm_rate <= 0.05, "{}", c.false_alarm_rate);
        assert!(
            (c.false_alarm_rate - 0.05).abs() < 1e-9,
            "uses the whole budget"
        );
        // Five genuine clips (0.95..0.99) may score above it: just above the sixth, 0.94.
        assert!(c.threshold > 0.94 && c.threshold < 0.941, "{}", c.threshold);
        // 0.90 is below the threshold, so every fake is missed: reported, not hidden.
        assert_eq!(c.miss_rate, 1.0);
        assert!(calibrate(&[false, false], &[0.1, 0.2], 0.05).is_none());
    }

    #[test]
    fn the_worst_fold_is_named() {
        let fold = |name: &str, eer: f64, fa: f64| FoldReport {
            held_out: name.into(),
            train_clips: 1,
            val_clips: 1,
            test_clips: 2,
            test_real: 1,
            test_fake: 1,
            best_epoch: 1,
            threshold: 0.5,
            eer: Some(eer),
            roc_auc: None,
            false_alarm_rate: fa,
            miss_rate: 0.0,
            seconds: 0.0,
        };
        let a = aggregate(&[fold("a", 0.1, 0.3), fold("b", 0.3, 0.1)]);
        assert_eq!(a.worst_eer.unwrap().held_out, "b");
        assert_eq!(a.worst_false_alarm_rate.unwrap().held_out, "a");
        assert!((a.mean_eer.unwrap() - 0.2).abs() < 1e-12);
    }
}
