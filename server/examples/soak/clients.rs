//! The soak's clients. Each kind runs in its own threads until [`Shared::stop`] is set, and
//! every request it makes ends within a fixed deadline, so stopping is bounded too.
//!
//! - **good**: posts real audio to `/predict` (several formats) back to back, like a busy
//!   integration; every `request_id` of a 200 is an acknowledged prediction that the database
//!   must hold exactly once at the end.
//! - **reader**: what an operator's dashboard polls (`/health`, `/metrics`, `/statistics`,
//!   `/predictions`); the last two read the database, so they see its outages.
//! - **bad**: malformed and hostile requests (corrupt audio, wrong content types, lying lengths,
//!   oversized names and headers, broken OIP tensors); they must be refused with a 4xx, or a 503
//!   under load, never a 500.
//! - **slow**: trickled headers, trickled and stalled uploads, and a reader that leaves its
//!   answer unread for a while; the first three must be cut off by the server's deadlines.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::http::{self, Answer};

/// One audio file the good clients upload.
pub struct Clip {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Loads the clips that exist among `paths` (relative to `root`).
pub fn clips(root: &Path, paths: &[&str]) -> Vec<Clip> {
    paths
        .iter()
        .filter_map(|p| {
            let bytes = std::fs::read(root.join(p)).ok()?;
            let name = Path::new(p).file_name()?.to_string_lossy().into_owned();
            Some(Clip { name, bytes })
        })
        .collect()
}

/// What all clients share: the stop flag and everything they record.
pub struct Shared {
    pub stop: AtomicBool,
    /// When the load started (the RSS and per-minute clocks).
    pub started: Instant,
    pub addr: SocketAddr,
    /// `(client kind[:case], outcome)` → count; an outcome is a status, `closed` or `error: …`.
    pub tally: Mutex<BTreeMap<(String, String), u64>>,
    /// Request ids of every 200 from `/predict`, whoever got it.
    pub acked: Mutex<Vec<String>>,
    /// Good clients' 200s per minute of the run.
    pub acked_per_minute: Mutex<Vec<u64>>,
    /// Good clients' latencies of 200s, seconds.
    pub latencies: Mutex<Vec<f64>>,
    /// First answer body seen for each surprising outcome (5xx, transport error), for the report.
    pub samples: Mutex<BTreeMap<(String, String), String>>,
    /// Things that must never happen on the client side (a 200 without a request id, …).
    pub anomalies: Mutex<Vec<String>>,
    /// Most records `/health` ever showed waiting in the spool: proof the faults reached it.
    pub max_spooled: AtomicU64,
    /// `/health` answers with the store `degraded`.
    pub degraded_seen: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            stop: AtomicBool::new(false),
            started: Instant::now(),
            addr,
            tally: Mutex::default(),
            acked: Mutex::default(),
            acked_per_minute: Mutex::default(),
            latencies: Mutex::default(),
            samples: Mutex::default(),
            anomalies: Mutex::default(),
            max_spooled: AtomicU64::new(0),
            degraded_seen: AtomicU64::new(0),
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Counts one outcome; keeps the first body of a 5xx or transport error.
    fn count(&self, who: &str, outcome: &str, body: &[u8]) {
        *lock(&self.tally)
            .entry((who.to_string(), outcome.to_string()))
            .or_default() += 1;
        let notable = outcome.starts_with('5') || outcome.starts_with("error");
        if notable {
            let text: String = String::from_utf8_lossy(body).chars().take(300).collect();
            lock(&self.samples)
                .entry((who.to_string(), outcome.to_string()))
                .or_insert(text);
        }
    }

    fn ack(&self, id: String, good: bool) {
        lock(&self.acked).push(id);
        if good {
            let minute = (self.started.elapsed().as_secs() / 60) as usize;
            let mut per = lock(&self.acked_per_minute);
            if per.len() <= minute {
                per.resize(minute + 1, 0);
            }
            per[minute] += 1;
        }
    }

    fn anomaly(&self, what: String) {
        let mut a = lock(&self.anomalies);
        if a.len() < 100 {
            a.push(what);
        }
    }

