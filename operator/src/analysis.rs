//! Canary analysis: is the new model version answering well enough?
//!
//! The server exports, per route template and status code, the counter
//! `auralguard_http_requests_total{route,status}`, the latency histogram
//! `auralguard_http_request_duration_seconds{route}` (buckets labelled `le`) and, per verdict
//! returned, `auralguard_verdicts_total{label="fake"|"real"}`. The operator scrapes every canary
//! pod's and every ready stable pod's `/metrics` when a step's observation window opens (the
//! *baseline*, kept in status) and again when it closes, and judges only what happened in between:
//!
//! 1. [`parse_exposition`] reads the Prometheus text format.
//! 2. [`pod_counters`] sums one pod's requests, 5xx answers and latency buckets over the analysed
//!    routes (probes and scrapes are not traffic), and its verdicts (which carry no route).
//! 3. [`unhealthy_canary_pods`] comes first: a restarted server's counters start from zero and
//!    an unready pod is not scraped at all, so a crashing canary would hide its failures from the
//!    counters. A canary pod whose containers restarted during the window (their `restartCount`
//!    grew), a canary pod replaced by another one, or a canary pod not ready at the closing
//!    scrape fails the step before any number is looked at.
//! 4. [`window`] (canary) and [`stable_window`] subtract the baseline pod by pod; a pod that
//!    restarted (counters went down, or its restart count grew) or appeared since counts from
//!    zero, as Prometheus' `increase()` would. Both sides carry requests, errors and verdicts;
//!    only the canary keeps latency buckets (the stable pods' are not scraped into status).
//! 5. [`shared_outage`]: when the canary's error rate exceeds `maxErrorRate` but the stable
//!    pods' does too over the same window (with `minRequests` requests of their own), the
//!    errors are not the canary's doing (a dependency, the network, the clients): the window is
//!    *inconclusive*, and the rollout observes a new one instead of failing the step.
//! 6. [`judge`] turns the canary's window into a [`Verdict`]: too few requests, or the error rate
//!    (5xx share) and the p99 latency (interpolated within histogram buckets, like
//!    `histogram_quantile`) against the spec's thresholds.
//! 7. [`judge_fake_share`] then guards the model's quality, which error rate and latency cannot
//!    see: a version that calls everything fake answers fast and without errors. The canary's
//!    share of "fake" verdicts is compared with the stable pods' over the same window; a step
//!    that passed on error rate and latency fails only when the difference exceeds `maxDifference`
//!    with the configured confidence (an unpooled two-proportion z-test against the tolerance,
//!    [`fake_share_differs`]), and the comparison is skipped, not failed, while either side has
//!    fewer than `minVerdicts` verdicts.
//!
//! Everything here is pure; the scraping itself is behind [`crate::scrape::CanaryMetrics`].

use std::collections::BTreeMap;

use auralguard_crds::{AnalysisSpec, BucketCount, FakeShareSpec, MetricsSnapshot, PodCounters};

use crate::{Error, Result};

/// The request counter the server exports.
pub const REQUESTS_METRIC: &str = "auralguard_http_requests_total";
/// The latency histogram's bucket series.
pub const LATENCY_BUCKET_METRIC: &str = "auralguard_http_request_duration_seconds_bucket";
/// The verdict counter the server exports (label `label`: `fake` or `real`); the model-quality
/// guard compares its split between canary and stable.
pub const VERDICTS_METRIC: &str = "auralguard_verdicts_total";

/// One sample line of the text exposition format.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series name (for histograms including the `_bucket`/`_sum`/`_count` suffix).
    pub name: String,
    /// Label pairs in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of one label.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses Prometheus' text exposition format (comments and `# HELP`/`# TYPE` lines skipped,
/// escaped label values decoded, optional timestamps ignored).
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| {
            parse_line(l.trim())
                .ok_or_else(|| Error::Metrics(format!("line {}: cannot parse sample {l:?}", i + 1)))
        })
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, after_labels) = parse_labels(after)?;
        labels = parsed;
        rest = after_labels;
    }
    let value = rest.split_whitespace().next()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value: parse_value(value)?,
    })
}

/// Parses `k="v",…}` and returns the pairs and what follows the closing brace.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.push((key, value));
        s = &s[end + 1..];
    }
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => v.parse().ok(),
    }
}

/// One pod's counters over the analysed `routes`, from its `/metrics` text. Verdicts carry no
/// route label and count whatever route returned them.
pub fn pod_counters(pod: &str, text: &str, routes: &[String]) -> Result<PodCounters> {
    let counted = |s: &Sample| {
        s.label("route")
            .is_some_and(|r| routes.iter().any(|x| x == r))
    };
    let samples = parse_exposition(text)?;
    let (fake, real) = verdicts(&samples);
    let mut requests = 0.0;
    let mut errors = 0.0;
    let mut buckets: BTreeMap<String, f64> = BTreeMap::new();
    for s in samples.iter().filter(|s| counted(s)) {
        if s.name == REQUESTS_METRIC {
            requests += s.value;
            if s.label("status").is_some_and(|st| st.starts_with('5')) {
                errors += s.value;
            }
        } else if s.name == LATENCY_BUCKET_METRIC {
            if let Some(le) = s.label("le") {
                *buckets.entry(le.to_string()).or_default() += s.value;
            }
        }
    }
    let mut latency_buckets: Vec<BucketCount> = buckets
        .into_iter()
        .map(|(le, count)| BucketCount {
            le,
            count: as_count(count),
        })
        .collect();
    latency_buckets.sort_by(|a, b| bound(&a.le).total_cmp(&bound(&b.le)));
    Ok(PodCounters {
        pod: pod.to_string(),
        requests: as_count(requests),
        errors: as_count(errors),
        latency_buckets,
        fake,
        real,
        // Not in `/metrics`: the scraper reads it from the pod's status.
        restarts: None,
    })
}

