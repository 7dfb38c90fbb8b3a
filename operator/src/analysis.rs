//! Canary analysis: is the new model version answering well enough?
//!
//! The server exports, per route template and status code, the counter
//! `auralguard_http_requests_total{route,status}` and the latency histogram
//! `auralguard_http_request_duration_seconds{route}` (buckets labelled `le`). The operator scrapes
//! every canary pod's `/metrics` when a step's observation window opens (the *baseline*, kept in
//! status) and again when it closes, and judges only what happened in between:
//!
//! 1. [`parse_exposition`] reads the Prometheus text format.
//! 2. [`pod_counters`] sums one pod's requests, 5xx answers and latency buckets over the analysed
//!    routes (probes and scrapes are not traffic).
//! 3. [`window`] subtracts the baseline pod by pod; a pod that restarted (counters went down) or
//!    appeared since counts from zero, as Prometheus' `increase()` would.
//! 4. [`judge`] turns the window into a [`Verdict`]: too few requests, or the error rate
//!    (5xx share) and the p99 latency (interpolated within histogram buckets, like
//!    `histogram_quantile`) against the spec's thresholds.
//!
//! Everything here is pure; the scraping itself is behind [`crate::scrape::CanaryMetrics`].

use std::collections::BTreeMap;

use auralguard_crds::{AnalysisSpec, BucketCount, MetricsSnapshot, PodCounters};

use crate::{Error, Result};

/// The request counter the server exports.
pub const REQUESTS_METRIC: &str = "auralguard_http_requests_total";
/// The latency histogram's bucket series.
pub const LATENCY_BUCKET_METRIC: &str = "auralguard_http_request_duration_seconds_bucket";

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

/// One pod's counters over the analysed `routes`, from its `/metrics` text.
pub fn pod_counters(pod: &str, text: &str, routes: &[String]) -> Result<PodCounters> {
    let counted = |s: &Sample| {
        s.label("route")
            .is_some_and(|r| routes.iter().any(|x| x == r))
    };
    let mut requests = 0.0;
    let mut errors = 0.0;
    let mut buckets: BTreeMap<String, f64> = BTreeMap::new();
    for s in parse_exposition(text)?.iter().filter(|s| counted(s)) {
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
    })
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

/// What the canary did during one observation window, summed over its pods.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Window {
    /// Requests answered.
    pub requests: i64,
    /// Of which 5xx.
    pub errors: i64,
    /// Cumulative latency buckets `(upper bound in seconds, count)`, ascending.
    pub buckets: Vec<(f64, i64)>,
}

impl Window {
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

/// The increase of every counter from `baseline` to `current`, pod by pod.
pub fn window(baseline: &MetricsSnapshot, current: &MetricsSnapshot) -> Window {
    let mut total = Window::default();
    let mut buckets: BTreeMap<String, i64> = BTreeMap::new();
    for now in &current.pods {
        let before = baseline.pods.iter().find(|p| p.pod == now.pod);
        let delta = match before {
            Some(b) if !is_reset(b, now) => subtract(now, b),
            _ => now.clone(),
        };
        total.requests += delta.requests;
        total.errors += delta.errors;
        for b in delta.latency_buckets {
            *buckets.entry(b.le).or_default() += b.count;
        }
    }
    let mut sorted: Vec<(f64, i64)> = buckets.iter().map(|(le, c)| (bound(le), *c)).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    total.buckets = sorted;
    total
}

/// A counter that went down means the pod's process restarted.
fn is_reset(before: &PodCounters, now: &PodCounters) -> bool {
    now.requests < before.requests
        || now.errors < before.errors
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
    }
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
"#;

    fn routes() -> Vec<String> {
        AnalysisSpec::default().routes
    }

    #[test]
    fn parses_the_servers_exposition() {
        let samples = parse_exposition(SCRAPE).unwrap();
        assert_eq!(samples.len(), 24);
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
            &MetricsSnapshot { pods: vec![c] },
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
        }
    }

    #[test]
    fn window_is_the_delta_between_scrapes_per_pod() {
        let base = MetricsSnapshot {
            pods: vec![counters("a", 100, 1, 100), counters("gone", 50, 50, 0)],
        };
        let now = MetricsSnapshot {
            pods: vec![
                counters("a", 130, 4, 125), // +30 requests, +3 errors
                counters("new", 10, 0, 10), // appeared: counts fully
            ],
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
        };
        let now = MetricsSnapshot {
            pods: vec![counters("a", 7, 1, 7)],
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
            &MetricsSnapshot { pods: vec![base] },
            &MetricsSnapshot { pods: vec![now] },
        );
        assert_eq!((w.requests, w.errors), (40, 0));
        assert!(matches!(judge(&w, &spec()), Verdict::Pass(_)));
    }
}