    /// Records a raw answer of a `/predict` request (a 200 is an acknowledgement).
    fn predict_answer(&self, who: &str, a: &Answer) {
        if a.status == Some(200) {
            match a.request_id() {
                Some(id) => self.ack(id, false),
                None => self.anomaly(format!("{who}: 200 from /predict without a request_id")),
            }
        }
        self.count(who, &a.key(), &a.body);
    }

    /// Sleeps `d` in short steps; false if the load was stopped meanwhile.
    pub fn pause(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.stopped() {
                return false;
            }
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
        }
        !self.stopped()
    }
}

/// Longest a good or reader request may take: above the server's 120 s request budget, so a
/// slow answer shows up as the server's 504 rather than as a client timeout.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(150);

/// A good client: uploads clip after clip (starting at clip `index`) on one kept-alive
/// connection until stopped.
pub fn good(shared: &Shared, clips: &[Clip], index: usize) {
    let mt = http::multipart_type();
    let requests: Vec<Vec<u8>> = clips
        .iter()
        .map(|c| {
            let body = http::multipart("audio", c.name.as_bytes(), &c.bytes);
            http::request_on("POST", "/predict", &[("Content-Type", &mt)], &body, true)
        })
        .collect();
    let mut conn = http::KeepAlive::default();
    let mut n = index;
    while !shared.stopped() {
        let i = n % clips.len();
        n += 1;
        let t0 = Instant::now();
        let answer = conn.send(shared.addr, &requests[i], t0 + CLIENT_TIMEOUT);
        if answer.status == Some(200) {
            match answer.request_id() {
                Some(id) => {
                    shared.ack(id, true);
                    lock(&shared.latencies).push(t0.elapsed().as_secs_f64());
                }
                None => shared.anomaly(format!(
                    "good: 200 without a request_id for {}",
                    clips[i].name
                )),
            }
        }
        let outcome = answer.key();
        shared.count("good", &outcome, &answer.body);
        if outcome != "200" {
            // Overloaded or failing: back off as Retry-After would ask, never spin.
            shared.pause(Duration::from_millis(250));
        }
    }
}

