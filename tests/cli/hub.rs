//! A loopback test Hub for `clawgate serve`'s Hub link: HTTPS on 127.0.0.1:0 (hyper over
//! tokio-rustls, a fresh rcgen certificate whose SPKI the appliance pins), with the state the
//! protocol needs (one-time token, credential, event stream with cursors, approvals idempotent
//! by id, usage as the highest revision per bucket, the audit chain checked for continuity,
//! heartbeats, bundles, reports). Every request is recorded, so a test can grep all the Hub ever
//! received. `set_down(true)` makes it drop every connection at once (the Hub unreachable).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use clawgate_hub::protocol::{
    CommandPayload, DecisionKind, DecisionPayload, SignedCommand, SignedDecision,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

pub(crate) const TENANT: &str = "tenant-test";
pub(crate) const APPLIANCE: &str = "appl-0001";
pub(crate) const KID: &str = "hub-1";

/// What the Hub holds.
#[derive(Default)]
pub(crate) struct HubData {
    pub(crate) token: String,
    pub(crate) token_used: bool,
    pub(crate) public_key: String,
    pub(crate) credential: String,
    pub(crate) events: Vec<Value>,
    /// Every approval request received, in arrival order (duplicates included).
    pub(crate) approval_posts: Vec<Value>,
    pub(crate) approvals: BTreeMap<String, Value>,
    /// Bucket key → the bucket at the highest revision received.
    pub(crate) usage: BTreeMap<String, Value>,
    pub(crate) audit: Vec<Value>,
    pub(crate) heartbeats: Vec<Value>,
    pub(crate) bundles: BTreeMap<u64, Vec<u8>>,
    pub(crate) bundle_status: Vec<(u64, Value)>,
    pub(crate) command_results: Vec<(String, Value)>,
    /// Every request: method, target, headers and body, as text.
    pub(crate) received: Vec<String>,
    pub(crate) down: bool,
    /// Usage batches received.
    pub(crate) usage_posts: usize,
    /// Held this long after a usage batch is stored, before the answer (a window in which to
    /// kill the appliance between the Hub's commit and its acknowledgement).
    pub(crate) usage_delay: Duration,
}

