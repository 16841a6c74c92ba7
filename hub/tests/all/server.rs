//! A scriptable HTTPS server on 127.0.0.1:0 standing in for the Hub: hyper over tokio-rustls with
//! a fresh self-signed certificate (rcgen), recording every request, answering with whatever the
//! test's handler says: JSON, raw bytes, a hang, a body cut mid-way, a closed connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    /// Path and query.
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Recorded {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// How to answer.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// Status, JSON body, extra headers.
    Json(u16, serde_json::Value, Vec<(&'static str, String)>),
    /// Status and raw body.
    Raw(u16, Vec<u8>),
    /// Never answer.
    Hang,
    /// Headers promising `promised` bytes, then `sent`, then the connection dies.
    Cut { promised: usize, sent: Vec<u8> },
    /// Close the connection without any answer.
    Close,
}

pub(crate) type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

pub(crate) struct FakeHub {
    pub(crate) addr: SocketAddr,
    /// SHA-256 of the server certificate's SPKI, computed from rcgen's key (independently of
    /// the crate's own SPKI extraction).
    pub(crate) pin: [u8; 32],
    pub(crate) cert_der: Vec<u8>,
    pub(crate) requests: Arc<Mutex<Vec<Recorded>>>,
    handler: Arc<Mutex<Handler>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeHub {
    pub(crate) async fn start(
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> FakeHub {
        Self::start_with(handler, None).await
    }

    /// A server that presents `stolen_cert` (another server's certificate, so its SPKI matches
    /// that server's pin) but holds only its own private key: it cannot sign the handshake.
    pub(crate) async fn start_impostor(stolen_cert: Vec<u8>) -> FakeHub {
        Self::start_with(|_| Reply::Raw(200, b"{}".to_vec()), Some(stolen_cert)).await
    }

    async fn start_with(
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
        stolen_cert: Option<Vec<u8>>,
    ) -> FakeHub {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pin: [u8; 32] = Sha256::digest(key.public_key_der()).into();
        let cert_der = stolen_cert.unwrap_or_else(|| cert.der().to_vec());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signing_key = provider
            .key_provider
            .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(
                key.serialize_der().into(),
            ))
            .unwrap();
        // No key/certificate consistency check: the impostor needs exactly that to be wrong.
        let certified = Arc::new(rustls::sign::CertifiedKey::new(
            vec![rustls::pki_types::CertificateDer::from(cert_der.clone())],
            signing_key,
        ));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(certified)));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Mutex<Handler>> = Arc::new(Mutex::new(Arc::new(handler)));
        let task = tokio::spawn(accept_loop(
            listener,
            acceptor,
            requests.clone(),
            handler.clone(),
        ));
        FakeHub {
            addr,
            pin,
            cert_der,
            requests,
            handler,
            task,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    pub(crate) fn set_handler(&self, handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) {
        *self.handler.lock().unwrap() = Arc::new(handler);
    }

    pub(crate) fn recorded(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

#[derive(Debug)]
struct Fixed(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    requests: Arc<Mutex<Vec<Recorded>>>,
    handler: Arc<Mutex<Handler>>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let acceptor = acceptor.clone();
        let requests = requests.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            // A failed handshake (the client refused our key) just ends the connection.
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let requests = requests.clone();
                let handler = handler.lock().unwrap().clone();
                answer(req, requests, handler)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    handler: Handler,
) -> Result<Response<BoxBody<Bytes, BoxError>>, BoxError> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(e) => return Err(boxed(e)),
    };
    let recorded = Recorded {
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body,
    };
    requests.lock().unwrap().push(recorded.clone());
    let reply = handler(&recorded);
    let response = match reply {
        Reply::Json(status, value, headers) => {
            let mut r = Response::builder()
                .status(status)
                .header("content-type", "application/json");
            for (n, v) in headers {
                r = r.header(n, v);
            }
            r.body(full(serde_json::to_vec(&value).unwrap()))
        }
        Reply::Raw(status, bytes) => Response::builder().status(status).body(full(bytes)),
        Reply::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Reply::Cut { promised, sent } => Response::builder()
            .status(200)
            .header("content-length", promised.to_string())
            .body(BoxBody::new(CutBody(Some(Bytes::from(sent))))),
        Reply::Close => return Err(boxed(std::io::Error::other("closing without an answer"))),
    };
    Ok(response.unwrap())
}

fn boxed(e: impl std::error::Error + Send + Sync + 'static) -> BoxError {
    Box::new(e)
}

fn full(bytes: Vec<u8>) -> BoxBody<Bytes, BoxError> {
    BoxBody::new(http_body_util::Full::new(Bytes::from(bytes)).map_err(|e: Infallible| match e {}))
}

/// Yields its bytes, then fails: hyper aborts the connection mid-body.
struct CutBody(Option<Bytes>);

impl Body for CutBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.0.take() {
            Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
            None => Poll::Ready(Some(Err(boxed(std::io::Error::other("cut"))))),
        }
    }
}
