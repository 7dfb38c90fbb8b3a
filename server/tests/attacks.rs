//! Hostile clients against the real `auralguard serve` binary, one test per class of attack:
//! each asserts the status and error code, that the process is still alive afterwards, and that
//! its peak resident memory (`VmHWM`, reset before the attack) stays under a stated bound.
//! Everything targets 127.0.0.1 and is bounded in count and time.

mod common;

use std::time::{Duration, Instant};

use common::server::Server;
use reqwest::blocking::{multipart, Client};

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Asserts a JSON error answer with `status` and `code`; returns the body.
fn expect_error(resp: reqwest::blocking::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(resp.status().as_u16(), status);
    let body: serde_json::Value = resp.json().expect("json error body");
    assert_eq!(body["error"]["code"], code, "{body}");
    body
}

/// The server's `/metrics` text.
fn scrape(server: &Server) -> String {
    client()
        .get(server.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text")
}

/// The server still answers, and counted the refusals by `limit`.
fn assert_alive_and_counted(server: &mut Server, limit: &str, at_least: f64) {
    assert!(server.alive(), "the server died");
    let scrape = scrape(server);
    let needle = format!("auralguard_limit_rejections_total{{limit=\"{limit}\"}} ");
    let count: f64 = scrape
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {needle} in the scrape"));
    assert!(count >= at_least, "{needle}{count}, expected ≥ {at_least}");
}

/// A WAV file: RIFF header, `fmt ` (PCM16 or float32), `data`, with a free `rate` field.
fn wav(rate: u32, float: bool, samples: &[f32]) -> Vec<u8> {
    let (format, bytes) = if float { (3u16, 4u16) } else { (1u16, 2u16) };
    let mut data = Vec::new();
    for &s in samples {
        if float {
            data.extend_from_slice(&s.to_le_bytes());
        } else {
            data.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes());
        }
    }
    let mut w = b"RIFF".to_vec();
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&format.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&rate.wrapping_mul(u32::from(bytes)).to_le_bytes());
    w.extend_from_slice(&bytes.to_le_bytes());
    w.extend_from_slice(&(bytes * 8).to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    w
}

