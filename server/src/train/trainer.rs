//! The training loop: Adam on class-weighted binary cross-entropy, seeded end to end.
//!
//! Everything random (initial weights, batch order, augmentation) comes from one [`SplitMix64`]
//! stream seeded by the caller, and candle's CPU kernels are deterministic, so the same data,
//! settings and seed give bit-identical weights and metrics on the CPU. The loss is computed
//! from logits (the numerically stable form), weighted so each class counts as much as the
//! other whatever their sizes. After every epoch the validation loss decides: the best epoch's
//! weights are kept, and training stops once it has not improved for `patience` epochs.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};

use super::features::FeatureSet;
use super::rng::SplitMix64;
use crate::error::{Error, Result};
use crate::model::arch::{Architecture, Init};

/// Hyper-parameters of one training run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    /// Most epochs to run.
    pub epochs: usize,
    /// Windows per optimiser step.
    pub batch_size: usize,
    /// Adam's step size.
    pub learning_rate: f64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Epochs without a better validation loss before stopping (0: never stop early).
    pub patience: usize,
    /// Weight each class by the inverse of its frequency.
    pub class_weights: bool,
    /// Mask random mel bands and frame ranges of training windows (SpecAugment-style).
    pub augment: bool,
    /// Fill input-standardisation statistics from the training set (off: mean 0, std 1, so
    /// the network sees raw dB, as the original recipe did).
    pub normalize: bool,
    /// AdamW's decoupled weight decay (0: plain Adam). Older manifests lack it.
    #[serde(default)]
    pub weight_decay: f64,
    /// Within each class, give every source (a generator, a real corpus) the same total weight,
    /// so a generator with many clips cannot dominate what the model learns "fake" means; a
    /// model that fits one abundant engine generalises worse to engines it has not heard.
    #[serde(default)]
    pub balance_sources: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 32,
            learning_rate: 1e-3,
            seed: 42,
            patience: 3,
            class_weights: true,
            augment: true,
            normalize: true,
            weight_decay: 0.0,
            balance_sources: false,
        }
    }
}

/// What one epoch achieved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean weighted loss over the epoch's training batches.
    pub train_loss: f64,
    /// Window accuracy on the training batches (threshold 0.5).
    pub train_accuracy: f64,
    /// Weighted loss on the validation windows.
    pub val_loss: f64,
    /// Window accuracy on the validation windows (threshold 0.5).
    pub val_accuracy: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The result of [`train`].
pub struct TrainOutcome {
    /// The best epoch's parameters, by name.
    pub params: HashMap<String, Tensor>,
    /// One record per epoch run.
    pub history: Vec<EpochRecord>,
    /// The epoch whose weights were kept.
    pub best_epoch: usize,
    /// Validation window scores (P(fake)) of the kept weights, in window order.
    pub val_scores: Vec<f32>,
}

/// Called after every batch with (epoch, batch, batches, running loss, running accuracy), and
/// after every epoch with its record.
pub trait Progress {
    /// A batch finished.
    fn batch(&self, epoch: usize, batch: usize, batches: usize, loss: f64, accuracy: f64);
    /// An epoch finished.
    fn epoch(&self, record: &EpochRecord);
}

