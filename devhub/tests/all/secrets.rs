//! No token, credential or operator token in the dev Hub's logs (TRACE), errors or database.

use std::io::Write;
use std::sync::{Arc, Mutex};

use clawgate_hub::client::HubClient;
use clawgate_hub::protocol::{EnrollRequest, WireSecret};

use crate::{TestHub, fast, heartbeat};

#[derive(Clone, Default)]
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

#[tokio::test(flavor = "current_thread")]
async fn tokens_and_credentials_never_reach_logs_errors_or_the_database() {
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let t = TestHub::start().await;
    let a = t.enroll("tenant-a").await;
    let credential = a.identity.credential().expose().to_owned();
    // A second token used twice: the refusal's message must not quote it.
    let file = t.hub.mint_token("tenant-a").unwrap();
    let token = file.token.expose().to_owned();
    let client = HubClient::new(&t.hub.url(), vec![t.hub.spki_pin()], None, fast()).unwrap();
    let req = EnrollRequest {
        token: WireSecret::new(token.clone()),
        hostname: "h".into(),
        version: "1".into(),
    };
    let answer = client.enroll(&req).await.unwrap();
    let second = answer.credential.expose().to_owned();
    let refused = client.enroll(&req).await.unwrap_err().to_string();
    // A malformed enrollment body carrying the token must not echo it either.
    let e = client
        .enroll(&EnrollRequest {
            token: WireSecret::new(token.clone()),
            hostname: String::new(),
            version: "1".into(),
        })
        .await
        .unwrap_err()
        .to_string();
    let rotated = a.client.rotate_credential().await.unwrap();
    let third = rotated.credential.expose().to_owned();
    a.client.heartbeat(&heartbeat()).await.unwrap();
    let operator = t.hub.operator_token().expose().to_owned();
    drop(t.hub.overview().unwrap());

    let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("Appliance enrolled"),
        "the capture works: {logs}"
    );
    let db = clawgate_protocol::io::read_capped(&t.state().join("devhub.db"), 64 << 20).unwrap();
    let mut wal = clawgate_protocol::io::read_capped(&t.state().join("devhub.db-wal"), 64 << 20)
        .unwrap_or_default();
    wal.extend_from_slice(&db);
    let haystack = String::from_utf8_lossy(&wal);
    for (what, secret) in [
        ("token", &token),
        ("credential", &credential),
        ("second credential", &second),
        ("rotated credential", &third),
        ("operator token", &operator),
    ] {
        assert!(!logs.contains(secret.as_str()), "{what} in logs");
        assert!(!refused.contains(secret.as_str()), "{what} in an error");
        assert!(!e.contains(secret.as_str()), "{what} in an error");
        assert!(
            !haystack.contains(secret.as_str()),
            "{what} in the database"
        );
    }
    assert!(crate::exists_nonempty(&t.state().join("devhub.db")));
    // Only the owner can read any of the state directory's secrets-bearing files.
    use std::os::unix::fs::PermissionsExt;
    let mode = |name: &str| {
        std::fs::metadata(t.state().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700);
    for f in [
        "devhub.db",
        "devhub.db-wal",
        "signing-keys.json",
        "tls-key.der",
        "operator-token",
    ] {
        assert_eq!(mode(f), 0o600, "{f}");
    }
}
