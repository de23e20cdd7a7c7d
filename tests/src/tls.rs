//! An HTTPS server on 127.0.0.1 that speaks HTTP/2 and nothing else: its TLS offers only the
//! ALPN protocol `h2`, so a client that does not offer HTTP/2 cannot even finish the handshake.
//! Its certificate is made for the test and written as a PEM file ([`H2Server::certificate`]) for
//! the client to trust through `SSL_CERT_FILE`, the way a machine's own store is named. It
//! counts requests per path and TCP connections, so a test can see that one connection carried
//! several downloads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct State {
    bodies: HashMap<String, bytes::Bytes>,
    hits: HashMap<String, usize>,
    connections: usize,
}

/// The server; it runs until the process ends.
pub struct H2Server {
    port: u16,
    certificate: PathBuf,
    state: Arc<Mutex<State>>,
}

impl H2Server {
    /// Makes a certificate for `127.0.0.1` and `localhost`, writes it to `dir/h2-server.pem`,
    /// binds 127.0.0.1 on a free port and starts serving.
    pub fn start(dir: &Path) -> H2Server {
        // Each server its own name, so one's certificate never passes for another's issuer.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("certificate names");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("envctl test server {} {n}", std::process::id()));
        let signing = rcgen::KeyPair::generate().expect("a key");
        let cert = params.self_signed(&signing).expect("a test certificate");
        let certificate = dir.join("h2-server.pem");
        std::fs::write(&certificate, cert.pem()).expect("write the test certificate");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .expect("a server certificate");
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let port = listener.local_addr().expect("local address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_io().build().expect("a runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                while let Ok((tcp, _)) = listener.accept().await {
                    shared.lock().unwrap().connections += 1;
                    let (acceptor, state) = (acceptor.clone(), shared.clone());
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = serve(tls, state).await;
                        }
                    });
                }
            });
        });
        H2Server { port, certificate, state }
    }

    /// The PEM file of the server's certificate.
    pub fn certificate(&self) -> &Path {
        &self.certificate
    }

    /// Serves `body` at `path` (which starts with `/`) and returns its URL.
    pub fn serve(&self, path: &str, body: Vec<u8>) -> String {
        self.state.lock().unwrap().bodies.insert(path.to_owned(), body.into());
        format!("https://127.0.0.1:{}{}", self.port, path)
    }

    /// How many requests `path` received, of any method.
    pub fn hits(&self, path: &str) -> usize {
        self.state.lock().unwrap().hits.get(path).copied().unwrap_or(0)
    }

    /// How many TCP connections were accepted.
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }
}

/// Answers the requests of one HTTP/2 connection: 200 with the body of a known path (`HEAD`: its
/// length alone), 404 for any other.
async fn serve(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    state: Arc<Mutex<State>>,
) -> Result<(), h2::Error> {
    let mut connection = h2::server::handshake(tls).await?;
    while let Some(request) = connection.accept().await {
        let (request, mut respond) = request?;
        let path = request.uri().path().to_owned();
        let body = {
            let mut state = state.lock().unwrap();
            *state.hits.entry(path.clone()).or_default() += 1;
            state.bodies.get(&path).cloned()
        };
        let head = request.method() == http::Method::HEAD;
        let Some(body) = body else {
            let answer = http::Response::builder().status(404).body(()).expect("a response");
            respond.send_response(answer, true)?;
            continue;
        };
        let answer = http::Response::builder()
            .status(200)
            .header("content-length", body.len())
            .body(())
            .expect("a response");
        let mut stream = respond.send_response(answer, head || body.is_empty())?;
        if !head && !body.is_empty() {
            // h2 holds what the peer's window does not take yet and sends it as the window opens.
            stream.send_data(body, true)?;
        }
    }
    Ok(())
}