/// Trains `arch` on `train`, selecting by `val`.
pub fn train(
    arch: &dyn Architecture,
    train: &FeatureSet,
    val: &FeatureSet,
    cfg: &TrainConfig,
    device: &Device,
    progress: &dyn Progress,
) -> Result<TrainOutcome> {
    if train.is_empty() || val.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "training needs windows in both splits (train: {}, val: {})",
            train.len(),
            val.len()
        )));
    }
    if cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(Error::InvalidArgument(
            "epochs and batch size must be at least 1".into(),
        ));
    }
    let (m, t) = (train.n_mels, train.frames);
    let specs = arch.params(m, t)?;
    let mut rng = SplitMix64::new(cfg.seed);
    let stats = if cfg.normalize {
        band_statistics(train)
    } else {
        BandStats {
            mean: vec![0.0; m],
            std: vec![1.0; m],
            element_mean: vec![0.0; m * t],
            element_std: vec![1.0; m * t],
        }
    };
    let mut params = Vec::with_capacity(specs.len());
    let mut vars = Vec::new();
    for spec in &specs {
        let n: usize = spec.shape.iter().product();
        let init = arch.init(spec);
        let values: Vec<f32> = match init {
            Init::Zeros => vec![0.0; n],
            Init::FanIn(fan_in) => {
                let bound = (6.0 / fan_in as f64).sqrt() as f32;
                (0..n).map(|_| rng.uniform(-bound, bound)).collect()
            }
            Init::Statistic => statistic(&spec.name, &stats, n)?,
        };
        let tensor = Tensor::from_vec(values, spec.shape.as_slice(), device)?;
        if init == Init::Statistic {
            params.push(tensor);
        } else {
            let var = Var::from_tensor(&tensor)?;
            params.push(var.as_tensor().clone());
            vars.push(var);
        }
    }
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: cfg.learning_rate,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )?;
    let train_weights = sample_weights(train, cfg);

    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut history = Vec::new();
    let mut best: Option<(f64, usize, Vec<Tensor>, Vec<f32>)> = None;
    let batches = train.len().div_ceil(cfg.batch_size);
    let mut batch_x = Vec::with_capacity(cfg.batch_size * m * t);
    for epoch in 1..=cfg.epochs {
        let started = Instant::now();
        rng.shuffle(&mut order);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for (b, chunk) in order.chunks(cfg.batch_size).enumerate() {
            batch_x.clear();
            let mut ys = Vec::with_capacity(chunk.len());
            let mut ws = Vec::with_capacity(chunk.len());
            for &i in chunk {
                ws.push(train_weights[i]);
                let from = batch_x.len();
                batch_x.extend_from_slice(train.window(i));
                if cfg.augment && arch.spec_augment() {
                    spec_augment(&mut batch_x[from..], m, t, &mut rng);
                }
                ys.push(train.labels[i]);
            }
            let x = Tensor::from_slice(&batch_x, (chunk.len(), m, t), device)?;
            let logits = arch.logits(&params, &x)?;
            let loss = weighted_bce(&logits, &ys, &ws, device)?;
            opt.backward_step(&loss)?;
            let l = loss.to_scalar::<f32>()? as f64;
            loss_sum += l * chunk.len() as f64;
            correct += count_correct(&logits.to_vec1::<f32>()?, &ys);
            seen += chunk.len();
            progress.batch(
                epoch,
                b + 1,
                batches,
                loss_sum / seen as f64,
                correct as f64 / seen as f64,
            );
        }
        let (val_loss, val_accuracy, val_scores) = evaluate(arch, &params, val, cfg, device)?;
        if !val_loss.is_finite() {
            return Err(Error::Inference(format!(
                "the validation loss diverged at epoch {epoch}; lower --learning-rate"
            )));
        }
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / seen as f64,
            train_accuracy: correct as f64 / seen as f64,
            val_loss,
            val_accuracy,
            seconds: started.elapsed().as_secs_f64(),
        };
        progress.epoch(&record);
        history.push(record);
        let improved = best.as_ref().is_none_or(|(l, ..)| val_loss < *l);
        if improved {
            let snapshot = params
                .iter()
                .map(|p| p.copy())
                .collect::<candle_core::Result<Vec<_>>>()?;
            best = Some((val_loss, epoch, snapshot, val_scores));
        } else if cfg.patience > 0
            && best
                .as_ref()
                .is_some_and(|(_, e, ..)| epoch - e >= cfg.patience)
        {
            break;
        }
    }
    let (_, best_epoch, kept, val_scores) =
        best.ok_or_else(|| Error::Inference("no epoch completed".into()))?;
    let params = specs
        .iter()
        .zip(kept)
        .map(|(s, p)| (s.name.clone(), p))
        .collect();
    Ok(TrainOutcome {
        params,
        history,
        best_epoch,
        val_scores,
    })
}

