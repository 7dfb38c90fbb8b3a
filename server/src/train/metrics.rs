//! How well a detector separates real from synthetic speech: the numbers a training run or an
//! evaluation reports (confusion counts, accuracy, precision, recall, F1, ROC and its AUC, the
//! equal error rate, the DET curve and a per-source breakdown).
//!
//! Conventions, shared by every function here:
//!
//! * label `true` (1) is **fake**, the positive class; `false` (0) is **real**;
//! * a score is the model's probability that a clip is fake, nominally in `[0, 1]`;
//! * a clip is called fake when `score >= threshold`.
//!
//! Nothing here panics, whatever the input, so a bad batch can never take down a long training
//! run at report time:
//!
//! * when `labels`, `scores` (and `groups`) differ in length, only the first `min(len)` items are
//!   used — the tail of the longer slice is ignored;
//! * a NaN score counts as `0.5` — the model is maximally unsure, neither a confident "real" nor
//!   a confident "fake", and every function treats it the same way;
//! * ratios with a zero denominator are `0.0` (never NaN), and quantities that do not exist
//!   without both classes (ROC, AUC, EER) are empty or `None`.
//!
//! Evaluation is done in `f64` on exact integer counts, so results do not drift with the size
//! of the data set.

use std::collections::BTreeMap;

use serde::Serialize;

/// The score every function here uses in place of `score`: NaN becomes `0.5`, so that a model
/// that produced garbage for one clip neither poisons sorting nor silently counts as confident.
pub(crate) fn sanitize_score(score: f32) -> f32 {
    if score.is_nan() {
        0.5
    } else {
        score
    }
}

/// `num / den`, or `0.0` when `den` is zero, so that reports never carry NaN (which JSON cannot
/// represent and which poisons any average it enters).
fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Outcome counts at one threshold: the raw material every thresholded metric is derived from,
/// kept in reports so that any other metric can be recomputed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Confusion {
    /// Fakes called fake.
    pub tp: usize,
    /// Real clips called fake (false rejections of genuine speech).
    pub fp: usize,
    /// Real clips called real.
    pub tn: usize,
    /// Fakes called real (false acceptances); `fn` is a keyword, hence the underscore, but the
    /// serialised name is the conventional `fn`.
    #[serde(rename = "fn")]
    pub fn_: usize,
}

impl Confusion {
    /// Counts outcomes when clips scoring `>= threshold` are called fake — the same rule the
    /// detector applies at inference, so the numbers match what users will see. Lengths that
    /// differ are truncated to the shorter; NaN scores count as `0.5`.
    pub fn at(labels: &[bool], scores: &[f32], threshold: f32) -> Confusion {
        let mut c = Confusion::default();
        for (&fake, &score) in labels.iter().zip(scores) {
            let called_fake = sanitize_score(score) >= threshold;
            match (fake, called_fake) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                (false, false) => c.tn += 1,
                (true, false) => c.fn_ += 1,
            }
        }
        c
    }

    /// All clips counted, so callers need not re-add the four cells.
    pub fn total(&self) -> usize {
        self.tp + self.fp + self.tn + self.fn_
    }

    /// Share of clips judged correctly; misleading on unbalanced sets, which is why the other
    /// metrics are reported beside it. `0.0` when there are no clips.
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.total())
    }

    /// Of the clips called fake, the share that really are: how much a "fake" verdict can be
    /// trusted. `0.0` when nothing was called fake.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// Of the fakes, the share caught: how much synthetic speech slips through. `0.0` when there
    /// are no fakes.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// Harmonic mean of precision and recall, one number that punishes neglecting either.
    /// Computed as `2tp / (2tp + fp + fn)`, which equals the harmonic mean wherever that is
    /// defined and is `0.0` where it is not.
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

/// One operating point of the detector: what calling `score >= threshold` fake would cost
/// (false positive rate) and catch (true positive rate).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RocPoint {
    /// Clips scoring at least this are called fake. The first point of a curve uses
    /// `f32::INFINITY`, standing for "call nothing fake".
    pub threshold: f32,
    /// Share of real clips called fake (false rejection rate of genuine speech).
    pub fpr: f64,
    /// Share of fake clips called fake (detection rate).
    pub tpr: f64,
}