pub(crate) struct TestHub {
    pub(crate) addr: SocketAddr,
    pub(crate) pin: String,
    pub(crate) key: ed25519_dalek::SigningKey,
    pub(crate) data: Arc<Mutex<HubData>>,
    notify: Arc<Notify>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut raw = [0u8; N];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut raw).unwrap();
    raw
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl TestHub {
    pub(crate) fn start() -> TestHub {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pin = hex::encode(Sha256::digest(key.public_key_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let data = Arc::new(Mutex::new(HubData {
            token: format!("cgt_{}", hex::encode(random_bytes::<16>())),
            credential: format!(
                "cga_{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
            ),
            ..HubData::default()
        }));
        let signing = ed25519_dalek::SigningKey::from_bytes(&random_bytes::<32>());
        data.lock().unwrap().public_key = b64(signing.verifying_key().as_bytes());
        let notify = Arc::new(Notify::new());
        let (d, n) = (data.clone(), notify.clone());
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                if d.lock().unwrap().down {
                    drop(tcp);
                    continue;
                }
                let (acceptor, d, n) = (acceptor.clone(), d.clone(), n.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let (d, n) = (d.clone(), n.clone());
                        async move {
                            // Down: the connection dies without an answer, even a pooled one.
                            if d.lock().unwrap().down {
                                return Err(std::io::Error::other("hub down"));
                            }
                            Ok(handle(req, d, n).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TestHub {
            addr,
            pin,
            key: signing,
            data,
            notify,
            runtime: Some(runtime),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub(crate) fn public_key(&self) -> String {
        b64(self.key.verifying_key().as_bytes())
    }

    /// Writes the enrollment token file (mode 0600) the provisioner would drop.
    pub(crate) fn write_token_file(&self, path: &Path) {
        let token = self.data.lock().unwrap().token.clone();
        let body = json!({"hub": self.url(), "token": token, "tls_spki_sha256": [self.pin],
                          "signing_keys": [{"kid": KID, "public_key": self.public_key()}]});
        std::fs::write(path, body.to_string()).unwrap();
        std::fs::set_permissions(
            path,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
        )
        .unwrap();
    }

    pub(crate) fn credential(&self) -> String {
        self.data.lock().unwrap().credential.clone()
    }

    pub(crate) fn set_down(&self, down: bool) {
        self.data.lock().unwrap().down = down;
    }

    pub(crate) fn push_event(&self, event: Value) {
        self.data.lock().unwrap().events.push(event);
        self.notify.notify_waiters();
    }

    /// A decision signed by `key` (the Hub's own unless forging).
    #[allow(clippy::too_many_arguments)] // test helper: every field of the payload
    pub(crate) fn decision_with(
        &self,
        key: &ed25519_dalek::SigningKey,
        tenant: &str,
        approval_id: &str,
        action_hash: &str,
        kind: DecisionKind,
        decided_at: i64,
        expires_at: i64,
    ) -> SignedDecision {
        clawgate_hub::signing::sign(
            &DecisionPayload {
                tenant_id: tenant.into(),
                appliance_id: APPLIANCE.into(),
                approval_id: approval_id.into(),
                action_hash: action_hash.into(),
                decision: kind,
                decided_at,
                expires_at,
                decided_by: "user:owner".into(),
                kid: KID.into(),
            },
            key,
        )
        .unwrap()
    }

    pub(crate) fn decide(&self, approval_id: &str, action_hash: &str, kind: DecisionKind) {
        let d = self.decision_with(
            &self.key,
            TENANT,
            approval_id,
            action_hash,
            kind,
            now(),
            now() + 86_400,
        );
        self.push_event(json!({"type": "approval_decision", "decision": d}));
    }

    pub(crate) fn command(
        &self,
        key: &ed25519_dalek::SigningKey,
        command_id: &str,
        name: &str,
    ) -> SignedCommand {
        clawgate_hub::signing::sign(
            &CommandPayload {
                tenant_id: TENANT.into(),
                appliance_id: APPLIANCE.into(),
                command_id: command_id.into(),
                name: name.into(),
                issued_at: now(),
                kid: KID.into(),
            },
            key,
        )
        .unwrap()
    }

    /// Publishes bundle `bytes` as `version` and announces it.
    pub(crate) fn publish_bundle(&self, version: u64, bytes: Vec<u8>) {
        let sha = hex::encode(Sha256::digest(&bytes));
        self.data.lock().unwrap().bundles.insert(version, bytes);
        self.push_event(json!({"type": "bundle_available", "version": version, "sha256": sha}));
    }

    /// Waits (up to a generous deadline, for liveness only) until `f` holds.
    pub(crate) fn wait_for(&self, what: &str, f: impl Fn(&HubData) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if f(&self.data.lock().unwrap()) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the Hub never saw: {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: u16, code: &str) -> Response<Full<Bytes>> {
    reply(status, json!({"error": {"code": code, "message": code}}))
}

async fn handle(
    req: Request<Incoming>,
    data: Arc<Mutex<HubData>>,
    notify: Arc<Notify>,
) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let target = req.uri().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let headers: Vec<String> = req
        .headers()
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("")))
        .collect();
    let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
    {
        let mut d = data.lock().unwrap();
        d.received.push(format!(
            "{method} {target}\n{}\n{}",
            headers.join("\n"),
            String::from_utf8_lossy(&body)
        ));
        if path != "/v1/enroll" && auth != format!("Bearer {}", d.credential) {
            return error(401, "unauthorized");
        }
    }
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "enroll"]) => {
            let mut d = data.lock().unwrap();
            if json["token"] != d.token.as_str() || d.token_used {
                return error(401, "token_invalid");
            }
            d.token_used = true;
            reply(
                200,
                json!({"tenant_id": TENANT, "appliance_id": APPLIANCE, "credential": d.credential,
                       "signing_keys": [{"kid": KID, "public_key": d.public_key}], "keyset_version": 1, "heartbeat_seconds": 5}),
            )
        }
        ("GET", ["v1", "events"]) => {
            let param = |name: &str| {
                query
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_owned())
            };
            let from: usize = param("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
            let wait: u64 = param("wait").and_then(|w| w.parse().ok()).unwrap_or(0);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.min(30));
            loop {
                let notified = notify.notified();
                {
                    let d = data.lock().unwrap();
                    if d.events.len() > from || tokio::time::Instant::now() >= deadline {
                        let events: Vec<Value> = d.events[from.min(d.events.len())..].to_vec();
                        return reply(
                            200,
                            json!({"events": events, "cursor": d.events.len().to_string()}),
                        );
                    }
                }
                let _ = tokio::time::timeout_at(deadline, notified).await;
            }
        }
        ("POST", ["v1", "approvals"]) => {
            let mut d = data.lock().unwrap();
            d.approval_posts.push(json.clone());
            let id = json["approval_id"].as_str().unwrap_or("").to_owned();
            let status = json!({"approval_id": id, "status": "pending", "decision": null});
            match d.approvals.get(&id) {
                Some(known) if *known == json => reply(200, status),
                Some(_) => error(409, "approval_conflict"),
                None => {
                    d.approvals.insert(id, json);
                    reply(201, status)
                }
            }
        }
        ("POST", ["v1", "usage"]) => {
            let (answer, delay) = usage(&mut data.lock().unwrap(), &json);
            tokio::time::sleep(delay).await;
            answer
        }
        ("POST", ["v1", "audit"]) => {
            let mut d = data.lock().unwrap();
            for r in json["records"].as_array().cloned().unwrap_or_default() {
                let last = d.audit.len() as i64;
                let seq = r["seq"].as_i64().unwrap();
                let last_hash = d.audit.last().map_or(
                    "0000000000000000000000000000000000000000000000000000000000000000".to_owned(),
                    |l| l["hash"].as_str().unwrap().to_owned(),
                );
                if seq <= last {
                    continue;
                }
                if seq != last + 1 || r["prev"] != last_hash.as_str() {
                    return reply(
                        409,
                        json!({"error": {"code": "audit_gap", "message": "gap", "expected_seq": last + 1}}),
                    );
                }
                d.audit.push(r);
            }
            let last = d
                .audit
                .last()
                .cloned()
                .unwrap_or(json!({"seq": 0, "hash": "0".repeat(64)}));
            reply(
                200,
                json!({"last_seq": last["seq"], "last_hash": last["hash"]}),
            )
        }
        ("POST", ["v1", "heartbeat"]) => {
            data.lock().unwrap().heartbeats.push(json);
            reply(200, json!({"server_time": now(), "next_in_seconds": 5}))
        }
        ("GET", ["v1", "bundles", version]) => {
            let d = data.lock().unwrap();
            match version.parse().ok().and_then(|v: u64| d.bundles.get(&v)) {
                Some(bytes) => {
                    let mut r = Response::new(Full::new(Bytes::from(bytes.clone())));
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    r
                }
                None => error(404, "not_found"),
            }
        }
        ("POST", ["v1", "bundles", version, "status"]) => {
            data.lock()
                .unwrap()
                .bundle_status
                .push((version.parse().unwrap_or(0), json));
            empty()
        }
        ("POST", ["v1", "commands", id, "result"]) => {
            data.lock()
                .unwrap()
                .command_results
                .push(((*id).to_owned(), json));
            empty()
        }
        _ => error(404, "not_found"),
    }
}

fn empty() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = hyper::StatusCode::NO_CONTENT;
    r
}

fn usage(d: &mut HubData, json: &Value) -> (Response<Full<Bytes>>, Duration) {
    d.usage_posts += 1;
    let mut acks = Vec::new();
    for b in json["buckets"].as_array().cloned().unwrap_or_default() {
        let key = format!(
            "{}|{}|{}|{}",
            b["agent"], b["provider"], b["model"], b["hour"]
        );
        let held = d
            .usage
            .get(&key)
            .map_or(0, |h| h["revision"].as_u64().unwrap());
        if b["revision"].as_u64().unwrap() > held {
            d.usage.insert(key.clone(), b.clone());
        }
        let top = d.usage[&key]["revision"].clone();
        acks.push(
            json!({"agent": b["agent"], "provider": b["provider"], "model": b["model"],
                          "hour": b["hour"], "revision": top}),
        );
    }
    (reply(200, json!({"acks": acks})), d.usage_delay)
}