/// P(fake) of every window of `set` under trained `params` (named as [`Architecture::params`]
/// names them): how a model is judged on windows it never trained or validated on, such as a
/// cross-validation fold's held-out group.
pub fn score_windows(
    arch: &dyn Architecture,
    params: &HashMap<String, Tensor>,
    set: &FeatureSet,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    if set.is_empty() {
        return Ok(Vec::new());
    }
    let ordered = arch
        .params(set.n_mels, set.frames)?
        .iter()
        .map(|spec| {
            params.get(&spec.name).cloned().ok_or_else(|| {
                Error::InvalidArgument(format!("no trained parameter named {}", spec.name))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let cfg = TrainConfig {
        batch_size: batch_size.max(1),
        class_weights: false,
        ..TrainConfig::default()
    };
    Ok(evaluate(arch, &ordered, set, &cfg, device)?.2)
}

/// Scores `set` with `params`: (weighted loss, accuracy, P(fake) per window).
fn evaluate(
    arch: &dyn Architecture,
    params: &[Tensor],
    set: &FeatureSet,
    cfg: &TrainConfig,
    device: &Device,
) -> Result<(f64, f64, Vec<f32>)> {
    let weights = sample_weights(set, cfg);
    let per = set.window_len();
    let batch = cfg.batch_size.max(64);
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    let mut scores = Vec::with_capacity(set.len());
    for ((chunk, ys), ws) in set
        .data
        .chunks(batch * per)
        .zip(set.labels.chunks(batch))
        .zip(weights.chunks(batch))
    {
        let x = Tensor::from_slice(chunk, (ys.len(), set.n_mels, set.frames), device)?;
        let logits = arch.logits(params, &x)?.detach();
        let loss = weighted_bce(&logits, ys, ws, device)?;
        loss_sum += loss.to_scalar::<f32>()? as f64 * ys.len() as f64;
        let z = logits.to_vec1::<f32>()?;
        correct += count_correct(&z, ys);
        scores.extend(z.iter().map(|v| 1.0 / (1.0 + (-v).exp())));
    }
    let n = set.len() as f64;
    Ok((loss_sum / n, correct as f64 / n, scores))
}

/// Mean of `w·(max(z,0) − z·y + ln(1 + e^−|z|))`: binary cross-entropy on logits, one weight
/// per example.
fn weighted_bce(logits: &Tensor, ys: &[f32], ws: &[f32], device: &Device) -> Result<Tensor> {
    let y = Tensor::from_slice(ys, ys.len(), device)?;
    let w = Tensor::from_slice(ws, ws.len(), device)?;
    let soft = ((logits.abs()?.neg()?.exp()? + 1.0)?).log()?;
    let per = ((logits.relu()? - (logits * &y)?)? + soft)?;
    Ok((per * w)?.mean_all()?)
}

/// The loss weight of every window of `set` under `cfg`: 1, the inverse class frequency, or
/// (with `balance_sources`) the inverse frequency of its (class, source) group scaled so each
/// class still sums to half the windows. The mean weight is 1 in every case.
fn sample_weights(set: &FeatureSet, cfg: &TrainConfig) -> Vec<f32> {
    let (w_real, w_fake) = class_weights(&set.labels, cfg.class_weights);
    if !cfg.balance_sources {
        return set
            .labels
            .iter()
            .map(|&y| if y > 0.5 { w_fake } else { w_real })
            .collect();
    }
    let key = |w: usize| {
        let clip = &set.clips[set.clip_of_window[w]];
        (set.labels[w] > 0.5, clip.source.as_str())
    };
    let mut windows: HashMap<(bool, &str), usize> = HashMap::new();
    for w in 0..set.len() {
        *windows.entry(key(w)).or_default() += 1;
    }
    let sources = |fake: bool| windows.keys().filter(|(f, _)| *f == fake).count();
    let (real_sources, fake_sources) = (sources(false), sources(true));
    let class_share = if real_sources == 0 || fake_sources == 0 {
        set.len() as f32
    } else {
        set.len() as f32 / 2.0
    };
    (0..set.len())
        .map(|w| {
            let (fake, source) = key(w);
            let n_sources = if fake { fake_sources } else { real_sources };
            class_share / (n_sources as f32 * windows[&(fake, source)] as f32)
        })
        .collect()
}

/// Class weights `n / (2·n_class)`, or 1 and 1.
fn class_weights(labels: &[f32], enabled: bool) -> (f32, f32) {
    let fake = labels.iter().filter(|&&y| y > 0.5).count();
    let real = labels.len() - fake;
    if !enabled || fake == 0 || real == 0 {
        return (1.0, 1.0);
    }
    let n = labels.len() as f32;
    (n / (2.0 * real as f32), n / (2.0 * fake as f32))
}

fn count_correct(logits: &[f32], ys: &[f32]) -> usize {
    logits
        .iter()
        .zip(ys)
        .filter(|(z, y)| (**z >= 0.0) == (**y > 0.5))
        .count()
}

/// Per-band mean and standard deviation of the training windows (for input standardisation).
pub struct BandStats {
    /// Mean per mel band.
    pub mean: Vec<f32>,
    /// Standard deviation per mel band (at least 1e-3).
    pub std: Vec<f32>,
    /// Mean of every input element (row × column), for inputs that are not spectrograms.
    pub element_mean: Vec<f32>,
    /// Standard deviation of every input element (at least 1e-3).
    pub element_std: Vec<f32>,
}

fn band_statistics(set: &FeatureSet) -> BandStats {
    let (m, t) = (set.n_mels, set.frames);
    let mut sum = vec![0.0f64; m];
    let mut sq = vec![0.0f64; m];
    for w in set.data.chunks_exact(m * t) {
        for (band, row) in w.chunks_exact(t).enumerate() {
            for &v in row {
                sum[band] += v as f64;
                sq[band] += (v as f64) * (v as f64);
            }
        }
    }
    let moments = |sum: &[f64], sq: &[f64], n: usize| -> (Vec<f32>, Vec<f32>) {
        let n = n.max(1) as f64;
        let mean = sum.iter().map(|s| (s / n) as f32).collect();
        let std = sq
            .iter()
            .zip(sum)
            .map(|(q, s)| ((q / n - (s / n).powi(2)).max(0.0).sqrt() as f32).max(1e-3))
            .collect();
        (mean, std)
    };
    let (mean, std) = moments(&sum, &sq, set.len() * t);
    let mut el_sum = vec![0.0f64; m * t];
    let mut el_sq = vec![0.0f64; m * t];
    for w in set.data.chunks_exact(m * t) {
        for ((s, q), &v) in el_sum.iter_mut().zip(el_sq.iter_mut()).zip(w) {
            *s += v as f64;
            *q += (v as f64) * (v as f64);
        }
    }
    let (element_mean, element_std) = moments(&el_sum, &el_sq, set.len());
    BandStats {
        mean,
        std,
        element_mean,
        element_std,
    }
}

fn statistic(name: &str, stats: &BandStats, n: usize) -> Result<Vec<f32>> {
    let v = match name {
        "input.mean" => stats.mean.clone(),
        "input.std" => stats.std.clone(),
        "input.element_mean" => stats.element_mean.clone(),
        "input.element_std" => stats.element_std.clone(),
        other => {
            return Err(Error::InvalidArgument(format!(
                "no training statistic is known for parameter '{other}'"
            )))
        }
    };
    if v.len() != n {
        return Err(Error::InvalidArgument(format!(
            "statistic '{name}' has {} values, the parameter {n}",
            v.len()
        )));
    }
    Ok(v)
}

/// Masks one random band range (up to 1/8 of the bands) and one frame range (up to 1/8 of the
/// frames) of a `[m, t]` window with its floor value, each with probability 1/2.
fn spec_augment(window: &mut [f32], m: usize, t: usize, rng: &mut SplitMix64) {
    let floor = window.iter().copied().fold(f32::INFINITY, f32::min);
    if rng.next_f32() < 0.5 {
        let width = rng.below(m / 8 + 1);
        let start = rng.below(m - width + 1);
        for band in start..start + width {
            window[band * t..(band + 1) * t].fill(floor);
        }
    }
    if rng.next_f32() < 0.5 {
        let width = rng.below(t / 8 + 1);
        let start = rng.below(t - width + 1);
        for band in 0..m {
            window[band * t + start..band * t + start + width].fill(floor);
        }
    }
}

/// Labels as f32 (1 = fake), for tests and callers building sets by hand.
pub fn label_value(fake: bool) -> f32 {
    if fake {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::arch::compact_cnn::CompactCnn;
    use crate::train::features::ClipInfo;

    struct Quiet;
    impl Progress for Quiet {
        fn batch(&self, _: usize, _: usize, _: usize, _: f64, _: f64) {}
        fn epoch(&self, _: &EpochRecord) {}
    }

    /// Windows whose upper bands are loud for "fake" and quiet for "real", plus noise.
    fn toy_set(n: usize, seed: u64) -> FeatureSet {
        let (m, t) = (8, 32);
        let mut rng = SplitMix64::new(seed);
        let mut set = FeatureSet {
            n_mels: m,
            frames: t,
            ..Default::default()
        };
        for i in 0..n {
            let fake = i % 2 == 0;
            for band in 0..m {
                for _ in 0..t {
                    let base = if fake && band >= m / 2 { -20.0 } else { -50.0 };
                    set.data.push(base + rng.uniform(-15.0, 15.0));
                }
            }
            set.labels.push(label_value(fake));
            set.clip_of_window.push(i);
            set.clips.push(ClipInfo {
                filename: format!("{i}.wav"),
                fake,
                source: "toy".into(),
                sha256: String::new(),
            });
        }
        set
    }

    fn cfg() -> TrainConfig {
        TrainConfig {
            epochs: 4,
            batch_size: 8,
            learning_rate: 3e-3,
            patience: 0,
            ..Default::default()
        }
    }

    #[test]
    fn learns_a_separable_toy_problem_and_the_loss_falls() {
        let (train_set, val) = (toy_set(64, 1), toy_set(32, 2));
        let out = train(&CompactCnn, &train_set, &val, &cfg(), &Device::Cpu, &Quiet).unwrap();
        let h = &out.history;
        assert!(h.last().unwrap().train_loss < h[0].train_loss, "{h:?}");
        assert!(h.last().unwrap().val_accuracy > 0.9, "{h:?}");
        assert_eq!(out.val_scores.len(), 32);
    }

    #[test]
    fn the_same_seed_gives_identical_results() {
        let (train_set, val) = (toy_set(32, 3), toy_set(16, 4));
        let mut c = cfg();
        c.epochs = 2;
        let a = train(&CompactCnn, &train_set, &val, &c, &Device::Cpu, &Quiet).unwrap();
        let b = train(&CompactCnn, &train_set, &val, &c, &Device::Cpu, &Quiet).unwrap();
        let strip = |h: &[EpochRecord]| {
            h.iter()
                .map(|r| (r.train_loss, r.val_loss, r.val_accuracy))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&a.history), strip(&b.history));
        assert_eq!(a.val_scores, b.val_scores);
        c.seed = 7;
        let other = train(&CompactCnn, &train_set, &val, &c, &Device::Cpu, &Quiet).unwrap();
        assert_ne!(a.val_scores, other.val_scores);
    }

    #[test]
    fn class_weights_balance_the_classes() {
        let (r, f) = class_weights(&[0.0, 0.0, 0.0, 1.0], true);
        assert!((r * 3.0 - f).abs() < 1e-6);
        assert_eq!(class_weights(&[0.0, 1.0], false), (1.0, 1.0));
        assert_eq!(class_weights(&[1.0, 1.0], true), (1.0, 1.0));
    }

    #[test]
    fn balanced_sources_weigh_alike_and_average_one() {
        let mut set = toy_set(16, 5);
        // Fakes: seven windows from engine "a", one from "b"; reals: one source.
        for (i, clip) in set.clips.iter_mut().enumerate() {
            clip.source = match (clip.fake, i) {
                (false, _) => "real".into(),
                (true, 0) => "b".into(),
                (true, _) => "a".into(),
            };
        }
        let cfg = TrainConfig {
            balance_sources: true,
            ..TrainConfig::default()
        };
        let w = sample_weights(&set, &cfg);
        let total = |pred: &dyn Fn(&ClipInfo) -> bool| -> f32 {
            (0..set.len())
                .filter(|&i| pred(&set.clips[set.clip_of_window[i]]))
                .map(|i| w[i])
                .sum()
        };
        let a = total(&|c| c.source == "a");
        let b = total(&|c| c.source == "b");
        assert!(b > 0.0 && (a - b).abs() < 1e-4, "a {a} b {b}");
        let mean = w.iter().sum::<f32>() / w.len() as f32;
        assert!((mean - 1.0).abs() < 1e-5, "{mean}");
        let plain = sample_weights(&set, &TrainConfig::default());
        assert_ne!(plain, w);
    }

    #[test]
    fn bce_matches_the_textbook_formula() {
        let z = Tensor::new(&[2.0f32, -1.0, 0.0], &Device::Cpu).unwrap();
        let l = weighted_bce(&z, &[1.0, 0.0, 1.0], &[1.0; 3], &Device::Cpu)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
        let expected = -((sig(2.0)).ln() + (1.0 - sig(-1.0)).ln() + (sig(0.0)).ln()) / 3.0;
        assert!((l - expected).abs() < 1e-5, "{l} vs {expected}");
    }
}