/// The `fake` and `real` verdict counts among `samples` (other labels ignored).
fn verdicts(samples: &[Sample]) -> (i64, i64) {
    let sum = |label: &str| {
        samples
            .iter()
            .filter(|s| s.name == VERDICTS_METRIC && s.label("label") == Some(label))
            .map(|s| s.value)
            .sum::<f64>()
    };
    (as_count(sum("fake")), as_count(sum("real")))
}

/// Counters are whole numbers written as floats; status keeps them as integers.
fn as_count(v: f64) -> i64 {
    if v.is_finite() && v > 0.0 {
        // Saturating float-to-int conversion; counters never approach i64::MAX.
        v.round() as i64
    } else {
        0
    }
}

/// A bucket's upper bound as a number (`+Inf` → infinity; unparsable → infinity, sorting last).
fn bound(le: &str) -> f64 {
    parse_value(le).unwrap_or(f64::INFINITY)
}

/// What one side (canary or stable) did during one observation window, summed over its pods.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Window {
    /// Requests answered.
    pub requests: i64,
    /// Of which 5xx.
    pub errors: i64,
    /// Cumulative latency buckets `(upper bound in seconds, count)`, ascending.
    pub buckets: Vec<(f64, i64)>,
    /// "fake" verdicts returned.
    pub fake: i64,
    /// "real" verdicts returned.
    pub real: i64,
}

impl Window {
    /// Verdicts returned, the sample size of the fake share.
    pub fn verdicts(&self) -> i64 {
        self.fake + self.real
    }

    /// The share of "fake" verdicts (0 when there were none).
    pub fn fake_share(&self) -> f64 {
        if self.verdicts() <= 0 {
            0.0
        } else {
            self.fake as f64 / self.verdicts() as f64
        }
    }

    /// The 5xx share (0 when there were no requests).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// The 99th-percentile latency in seconds.
    pub fn p99(&self) -> Option<f64> {
        quantile(0.99, &self.buckets)
    }
}

/// The canary's window: the increase of every counter from `baseline` to `current`, pod by pod.
pub fn window(baseline: &MetricsSnapshot, current: &MetricsSnapshot) -> Window {
    increase(&baseline.pods, &current.pods)
}

/// The stable pods' window, the reference for the canary's fake share and, through its requests
/// and errors, for telling a shared outage from a failing canary ([`shared_outage`]). It has no
/// latency buckets: stable pods' histograms are not kept in status.
///
/// Stable pods exist throughout a canary rollout, so a baseline without any was stored before
/// the operator scraped them (an upgrade mid-step); counting their whole lifetime would compare
/// unlike windows, so such a window is empty and the shares are not compared.
pub fn stable_window(baseline: &MetricsSnapshot, current: &MetricsSnapshot) -> Window {
    if baseline.stable.is_empty() {
        return Window::default();
    }
    increase(&baseline.stable, &current.stable)
}

/// The increase from `baseline` to `current`, pod by pod, summed.
fn increase(baseline: &[PodCounters], current: &[PodCounters]) -> Window {
    let mut total = Window::default();
    let mut buckets: BTreeMap<String, i64> = BTreeMap::new();
    for now in current {
        let before = baseline.iter().find(|p| p.pod == now.pod);
        let delta = match before {
            Some(b) if !is_reset(b, now) => subtract(now, b),
            _ => now.clone(),
        };
        total.requests += delta.requests;
        total.errors += delta.errors;
        total.fake += delta.fake;
        total.real += delta.real;
        for b in delta.latency_buckets {
            *buckets.entry(b.le).or_default() += b.count;
        }
    }
    let mut sorted: Vec<(f64, i64)> = buckets.iter().map(|(le, c)| (bound(le), *c)).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    total.buckets = sorted;
    total
}

/// A counter that went down, or a restart count that went up, means the pod's process restarted
/// (and may have counted past its baseline again since).
fn is_reset(before: &PodCounters, now: &PodCounters) -> bool {
    restarts_between(before, now) > 0
        || now.requests < before.requests
        || now.errors < before.errors
        || now.fake < before.fake
        || now.real < before.real
        || before.latency_buckets.iter().any(|b| {
            now.latency_buckets
                .iter()
                .find(|n| n.le == b.le)
                .is_some_and(|n| n.count < b.count)
        })
}

fn subtract(now: &PodCounters, before: &PodCounters) -> PodCounters {
    PodCounters {
        pod: now.pod.clone(),
        requests: now.requests - before.requests,
        errors: now.errors - before.errors,
        latency_buckets: now
            .latency_buckets
            .iter()
            .map(|n| BucketCount {
                le: n.le.clone(),
                count: n.count
                    - before
                        .latency_buckets
                        .iter()
                        .find(|b| b.le == n.le)
                        .map_or(0, |b| b.count),
            })
            .collect(),
        fake: now.fake - before.fake,
        real: now.real - before.real,
        restarts: now.restarts,
    }
}

/// How often a pod's containers restarted between two scrapes; 0 when either scrape did not
/// record it (a baseline stored by an older operator).
fn restarts_between(before: &PodCounters, now: &PodCounters) -> i64 {
    match (before.restarts, now.restarts) {
        (Some(b), Some(n)) => (n - b).max(0),
        _ => 0,
    }
}

/// Why the canary's pods cannot be judged by their counters, if they cannot: a pod that
/// restarted during the window (its counters started again from zero, hiding what it failed
/// before), a pod not ready at the closing scrape (not scraped at all), or a pod replaced by
/// another since the baseline. Any of these fails the step, before the error rate is looked at.
pub fn unhealthy_canary_pods(
    baseline: &MetricsSnapshot,
    current: &MetricsSnapshot,
) -> Option<String> {
    restarted_pod(baseline, current)
        .or_else(|| unready_pods(current))
        .or_else(|| replaced_pod(baseline, current))
}

/// The first canary pod whose restart count grew since the baseline.
fn restarted_pod(baseline: &MetricsSnapshot, current: &MetricsSnapshot) -> Option<String> {
    current.pods.iter().find_map(|now| {
        let before = baseline.pods.iter().find(|b| b.pod == now.pod)?;
        let n = restarts_between(before, now);
        (n > 0).then(|| {
            format!(
                "canary pod {} restarted {n} {} during the step",
                now.pod,
                if n == 1 { "time" } else { "times" }
            )
        })
    })
}

