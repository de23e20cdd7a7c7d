//! An S3-compatible server on 127.0.0.1 for tests: moto's server mode, installed from the Python
//! package index with pip into a virtual environment under the system's temporary directory (once
//! per machine, under a lock), and started per test on a free port. Dropping it stops it.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server.
pub struct S3Server {
    child: Child,
    port: u16,
}

/// The moto version the tests run against.
const MOTO: &str = "moto[server]==5.2.5";

fn moto_server_binary() -> PathBuf {
    let venv = std::env::temp_dir().join("envctl-testkit-moto");
    let bin = venv.join("bin/moto_server");
    crate::prepare::once(
        "moto",
        || bin.is_file(),
        || {
            let (_, prefix) = crate::python::find_python("3.11");
            let run = |cmd: &mut Command, what: &str| crate::prepare::run(cmd, "the S3 tests", what);
            let _ = std::fs::remove_dir_all(&venv);
            run(
                Command::new(prefix.join("bin/python3.11")).arg("-m").arg("venv").arg(&venv),
                "a Python virtual environment",
            );
            run(
                Command::new(venv.join("bin/python")).args(["-m", "pip", "install", "-q", MOTO]),
                "moto from the Python package index (pip, with the machine's pip configuration)",
            );
        },
    );
    bin
}

impl S3Server {
    /// Starts a server and creates `bucket` in it.
    pub fn start(bucket: &str) -> S3Server {
        let bin = moto_server_binary();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let server = S3Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match server.request("PUT", &format!("/{bucket}")) {
                Ok(status) if status < 300 => break,
                Ok(status) => panic!("moto refused to create bucket `{bucket}`: HTTP {status}"),
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => panic!("moto_server did not answer on port {port}: {e}"),
            }
        }
        server
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends a bodiless request; the status.
    fn request(&self, method: &str, path: &str) -> std::io::Result<u16> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status in {answer:?}")))
    }

    /// The keys in `bucket` (unsigned ListObjectsV2, as moto allows).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "GET /{bucket}?list-type=2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()).map(str::to_owned).collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