/// A dashboard: polls the operational and database-backed read routes, one a second. Not
/// faster: `/statistics` aggregates the whole collection in the database, which shares the
/// soak machine's cores with the server, so a tight poll would measure the database instead.
pub fn reader(shared: &Shared) {
    let paths = [
        "/health",
        "/statistics",
        "/metrics",
        "/predictions?limit=20",
    ];
    let mut conn = http::KeepAlive::default();
    let mut n = 0;
    while shared.pause(Duration::from_secs(1)) {
        let path = paths[n % paths.len()];
        n += 1;
        let who = format!("reader:{}", path.split('?').next().unwrap_or(path));
        let req = http::request_on("GET", path, &[], b"", true);
        let answer = conn.send(shared.addr, &req, Instant::now() + CLIENT_TIMEOUT);
        if path == "/health" {
            if let Some(store) = answer.json().and_then(|h| h.get("store").cloned()) {
                let spooled = store["spooled"].as_u64().unwrap_or(0);
                shared.max_spooled.fetch_max(spooled, Ordering::Relaxed);
                if store["state"] == "degraded" {
                    shared.degraded_seen.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        shared.count(&who, &answer.key(), &answer.body);
    }
}

/// One malformed or hostile request, built once.
pub struct BadCase {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    /// Sent to `/predict`: a 200 would be an acknowledgement like any other.
    pub predict: bool,
}

/// Deterministic noise (xorshift64*): corrupt audio that is the same from run to run.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// The bad requests, cycled through by the bad clients. `wav` is a valid WAV file (for the
/// truncated and mislabelled variants), `model` the served model's name (OIP routes).
pub fn bad_cases(wav: &[u8], model: &str) -> Vec<BadCase> {
    use http::{multipart, multipart_type, request};
    let mt = multipart_type();
    let form = |name: &[u8], data: &[u8]| {
        request(
            "POST",
            "/predict",
            &[("Content-Type", &mt)],
            &multipart("audio", name, data),
        )
    };
    let infer = format!("/v2/models/{model}/infer");
    let oip = |body: &str| {
        request(
            "POST",
            &infer,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };
    // A WAV header that promises 0 Hz, 0 channels and 4 GiB of data.
    let mut lying_wav = wav[..44.min(wav.len())].to_vec();
    if lying_wav.len() == 44 {
        lying_wav[22..24].copy_from_slice(&0u16.to_le_bytes());
        lying_wav[24..28].copy_from_slice(&0u32.to_le_bytes());
        lying_wav[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    }
    lying_wav.extend_from_slice(&noise(4096, 7));
    let truncated = &wav[..wav.len().min(44 + 800)];
    let long_name = "n".repeat(4096) + ".wav";
    let sine: Vec<String> = (0..16_000)
        .map(|i| format!("{:.4}", (i as f32 * 0.05).sin() * 0.3))
        .collect();
    let huge_id = "i".repeat(10_000);
    let mut cases = vec![
        BadCase {
            name: "corrupt_audio",
            bytes: form(b"noise.wav", &noise(64 << 10, 1)),
            predict: true,
        },
        BadCase {
            name: "corrupt_mp3",
            bytes: form(b"noise.mp3", &noise(32 << 10, 2)),
            predict: true,
        },
        BadCase {
            name: "lying_wav_header",
            bytes: form(b"liar.wav", &lying_wav),
            predict: true,
        },
        BadCase {
            name: "truncated_wav",
            bytes: form(b"short.wav", truncated),
            predict: true,
        },
        BadCase {
            name: "empty_audio",
            bytes: form(b"empty.wav", b""),
            predict: true,
        },
        BadCase {
            name: "no_audio_field",
            bytes: request(
                "POST",
                "/predict",
                &[("Content-Type", &mt)],
                &multipart("file", b"x.wav", wav),
            ),
            predict: true,
        },
        BadCase {
            name: "long_name",
            bytes: form(long_name.as_bytes(), wav),
            predict: true,
        },
        BadCase {
            name: "control_char_name",
            bytes: form(b"evil\x1b[31m\r\nFAKE LOG LINE.wav", wav),
            predict: true,
        },
        BadCase {
            name: "long_raw_name",
            bytes: request(
                "POST",
                &format!("/predict?filename={}", "r".repeat(1000)),
                &[("Content-Type", "audio/wav")],
                wav,
            ),
            predict: true,
        },
        BadCase {
            name: "text_plain",
            bytes: request(
                "POST",
                "/predict",
                &[("Content-Type", "text/plain")],
                b"this is not audio",
            ),
            predict: true,
        },
        BadCase {
            name: "json_to_predict",
            bytes: request(
                "POST",
                "/predict",
                &[("Content-Type", "application/json")],
                br#"{"audio":"AAAA"}"#,
            ),
            predict: true,
        },
        BadCase {
            name: "no_content_type",
            bytes: request("POST", "/predict", &[], wav),
            predict: true,
        },
        BadCase {
            name: "broken_multipart",
            bytes: request(
                "POST",
                "/predict",
                &[("Content-Type", &mt)],
                b"--not-the-boundary\r\ngarbage",
            ),
            predict: true,
        },
        BadCase {
            name: "bad_query",
            bytes: request(
                "POST",
                "/predict?include=everything",
                &[("Content-Type", "audio/wav")],
                wav,
            ),
            predict: true,
        },
        BadCase {
            name: "declared_too_large",
            bytes: request(
                "POST",
                "/predict",
                &[
                    ("Content-Type", "audio/wav"),
                    ("Content-Length", "104857600"),
                ],
                b"",
            ),
            predict: true,
        },
        BadCase {
            name: "bad_chunked",
            bytes: request(
                "POST",
                "/predict",
                &[
                    ("Content-Type", "audio/wav"),
                    ("Transfer-Encoding", "chunked"),
                ],
                b"zz\r\nnot hex\r\n",
            ),
            predict: true,
        },
        BadCase {
            name: "oip_bad_json",
            bytes: oip(r#"{"inputs": [{"name": "log_mel", "shape": [1,"#),
            predict: false,
        },
        BadCase {
            name: "oip_overflow_shape",
            bytes: oip(
                r#"{"inputs":[{"name":"log_mel","shape":[9223372036854775807,9223372036854775807,2],"datatype":"FP32","data":[]}]}"#,
            ),
            predict: false,
        },
        BadCase {
            name: "oip_shape_mismatch",
            bytes: oip(
                r#"{"inputs":[{"name":"log_mel","shape":[1,128,469],"datatype":"FP32","data":[1,2,3]}]}"#,
            ),
            predict: false,
        },
        BadCase {
            name: "oip_non_finite",
            bytes: oip(
                r#"{"inputs":[{"name":"waveform","shape":[1,3],"datatype":"FP32","data":[0.1,1e999,0.2]}]}"#,
            ),
            predict: false,
        },
        BadCase {
            name: "oip_wrong_datatype",
            bytes: oip(
                r#"{"inputs":[{"name":"waveform","shape":[1,2],"datatype":"BYTES","data":["a","b"]}]}"#,
            ),
            predict: false,
        },
        BadCase {
            name: "oip_unknown_input",
            bytes: oip(
                r#"{"inputs":[{"name":"pixels","shape":[1,2],"datatype":"FP32","data":[1,2]}]}"#,
            ),
            predict: false,
        },
        BadCase {
            name: "oip_huge_id",
            bytes: oip(&format!(
                r#"{{"id":"{huge_id}","inputs":[{{"name":"waveform","shape":[1,2],"datatype":"FP32","data":[0,0]}}]}}"#
            )),
            predict: false,
        },
        BadCase {
            name: "oip_wrong_model",
            bytes: request(
                "POST",
                "/v2/models/no-such-model/infer",
                &[("Content-Type", "application/json")],
                b"{}",
            ),
            predict: false,
        },
        BadCase {
            name: "garbage_request_line",
            bytes: b"\x16\x03\x01 NOT HTTP AT ALL\r\n\r\n".to_vec(),
            predict: false,
        },
        BadCase {
            name: "huge_header",
            bytes: request("GET", "/health", &[("X-Filler", &"h".repeat(1 << 20))], b""),
            predict: false,
        },
        BadCase {
            name: "unknown_route",
            bytes: request("GET", "/admin/../../etc/passwd", &[], b""),
            predict: false,
        },
        BadCase {
            name: "wrong_method",
            bytes: request("DELETE", "/predict", &[], b""),
            predict: false,
        },
    ];
    // A valid OIP waveform among the bad ones: it must keep working next to them.
    cases.push(BadCase {
        name: "oip_valid_waveform",
        bytes: oip(&format!(
            r#"{{"id":"soak","inputs":[{{"name":"waveform","shape":[1,{}],"datatype":"FP32","data":[{}]}}]}}"#,
            sine.len(),
            sine.join(",")
        )),
        predict: false,
    });
    cases
}

/// A bad client: sends the cases in turn (starting at `index`), ~20 requests a second at most.
pub fn bad(shared: &Shared, cases: &[BadCase], index: usize) {
    let mut n = index;
    while shared.pause(Duration::from_millis(50)) {
        let case = &cases[n % cases.len()];
        n += 1;
        let answer = http::exchange(
            shared.addr,
            &case.bytes,
            Instant::now() + Duration::from_secs(30),
        );
        let who = format!("bad:{}", case.name);
        if case.predict {
            shared.predict_answer(&who, &answer);
        } else {
            shared.count(&who, &answer.key(), &answer.body);
        }
    }
}

/// What a slow client does on one connection.
#[derive(Debug, Clone, Copy)]
enum Slow {
    /// Headers one line a second (slowloris): the header timeout must close it.
    Headers,
    /// A real upload at 2 KiB/s: below the minimum rate, so 408 after the grace period.
    Body,
    /// Half an upload, then silence: 408 at the same deadline.
    Stall,
    /// A full request whose answer is left unread for 15 s (a 200 is an acknowledgement).
    LateReader,
}

/// A slow client: one slow connection after another (kind rotating from `index`), each over in
/// 40 s at most.
pub fn slow(shared: &Shared, wav: &[u8], index: usize) {
    let kinds = [Slow::Headers, Slow::Body, Slow::Stall, Slow::LateReader];
    let body = http::multipart("audio", b"slow.wav", wav);
    let head = format!(
        "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        http::multipart_type(),
        body.len()
    );
    let mut n = index;
    while shared.pause(Duration::from_millis(200)) {
        let kind = kinds[n % kinds.len()];
        n += 1;
        let limit = Duration::from_secs(40);
        let answer = match kind {
            Slow::Headers => {
                let lines: Vec<u8> = (0..60)
                    .flat_map(|i| format!("X-Slow-{i}: 1\r\n").into_bytes())
                    .collect();
                trickle(
                    shared,
                    b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                    &lines,
                    13,
                    Duration::from_secs(1),
                    usize::MAX,
                    limit,
                )
            }
            Slow::Body => trickle(
                shared,
                head.as_bytes(),
                &body,
                1024,
                Duration::from_millis(500),
                usize::MAX,
                limit,
            ),
            Slow::Stall => trickle(
                shared,
                head.as_bytes(),
                &body,
                body.len() / 2,
                Duration::from_millis(500),
                body.len() / 2,
                limit,
            ),
            Slow::LateReader => late_reader(
                shared,
                head.as_bytes(),
                &body,
                Duration::from_secs(15),
                limit,
            ),
        };
        let who = format!("slow:{kind:?}").to_lowercase();
        if matches!(kind, Slow::LateReader) {
            shared.predict_answer(&who, &answer);
        } else {
            shared.count(&who, &answer.key(), &answer.body);
        }
    }
}

/// Writes `head`, then `body` in `piece`-byte pieces `gap` apart, never more than `stop_at`
/// bytes of it; between pieces, watches for the server's answer or close. Over after `limit`.
#[allow(clippy::too_many_arguments)]
fn trickle(
    shared: &Shared,
    head: &[u8],
    body: &[u8],
    piece: usize,
    gap: Duration,
    stop_at: usize,
    limit: Duration,
) -> Answer {
    use std::io::{Read, Write};
    let deadline = Instant::now() + limit;
    let mut s = match send_all(shared, head) {
        Ok(s) => s,
        Err(failed) => return failed,
    };
    let mut sent = 0;
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        let end = (sent + piece).min(body.len()).min(stop_at);
        if end > sent {
            if s.write_all(&body[sent..end]).is_err() {
                // Closed on us mid-write: whatever it answered before is still readable.
                return http::read_answer(&mut s, Instant::now() + Duration::from_secs(5));
            }
            sent = end;
        }
        let _ = s.set_read_timeout(Some(gap));
        match s.read(&mut chunk) {
            Ok(0) => return Answer::default(), // closed without an answer
            Ok(n) => {
                return http::read_answer_after(
                    &mut s,
                    chunk[..n].to_vec(),
                    Instant::now() + Duration::from_secs(5),
                )
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return http::io_failure("read", &e),
        }
    }
    Answer {
        error: Some("never cut off".into()),
        ..Default::default()
    }
}

/// A connection to the server with `bytes` written to it, or the answer saying which step
/// failed.
fn send_all(shared: &Shared, bytes: &[u8]) -> Result<std::net::TcpStream, Answer> {
    use std::io::Write;
    let mut s = http::open(shared.addr)?;
    s.write_all(bytes)
        .map_err(|e| http::io_failure("write", &e))?;
    Ok(s)
}

/// Sends a whole request, leaves the answer unread for `wait`, then reads it.
fn late_reader(
    shared: &Shared,
    head: &[u8],
    body: &[u8],
    wait: Duration,
    limit: Duration,
) -> Answer {
    let deadline = Instant::now() + limit;
    let mut request = head.to_vec();
    request.extend_from_slice(body);
    let mut s = match send_all(shared, &request) {
        Ok(s) => s,
        Err(failed) => return failed,
    };
    // Not `pause`: the answer is read even when the load stops meanwhile (its id may be acked).
    std::thread::sleep(wait);
    http::read_answer(&mut s, deadline)
}
