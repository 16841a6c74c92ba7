//! No credential or token in logs, errors or `Debug` output: the secrets are planted, every
//! path that handles them runs (enrollment, rotation, a Hub that echoes them back in its error
//! messages, pin mismatch, timeouts) with every log record at TRACE captured (tracing and the
//! `log` crate, which reqwest uses), and the captured text is searched for them.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use clawgate_hub::enroll::{enroll, read_token_file};
use clawgate_hub::identity::rotate_credential;
use serde_json::json;

use crate::client::{example, fast};
use crate::enroll::{NEW_CREDENTIAL, TOKEN, enroll_answer, options, write_token_file};
use crate::server::{FakeHub, Reply};

static CAPTURED: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct LogCapture(Sink);

impl log::Log for LogCapture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {} {}\n", record.level(), record.target(), record.args());
        self.0.clone().write_all(line.as_bytes()).unwrap();
    }
    fn flush(&self) {}
}

/// Installs the capture once for the whole test binary and returns its buffer.
fn capture() -> Arc<Mutex<Vec<u8>>> {
    CAPTURED
        .get_or_init(|| {
            let buf = Arc::new(Mutex::new(Vec::new()));
            let sink = Sink(buf.clone());
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || sink.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            log::set_logger(Box::leak(Box::new(LogCapture(Sink(buf.clone()))))).unwrap();
            log::set_max_level(log::LevelFilter::Trace);
            buf
        })
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_or_token_is_ever_logged_or_shown() {
    let captured = capture();
    let first_credential = enroll_answer()["credential"].as_str().unwrap().to_owned();
    let secrets = [TOKEN, first_credential.as_str(), NEW_CREDENTIAL];
    // The Hub echoes, in its error messages, the secret the appliance is using at that moment
    // (a string the appliance never held is not the appliance's to hide).
    let hub = FakeHub::start(crate::enroll::hub_handler(enroll_answer())).await;
    let mut shown: Vec<String> = Vec::new();

    // A Hub that refuses the token, echoing it.
    let work = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let token = write_token_file(work.path(), &hub);
    hub.set_handler(move |_| {
        Reply::Json(
            401,
            json!({"error": {"code": "token_invalid", "message": format!("you sent {TOKEN}")}}),
            vec![],
        )
    });
    let err = enroll(&token, state.path(), &options()).await.unwrap_err();
    shown.push(format!("{err} {err:?}"));
    shown.push(format!("{:?}", read_token_file(&token).unwrap()));

    // A good enrollment and a rotation.
    hub.set_handler(crate::enroll::hub_handler(enroll_answer()));
    let mut identity = enroll(&token, state.path(), &options()).await.unwrap();
    let client = identity.client(fast()).unwrap();
    rotate_credential(&client, &mut identity, state.path())
        .await
        .unwrap();
    shown.push(format!("{identity:?} {client:?}"));

    // Failures on the authenticated channel, the Hub echoing the credential in each.
    assert_eq!(identity.credential().expose(), NEW_CREDENTIAL);
    let echo = format!("you sent Bearer {NEW_CREDENTIAL}");
    let hb = serde_json::from_value(example("/v1/heartbeat", "post", None, "healthy")).unwrap();
    for status in [401u16, 403, 409, 500, 503] {
        let echo = echo.clone();
        hub.set_handler(move |_| {
            Reply::Json(
                status,
                json!({"error": {"code": "x", "message": echo}}),
                vec![("retry-after", "1".into())],
            )
        });
        let err = client.heartbeat(&hb).await.unwrap_err();
        shown.push(format!("{err} {err:?}"));
    }
    let echo_raw = echo.clone();
    hub.set_handler(move |_| Reply::Raw(502, echo_raw.clone().into_bytes()));
    let err = client.heartbeat(&hb).await.unwrap_err();
    shown.push(format!("{err} {err:?}"));
    hub.set_handler(|_| Reply::Hang);
    let err = client.heartbeat(&hb).await.unwrap_err();
    shown.push(format!("{err} {err:?}"));
    hub.set_handler(|_| Reply::Raw(200, b"{\"credential\": 5}".to_vec()));
    let err = client.rotate_credential().await.unwrap_err();
    shown.push(format!("{err} {err:?}"));
    let unpinned = clawgate_hub::client::HubClient::new(
        &hub.url(),
        vec![[0; 32]],
        Some(identity.credential().clone()),
        fast(),
    )
    .unwrap();
    let err = unpinned.heartbeat(&hb).await.unwrap_err();
    shown.push(format!("{err} {err:?} {unpinned:?}"));

    let logs = String::from_utf8_lossy(&captured.lock().unwrap()).into_owned();
    assert!(
        logs.contains("Hub answered"),
        "the capture works: {}",
        logs.len()
    );
    assert!(logs.contains("TRACE") || logs.contains("DEBUG"));
    let everything = format!("{logs}\n{}", shown.join("\n"));
    for secret in secrets {
        // The whole value, and its random part alone.
        for needle in [secret, &secret[4..20]] {
            assert!(
                !everything.contains(needle),
                "`{needle}` leaked:\n{everything}"
            );
        }
    }
    assert!(
        shown.iter().filter(|s| s.contains("[REDACTED]")).count() >= 5,
        "{shown:#?}"
    );
}