/// The ROC curve in exact counts: what [`roc_curve`], [`roc_auc`] and [`equal_error_rate`]
/// share, so that they agree with each other to the last bit.
struct Counts {
    /// Fakes among the clips.
    positives: usize,
    /// Real clips.
    negatives: usize,
    /// `(threshold, false positives, true positives)`, by descending threshold, starting at
    /// `(INFINITY, 0, 0)` and ending at `(lowest score, negatives, positives)`.
    points: Vec<(f32, usize, usize)>,
}

impl Counts {
    /// `None` when a class is missing, since neither rate is defined then.
    fn new(labels: &[bool], scores: &[f32]) -> Option<Counts> {
        let mut pairs: Vec<(f32, bool)> = labels
            .iter()
            .zip(scores)
            .map(|(&fake, &score)| (sanitize_score(score), fake))
            .collect();
        let positives = pairs.iter().filter(|(_, fake)| *fake).count();
        let negatives = pairs.len() - positives;
        if positives == 0 || negatives == 0 {
            return None;
        }
        // Descending; total_cmp cannot panic and NaN is gone already.
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));

        let mut points = Vec::with_capacity(pairs.len() + 1);
        points.push((f32::INFINITY, 0, 0));
        let (mut fp, mut tp) = (0usize, 0usize);
        let mut i = 0;
        while i < pairs.len() {
            let threshold = pairs[i].0;
            // One point per distinct score: all tied clips switch sides together.
            // `==` (not total_cmp) so that 0.0 and -0.0 count as the same score.
            while i < pairs.len() && pairs[i].0 == threshold {
                if pairs[i].1 {
                    tp += 1;
                } else {
                    fp += 1;
                }
                i += 1;
            }
            points.push((threshold, fp, tp));
        }
        Some(Counts {
            positives,
            negatives,
            points,
        })
    }

    fn rates(&self) -> impl Iterator<Item = RocPoint> + '_ {
        self.points.iter().map(|&(threshold, fp, tp)| RocPoint {
            threshold,
            fpr: ratio(fp, self.negatives),
            tpr: ratio(tp, self.positives),
        })
    }
}

/// Every operating point the detector can reach, so that a threshold can be chosen for the
/// cost of errors at hand rather than fixed at 0.5.
///
/// Sorted by descending threshold: it starts at `(fpr 0, tpr 0)` with threshold
/// `f32::INFINITY`, ends at `(1, 1)` with the lowest score as threshold, and has one point per
/// distinct score (tied clips move together, so ties give a diagonal segment, never a
/// staircase that depends on input order). Empty when either class is missing, because the
/// rates are undefined then.
pub fn roc_curve(labels: &[bool], scores: &[f32]) -> Vec<RocPoint> {
    match Counts::new(labels, scores) {
        Some(counts) => counts.rates().collect(),
        None => Vec::new(),
    }
}

/// The threshold-free ranking quality: the probability that a random fake scores above a random
/// real clip, ties counting one half (the Mann–Whitney U statistic, equal to the trapezoidal
/// area under [`roc_curve`]). `None` when either class is missing.
pub fn roc_auc(labels: &[bool], scores: &[f32]) -> Option<f64> {
    let counts = Counts::new(labels, scores)?;
    // Twice the area in units of one (negative, positive) pair, summed exactly in integers.
    let mut twice_area: u128 = 0;
    for w in counts.points.windows(2) {
        let (_, fp0, tp0) = w[0];
        let (_, fp1, tp1) = w[1];
        twice_area += (fp1 - fp0) as u128 * (tp0 + tp1) as u128;
    }
    let pairs = counts.positives as f64 * counts.negatives as f64;
    Some(twice_area as f64 / (2.0 * pairs))
}

/// The equal error rate, the headline number of spoofing-detection benchmarks: one operating
/// point where misses and false alarms are equally likely, comparable across models without
/// agreeing on a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Eer {
    /// The rate at which the false acceptance rate (fakes called real, FNR) equals the false
    /// rejection rate (real clips called fake, FPR), in `[0, 1]`.
    pub eer: f64,
    /// The ROC threshold closest to that crossing: the setting to deploy for balanced errors.
    pub threshold: f32,
}