/// The canary pods that exist but were not ready at the closing scrape.
fn unready_pods(current: &MetricsSnapshot) -> Option<String> {
    let unready = current.unready_pods;
    let total = unready + i64::try_from(current.pods.len()).unwrap_or(i64::MAX);
    (unready > 0)
        .then(|| format!("{unready} of {total} canary pods not ready at the end of the step"))
}

/// A canary pod of the baseline that is gone while a pod absent from the baseline took its
/// place: the replacement's counters cover only part of the window, and its predecessor's end
/// is unknown. A pod gone without a newcomer (the canary scaled down) is not a replacement.
fn replaced_pod(baseline: &MetricsSnapshot, current: &MetricsSnapshot) -> Option<String> {
    let has = |pods: &[PodCounters], name: &str| pods.iter().any(|p| p.pod == name);
    let gone = baseline.pods.iter().find(|b| !has(&current.pods, &b.pod))?;
    let new = current.pods.iter().find(|n| !has(&baseline.pods, &n.pod))?;
    Some(format!(
        "canary pod {} was replaced by {} during the step",
        gone.pod, new.pod
    ))
}

/// When the canary's error rate exceeds `maxErrorRate` and the stable pods' does too over the
/// same window (each side with at least `minRequests` requests), the errors say nothing about
/// the new version: both sides fail alike, as in an outage of something they share. Returns
/// what was seen (both rates), for the inconclusive window's Event and, should every window of
/// the step end so, for the rollback's reason.
pub fn shared_outage(canary: &Window, stable: &Window, spec: &AnalysisSpec) -> Option<String> {
    let needed = spec.min_requests.max(1);
    let failing = |w: &Window| w.requests >= needed && w.error_rate() > spec.max_error_rate;
    (failing(canary) && failing(stable)).then(|| {
        format!(
            "canary and stable both failing (canary {:.2}%, stable {:.2}% errors)",
            canary.error_rate() * 100.0,
            stable.error_rate() * 100.0
        )
    })
}

