//! Serves files from memory on 127.0.0.1 for benchmarks: `fixture-serve FILE…` prints the base URL
//! on stdout, then serves each file at `/<its file name>` until killed.
#![allow(clippy::print_stdout)]

use std::io::Write;

fn main() {
    let server = envctl_testkit::Server::start();
    for arg in std::env::args().skip(1) {
        let path = std::path::Path::new(&arg);
        let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {arg}: {e}"));
        server.set(&format!("/{name}"), envctl_testkit::Reply::Shared(std::sync::Arc::new(bytes)));
    }
    println!("{}", server.base());
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::park();
    }
}
