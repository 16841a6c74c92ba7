//! The proxy on an ephemeral loopback port in front of the fake upstream, and a client.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clawgate_egress::{
    AgentId, Bucket, BucketQuery, Egress, EgressConfig, Provider, RedactorSource, SharedRedactor,
    StaticKeys, TokenTable, UsageStore,
};
use clawgate_protocol::SecretString;
use clawgate_redact::{Capture, Redactor};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::fake::Fake;

pub const TOKEN_A: &str = "cg-local-agent-alpha-7f3e9d2c1b0a";
pub const TOKEN_B: &str = "cg-local-agent-beta-0a1b2c3d4e5f";
pub const REAL_ANTHROPIC: &str = "real-anthropic-key-111111111111";
pub const REAL_OPENAI: &str = "real-openai-key-222222222222";
pub const REAL_GEMINI: &str = "real-gemini-key-333333333333";
pub const REAL_OPENROUTER: &str = "real-openrouter-key-444444444444";

/// Vault values planted in prompts.
pub const VAULT_PLAIN: &str = "Vq7-planted-db-password-XkQ2";
pub const VAULT_QUOTED: &str = "pa\"ss\\word-planted-Zr81";
pub const VAULT_B64: &str = "Hx9-planted-api-secret-Lm3";

pub fn redactor() -> Redactor {
    Redactor::builder()
        .vault_value(
            "db_password".parse().unwrap(),
            SecretString::new(VAULT_PLAIN.into()),
        )
        .vault_value(
            "quoted".parse().unwrap(),
            SecretString::new(VAULT_QUOTED.into()),
        )
        .vault_value(
            "api_secret".parse().unwrap(),
            SecretString::new(VAULT_B64.into()),
        )
        .placeholder_key([9; 32])
        .build()
        .unwrap()
}

pub struct Harness {
    pub fake: Fake,
    pub egress: Egress,
    pub addr: SocketAddr,
    pub store: UsageStore,
    pub redactor: Arc<SharedRedactor>,
    pub stop: watch::Sender<bool>,
    pub server: tokio::task::JoinHandle<()>,
    client: Client<HttpConnector, Full<Bytes>>,
    _dir: tempfile::TempDir,
}

pub async fn start() -> Harness {
    start_with(|_| {}).await
}

pub async fn start_with(tweak: impl FnOnce(&mut EgressConfig)) -> Harness {
    start_capturing(tweak, None).await
}

/// The shared redactor, plus where unknown secrets are captured (for every agent).
struct Source {
    shared: Arc<SharedRedactor>,
    capture: Option<Arc<dyn Capture>>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("capture", &self.capture.is_some())
            .finish()
    }
}

impl RedactorSource for Source {
    fn current(&self) -> Option<Arc<Redactor>> {
        self.shared.current()
    }

    fn capture(&self, _agent: &AgentId) -> Option<Arc<dyn Capture>> {
        self.capture.clone()
    }
}

/// [`start_with`], unknown secrets offered to `capture`.
pub async fn start_capturing(
    tweak: impl FnOnce(&mut EgressConfig),
    capture: Option<Arc<dyn Capture>>,
) -> Harness {
    let fake = Fake::start().await;
    let mut config = EgressConfig::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    for p in [Provider::Anthropic, Provider::OpenAi, Provider::Gemini] {
        config.set_upstream(p, &fake.url()).unwrap();
    }
    config
        .set_upstream(Provider::OpenRouter, &format!("{}/api", fake.url()))
        .unwrap();
    config.shutdown_grace = Duration::from_secs(2);
    tweak(&mut config);
    let dir = tempfile::tempdir().unwrap();
    let store = UsageStore::open(&dir.path().join("usage.db")).unwrap();
    let redactor = Arc::new(SharedRedactor::new(Arc::new(redactor())));
    let egress = Egress::builder(config)
        .tokens(Arc::new(
            TokenTable::new()
                .with("alpha", &SecretString::new(TOKEN_A.into()))
                .with("beta", &SecretString::new(TOKEN_B.into())),
        ))
        .provider_keys(Arc::new(
            StaticKeys::new()
                .with(
                    Provider::Anthropic,
                    SecretString::new(REAL_ANTHROPIC.into()),
                )
                .with(Provider::OpenAi, SecretString::new(REAL_OPENAI.into()))
                .with(Provider::Gemini, SecretString::new(REAL_GEMINI.into()))
                .with(
                    Provider::OpenRouter,
                    SecretString::new(REAL_OPENROUTER.into()),
                ),
        ))
        .redactor(Arc::new(Source {
            shared: redactor.clone(),
            capture,
        }))
        .usage_store(store.clone())
        .build()
        .unwrap();
    let listener = egress.bind().await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn({
        let e = egress.clone();
        async move { e.serve(listener, stopped).await }
    });
    let client = Client::builder(TokioExecutor::new()).build_http();
    Harness {
        fake,
        egress,
        addr,
        store,
        redactor,
        stop,
        server,
        client,
        _dir: dir,
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

impl Harness {
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Response<Incoming> {
        send_to(
            &self.client,
            &format!("http://{}{path}", self.addr),
            method,
            headers,
            body,
        )
        .await
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let r = self.send(method, path, headers, body).await;
        let (parts, body) = r.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Straight to the fake (what a direct call would get).
    pub async fn direct(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let r = send_to(
            &self.client,
            &format!("{}{path}", self.fake.url()),
            "POST",
            headers,
            body,
        )
        .await;
        let (parts, body) = r.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    pub async fn buckets(&self) -> Vec<Bucket> {
        self.store.flush().await.unwrap();
        self.store.buckets(&BucketQuery::default()).unwrap()
    }

    /// Writes `raw` on a fresh connection and reads until the peer closes (or `timeout`).
    pub async fn raw(&self, raw: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(self.addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        out
    }
}

pub async fn send_to(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response<Incoming> {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    client
        .request(b.body(Full::new(body.into())).unwrap())
        .await
        .unwrap()
}

/// The one bucket of `agent` for `provider`.
pub fn bucket<'a>(all: &'a [Bucket], agent: &str, provider: &str) -> &'a Bucket {
    let mut m = all
        .iter()
        .filter(|b| b.agent == agent && b.provider == provider);
    let b = m
        .next()
        .unwrap_or_else(|| panic!("no bucket for {agent}/{provider} in {all:?}"));
    assert!(
        m.next().is_none(),
        "several buckets for {agent}/{provider}: {all:?}"
    );
    b
}