/// The `q`-quantile of cumulative buckets, interpolating linearly inside the bucket that holds
/// it (Prometheus' `histogram_quantile`): when it falls in the `+Inf` bucket, the highest finite
/// bound is returned, the most a histogram can say.
pub fn quantile(q: f64, buckets: &[(f64, i64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut prev_bound = 0.0;
    let mut prev_count = 0i64;
    for &(le, count) in buckets {
        if count as f64 >= rank {
            if le.is_infinite() {
                return Some(prev_bound);
            }
            let in_bucket = (count - prev_count) as f64;
            if in_bucket <= 0.0 {
                return Some(le);
            }
            return Some(prev_bound + (le - prev_bound) * (rank - prev_count as f64) / in_bucket);
        }
        if le.is_finite() {
            prev_bound = le;
        }
        prev_count = count;
    }
    Some(prev_bound)
}

/// The outcome of judging one window.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Enough traffic, thresholds held. The text summarises the numbers for events.
    Pass(String),
    /// Enough traffic, a threshold broken; the text says which and by how much.
    Fail(String),
    /// Fewer requests than `minRequests`.
    Insufficient {
        /// Requests seen.
        seen: i64,
        /// Requests needed.
        needed: i64,
    },
}

/// Judges a window against the spec's thresholds.
pub fn judge(w: &Window, spec: &AnalysisSpec) -> Verdict {
    if w.requests < spec.min_requests.max(1) {
        return Verdict::Insufficient {
            seen: w.requests,
            needed: spec.min_requests.max(1),
        };
    }
    let rate = w.error_rate();
    let max_p99 = std::time::Duration::from(spec.max_p99_latency).as_secs_f64();
    let p99 = w.p99();
    let summary = format!(
        "{} requests, error rate {:.2}%, p99 {}",
        w.requests,
        rate * 100.0,
        p99.map_or_else(|| "unknown".to_string(), seconds)
    );
    if rate > spec.max_error_rate {
        return Verdict::Fail(format!(
            "error rate {:.2}% ({} of {} requests) exceeds {:.2}%",
            rate * 100.0,
            w.errors,
            w.requests,
            spec.max_error_rate * 100.0
        ));
    }
    if let Some(p) = p99.filter(|p| *p > max_p99) {
        return Verdict::Fail(format!(
            "p99 latency {} exceeds {}",
            seconds(p),
            seconds(max_p99)
        ));
    }
    Verdict::Pass(summary)
}

/// The outcome of comparing the canary's fake share with stable's.
#[derive(Clone, Debug, PartialEq)]
pub enum ShareVerdict {
    /// Compared, and within the tolerance (or not clearly beyond it); the text gives both shares.
    Pass(String),
    /// Clearly beyond the tolerance; the text gives both shares, both counts, the tolerance and
    /// the confidence.
    Fail(String),
    /// Too few verdicts on a side to compare; the text gives the counts. Not a failure and not a
    /// reason to wait: error rate and latency already decide whether the step saw enough traffic.
    NotCompared(String),
}

/// Compares the canary's share of "fake" verdicts with stable's over the same window.
pub fn judge_fake_share(canary: &Window, stable: &Window, spec: &FakeShareSpec) -> ShareVerdict {
    let (n_c, n_s) = (canary.verdicts(), stable.verdicts());
    let needed = spec.min_verdicts.max(1);
    if n_c < needed || n_s < needed {
        return ShareVerdict::NotCompared(format!(
            "fake share not compared: canary {n_c}, stable {n_s} verdicts, {needed} needed each"
        ));
    }
    let (p_c, p_s) = (canary.fake_share(), stable.fake_share());
    let confidence = spec.confidence.clamp(0.5, 0.9999);
    let z = z_for_confidence(confidence);
    if fake_share_differs((p_c, n_c), (p_s, n_s), spec.max_difference, z) {
        return ShareVerdict::Fail(format!(
            "canary called {} of {n_c} clips fake, stable {} of {n_s}: the difference exceeds {} \
             points at {}% confidence",
            percent(p_c),
            percent(p_s),
            number(spec.max_difference * 100.0),
            number(confidence * 100.0),
        ));
    }
    ShareVerdict::Pass(format!(
        "fake share {} vs stable {}",
        percent(p_c),
        percent(p_s)
    ))
}

/// Whether fake shares `(p, n)` of canary and stable differ by more than `tolerance` with
/// confidence quantile `z`: `(|p_c − p_s| − tolerance) / SE > z`, with the unpooled standard
/// error `SE = sqrt(p_c(1 − p_c)/n_c + p_s(1 − p_s)/n_s)`.
///
/// Testing against the tolerance rather than against zero lets users accept the drift a new
/// model is expected to have, and the standard error keeps small samples from failing a good
/// canary by chance. With SE = 0 (each share 0 or 1) the difference is exact and is compared
/// with the tolerance directly.
pub fn fake_share_differs(canary: (f64, i64), stable: (f64, i64), tolerance: f64, z: f64) -> bool {
    let ((p_c, n_c), (p_s, n_s)) = (canary, stable);
    if n_c <= 0 || n_s <= 0 {
        return false;
    }
    let diff = (p_c - p_s).abs();
    let se = (p_c * (1.0 - p_c) / n_c as f64 + p_s * (1.0 - p_s) / n_s as f64).sqrt();
    if se <= 0.0 {
        return diff > tolerance;
    }
    (diff - tolerance) / se > z
}

/// The two-sided standard-normal quantile of `confidence`, `Φ⁻¹(1 − (1 − confidence)/2)`: how
/// many standard errors an excess must reach to be that sure of it (0.99 → 2.5758).
pub fn z_for_confidence(confidence: f64) -> f64 {
    normal_quantile(1.0 - (1.0 - confidence) / 2.0)
}

/// The standard-normal quantile `Φ⁻¹(p)` for `p` in (0, 1), by bisection on [`normal_cdf`].
///
/// The operator needs it once per judged step for a handful of confidences, so a few dozen CDF
/// evaluations beat carrying a statistics crate; 100 halvings of [-40, 40] leave no error beyond
/// the CDF's own. `p` at or beyond 0 or 1 gives the interval's end (±40).
pub fn normal_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-40.0_f64, 40.0_f64);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if normal_cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// The standard-normal CDF `Φ(x) = 1 − erfc(x/√2)/2` (mirrored for negative `x`), with
/// absolute error below 1e-7: [`erfc`]'s relative error (< 1.2e-7) is applied to a value that is
/// at most 1 here, then halved.
pub fn normal_cdf(x: f64) -> f64 {
    let tail = erfc(x.abs() / std::f64::consts::SQRT_2) / 2.0;
    if x >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The complementary error function for `x ≥ 0`, by the Chebyshev fit of Numerical Recipes
/// (`erfcc`, fractional error below 1.2e-7 everywhere).
fn erfc(x: f64) -> f64 {
    const C: [f64; 10] = [
        -1.265_512_23,
        1.000_023_68,
        0.374_091_96,
        0.096_784_18,
        -0.186_288_06,
        0.278_868_07,
        -1.135_203_98,
        1.488_515_87,
        -0.822_152_23,
        0.170_872_77,
    ];
    let t = 1.0 / (1.0 + 0.5 * x);
    let poly = C.iter().rev().fold(0.0, |acc, c| c + t * acc);
    t * (-x * x + poly).exp()
}

/// A share as a whole percentage, for messages: `0.306` → `31%`.
fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// A number with at most two decimals and no trailing zeros: `20` → `20`, `99.9` → `99.9`.
fn number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else {
        format!("{s:.2}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scrape in exactly the server's format (the prometheus crate's text encoder).
    const SCRAPE: &str = r#"# HELP auralguard_http_request_duration_seconds HTTP request latency by route.
# TYPE auralguard_http_request_duration_seconds histogram
auralguard_http_request_duration_seconds_bucket{route="/predict",le="0.005"} 0
auralguard_http_request_duration_seconds_bucket{route="/predict",le="0.01"} 0
auralguard_http_request_duration_seconds_bucket{route="/predict",le="0.025"} 0
auralguard_http_request_duration_seconds_bucket{route="/predict",le="0.05"} 0
auralguard_http_request_duration_seconds_bucket{route="/predict",le="0.1"} 40
auralguard_http_request_duration_seconds_bucket{route="/predict",le="0.25"} 90
auralguard_http_request_duration_seconds_bucket{route="/predict",le="0.5"} 99
auralguard_http_request_duration_seconds_bucket{route="/predict",le="1"} 100
auralguard_http_request_duration_seconds_bucket{route="/predict",le="2.5"} 100
auralguard_http_request_duration_seconds_bucket{route="/predict",le="5"} 100
auralguard_http_request_duration_seconds_bucket{route="/predict",le="10"} 100
auralguard_http_request_duration_seconds_bucket{route="/predict",le="30"} 100
auralguard_http_request_duration_seconds_bucket{route="/predict",le="60"} 100
auralguard_http_request_duration_seconds_bucket{route="/predict",le="+Inf"} 100
auralguard_http_request_duration_seconds_sum{route="/predict"} 14.2
auralguard_http_request_duration_seconds_count{route="/predict"} 100
auralguard_http_request_duration_seconds_bucket{route="/ready",le="0.005"} 500
auralguard_http_request_duration_seconds_bucket{route="/ready",le="+Inf"} 500
# HELP auralguard_http_requests_total HTTP requests by route and status.
# TYPE auralguard_http_requests_total counter
auralguard_http_requests_total{route="/predict",status="200"} 95
auralguard_http_requests_total{route="/predict",status="400"} 2
auralguard_http_requests_total{route="/predict",status="503"} 3
auralguard_http_requests_total{route="/ready",status="200"} 500
# HELP auralguard_in_flight_requests Prediction requests being judged now.
# TYPE auralguard_in_flight_requests gauge
auralguard_in_flight_requests 0
auralguard_model_info{architecture="cnn",name="demo \"quoted\"",version="3"} 1
# HELP auralguard_verdicts_total Verdicts by predicted label.
# TYPE auralguard_verdicts_total counter
auralguard_verdicts_total{label="fake"} 31
auralguard_verdicts_total{label="real"} 64
"#;

    fn routes() -> Vec<String> {
        AnalysisSpec::default().routes
    }

    #[test]
    fn parses_the_servers_exposition() {
        let samples = parse_exposition(SCRAPE).unwrap();
        assert_eq!(samples.len(), 26);
        let info = samples
            .iter()
            .find(|s| s.name == "auralguard_model_info")
            .unwrap();
        assert_eq!(info.label("name"), Some("demo \"quoted\""));
        assert_eq!(info.value, 1.0);
        let inf = samples
            .iter()
            .find(|s| s.label("le") == Some("+Inf"))
            .unwrap();
        assert_eq!(inf.value, 100.0);
        let bare = samples
            .iter()
            .find(|s| s.name == "auralguard_in_flight_requests")
            .unwrap();
        assert!(bare.labels.is_empty());
    }

    #[test]
    fn parses_timestamps_escapes_and_special_values() {
        let s = parse_exposition("m{a=\"x\\\\y\\nz\",b=\"\"} NaN 1700000000000\nn -Inf\n").unwrap();
        assert_eq!(s[0].label("a"), Some("x\\y\nz"));
        assert_eq!(s[0].label("b"), Some(""));
        assert!(s[0].value.is_nan());
        assert_eq!(s[1].value, f64::NEG_INFINITY);
    }

    #[test]
    fn rejects_garbage_with_the_line_number() {
        let err = parse_exposition("ok 1\nbroken{route=\"x} 1\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(parse_exposition("m{a=\"1\"}\n").is_err());
        assert!(parse_exposition("m one\n").is_err());
    }

    #[test]
    fn pod_counters_count_only_analysed_routes_and_5xx() {
        let c = pod_counters("p", SCRAPE, &routes()).unwrap();
        assert_eq!(c.requests, 100);
        assert_eq!(c.errors, 3);
        assert_eq!(c.latency_buckets.len(), 14);
        assert_eq!(c.latency_buckets[0].le, "0.005");
        assert_eq!(c.latency_buckets[13].le, "+Inf");
        assert_eq!(c.latency_buckets[13].count, 100);
    }

    #[test]
    fn p99_interpolates_like_histogram_quantile() {
        let c = pod_counters("p", SCRAPE, &routes()).unwrap();
        let w = window(
            &MetricsSnapshot::default(),
            &MetricsSnapshot {
                pods: vec![c],
                ..MetricsSnapshot::default()
            },
        );
        // Rank 99 of 100 is the 9th of 9 observations in (0.25, 0.5]: exactly 0.5.
        assert!((w.p99().unwrap() - 0.5).abs() < 1e-9);
        // Rank 0.99*10 = 9.9 in a bucket (0.1, 0.2] holding observations 5..=10.
        let b = [(0.1, 5), (0.2, 10), (f64::INFINITY, 10)];
        assert!((quantile(0.99, &b).unwrap() - (0.1 + 0.1 * 4.9 / 5.0)).abs() < 1e-9);
        // In the +Inf bucket: the highest finite bound.
        assert_eq!(quantile(0.99, &[(1.0, 1), (f64::INFINITY, 10)]), Some(1.0));
        assert_eq!(quantile(0.99, &[(1.0, 0), (f64::INFINITY, 0)]), None);
        assert_eq!(quantile(0.99, &[]), None);
    }

    fn counters(pod: &str, requests: i64, errors: i64, fast: i64) -> PodCounters {
        PodCounters {
            pod: pod.into(),
            requests,
            errors,
            latency_buckets: vec![
                BucketCount {
                    le: "0.5".into(),
                    count: fast,
                },
                BucketCount {
                    le: "+Inf".into(),
                    count: requests,
                },
            ],
            ..PodCounters::default()
        }
    }

    #[test]
    fn window_is_the_delta_between_scrapes_per_pod() {
        let base = MetricsSnapshot {
            pods: vec![counters("a", 100, 1, 100), counters("gone", 50, 50, 0)],
            ..MetricsSnapshot::default()
        };
        let now = MetricsSnapshot {
            pods: vec![
                counters("a", 130, 4, 125), // +30 requests, +3 errors
                counters("new", 10, 0, 10), // appeared: counts fully
            ],
            ..MetricsSnapshot::default()
        };
        let w = window(&base, &now);
        assert_eq!(w.requests, 40);
        assert_eq!(w.errors, 3);
        assert_eq!(w.buckets, vec![(0.5, 35), (f64::INFINITY, 40)]);
        assert!((w.error_rate() - 0.075).abs() < 1e-12);
    }

    #[test]
    fn a_restarted_pod_counts_from_zero() {
        let base = MetricsSnapshot {
            pods: vec![counters("a", 100, 0, 100)],
            ..MetricsSnapshot::default()
        };
        let now = MetricsSnapshot {
            pods: vec![counters("a", 7, 1, 7)],
            ..MetricsSnapshot::default()
        };
        let w = window(&base, &now);
        assert_eq!((w.requests, w.errors), (7, 1));
    }

    fn spec() -> AnalysisSpec {
        AnalysisSpec {
            max_error_rate: 0.05,
            max_p99_latency: std::time::Duration::from_secs(1).into(),
            min_requests: 20,
            ..AnalysisSpec::default()
        }
    }

    #[test]
    fn judge_applies_min_requests_error_rate_and_p99() {
        let w = |requests, errors, fast| Window {
            requests,
            errors,
            buckets: vec![(0.5, fast), (2.0, requests), (f64::INFINITY, requests)],
            ..Window::default()
        };
        assert_eq!(
            judge(&w(19, 0, 19), &spec()),
            Verdict::Insufficient {
                seen: 19,
                needed: 20
            }
        );
        assert!(matches!(judge(&w(100, 5, 100), &spec()), Verdict::Pass(_)));
        match judge(&w(100, 6, 100), &spec()) {
            Verdict::Fail(why) => {
                assert_eq!(why, "error rate 6.00% (6 of 100 requests) exceeds 5.00%")
            }
            other => panic!("{other:?}"),
        }
        // 10% of requests took between 0.5 s and 2 s: p99 ≈ 1.85 s.
        match judge(&w(100, 0, 90), &spec()) {
            Verdict::Fail(why) => assert_eq!(why, "p99 latency 1.85s exceeds 1.00s"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn judge_on_real_scrapes() {
        let base = pod_counters("p", SCRAPE, &routes()).unwrap();
        let later = SCRAPE
            .replace("status=\"200\"} 95", "status=\"200\"} 135")
            .replace("le=\"+Inf\"} 100", "le=\"+Inf\"} 140")
            .replace("le=\"60\"} 100", "le=\"60\"} 140")
            .replace("le=\"30\"} 100", "le=\"30\"} 140")
            .replace("le=\"10\"} 100", "le=\"10\"} 140")
            .replace("le=\"5\"} 100", "le=\"5\"} 140")
            .replace("le=\"2.5\"} 100", "le=\"2.5\"} 140")
            .replace("le=\"1\"} 100", "le=\"1\"} 140")
            .replace("le=\"0.5\"} 99", "le=\"0.5\"} 139")
            .replace("le=\"0.25\"} 90", "le=\"0.25\"} 130");
        let now = pod_counters("p", &later, &routes()).unwrap();
        let w = window(
            &MetricsSnapshot {
                pods: vec![base],
                ..MetricsSnapshot::default()
            },
            &MetricsSnapshot {
                pods: vec![now],
                ..MetricsSnapshot::default()
            },
        );
        assert_eq!((w.requests, w.errors), (40, 0));
        assert!(matches!(judge(&w, &spec()), Verdict::Pass(_)));
    }

    #[test]
    fn pod_counters_count_verdicts_whatever_the_routes() {
        let c = pod_counters("p", SCRAPE, &routes()).unwrap();
        assert_eq!((c.fake, c.real), (31, 64));
        // The verdict counter has no route label: it counts even with no route analysed.
        let c = pod_counters("p", SCRAPE, &[]).unwrap();
        assert_eq!((c.requests, c.fake, c.real), (0, 31, 64));
        // A server that has judged nothing yet exports no verdict series at all.
        let c = pod_counters("p", "auralguard_in_flight_requests 0\n", &routes()).unwrap();
        assert_eq!((c.fake, c.real), (0, 0));
    }

    #[test]
    fn normal_cdf_and_quantiles_match_tables() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.0) - 0.841_344_746).abs() < 1e-7);
        assert!((normal_cdf(-1.0) - 0.158_655_254).abs() < 1e-7);
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-7);
        assert!((normal_cdf(-3.090_232) - 0.001).abs() < 1e-7);
        for (confidence, z) in [
            (0.95, 1.959_964),
            (0.99, 2.575_829),
            (0.999, 3.290_527),
            (0.5, 0.674_490),
            (0.9999, 3.890_592),
        ] {
            let got = z_for_confidence(confidence);
            assert!((got - z).abs() < 1e-5, "{confidence}: {got} vs {z}");
        }
        assert!((normal_quantile(0.025) + 1.959_964).abs() < 1e-5);
        assert!(normal_quantile(0.5).abs() < 1e-6);
    }

    fn side(fake: i64, real: i64) -> Window {
        Window {
            fake,
            real,
            ..Window::default()
        }
    }

    fn share_spec() -> FakeShareSpec {
        FakeShareSpec::default()
    }

    #[test]
    fn a_clearly_different_fake_share_fails_with_both_shares_and_counts() {
        match judge_fake_share(&side(388, 12), &side(114, 266), &share_spec()) {
            ShareVerdict::Fail(why) => assert_eq!(
                why,
                "canary called 97% of 400 clips fake, stable 30% of 380: the difference exceeds \
                 20 points at 99% confidence"
            ),
            other => panic!("{other:?}"),
        }
        // The other direction (a model that calls everything real) fails the same way.
        assert!(matches!(
            judge_fake_share(&side(4, 396), &side(114, 266), &share_spec()),
            ShareVerdict::Fail(_)
        ));
        // Tolerance and confidence as configured appear in the reason.
        let spec = FakeShareSpec {
            max_difference: 0.125,
            confidence: 0.999,
            ..share_spec()
        };
        match judge_fake_share(&side(388, 12), &side(114, 266), &spec) {
            ShareVerdict::Fail(why) => {
                assert!(
                    why.ends_with("exceeds 12.5 points at 99.9% confidence"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_small_difference_passes_and_names_both_shares() {
        assert_eq!(
            judge_fake_share(&side(124, 276), &side(106, 274), &share_spec()),
            ShareVerdict::Pass("fake share 31% vs stable 28%".into())
        );
    }

    #[test]
    fn a_difference_beyond_the_tolerance_needs_the_confidence_to_fail() {
        // 60 % vs 30 %: 10 points past the tolerance, but on 60 canary verdicts that is only
        // ~1.5 standard errors, short of 2.58 at 99 %.
        let (canary, stable) = (side(36, 24), side(90, 210));
        assert!(matches!(
            judge_fake_share(&canary, &stable, &share_spec()),
            ShareVerdict::Pass(_)
        ));
        // At 80 % confidence (z ≈ 1.28) the same numbers are enough.
        let lax = FakeShareSpec {
            confidence: 0.8,
            ..share_spec()
        };
        assert!(matches!(
            judge_fake_share(&canary, &stable, &lax),
            ShareVerdict::Fail(_)
        ));
        // maxDifference 1 disables the check whatever the shares.
        let off = FakeShareSpec {
            max_difference: 1.0,
            ..share_spec()
        };
        assert!(matches!(
            judge_fake_share(&side(1000, 0), &side(0, 1000), &off),
            ShareVerdict::Pass(_)
        ));
    }

    #[test]
    fn too_few_verdicts_on_either_side_are_not_compared() {
        let expect = |canary: Window, stable: Window, text: &str| {
            assert_eq!(
                judge_fake_share(&canary, &stable, &share_spec()),
                ShareVerdict::NotCompared(text.into())
            );
        };
        expect(
            side(12, 0),
            side(24, 56),
            "fake share not compared: canary 12, stable 80 verdicts, 50 needed each",
        );
        expect(
            side(400, 0),
            side(10, 39),
            "fake share not compared: canary 400, stable 49 verdicts, 50 needed each",
        );
        // minVerdicts 0 still needs one verdict a side to have a share at all.
        let spec = FakeShareSpec {
            min_verdicts: 0,
            ..share_spec()
        };
        assert!(matches!(
            judge_fake_share(&side(0, 0), &side(5, 5), &spec),
            ShareVerdict::NotCompared(_)
        ));
    }

    #[test]
    fn with_no_standard_error_the_exact_difference_decides() {
        let z = z_for_confidence(0.99);
        // Every verdict fake on one side, none on the other: SE = 0, difference 1.
        assert!(fake_share_differs((1.0, 60), (0.0, 60), 0.2, z));
        assert!(!fake_share_differs((1.0, 60), (0.0, 60), 1.0, z));
        // Both all fake (or all real): no difference.
        assert!(!fake_share_differs((1.0, 60), (1.0, 500), 0.0, z));
        assert!(!fake_share_differs((0.0, 60), (0.0, 500), 0.0, z));
        // Through judge_fake_share too.
        assert!(matches!(
            judge_fake_share(&side(60, 0), &side(0, 60), &share_spec()),
            ShareVerdict::Fail(_)
        ));
        assert!(matches!(
            judge_fake_share(&side(60, 0), &side(500, 0), &share_spec()),
            ShareVerdict::Pass(_)
        ));
    }

    #[test]
    fn the_decision_is_the_tolerance_z_test() {
        let z = z_for_confidence(0.99);
        // 50 % vs 20 % on 1000 each: SE ≈ 0.0200, (0.3 − 0.2)/SE ≈ 5.0 > 2.58.
        assert!(fake_share_differs((0.5, 1000), (0.2, 1000), 0.2, z));
        // 25 % vs 20 %: below the tolerance, however many verdicts.
        assert!(!fake_share_differs(
            (0.25, 1_000_000),
            (0.2, 1_000_000),
            0.2,
            z
        ));
        // 45 % vs 20 % on 100 each: excess 0.05, SE ≈ 0.0640, 0.78 < 2.58.
        assert!(!fake_share_differs((0.45, 100), (0.2, 100), 0.2, z));
    }

    fn verdict_counters(pod: &str, fake: i64, real: i64) -> PodCounters {
        PodCounters {
            pod: pod.into(),
            fake,
            real,
            ..PodCounters::default()
        }
    }

    #[test]
    fn stable_window_subtracts_per_pod_and_a_restarted_stable_pod_counts_from_zero() {
        let base = MetricsSnapshot {
            pods: vec![verdict_counters("canary-a", 10, 10)],
            stable: vec![
                verdict_counters("stable-a", 300, 700),
                verdict_counters("stable-b", 500, 500),
            ],
            ..MetricsSnapshot::default()
        };
        let now = MetricsSnapshot {
            pods: vec![verdict_counters("canary-a", 40, 80)],
            stable: vec![
                verdict_counters("stable-a", 330, 770), // +30 fake, +70 real
                verdict_counters("stable-b", 12, 28),   // restarted: counts from zero
            ],
            ..MetricsSnapshot::default()
        };
        let canary = window(&base, &now);
        assert_eq!((canary.fake, canary.real), (30, 70));
        let stable = stable_window(&base, &now);
        assert_eq!((stable.fake, stable.real), (42, 98));
        assert!((stable.fake_share() - 0.3).abs() < 1e-12);
        // Only the real counter went down: still a restart.
        let now = MetricsSnapshot {
            stable: vec![verdict_counters("stable-a", 301, 5)],
            ..now
        };
        assert_eq!(stable_window(&base, &now).verdicts(), 306);
    }

    #[test]
    fn a_baseline_without_stable_pods_compares_nothing() {
        // Stored by an operator that did not scrape stable pods yet.
        let base = MetricsSnapshot {
            pods: vec![verdict_counters("canary-a", 0, 0)],
            ..MetricsSnapshot::default()
        };
        let now = MetricsSnapshot {
            pods: vec![verdict_counters("canary-a", 400, 0)],
            stable: vec![verdict_counters("stable-a", 30_000, 70_000)],
            ..MetricsSnapshot::default()
        };
        let stable = stable_window(&base, &now);
        assert_eq!(stable.verdicts(), 0);
        assert!(matches!(
            judge_fake_share(&window(&base, &now), &stable, &share_spec()),
            ShareVerdict::NotCompared(_)
        ));
    }

    fn canary(pod: &str, requests: i64, restarts: Option<i64>) -> PodCounters {
        PodCounters {
            restarts,
            ..counters(pod, requests, 0, requests)
        }
    }

    fn canary_pods(pods: Vec<PodCounters>, unready_pods: i64) -> MetricsSnapshot {
        MetricsSnapshot {
            pods,
            unready_pods,
            ..MetricsSnapshot::default()
        }
    }

    #[test]
    fn a_canary_pod_that_restarted_is_named_with_its_restarts() {
        let base = canary_pods(
            vec![canary("c-0", 50, Some(1)), canary("c-1", 50, Some(0))],
            0,
        );
        // c-1 crashed twice and has counted past its baseline again since: the counters alone
        // would show nothing.
        let now = canary_pods(
            vec![canary("c-0", 90, Some(1)), canary("c-1", 70, Some(2))],
            0,
        );
        assert_eq!(
            unhealthy_canary_pods(&base, &now).as_deref(),
            Some("canary pod c-1 restarted 2 times during the step")
        );
        // Restarts before the window opened do not count.
        let now = canary_pods(
            vec![canary("c-0", 90, Some(1)), canary("c-1", 70, Some(0))],
            0,
        );
        assert_eq!(unhealthy_canary_pods(&base, &now), None);
        // A baseline stored by an older operator has no restart counts: nothing to compare.
        let old = canary_pods(vec![canary("c-0", 50, None), canary("c-1", 50, None)], 0);
        let now = canary_pods(
            vec![canary("c-0", 90, Some(3)), canary("c-1", 70, Some(3))],
            0,
        );
        assert_eq!(unhealthy_canary_pods(&old, &now), None);
    }

    #[test]
    fn a_restarted_pod_counts_from_zero_even_past_its_baseline() {
        let base = canary_pods(vec![canary("c-0", 50, Some(0))], 0);
        let now = canary_pods(vec![canary("c-0", 70, Some(1))], 0);
        assert_eq!(window(&base, &now).requests, 70, "not 70 - 50");
    }

    #[test]
    fn unready_and_replaced_canary_pods_fail_the_step() {
        let base = canary_pods(
            vec![canary("c-0", 50, Some(0)), canary("c-1", 50, Some(0))],
            0,
        );
        // c-1 is not ready at the closing scrape: not scraped, only counted.
        let now = canary_pods(vec![canary("c-0", 90, Some(0))], 1);
        assert_eq!(
            unhealthy_canary_pods(&base, &now).as_deref(),
            Some("1 of 2 canary pods not ready at the end of the step")
        );
        // c-1 was replaced by c-2.
        let now = canary_pods(
            vec![canary("c-0", 90, Some(0)), canary("c-2", 10, Some(0))],
            0,
        );
        assert_eq!(
            unhealthy_canary_pods(&base, &now).as_deref(),
            Some("canary pod c-1 was replaced by c-2 during the step")
        );
        // Scaled down (gone, nobody new) or up (new, nobody gone): no replacement.
        let now = canary_pods(vec![canary("c-0", 90, Some(0))], 0);
        assert_eq!(unhealthy_canary_pods(&base, &now), None);
        let now = canary_pods(
            vec![
                canary("c-0", 90, Some(0)),
                canary("c-1", 90, Some(0)),
                canary("c-2", 5, Some(0)),
            ],
            0,
        );
        assert_eq!(unhealthy_canary_pods(&base, &now), None);
    }

    fn traffic(requests: i64, errors: i64) -> Window {
        Window {
            requests,
            errors,
            ..Window::default()
        }
    }

    #[test]
    fn a_shared_outage_needs_both_sides_failing_with_enough_requests() {
        let spec = spec(); // 5 % at most, 20 requests at least
        assert_eq!(
            shared_outage(&traffic(100, 30), &traffic(300, 84), &spec).as_deref(),
            Some("canary and stable both failing (canary 30.00%, stable 28.00% errors)")
        );
        // Stable healthy: the canary alone fails.
        assert_eq!(
            shared_outage(&traffic(100, 30), &traffic(300, 15), &spec),
            None
        );
        // Stable failing on too few requests to say so.
        assert_eq!(
            shared_outage(&traffic(100, 30), &traffic(19, 19), &spec),
            None
        );
        // A stable window that could not be measured (old baseline) says nothing.
        assert_eq!(
            shared_outage(&traffic(100, 30), &Window::default(), &spec),
            None
        );
        // The canary within its threshold, or too quiet: nothing to excuse.
        assert_eq!(
            shared_outage(&traffic(100, 5), &traffic(300, 84), &spec),
            None
        );
        assert_eq!(
            shared_outage(&traffic(19, 19), &traffic(300, 84), &spec),
            None
        );
    }

    #[test]
    fn stable_windows_carry_requests_and_errors_but_no_latency() {
        let stable = |requests, errors| PodCounters {
            latency_buckets: Vec::new(),
            ..counters("s-0", requests, errors, requests)
        };
        let base = MetricsSnapshot {
            stable: vec![stable(1000, 10)],
            ..MetricsSnapshot::default()
        };
        let now = MetricsSnapshot {
            stable: vec![stable(1300, 94)],
            ..MetricsSnapshot::default()
        };
        let w = stable_window(&base, &now);
        assert_eq!((w.requests, w.errors), (300, 84));
        assert!(w.buckets.is_empty());
        assert_eq!(w.p99(), None);
    }

    #[test]
    fn old_status_objects_without_verdicts_or_stable_pods_still_parse() {
        let old = r#"{"pods":[{"pod":"a","requests":5,"errors":0,"latencyBuckets":[]}]}"#;
        let parsed: MetricsSnapshot = serde_json::from_str(old).unwrap();
        assert_eq!(parsed.pods[0].requests, 5);
        assert_eq!((parsed.pods[0].fake, parsed.pods[0].real), (0, 0));
        assert!(parsed.stable.is_empty());
        assert_eq!((parsed.pods[0].restarts, parsed.unready_pods), (None, 0));
        let spec: AnalysisSpec = serde_json::from_str("{}").unwrap();
        assert_eq!((spec.failure_limit, spec.inconclusive_limit), (3, 3));
        let state = r#"{"stableModel":"models:/m/1","stableVersion":"1","canaryModel":"models:/m/2",
            "canaryVersion":"2","step":0,"phase":"Analyzing","startedAt":"2030-01-01T00:00:00Z",
            "phaseStartedAt":"2030-01-01T00:00:00Z"}"#;
        let state: auralguard_crds::RolloutState = serde_json::from_str(state).unwrap();
        assert_eq!(
            (
                state.failed_scrapes,
                state.last_scrape_error,
                state.inconclusive_windows
            ),
            (0, None, 0)
        );
        assert_eq!(spec.fake_share, FakeShareSpec::default());
        assert_eq!(
            (
                spec.fake_share.max_difference,
                spec.fake_share.min_verdicts,
                spec.fake_share.confidence
            ),
            (0.2, 50, 0.99)
        );
    }
}
