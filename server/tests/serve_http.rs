//! The real `auralguard serve` binary on a free loopback port, exercised route by route.

mod common;

use common::server::Server;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::blocking::{multipart, Client};

/// Lints a scrape with Prometheus's own `promtool check metrics` (Debian package `prometheus`).
fn promtool_check(scrape: &str) {
    use std::io::Write;
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        common::skip("promtool is not installed (Debian package `prometheus`)");
        return;
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(scrape.as_bytes())
        .expect("write scrape");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn clip(name: &str) -> Vec<u8> {
    std::fs::read(common::parity_dir().join(name)).expect("fixture")
}

fn form(name: &str, bytes: Vec<u8>) -> multipart::Form {
    multipart::Form::new().part(
        "audio",
        multipart::Part::bytes(bytes).file_name(name.to_string()),
    )
}

#[test]
fn routes_behave_like_the_original_service_and_more() {
    let s = Server::start(&[]);
    let c = Client::new();

    let h: serde_json::Value = c.get(s.url("/health")).send().unwrap().json().unwrap();
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["model"]["name"], "seed-random");
    assert_eq!(h["ready"], true);

    // The original request: curl -F audio=@clip.wav http://HOST/predict
    let r = c
        .post(s.url("/predict"))
        .multipart(form("long_16k_pcm16.wav", clip("long_16k_pcm16.wav")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["filename"], "long_16k_pcm16.wav");
    assert!((v["fake_probability"].as_f64().unwrap() - 0.4214043).abs() < 1e-3);
    assert_eq!(v["windows"].as_array().unwrap().len(), 3);
    assert_eq!(v["request_id"].as_str().unwrap().len(), 36);
    for key in [
        "prediction",
        "probability",
        "confidence",
        "processing_time_seconds",
        "timestamp",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }

    // A raw body with an audio Content-Type.
    let r = c
        .post(s.url("/predict?filename=speech.mp3"))
        .header("content-type", "audio/mpeg")
        .body(clip("speech_44k1.mp3"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["filename"], "speech.mp3");

    // Not audio → 415; damaged → 422; no field → 400; wrong content type → 415.
    let err = |r: reqwest::blocking::Response| -> (u16, String) {
        let status = r.status().as_u16();
        let v: serde_json::Value = r.json().unwrap();
        (status, v["error"]["code"].as_str().unwrap().to_string())
    };
    let text = b"just some text pretending to be audio".to_vec();
    let r = c
        .post(s.url("/predict"))
        .multipart(form("x.wav", text))
        .send()
        .unwrap();
    assert_eq!(err(r), (415, "unsupported_format".into()));
    let truncated = clip("speech_16k_pcm16.wav")[..30].to_vec();
    let r = c
        .post(s.url("/predict"))
        .multipart(form("t.wav", truncated))
        .send()
        .unwrap();
    assert_eq!(err(r), (422, "corrupt_audio".into()));
    let r = c
        .post(s.url("/predict"))
        .multipart(multipart::Form::new().text("note", "no audio here"))
        .send()
        .unwrap();
    assert_eq!(err(r), (400, "missing_audio".into()));
    let r = c
        .post(s.url("/predict"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(err(r), (415, "unsupported_media_type".into()));

    // Metrics in Prometheus text format, with the names the operator relies on.
    let m = c.get(s.url("/metrics")).send().unwrap().text().unwrap();
    assert!(
        m.contains("auralguard_http_requests_total{route=\"/predict\",status=\"200\"} 2"),
        "{m}"
    );
    assert!(m.contains("auralguard_http_request_duration_seconds_bucket{route=\"/predict\""));
    assert!(m.contains(
        "auralguard_model_info{architecture=\"seed-cnn\",name=\"seed-random\",version=\"1\"} 1"
    ));
    assert!(m.contains("auralguard_verdicts_total{label=\"real\"} 2"));
    promtool_check(&m);

    // The prediction log: both verdicts are there, newest first, with the upload's hash.
    let st: serde_json::Value = c.get(s.url("/statistics")).send().unwrap().json().unwrap();
    assert_eq!(st["total_predictions"], 2);
    assert_eq!(st["real_count"], 2);
    assert_eq!(st["by_model_version"]["seed-random@1"], 2);
    let recent: serde_json::Value = c
        .get(s.url("/predictions?limit=1"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(recent["count"], 1);
    let newest = &recent["predictions"][0];
    assert_eq!(newest["filename"], "speech.mp3");
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(clip("speech_44k1.mp3")))
    };
    assert_eq!(newest["sha256"], sha);
    assert!(newest["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    let all: serde_json::Value = c
        .get(s.url("/predictions?prediction=real&since=2000-01-01T00:00:00Z"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(all["count"], 2);
    for bad in [
        "limit=0",
        "limit=5000",
        "prediction=maybe",
        "since=yesterday",
        "limit=x",
    ] {
        let r = c.get(s.url(&format!("/predictions?{bad}"))).send().unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }

    assert!(s.terminate().success(), "SIGTERM should exit 0");
}

#[test]
fn limits_turn_into_413_422_and_503() {
    let s = Server::start(&[
        "--max-upload-mb",
        "2",
        "--max-audio-seconds",
        "20",
        "--max-concurrent",
        "1",
    ]);
    let c = Client::new();
    // An upload declared larger than the limit is refused from its headers, before the body is
    // read (an HTTP client still sending would see the connection close, so talk TCP directly).
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /predict HTTP/1.1\r\nHost: {addr}\r\nContent-Type: audio/wav\r\n\
         Content-Length: {}\r\n\r\n",
        3 * 1024 * 1024
    );
    std::io::Write::write_all(&mut tcp, head.as_bytes()).unwrap();
    let mut status_line = String::new();
    BufReader::new(&tcp).read_line(&mut status_line).unwrap();
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    let r = c
        .post(s.url("/predict"))
        .multipart(form("long.wav", clip("long_16k_pcm16.wav")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "audio_too_long");

    // With one permit, concurrent requests beyond it get 503 + Retry-After, and none is lost:
    // every request gets either a verdict or a 503.
    let body = clip("long_16k_pcm16.wav")[..600_000].to_vec();
    let start = std::sync::Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (url, body, start) = (s.url("/predict"), body.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let r = Client::new()
                    .post(url)
                    .multipart(form("s.wav", body))
                    .send()
                    .unwrap();
                (
                    r.status().as_u16(),
                    r.headers().get("retry-after").is_some(),
                )
            })
        })
        .collect();
    let results: Vec<(u16, bool)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        results.iter().all(|(st, _)| *st == 200 || *st == 503),
        "{results:?}"
    );
    assert!(results.iter().any(|(st, _)| *st == 200), "{results:?}");
    assert!(results.iter().any(|(st, _)| *st == 503), "{results:?}");
    assert!(results
        .iter()
        .filter(|(st, _)| *st == 503)
        .all(|(_, ra)| *ra));
}

#[test]
fn open_inference_protocol_v2_routes_work_for_kserve_clients() {
    let s = Server::start(&[]);
    let c = Client::new();
    let get = |p: &str| c.get(s.url(p)).send().unwrap();
    let meta: serde_json::Value = get("/v2").json().unwrap();
    assert_eq!(meta["name"], "auralguard");
    assert_eq!(get("/v2/health/live").status(), 200);
    assert_eq!(get("/v2/health/ready").status(), 200);
    assert_eq!(get("/v2/models/seed-random/ready").status(), 200);
    assert_eq!(get("/v2/models/other").status(), 404);
    let m: serde_json::Value = get("/v2/models/seed-random").json().unwrap();
    assert_eq!(m["inputs"][1]["shape"], serde_json::json!([-1, 128, 469]));

    let infer = |body: serde_json::Value| {
        c.post(s.url("/v2/models/seed-random/infer"))
            .json(&body)
            .send()
            .unwrap()
    };
    // Log-mel input: librosa's reference features → Keras's probability.
    let (_, mel) = common::read_npy_f32(&common::parity_dir().join("speech_16k_pcm16.wav.mel.npy"));
    let r = infer(serde_json::json!({"id": "q1", "inputs": [
        {"name": "log_mel", "shape": [1, 128, 469], "datatype": "FP32", "data": mel}
    ]}));
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["id"], "q1");
    assert_eq!(v["model_name"], "seed-random");
    let p = v["outputs"][0]["data"][0].as_f64().unwrap();
    assert!((p - 0.4089566).abs() < 1e-4, "{p}");

    // Waveform input: 16 kHz mono samples, windowed by the server.
    let mut dec =
        auralguard::audio::MonoDecoder::open(&common::parity_dir().join("speech_16k_pcm16.wav"))
            .unwrap();
    let mut samples = Vec::new();
    while dec.next_chunk(&mut samples).unwrap() {}
    let n = samples.len();
    let r = infer(serde_json::json!({"inputs": [
        {"name": "waveform", "shape": [1, n], "datatype": "FP32", "data": samples}
    ]}));
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    let p = v["outputs"][0]["data"][0].as_f64().unwrap();
    assert!((p - 0.4089566).abs() < 1e-3, "{p}");
    assert_eq!(v["outputs"][1]["shape"], serde_json::json!([1]));

    // Bad requests are 400 with a message, never a panic.
    for bad in [
        serde_json::json!({"inputs": [{"name": "log_mel", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}),
        serde_json::json!({"inputs": [{"name": "waveform", "shape": [1, 3], "datatype": "INT16", "data": [1, 2, 3]}]}),
        serde_json::json!({"inputs": [{"name": "waveform", "shape": [1, 4], "datatype": "FP32", "data": [1.0]}]}),
        serde_json::json!({"inputs": []}),
        serde_json::json!({"nothing": true}),
    ] {
        let r = infer(bad.clone());
        assert_eq!(r.status(), 400, "{bad}");
        let e: serde_json::Value = r.json().unwrap();
        assert!(e["error"]["message"].as_str().is_some(), "{bad}");
    }
}

/// Posts the same clip from `n` threads released together; (status, body, headers) each.
fn burst(
    s: &Server,
    n: usize,
    clip_name: &str,
) -> Vec<(u16, serde_json::Value, reqwest::header::HeaderMap)> {
    let body = clip(clip_name);
    let start = std::sync::Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (url, body, start) = (s.url("/predict"), body.clone(), start.clone());
            let name = clip_name.to_string();
            std::thread::spawn(move || {
                start.wait();
                let r = Client::new()
                    .post(url)
                    .multipart(form(&name, body))
                    .send()
                    .unwrap();
                let (status, headers) = (r.status().as_u16(), r.headers().clone());
                (status, r.json().unwrap(), headers)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// The value of an unlabelled metric in a scrape.
fn metric(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in the scrape"))
}

#[test]
fn concurrent_requests_share_network_calls() {
    // A long batch delay so that the burst's windows certainly meet in the queue.
    let s = Server::start(&["--max-batch-delay-ms", "1500", "--max-concurrent", "8"]);
    let results = burst(&s, 6, "speech_16k_pcm16.wav");
    let mut ids = std::collections::BTreeSet::new();
    for (status, v, headers) in &results {
        assert_eq!(*status, 200, "{v}");
        // The request id is one value everywhere: header, verdict (and the log's key).
        assert_eq!(headers["x-request-id"], v["request_id"].as_str().unwrap());
        ids.insert(v["request_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 6, "request ids are unique");
    // Identical inputs get identical scores whichever batch they were in.
    let p0 = results[0].1["fake_probability"].as_f64().unwrap();
    assert!(results
        .iter()
        .all(|(_, v, _)| (v["fake_probability"].as_f64().unwrap() - p0).abs() < 1e-5));
    let scrape = Client::new()
        .get(s.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let batches = metric(&scrape, "auralguard_batch_requests_count");
    let requests = metric(&scrape, "auralguard_batch_requests_sum");
    assert_eq!(requests, 6.0, "{scrape}");
    assert!(
        batches < 6.0,
        "6 concurrent requests took {batches} network calls"
    );
    assert_eq!(metric(&scrape, "auralguard_queue_windows"), 0.0);
}

#[test]
fn a_full_inference_queue_answers_503_with_retry_after() {
    // One window may wait, and the worker waits 1.5 s for company: during that time every other
    // request finds the queue full.
    let s = Server::start(&[
        "--max-queue-windows",
        "1",
        "--max-batch-delay-ms",
        "1500",
        "--max-concurrent",
        "8",
    ]);
    let results = burst(&s, 6, "speech_16k_pcm16.wav");
    let ok = results.iter().filter(|(st, _, _)| *st == 200).count();
    let full: Vec<_> = results.iter().filter(|(st, _, _)| *st == 503).collect();
    assert!(ok >= 1, "{results:?}");
    assert_eq!(ok + full.len(), 6, "only verdicts and 503s: {results:?}");
    assert!(!full.is_empty(), "the queue never filled: {results:?}");
    for (_, v, headers) in full {
        assert_eq!(v["error"]["code"], "overloaded");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("queue is full"));
        assert_eq!(headers["retry-after"], "1");
    }
}

#[test]
fn an_api_key_guards_the_api_but_not_probes_and_scrapes() {
    let s = Server::start(&["--api-key", "s3cret-key"]);
    let c = Client::new();
    for open in [
        "/health",
        "/ready",
        "/metrics",
        "/v2/health/live",
        "/v2/health/ready",
    ] {
        assert_eq!(c.get(s.url(open)).send().unwrap().status(), 200, "{open}");
    }
    let post = || {
        c.post(s.url("/predict"))
            .multipart(form("s.wav", clip("speech_16k_pcm16.wav")))
    };
    let r = post().send().unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "unauthorized");
    let wrong = post().header("X-API-Key", "s3cret-kez").send().unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        post()
            .header("X-API-Key", "s3cret-key")
            .send()
            .unwrap()
            .status(),
        200
    );
    let bearer = post().bearer_auth("s3cret-key").send().unwrap();
    assert_eq!(bearer.status(), 200);
    for guarded in [
        "/statistics",
        "/predictions",
        "/v2",
        "/v2/models/seed-random",
    ] {
        assert_eq!(
            c.get(s.url(guarded)).send().unwrap().status(),
            401,
            "{guarded}"
        );
        let with_key = c
            .get(s.url(guarded))
            .bearer_auth("s3cret-key")
            .send()
            .unwrap();
        assert_eq!(with_key.status(), 200, "{guarded}");
    }
    // Refusals are counted like any other response.
    let scrape = c.get(s.url("/metrics")).send().unwrap().text().unwrap();
    assert!(scrape.contains("auralguard_http_requests_total{route=\"/predict\",status=\"401\"} 2"));
}

#[test]
fn the_openapi_document_web_page_and_docs_are_served() {
    let s = Server::start(&["--api-key", "k"]);
    let c = Client::new();
    // Served without a key: they hold no data.
    let r = c.get(s.url("/openapi.json")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: serde_json::Value = r.json().unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["paths"].as_object().unwrap().len(), 12);
    assert!(doc["paths"]["/predict"]["post"]["responses"]["503"].is_object());
    assert!(doc["components"]["schemas"]["Verdict"].is_object());
    for (path, kind, needle) in [
        ("/", "text/html", "id=\"drop\""),
        ("/docs", "text/html", "/openapi.json"),
        ("/static/app.js", "text/javascript", "include=spectrogram"),
        ("/static/app.css", "text/css", "#spectrogram"),
        ("/static/docs.js", "text/javascript", "/openapi.json"),
    ] {
        let r = c.get(s.url(path)).send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with(kind), "{path}: {ct}");
        // Security headers on every page and asset: no sniffing, no framing, no inline code.
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        for directive in [
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(r.text().unwrap().contains(needle), "{path}");
    }
    let missing = c.get(s.url("/static/nope.js")).send().unwrap();
    assert_eq!(missing.status(), 404);
    let v: serde_json::Value = missing.json().unwrap();
    assert_eq!(v["error"]["code"], "not_found");
}

#[test]
fn a_spectrogram_comes_back_on_request_and_only_then() {
    let s = Server::start(&["--no-store"]);
    let c = Client::new();
    let post = |query: &str| {
        c.post(s.url(&format!("/predict{query}")))
            .multipart(form("long.wav", clip("long_16k_pcm16.wav")))
            .send()
            .unwrap()
    };
    let plain: serde_json::Value = post("").json().unwrap();
    assert!(plain.get("spectrogram").is_none());
    let v: serde_json::Value = post("?include=spectrogram").json().unwrap();
    let spec = &v["spectrogram"];
    assert_eq!(
        (spec["mels"].as_u64(), spec["frames"].as_u64()),
        (Some(128), Some(469))
    );
    assert_eq!(
        spec["windows"].as_u64().unwrap() as usize,
        v["windows"].as_array().unwrap().len()
    );
    // base64 of windows × 128 × 469 bytes: 4 characters per 3 bytes, padded.
    let bytes = spec["windows"].as_u64().unwrap() as usize * 128 * 469;
    assert_eq!(spec["data"].as_str().unwrap().len(), bytes.div_ceil(3) * 4);
    let bad = post("?include=everything");
    assert_eq!(bad.status(), 400);
    // With --no-store the health report says so in the same shape.
    let h: serde_json::Value = c.get(s.url("/health")).send().unwrap().json().unwrap();
    assert_eq!(h["store"]["backend"], "disabled");
}
