//! Raw HTTP/1.1 over a plain TCP socket, for the clients a real HTTP library refuses to be:
//! malformed requests, lying `Content-Length`s, trickled headers and bodies, and readers that
//! leave the answer unread. Every operation has a deadline; nothing here can hang the soak.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A request's bytes: `method path HTTP/1.1`, `Host`, the given headers, `Content-Length` (unless
/// `headers` carries one or `Transfer-Encoding`) and `Connection: close`, then `body`.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    request_on(method, path, headers, body, false)
}

/// [`request`] for a kept-alive connection when `keep_alive` (no `Connection: close`).
pub fn request_on(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    }) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// `GET path` on a fresh connection, answered within `timeout`.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Answer {
    exchange(
        addr,
        &request("GET", path, &[], b""),
        Instant::now() + timeout,
    )
}

/// One client connection reused across requests, as an HTTP client library would keep it.
#[derive(Default)]
pub struct KeepAlive {
    stream: Option<TcpStream>,
}

impl KeepAlive {
    /// Sends a [`request_on`]`(…, true)` request and reads its answer by `deadline`. A reused
    /// connection that turns out closed before the request got through (the server may end an
    /// idle one at any time) is replaced once, as clients do; a fresh one's failure is reported.
    pub fn send(&mut self, addr: SocketAddr, bytes: &[u8], deadline: Instant) -> Answer {
        for _ in 0..2 {
            let reused = self.stream.is_some();
            let mut s = match self.stream.take() {
                Some(s) => s,
                None => match open(addr) {
                    Ok(s) => s,
                    Err(failed) => return failed,
                },
            };
            let written = s.write_all(bytes);
            let answer = read_answer(&mut s, deadline);
            let nothing = answer.status.is_none();
            if reused && nothing && (written.is_err() || answer.error.is_none()) {
                continue; // stale: closed (EOF or reset on write) before answering
            }
            if answer.status.is_some() && !answer.close && answer.error.is_none() {
                self.stream = Some(s);
            }
            if nothing && answer.error.is_none() {
                if let Err(e) = written {
                    return Answer {
                        error: Some(format!("write {}", kind(&e))),
                        ..answer
                    };
                }
            }
            return answer;
        }
        Answer {
            error: Some("closed twice".into()),
            ..Default::default()
        }
    }
}

/// Boundary of the forms built here (never occurs in the test audio by construction: it is
/// checked by [`multipart`]).
pub const BOUNDARY: &str = "soak-boundary-7d1e2a9c";

/// A `multipart/form-data` body with one file part: field `field`, file name `filename` (raw
/// bytes, so control characters can be sent), `data`.
pub fn multipart(field: &str, filename: &[u8], data: &[u8]) -> Vec<u8> {
    debug_assert!(!data
        .windows(BOUNDARY.len())
        .any(|w| w == BOUNDARY.as_bytes()));
    let mut out =
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"")
            .into_bytes();
    out.extend_from_slice(filename);
    out.extend_from_slice(b"\"\r\nContent-Type: application/octet-stream\r\n\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    out
}

/// The `Content-Type` header value of [`multipart`] bodies.
pub fn multipart_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// What came back for a request.
#[derive(Debug, Default)]
pub struct Answer {
    /// The status, when a status line arrived.
    pub status: Option<u16>,
    /// The body as far as it was read.
    pub body: Vec<u8>,
    /// Why the exchange ended early (connect/write/read error or the deadline), if it did.
    pub error: Option<String>,
    /// The server said `Connection: close` (or the answer had no length): not reusable.
    pub close: bool,
}

impl Answer {
    /// The tally key: the status, else `closed` (EOF before any answer) or `error: …`.
    pub fn key(&self) -> String {
        match (self.status, &self.error) {
            (Some(s), _) => s.to_string(),
            (None, Some(e)) => format!("error: {e}"),
            (None, None) => "closed".into(),
        }
    }

    /// `request_id` from a JSON body (a `/predict` verdict).
    pub fn request_id(&self) -> Option<String> {
        self.json()?.get("request_id")?.as_str().map(str::to_string)
    }

    /// The body as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Short, stable name of an I/O error for the tallies.
pub fn kind(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        WouldBlock | TimedOut => "timeout".into(),
        ConnectionReset => "reset".into(),
        BrokenPipe => "broken pipe".into(),
        ConnectionRefused => "refused".into(),
        ConnectionAborted => "aborted".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Opens a connection with a 5-second connect timeout.
pub fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// An answer that carries only the failure of step `what` (connect, write, read).
pub fn io_failure(what: &str, e: &std::io::Error) -> Answer {
    Answer {
        error: Some(format!("{what} {}", kind(e))),
        ..Default::default()
    }
}

/// A fresh connection with the 10 s write timeout every client uses, or the answer that
/// reports why there is none.
pub fn open(addr: SocketAddr) -> Result<TcpStream, Answer> {
    let s = connect(addr).map_err(|e| io_failure("connect", &e))?;
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    Ok(s)
}

/// Sends `bytes` (10 s write timeout), then reads the answer until `deadline`.
pub fn exchange(addr: SocketAddr, bytes: &[u8], deadline: Instant) -> Answer {
    let mut s = match open(addr) {
        Ok(s) => s,
        Err(failed) => return failed,
    };
    // A server may answer (413, 400) and close before the whole request is written; the answer
    // is still read, so a failed write is only reported when nothing came back.
    let written = s.write_all(bytes);
    let mut answer = read_answer(&mut s, deadline);
    if answer.status.is_none() && answer.error.is_none() {
        if let Err(e) = written {
            answer.error = Some(format!("write {}", kind(&e)));
        }
    }
    answer
}

/// Reads one HTTP/1.1 answer: until its `Content-Length` is complete, EOF, an error or
/// `deadline`.
pub fn read_answer(s: &mut TcpStream, deadline: Instant) -> Answer {
    read_answer_after(s, Vec::new(), deadline)
}

/// [`read_answer`] when its first bytes, `buf`, have been read already.
pub fn read_answer_after(s: &mut TcpStream, mut buf: Vec<u8>, deadline: Instant) -> Answer {
    let mut chunk = [0u8; 16 * 1024];
    let mut answer = Answer::default();
    while !complete(&buf) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            answer.error = Some("deadline".into());
            break;
        }
        let _ = s.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                answer.error = Some(format!("read {}", kind(&e)));
                break;
            }
        }
        // Bounded: an answer bigger than 8 MiB is not one this server gives.
        if buf.len() > 8 << 20 {
            answer.error = Some("answer over 8 MiB".into());
            break;
        }
    }
    answer.status = status_of(&buf);
    if answer.status.is_some() {
        // The status line arrived: a later reset does not change what the server answered.
        answer.error = None;
    }
    if let Some(at) = find(&buf, b"\r\n\r\n") {
        answer.body = buf[at + 4..].to_vec();
        let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
        answer.close = head.contains("\nconnection: close") || !complete(&buf);
    }
    answer
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn status_of(buf: &[u8]) -> Option<u16> {
    let line = buf.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

/// Whether `buf` holds a full answer with a `Content-Length` body.
fn complete(buf: &[u8]) -> bool {
    let Some(at) = find(buf, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    length.is_some_and(|n| buf.len() >= at + 4 + n)
}