/// Finds the [`Eer`] on the ROC curve, because a single balanced-error figure is what
/// benchmarks and model comparisons quote.
///
/// Walking the curve by descending threshold, FNR − FPR goes from +1 to −1; the EER is read off
/// by linear interpolation between the two consecutive points where it changes sign (exact
/// when a point has FNR = FPR). The threshold reported is that of whichever of the two points
/// is nearer the crossing (the lower threshold on an exact tie), so it is always one of the
/// scores. `None` when either class is missing.
pub fn equal_error_rate(labels: &[bool], scores: &[f32]) -> Option<Eer> {
    let counts = Counts::new(labels, scores)?;
    let points: Vec<RocPoint> = counts.rates().collect();
    let gap = |p: &RocPoint| (1.0 - p.tpr) - p.fpr;

    // The first point has gap +1 and the last gap −1, so a sign change always exists.
    let i = points.iter().position(|p| gap(p) <= 0.0)?;
    let cur = points[i];
    let d1 = gap(&cur);
    if d1 == 0.0 || i == 0 {
        return Some(Eer {
            eer: cur.fpr,
            threshold: cur.threshold,
        });
    }
    let prev = points[i - 1];
    let d0 = gap(&prev);
    // d0 > 0 > d1: fraction of the way from prev to cur where the gap is zero.
    let t = d0 / (d0 - d1);
    let fpr = prev.fpr + t * (cur.fpr - prev.fpr);
    let fnr = (1.0 - prev.tpr) + t * (prev.tpr - cur.tpr);
    // Equal up to rounding; average them so neither rounding wins.
    let eer = ((fpr + fnr) / 2.0).clamp(0.0, 1.0);
    let threshold = if t < 0.5 {
        prev.threshold
    } else {
        cur.threshold
    };
    Some(Eer { eer, threshold })
}

/// The DET curve's points, `(fpr, fnr)`, one per ROC point: both axes are error rates, which
/// makes the trade-off between the two kinds of mistake (and the EER, where they meet) easier
/// to read than on a ROC curve.
pub fn det_curve(roc: &[RocPoint]) -> Vec<(f64, f64)> {
    roc.iter().map(|p| (p.fpr, 1.0 - p.tpr)).collect()
}

/// Everything a training or evaluation run reports about one data set, in one serialisable
/// value, so that the JSON report, the logs and experiment tracking all show the same numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Clips evaluated (the shorter of `labels` and `scores`).
    pub count: usize,
    /// Fakes among them: needed to judge whether accuracy means anything.
    pub positives: usize,
    /// The decision threshold the thresholded metrics below were computed at.
    pub threshold: f32,
    /// See [`Confusion::accuracy`].
    pub accuracy: f64,
    /// See [`Confusion::precision`].
    pub precision: f64,
    /// See [`Confusion::recall`].
    pub recall: f64,
    /// See [`Confusion::f1`].
    pub f1: f64,
    /// See [`roc_auc`]; `None` (JSON `null`) when a class is missing.
    pub roc_auc: Option<f64>,
    /// See [`equal_error_rate`]; `None` when a class is missing.
    pub eer: Option<f64>,
    /// The threshold that gives [`Summary::eer`]; `None` when a class is missing.
    pub eer_threshold: Option<f32>,
    /// The counts at `threshold`.
    pub confusion: Confusion,
}

/// Computes the whole [`Summary`] at once, so that callers cannot mix numbers computed on
/// different data or at different thresholds.
pub fn summarize(labels: &[bool], scores: &[f32], threshold: f32) -> Summary {
    let n = labels.len().min(scores.len());
    let (labels, scores) = (&labels[..n], &scores[..n]);
    let confusion = Confusion::at(labels, scores, threshold);
    let eer = equal_error_rate(labels, scores);
    Summary {
        count: n,
        positives: labels.iter().filter(|&&fake| fake).count(),
        threshold,
        accuracy: confusion.accuracy(),
        precision: confusion.precision(),
        recall: confusion.recall(),
        f1: confusion.f1(),
        roc_auc: roc_auc(labels, scores),
        eer: eer.map(|e| e.eer),
        eer_threshold: eer.map(|e| e.threshold),
        confusion,
    }
}

