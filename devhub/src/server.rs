//! The listener: TCP, rustls (ring, TLS 1.2/1.3, the state directory's certificate), hyper
//! HTTP/1.1, one task per connection; and [`DevHub`], the running Hub handle for tests and the
//! binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::api::{self, Outcome, RespBody};
use crate::error::{Error, Result};
use crate::hub::{Hub, Settings};

/// How to start a dev Hub.
#[derive(Debug, Clone)]
pub struct Config {
    /// The state directory (created 0700 if missing).
    pub state_dir: PathBuf,
    /// Where to listen; `127.0.0.1:0` picks a free port.
    pub listen: SocketAddr,
    /// Heartbeat interval and token lifetime.
    pub settings: Settings,
}

impl Config {
    /// Loopback on a free port, default settings.
    pub fn new(state_dir: impl Into<PathBuf>) -> Config {
        Config {
            state_dir: state_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            settings: Settings::default(),
        }
    }
}

/// A running dev Hub. Derefs to [`Hub`] for every operation (mint tokens, decide, publish
/// bundles, faults, views). Dropping it stops the listener and closes every connection.
#[derive(Debug)]
pub struct DevHub {
    hub: Arc<Hub>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl std::ops::Deref for DevHub {
    type Target = Hub;
    fn deref(&self) -> &Hub {
        &self.hub
    }
}

impl Drop for DevHub {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

impl DevHub {
    /// Opens the state directory and starts listening (inside a Tokio runtime).
    pub async fn start(config: Config) -> Result<DevHub> {
        let hub = Arc::new(Hub::open(&config.state_dir, config.settings)?);
        let acceptor = acceptor(&hub)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::io(format!("listening on {}", config.listen), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the listening address", e))?;
        hub.set_url(format!("https://{addr}"));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, acceptor, hub.clone(), stopped));
        Ok(DevHub {
            hub,
            addr,
            stop,
            task,
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared Hub state.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Stops listening and closes every connection (also done on drop).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

fn acceptor(hub: &Hub) -> Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(hub.tls().key_der().to_vec().into());
    let cert = rustls::pki_types::CertificateDer::from(hub.tls().cert_der.clone());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Keys(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| Error::Keys(format!("TLS certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    hub: Arc<Hub>,
    stopped: watch::Receiver<bool>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(error) => {
                // Out of descriptors and the like: wait a little rather than spin.
                tracing::warn!(%error, "Accept failed.");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let hub = hub.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let serve = async {
                let tls = match acceptor.accept(tcp).await {
                    Ok(t) => t,
                    Err(error) => {
                        tracing::debug!(%error, %peer, "TLS handshake failed.");
                        return;
                    }
                };
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    serve_request(hub.clone(), req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            };
            tokio::select! {
                () = serve => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
        });
    }
}

async fn serve_request(
    hub: Arc<Hub>,
    req: Request<Incoming>,
) -> std::result::Result<hyper::Response<RespBody>, std::io::Error> {
    match api::handle(hub, req).await {
        Outcome::Answer(r) => Ok(r),
        Outcome::Hang => std::future::pending().await,
        Outcome::Close => Err(std::io::Error::other("closed by fault")),
    }
}
