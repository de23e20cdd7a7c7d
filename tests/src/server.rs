//! A small HTTP/1.1 server on 127.0.0.1 for tests. Each path gets a scripted [`Reply`]; every
//! request is counted, so a test can assert that a second install made no request at all. A `HEAD`
//! request gets the headers a `GET` would (status and `Content-Length`) and is counted apart too.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server does for a path.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with this body.
    Body(Vec<u8>),
    /// 200 with a shared body (no copy per request).
    Shared(std::sync::Arc<Vec<u8>>),
    /// This status with an empty body.
    Status(u16),
    /// `times` answers of `status`, then 200 with the body.
    FailThen { status: u16, times: usize, body: Vec<u8> },
    /// 200 with a Content-Length for the whole body, but only the first `send` bytes, then the
    /// connection hangs until the server is dropped or `hang` passes: a download to kill halfway.
    Stall { body: Vec<u8>, send: usize, hang: Duration },
    /// 200 with the body, after waiting `delay` (to make concurrent requests overlap).
    Slow { body: Vec<u8>, delay: Duration },
    /// 302 to this `Location` (any text: another path, another scheme).
    Redirect(String),
    /// 200 with a Content-Length for the whole body, sent one byte every `every`.
    Trickle { body: Vec<u8>, every: Duration },
    /// These bytes as the whole answer, status line and headers included, then the connection is
    /// closed: a lying Content-Length, a truncated body, or (empty) a reset.
    Raw(Vec<u8>),
}

impl Reply {
    /// The length of the body a successful answer carries; `None` for a bare status.
    pub fn body_len(&self) -> Option<usize> {
        match self {
            Reply::Body(b)
            | Reply::FailThen { body: b, .. }
            | Reply::Stall { body: b, .. }
            | Reply::Slow { body: b, .. }
            | Reply::Trickle { body: b, .. } => Some(b.len()),
            Reply::Shared(b) => Some(b.len()),
            Reply::Status(_) | Reply::Redirect(_) | Reply::Raw(_) => None,
        }
    }
}

#[derive(Default)]
struct State {
    replies: HashMap<String, Reply>,
    hits: HashMap<String, usize>,
    heads: HashMap<String, usize>,
    puts: HashMap<String, usize>,
    put_prefixes: Vec<String>,
}

/// The server; it runs until the process ends.
pub struct Server {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl Server {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || {
                    let _ = handle(stream, &state);
                });
            }
        });
        Server { port, state }
    }

    /// Accepts `PUT` under `prefix` from now on (an upload target, as a WebDAV-style cache
    /// server is); what is put is served to later `GET`s.
    pub fn accept_puts(&self, prefix: &str) {
        self.state.lock().unwrap().put_prefixes.push(prefix.to_owned());
    }

    /// How many `PUT`s `path` received.
    pub fn puts(&self, path: &str) -> usize {
        self.state.lock().unwrap().puts.get(path).copied().unwrap_or(0)
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Serves `reply` at `path` from now on.
    pub fn set(&self, path: &str, reply: Reply) {
        self.state.lock().unwrap().replies.insert(path.to_owned(), reply);
    }

    /// Serves `body` at `path` and returns its URL.
    pub fn serve(&self, path: &str, body: Vec<u8>) -> String {
        self.set(path, Reply::Body(body));
        self.url(path)
    }

    /// How many requests `path` received, of any method.
    pub fn hits(&self, path: &str) -> usize {
        self.state.lock().unwrap().hits.get(path).copied().unwrap_or(0)
    }

    /// How many of `path`'s requests were `HEAD` requests.
    pub fn heads(&self, path: &str) -> usize {
        self.state.lock().unwrap().heads.get(path).copied().unwrap_or(0)
    }

    /// The length of the body served at `path`, if one is.
    pub fn body_len(&self, path: &str) -> Option<usize> {
        self.state.lock().unwrap().replies.get(path)?.body_len()
    }
}

fn handle(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut words = request_line.split_whitespace();
    let method = words.next().unwrap_or("GET").to_owned();
    let head = method == "HEAD";
    let path = words.next().unwrap_or("/").to_owned();
    if method == "PUT" {
        // Stored where a later GET finds it, under a prefix `accept_puts` opened; else 405.
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        let mut s = state.lock().unwrap();
        *s.puts.entry(path.clone()).or_default() += 1;
        let status = if s.put_prefixes.iter().any(|p| path.starts_with(p.as_str())) {
            s.replies.insert(path, Reply::Body(body));
            201
        } else {
            405
        };
        drop(s);
        let mut out = stream;
        return respond(&mut out, status, b"");
    }
    let reply = {
        let mut s = state.lock().unwrap();
        if head {
            *s.heads.entry(path.clone()).or_default() += 1;
        }
        let n = {
            let hits = s.hits.entry(path.clone()).or_default();
            *hits += 1;
            *hits
        };
        match s.replies.get(&path).cloned() {
            Some(Reply::FailThen { status, times, body }) => {
                if n <= times {
                    Reply::Status(status)
                } else {
                    Reply::Body(body)
                }
            }
            Some(r) => r,
            None => Reply::Status(404),
        }
    };
    let mut out = stream;
    if head {
        return match reply {
            Reply::Status(status) => respond_head(&mut out, status, 0),
            Reply::Raw(_) => Ok(()),
            Reply::Redirect(location) => redirect(&mut out, &location),
            other => respond_head(&mut out, 200, other.body_len().unwrap_or(0)),
        };
    }
    match reply {
        Reply::Body(body) => respond(&mut out, 200, &body),
        Reply::Shared(body) => respond(&mut out, 200, &body),
        Reply::Status(status) => respond(&mut out, status, b""),
        Reply::Slow { body, delay } => {
            std::thread::sleep(delay);
            respond(&mut out, 200, &body)
        }
        Reply::Stall { body, send, hang } => {
            write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
            out.write_all(&body[..send.min(body.len())])?;
            out.flush()?;
            std::thread::sleep(hang);
            Ok(())
        }
        Reply::Redirect(location) => redirect(&mut out, &location),
        Reply::Trickle { body, every } => {
            write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
            for b in body {
                out.write_all(&[b])?;
                out.flush()?;
                std::thread::sleep(every);
            }
            Ok(())
        }
        Reply::Raw(bytes) => {
            out.write_all(&bytes)?;
            out.flush()?;
            out.shutdown(std::net::Shutdown::Both)
        }
        Reply::FailThen { .. } => unreachable!("resolved above"),
    }
}

fn redirect(out: &mut TcpStream, location: &str) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    out.flush()
}

fn respond(out: &mut TcpStream, status: u16, body: &[u8]) -> std::io::Result<()> {
    respond_head(out, status, body.len())?;
    out.write_all(body)?;
    out.flush()
}

fn respond_head(out: &mut TcpStream, status: u16, len: usize) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    write!(out, "HTTP/1.1 {status} {reason}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")?;
    out.flush()
}