/// How the detector fares on one source of clips (one TTS system, one corpus, one speaker…):
/// an overall figure can hide a generator the model never learned to catch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupSummary {
    /// The group's name, as given.
    pub group: String,
    /// Clips in the group.
    pub count: usize,
    /// `"real"` or `"fake"` when all the group's clips share that label, `"mixed"` otherwise —
    /// sources are usually all one or the other, and a mixed one is worth noticing.
    pub label: String,
    /// Share of the group's clips judged correctly at the threshold; for a single-label group
    /// this is its detection rate (fake) or its acceptance rate (real).
    pub accuracy: f64,
    /// Mean score (NaN counting as `0.5`): shows how close to the threshold a group sits, which
    /// accuracy alone does not.
    pub mean_fake_probability: f64,
}

/// Breaks results down per group (e.g. per source or generator), sorted by group name (byte
/// order) so reports are stable from run to run. Only the first `min(len)` items of the three
/// slices are used.
pub fn by_group(
    groups: &[&str],
    labels: &[bool],
    scores: &[f32],
    threshold: f32,
) -> Vec<GroupSummary> {
    #[derive(Default)]
    struct Acc {
        count: usize,
        fakes: usize,
        correct: usize,
        score_sum: f64,
    }

    let mut acc: BTreeMap<&str, Acc> = BTreeMap::new();
    for ((&group, &fake), &score) in groups.iter().zip(labels).zip(scores) {
        let score = sanitize_score(score);
        let a = acc.entry(group).or_default();
        a.count += 1;
        a.fakes += usize::from(fake);
        a.correct += usize::from((score >= threshold) == fake);
        a.score_sum += f64::from(score);
    }
    acc.into_iter()
        .map(|(group, a)| {
            let label = if a.fakes == 0 {
                "real"
            } else if a.fakes == a.count {
                "fake"
            } else {
                "mixed"
            };
            GroupSummary {
                group: group.to_owned(),
                count: a.count,
                label: label.to_owned(),
                accuracy: ratio(a.correct, a.count),
                // count >= 1 for every entry in the map.
                mean_fake_probability: a.score_sum / a.count as f64,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-12;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < EPS
    }

    #[test]
    fn confusion_counts_and_ratios() {
        // fake: 0.9 (tp), 0.6 (tp), 0.4 (fn); real: 0.7 (fp), 0.5 (fp, >= rule), 0.1 (tn)
        let labels = [true, true, true, false, false, false];
        let scores = [0.9, 0.6, 0.4, 0.7, 0.5, 0.1];
        let c = Confusion::at(&labels, &scores, 0.5);
        assert_eq!(
            c,
            Confusion {
                tp: 2,
                fp: 2,
                tn: 1,
                fn_: 1
            }
        );
        assert_eq!(c.total(), 6);
        assert!(close(c.accuracy(), 3.0 / 6.0));
        assert!(close(c.precision(), 2.0 / 4.0));
        assert!(close(c.recall(), 2.0 / 3.0));
        // 2*2 / (2*2 + 2 + 1)
        assert!(close(c.f1(), 4.0 / 7.0));
    }

    #[test]
    fn confusion_never_nan() {
        let c = Confusion::at(&[], &[], 0.5);
        assert_eq!(c.total(), 0);
        assert_eq!(
            (c.accuracy(), c.precision(), c.recall(), c.f1()),
            (0.0, 0.0, 0.0, 0.0)
        );
        // Only real clips, all called real: precision/recall/f1 undefined -> 0.
        let c = Confusion::at(&[false, false], &[0.1, 0.2], 0.5);
        assert_eq!(c.tn, 2);
        assert_eq!(c.accuracy(), 1.0);
        assert_eq!((c.precision(), c.recall(), c.f1()), (0.0, 0.0, 0.0));
    }

    #[test]
    fn confusion_serialises_fn_field_as_fn() {
        let c = Confusion {
            tp: 1,
            fp: 2,
            tn: 3,
            fn_: 4,
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"tp":1,"fp":2,"tn":3,"fn":4}"#
        );
    }

    #[test]
    fn perfect_separation() {
        let labels = [false, false, true, true];
        let scores = [0.1, 0.2, 0.8, 0.9];
        let roc = roc_curve(&labels, &scores);
        let pts: Vec<(f32, f64, f64)> = roc.iter().map(|p| (p.threshold, p.fpr, p.tpr)).collect();
        assert_eq!(
            pts,
            [
                (f32::INFINITY, 0.0, 0.0),
                (0.9, 0.0, 0.5),
                (0.8, 0.0, 1.0),
                (0.2, 0.5, 1.0),
                (0.1, 1.0, 1.0),
            ]
        );
        assert_eq!(roc_auc(&labels, &scores), Some(1.0));
        let eer = equal_error_rate(&labels, &scores).unwrap();
        assert_eq!(eer.eer, 0.0);
        // The lowest fake score: the threshold at which nothing is misjudged.
        assert_eq!(eer.threshold, 0.8);
        assert_eq!(
            det_curve(&roc),
            [(0.0, 1.0), (0.0, 0.5), (0.0, 0.0), (0.5, 0.0), (1.0, 0.0)]
        );
    }

    #[test]
    fn reversed_separation() {
        let labels = [true, true, false, false];
        let scores = [0.1, 0.2, 0.8, 0.9];
        assert_eq!(roc_auc(&labels, &scores), Some(0.0));
        let eer = equal_error_rate(&labels, &scores).unwrap();
        assert_eq!(eer.eer, 1.0);
        // At 0.8 both real clips are called fake (FPR 1) and both fakes real (FNR 1).
        assert_eq!(eer.threshold, 0.8);
    }

    #[test]
    fn mixed_case_by_hand() {
        // Sorted by score: 0.9 F, 0.8 R, 0.7 F, 0.6 F, 0.4 R, 0.3 R, 0.2 F, 0.1 R  (P = N = 4).
        let labels = [true, false, true, true, false, false, true, false];
        let scores = [0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1];
        // Pairs (fake above real): 0.9 beats 4, 0.7 beats 3, 0.6 beats 3, 0.2 beats 1 => 11/16.
        assert!(close(roc_auc(&labels, &scores).unwrap(), 11.0 / 16.0));

        let roc = roc_curve(&labels, &scores);
        assert_eq!(roc.len(), 9);
        assert_eq!((roc[8].fpr, roc[8].tpr), (1.0, 1.0));
        // Points (fpr, fnr): (0,1) (0,.75) (.25,.75) (.25,.5) (.25,.25) (.5,.25) ...
        // FNR - FPR: 1, .75, .5, .25, 0 at threshold 0.6 -> exact crossing at 0.25.
        let eer = equal_error_rate(&labels, &scores).unwrap();
        assert!(close(eer.eer, 0.25));
        assert_eq!(eer.threshold, 0.6);

        // Trapezoid over the ROC equals Mann–Whitney.
        let trap: f64 = roc
            .windows(2)
            .map(|w| (w[1].fpr - w[0].fpr) * (w[0].tpr + w[1].tpr) / 2.0)
            .sum();
        assert!(close(trap, 11.0 / 16.0));
    }

    #[test]
    fn eer_interpolates_between_points() {
        // Sorted: 0.9 F, 0.8 R, 0.3 F, 0.2 F, 0.1 R (P = 3, N = 2).
        // Points (thr, fpr, fnr): (inf,0,1) (.9,0,2/3) (.8,.5,2/3) (.3,.5,1/3) (.2,.5,0) (.1,1,0)
        // gap = fnr - fpr: 1, 2/3, 1/6, -1/6 -> crosses halfway between .8 and .3 (t = .5),
        // where fpr = .5 and fnr = 2/3 - .5 * 1/3 = .5.
        let labels = [true, false, true, true, false];
        let scores = [0.9, 0.8, 0.3, 0.2, 0.1];
        let eer = equal_error_rate(&labels, &scores).unwrap();
        assert!(close(eer.eer, 0.5));
        // t = 0.5 exactly: the lower threshold.
        assert_eq!(eer.threshold, 0.3);

        // A crossing exactly on a point: sorted 0.9 R, 0.8 F, 0.7 F, 0.6 F (P = 3, N = 1).
        // (fpr, fnr): (0,1) (1,1) (1,2/3) ...; gap: 1, then 0 at threshold 0.9 -> EER 1.
        let e = equal_error_rate(&[false, true, true, true], &[0.9, 0.8, 0.7, 0.6]).unwrap();
        assert_eq!((e.eer, e.threshold), (1.0, 0.9));

        // Crossing inside a segment, nearer its start: sorted 0.9 F, then a tie at 0.5 of
        // 1 F + 3 R, then 0.1 R (P = 2, N = 4).
        // (fpr, fnr): (0,1) (0,.5) (.75,0) (1,0); gap 1, .5, -.75 -> t = .5/1.25 = .4.
        // fpr = .75*.4 = .3, fnr = .5 - .5*.4 = .3.
        let labels = [true, true, false, false, false, false];
        let scores = [0.9, 0.5, 0.5, 0.5, 0.5, 0.1];
        let e = equal_error_rate(&labels, &scores).unwrap();
        assert!(close(e.eer, 0.3));
        assert_eq!(e.threshold, 0.9);
    }

    #[test]
    fn ties_give_one_point_and_half_credit() {
        // All four tied: the curve jumps straight from (0,0) to (1,1); AUC is chance.
        let labels = [true, false, true, false];
        let scores = [0.5; 4];
        let roc = roc_curve(&labels, &scores);
        assert_eq!(roc.len(), 2);
        assert_eq!((roc[1].threshold, roc[1].fpr, roc[1].tpr), (0.5, 1.0, 1.0));
        assert_eq!(roc_auc(&labels, &scores), Some(0.5));
        let e = equal_error_rate(&labels, &scores).unwrap();
        assert_eq!((e.eer, e.threshold), (0.5, 0.5));

        // Partial tie: F 0.8, {F, R} at 0.5, R 0.2. Pairs: 0.8 beats both R (2); the tied F
        // beats R 0.2 (1) and ties R 0.5 (0.5) => 3.5 / 4.
        let labels = [true, true, false, false];
        let scores = [0.8, 0.5, 0.5, 0.2];
        assert_eq!(roc_auc(&labels, &scores), Some(0.875));
        assert_eq!(roc_curve(&labels, &scores).len(), 4);
    }

    #[test]
    fn input_order_does_not_matter() {
        let labels = [true, false, true, true, false, false, true, false];
        let scores = [0.9, 0.5, 0.5, 0.6, 0.4, 0.5, 0.2, 0.1];
        let mut pairs: Vec<(bool, f32)> = labels.iter().copied().zip(scores).collect();
        pairs.reverse();
        let (l2, s2): (Vec<bool>, Vec<f32>) = pairs.into_iter().unzip();
        assert_eq!(roc_curve(&labels, &scores), roc_curve(&l2, &s2));
        assert_eq!(roc_auc(&labels, &scores), roc_auc(&l2, &s2));
        assert_eq!(
            equal_error_rate(&labels, &scores),
            equal_error_rate(&l2, &s2)
        );
    }

    #[test]
    fn one_class_missing() {
        let scores = [0.1, 0.9, 0.5];
        for labels in [[true; 3], [false; 3]] {
            assert!(roc_curve(&labels, &scores).is_empty());
            assert_eq!(roc_auc(&labels, &scores), None);
            assert_eq!(equal_error_rate(&labels, &scores), None);
            let s = summarize(&labels, &scores, 0.5);
            assert_eq!((s.roc_auc, s.eer, s.eer_threshold), (None, None, None));
        }
        assert!(roc_curve(&[], &[]).is_empty());
        assert_eq!(roc_auc(&[], &[]), None);
        assert!(det_curve(&[]).is_empty());
    }

    #[test]
    fn mismatched_lengths_use_the_shorter() {
        let labels = [true, false, true, false];
        let scores = [0.9, 0.1];
        let s = summarize(&labels, &scores, 0.5);
        assert_eq!(s.count, 2);
        assert_eq!(s.positives, 1);
        assert_eq!(s.roc_auc, Some(1.0));
        assert_eq!(Confusion::at(&labels, &scores, 0.5).total(), 2);
        assert_eq!(by_group(&["a"], &labels, &scores, 0.5)[0].count, 1);
    }

    #[test]
    fn nan_scores_count_as_half() {
        let labels = [true, false, true];
        let scores = [f32::NAN, 0.2, 0.9];
        let c = Confusion::at(&labels, &scores, 0.5);
        assert_eq!(c.tp, 2);
        let c = Confusion::at(&labels, &scores, 0.6);
        assert_eq!(c.fn_, 1);
        assert_eq!(roc_auc(&labels, &scores), Some(1.0));
        let roc = roc_curve(&labels, &scores);
        assert!(roc.iter().any(|p| p.threshold == 0.5));
        let g = by_group(&["x", "x", "x"], &labels, &scores, 0.5);
        assert!(close(
            g[0].mean_fake_probability,
            (0.5 + 0.2_f32 as f64 + 0.9_f32 as f64) / 3.0
        ));
        // Nothing non-finite leaks into a summary.
        let s = summarize(&labels, &[f32::NAN; 3], 0.5);
        assert!(s.accuracy.is_finite() && s.roc_auc == Some(0.5));
    }

    #[test]
    fn summary_matches_parts() {
        let labels = [true, false, true, true, false, false, true, false];
        let scores = [0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1];
        let s = summarize(&labels, &scores, 0.5);
        let c = Confusion::at(&labels, &scores, 0.5);
        assert_eq!(s.count, 8);
        assert_eq!(s.positives, 4);
        assert_eq!(s.threshold, 0.5);
        assert_eq!(s.confusion, c);
        // tp 3 (0.9, 0.7, 0.6), fp 1 (0.8), tn 3, fn 1 (0.2)
        assert_eq!((c.tp, c.fp, c.tn, c.fn_), (3, 1, 3, 1));
        assert_eq!(s.accuracy, 0.75);
        assert_eq!(s.precision, 0.75);
        assert_eq!(s.recall, 0.75);
        assert_eq!(s.f1, 0.75);
        assert!(close(s.roc_auc.unwrap(), 11.0 / 16.0));
        assert!(close(s.eer.unwrap(), 0.25));
        assert_eq!(s.eer_threshold, Some(0.6));
    }

    #[test]
    fn groups_sorted_labelled_and_scored() {
        let groups = [
            "tts-b", "bonafide", "tts-a", "tts-b", "bonafide", "mix", "mix",
        ];
        let labels = [true, false, true, true, false, true, false];
        let scores = [0.9, 0.2, 0.3, 0.7, 0.6, 0.8, 0.1];
        let g = by_group(&groups, &labels, &scores, 0.5);
        let names: Vec<&str> = g.iter().map(|g| g.group.as_str()).collect();
        assert_eq!(names, ["bonafide", "mix", "tts-a", "tts-b"]);

        assert_eq!((g[0].count, g[0].label.as_str()), (2, "real"));
        assert!(close(g[0].accuracy, 0.5)); // 0.2 right, 0.6 wrong
        assert!(close(
            g[0].mean_fake_probability,
            (0.2f32 as f64 + 0.6f32 as f64) / 2.0
        ));

        assert_eq!((g[1].count, g[1].label.as_str()), (2, "mixed"));
        assert!(close(g[1].accuracy, 1.0));

        assert_eq!((g[2].count, g[2].label.as_str()), (1, "fake"));
        assert!(close(g[2].accuracy, 0.0));

        assert_eq!((g[3].count, g[3].label.as_str()), (2, "fake"));
        assert!(close(g[3].accuracy, 1.0));
        assert!(close(
            g[3].mean_fake_probability,
            (0.9f32 as f64 + 0.7f32 as f64) / 2.0
        ));

        assert!(by_group(&[], &[], &[], 0.5).is_empty());
    }

    #[test]
    fn no_panics_on_odd_inputs() {
        let labels = [true, false, true, false, true];
        let scores = [f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -0.0, 0.0];
        for threshold in [f32::NAN, f32::INFINITY, -1.0, 0.5] {
            let _ = summarize(&labels, &scores, threshold);
            let _ = by_group(&["a"; 5], &labels, &scores, threshold);
        }
        let roc = roc_curve(&labels, &scores);
        // -0.0 and 0.0 are one score: inf, NaN->0.5, 0.0, -inf.
        assert_eq!(roc.len(), 5);
        assert_eq!((roc[4].fpr, roc[4].tpr), (1.0, 1.0));
    }
}