/// The mono samples of a bundled PCM16 fixture.
fn fixture_samples(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(common::parity_dir().join(name)).expect("fixture");
    let at = bytes
        .windows(4)
        .position(|w| w == b"data")
        .expect("data chunk")
        + 8;
    bytes[at..]
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

fn upload(server: &Server, name: &str, bytes: Vec<u8>) -> reqwest::blocking::Response {
    let form = multipart::Form::new().part(
        "audio",
        multipart::Part::bytes(bytes).file_name(name.to_string()),
    );
    client()
        .post(server.url("/predict"))
        .multipart(form)
        .send()
        .expect("predict")
}

fn infer(server: &Server, body: String) -> reqwest::blocking::Response {
    client()
        .post(server.url("/v2/models/seed-random/infer"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .expect("infer")
}

#[test]
fn oip_shapes_that_overflow_or_exceed_the_model_are_400_and_the_server_lives() {
    let mut server = Server::start(&[]);
    server.reset_peak_rss();
    let shapes = [
        "[144115188075855872,128,469]",
        "[9223372036854775807,9223372036854775807,9223372036854775807]",
        "[0,128,469]",
        "[-3,128,469]",
        "[100000,128,469]",
        "[1,9223372036854775807]",
    ];
    for shape in shapes {
        let name = if shape.starts_with("[1,") {
            "waveform"
        } else {
            "log_mel"
        };
        let body = format!(
            r#"{{"inputs":[{{"name":"{name}","shape":{shape},"datatype":"FP32","data":[]}}]}}"#
        );
        let resp = infer(&server, body);
        let status = resp.status().as_u16();
        assert!(status == 400 || status == 422, "{shape}: {status}");
        assert!(server.alive(), "{shape} killed the server");
    }
    let peak = server.peak_rss_mb();
    assert!(
        peak < 400.0,
        "peak RSS {peak:.0} MB during the shape attacks"
    );
    assert_alive_and_counted(&mut server, "tensor_shape", shapes.len() as f64);
}

#[test]
fn large_oip_bodies_are_parsed_compactly_under_the_permits() {
    // Four concurrent 32 MB waveform bodies: as a JSON value tree this took gigabytes.
    let mut server = Server::start(&["--max-audio-seconds", "600"]);
    let n = 8_000_000usize;
    let mut data = String::with_capacity(4 * n + 2);
    data.push('[');
    for i in 0..n {
        if i > 0 {
            data.push(',');
        }
        data.push_str(if i % 2 == 0 { "0.1" } else { "0" });
    }
    data.push(']');
    let body = format!(
        r#"{{"inputs":[{{"name":"waveform","shape":[1,{n}],"datatype":"FP32","data":{data}}}]}}"#
    );
    drop(data);
    server.reset_peak_rss();
    let t0 = Instant::now();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| infer(&server, body.clone()).status().as_u16()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let peak = server.peak_rss_mb();
    for s in &statuses {
        assert!(*s == 200 || *s == 503, "status {s}");
    }
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(server.alive());
    assert!(
        peak < 1_200.0,
        "peak RSS {peak:.0} MB for four {} MB bodies ({:.1} s)",
        body.len() >> 20,
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn forged_sample_rates_are_422_at_once() {
    let mut server = Server::start(&[]);
    server.reset_peak_rss();
    for rate in [1u32, 1_999, 768_001, 4_294_967_291] {
        let t0 = Instant::now();
        let resp = upload(&server, "bomb.wav", wav(rate, false, &[0.1; 5]));
        expect_error(resp, 422, "unsupported_sample_rate");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{rate} Hz took {:?}",
            t0.elapsed()
        );
    }
    // The oddest accepted rate (prime: the largest resampler plan) is judged, quickly.
    let t0 = Instant::now();
    let resp = upload(&server, "odd.wav", wav(767_999, false, &vec![0.1; 767_999]));
    assert_eq!(resp.status().as_u16(), 200);
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let peak = server.peak_rss_mb();
    assert!(peak < 500.0, "peak RSS {peak:.0} MB");
    assert_alive_and_counted(&mut server, "sample_rate", 4.0);
}

#[test]
fn huge_samples_and_single_clicks_neither_fail_open_nor_flip_a_verdict() {
    let server = Server::start_model(
        common::repo_root()
            .join("models/demo")
            .to_str()
            .expect("utf-8"),
        &["--no-store"],
    );
    let clean = fixture_samples("speech_16k_pcm16.wav");
    let score = |samples: &[f32]| -> f64 {
        let resp = upload(&server, "clip.wav", wav(16_000, true, samples));
        assert_eq!(resp.status().as_u16(), 200);
        let v: serde_json::Value = resp.json().expect("verdict");
        let p = v["fake_probability"]
            .as_f64()
            .expect("a finite probability");
        assert!(p.is_finite() && (0.0..=1.0).contains(&p), "{v}");
        p
    };
    let base = score(&clean);
    let mut clicked = clean.clone();
    let mid = clicked.len() / 2;
    clicked[mid] = 1e30;
    let with_click = score(&clicked);
    assert!(
        (with_click - base).abs() < 0.05,
        "one click moved the score from {base:.3} to {with_click:.3}"
    );
    // Every sample at the edge of f32's range: finite in, finite out, no NaN verdict.
    let huge: Vec<f32> = clean
        .iter()
        .map(|s| if *s >= 0.0 { 3e38 } else { -3e38 })
        .collect();
    score(&huge);
    // Non-finite samples in a file or an OIP waveform are refused, never judged.
    let mut nan = clean.clone();
    nan[10] = f32::NAN;
    expect_error(
        upload(&server, "nan.wav", wav(16_000, true, &nan)),
        422,
        "non_finite_samples",
    );
}

#[test]
fn long_names_are_refused_and_health_keeps_its_details_for_the_key() {
    let mut server = Server::start(&["--api-key", "s3cret"]);
    let post_form = |form: multipart::Form| {
        client()
            .post(server.url("/predict"))
            .bearer_auth("s3cret")
            .multipart(form)
            .send()
            .expect("predict")
    };
    let name = format!("{}.wav", "n".repeat(8 << 20));
    let resp = post_form(multipart::Form::new().part(
        "audio",
        multipart::Part::bytes(wav(16_000, false, &[0.1; 16_000])).file_name(name),
    ));
    let text_len = resp.content_length();
    let body = expect_error(resp, 400, "bad_filename");
    assert!(
        body.to_string().len() < 1_000,
        "answer of {text_len:?} bytes"
    );
    let resp = client()
        .post(server.url("/predict?filename=a%0Ab.wav"))
        .bearer_auth("s3cret")
        .header("content-type", "audio/wav")
        .body(wav(16_000, false, &[0.1; 16_000]))
        .send()
        .expect("predict");
    expect_error(resp, 400, "bad_filename");
    // Any other header of a part is bounded too, in the audio part and in parts it skips.
    for field in ["audio", "note"] {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "x-padding",
            reqwest::header::HeaderValue::from_str(&"p".repeat(1 << 20)).expect("header"),
        );
        let resp = post_form(
            multipart::Form::new().part(
                field,
                multipart::Part::bytes(wav(16_000, false, &[0.1; 16_000]))
                    .file_name("a.wav")
                    .headers(headers),
            ),
        );
        let body = expect_error(resp, 400, "bad_multipart");
        assert!(body.to_string().len() < 1_000, "{body}");
    }
    let public: serde_json::Value = client()
        .get(server.url("/health"))
        .send()
        .expect("health")
        .json()
        .expect("json");
    assert_eq!(public["status"], "healthy");
    assert!(
        public.get("model").is_none() && public.get("store").is_none(),
        "{public}"
    );
    let detailed: serde_json::Value = client()
        .get(server.url("/health"))
        .bearer_auth("s3cret")
        .send()
        .expect("health")
        .json()
        .expect("json");
    assert_eq!(detailed["model"]["name"], "seed-random", "{detailed}");
    assert_alive_and_counted(&mut server, "name_length", 4.0);
}

#[test]
fn legal_chunk_orders_decode_and_truncated_files_say_so() {
    let server = Server::start(&[]);
    let clean = wav(16_000, false, &fixture_samples("speech_16k_pcm16.wav"));
    // A LIST chunk (odd-sized, padded) before `fmt `, as editors write it.
    let mut list = b"LIST".to_vec();
    let info = b"INFOISFT\x05\0\0\0test\0";
    list.extend_from_slice(&(info.len() as u32).to_le_bytes());
    list.extend_from_slice(info);
    list.push(0);
    let mut reordered = clean[..12].to_vec();
    reordered.extend_from_slice(&list);
    reordered.extend_from_slice(&clean[12..]);
    let riff_len = (reordered.len() - 8) as u32;
    reordered[4..8].copy_from_slice(&riff_len.to_le_bytes());
    let resp = upload(&server, "list-first.wav", reordered);
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text());
    // A header declaring 33 s over 8 samples: judged, but flagged twice.
    let mut cut = wav(16_000, false, &[0.1; 8]);
    let at = cut.len() - 16 - 4;
    cut[at..at + 4].copy_from_slice(&(33 * 32_000u32).to_le_bytes());
    let resp = upload(&server, "cut.wav", cut);
    assert_eq!(resp.status().as_u16(), 200);
    let v: serde_json::Value = resp.json().expect("verdict");
    let codes: Vec<&str> = v["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w["code"].as_str())
        .collect();
    assert_eq!(codes, ["truncated", "too_short"], "{v}");
    // An ordinary file carries no warnings at all.
    let v: serde_json::Value = upload(&server, "clean.wav", clean).json().expect("verdict");
    assert!(v.get("warnings").is_none(), "{v}");
}

/// Runs `auralguard predict` on `model` with at most `limit_mb` of address space (so a build
/// that tries to allocate what the manifest asks for fails fast instead of taking the machine);
/// asserts it fails and returns its stderr.
fn predict_fails(model: &std::path::Path, limit_mb: u64) -> String {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(common::auralguard_binary());
    cmd.args(["predict", "--model"])
        .arg(model)
        .arg(common::parity_dir().join("speech_16k_pcm16.wav"));
    let bytes = limit_mb * 1024 * 1024;
    // SAFETY: between fork and exec only setrlimit, which is async-signal-safe, runs.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Finding 10. `models/demo`'s network pools over time, so its weights fit any window length:
/// a manifest asking for a 10⁶-second window loads and, on 2c3c99f, warm-up tries to allocate
/// gigabytes. Now the manifest itself is refused, naming the field, within seconds.
#[test]
fn a_package_with_absurd_sizes_is_refused_with_a_message_not_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = common::repo_root().join("models/demo");
    for f in ["auralguard.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.path().join(f)).expect("copy");
    }
    let manifest_path = dir.path().join("auralguard.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("read")).expect("json");
    manifest["window"]["seconds"] = serde_json::json!(1e6);
    manifest["window"]["hop_seconds"] = serde_json::json!(1e6);
    std::fs::write(&manifest_path, manifest.to_string()).expect("write");
    let t0 = Instant::now();
    let stderr = predict_fails(dir.path(), 4096);
    assert!(stderr.contains("window.seconds"), "{stderr}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    // Weights that do not match the architecture are refused from their header alone.
    manifest["window"]["seconds"] = serde_json::json!(4.0);
    manifest["window"]["hop_seconds"] = serde_json::json!(4.0);
    std::fs::write(&manifest_path, manifest.to_string()).expect("write");
    let header = br#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut fake = (header.len() as u64).to_le_bytes().to_vec();
    fake.extend_from_slice(header);
    fake.extend_from_slice(&[0; 4]);
    std::fs::write(dir.path().join("model.safetensors"), fake).expect("write");
    let stderr = predict_fails(dir.path(), 4096);
    assert!(stderr.contains("invalid model weights"), "{stderr}");
}

/// The `host:port` a server's base URL names (for raw TCP attacks).
fn host_port(server: &Server) -> String {
    server
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// Finding 4: clients trickling uploads or headers must not starve honest ones. Thirty
/// connections send a multipart upload one byte every 200 ms and ten send headers the same way;
/// meanwhile honest requests are all answered 200, the trickling uploads end in 408
/// `slow_upload`, and the header tricklers are disconnected by the header-read timeout.
#[test]
fn slow_clients_do_not_starve_honest_ones() {
    use std::io::{Read, Write};
    // Set through the environment, so that a build without these settings (2c3c99f) starts
    // anyway and shows the starvation instead of refusing unknown flags.
    let mut server = Server::start_env(&[
        ("AURALGUARD_MAX_CONCURRENT", "2"),
        ("AURALGUARD_UPLOAD_GRACE_SECONDS", "1"),
        ("AURALGUARD_MIN_UPLOAD_BYTES_PER_SECOND", "1000"),
        ("AURALGUARD_HEADER_TIMEOUT_SECONDS", "1"),
    ]);
    let target = host_port(&server);
    let clip = wav(16_000, false, &fixture_samples("speech_16k_pcm16.wav"));
    let started = Instant::now();
    let trickle_uploads: Vec<_> = (0..30)
        .map(|_| {
            let target = target.clone();
            std::thread::spawn(move || -> String {
                let mut s = std::net::TcpStream::connect(&target).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(20))).ok();
                let head = format!(
                    "POST /predict HTTP/1.1\r\nHost: {target}\r\nContent-Type: audio/wav\r\n\
                     Content-Length: 100000\r\n\r\n"
                );
                s.write_all(head.as_bytes()).expect("headers");
                for _ in 0..100 {
                    if s.write_all(b"R").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    if started.elapsed() > Duration::from_secs(15) {
                        break;
                    }
                }
                let mut answer = Vec::new();
                let _ = s.read_to_end(&mut answer);
                String::from_utf8_lossy(&answer).into_owned()
            })
        })
        .collect();
    let trickle_headers: Vec<_> = (0..10)
        .map(|_| {
            let target = target.clone();
            std::thread::spawn(move || -> Duration {
                let t0 = Instant::now();
                let mut s = std::net::TcpStream::connect(&target).expect("connect");
                for b in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "
                    .iter()
                    .cycle()
                    .take(200)
                {
                    if s.write_all(&[*b]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                t0.elapsed()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let honest = client();
    for i in 0..10 {
        let resp = honest
            .post(server.url("/predict"))
            .header("content-type", "audio/wav")
            .body(clip.clone())
            .send()
            .expect("honest request");
        assert_eq!(
            resp.status(),
            200,
            "honest request {i} while slow clients trickle"
        );
    }
    for t in trickle_uploads {
        let answer = t.join().expect("trickler");
        assert!(
            answer.starts_with("HTTP/1.1 408") && answer.contains("slow_upload"),
            "a trickled upload must end in 408 slow_upload, got {answer:?}"
        );
    }
    for t in trickle_headers {
        let held = t.join().expect("header trickler");
        assert!(
            held < Duration::from_secs(10),
            "a header trickler was held {held:?}; the header timeout is 1 s"
        );
    }
    assert_alive_and_counted(&mut server, "slow_client", 30.0);
}

/// A full disk under the prediction log (the embedded SQLite store here; the MongoDB spool in
/// `mongo_store.rs`): a verdict whose record cannot be written is refused with 503
/// `log_unavailable` and counted, never answered without its record, and the server lives on.
/// `--serve-unlogged` answers it instead, saying `not_logged`.
#[test]
fn a_verdict_is_not_answered_without_its_record_unless_asked() {
    common::server::ignore_file_size_signal();
    let clip = wav(16_000, false, &fixture_samples("speech_16k_pcm16.wav"));
    for serve_unlogged in [false, true] {
        let flags: &[&str] = if serve_unlogged {
            &["--serve-unlogged"]
        } else {
            &[]
        };
        let mut server = Server::start(flags);
        assert_eq!(upload(&server, "room.wav", clip.clone()).status(), 200);
        server.limit_file_size(0);
        let resp = upload(&server, "full.wav", clip.clone());
        if serve_unlogged {
            assert_eq!(resp.status(), 200);
            let v: serde_json::Value = resp.json().expect("verdict");
            assert_eq!(v["warnings"][0]["code"], "not_logged", "{v}");
        } else {
            assert_eq!(
                resp.headers().get("retry-after").map(|v| v.as_bytes()),
                Some(&b"1"[..])
            );
            expect_error(resp, 503, "log_unavailable");
        }
        assert!(server.alive(), "the server died");
        assert!(
            scrape(&server)
                .lines()
                .any(|l| l == "auralguard_store_write_failures_total 1"),
            "one failed write counted"
        );
    }
}
