//! A validating admission webhook on loopback that the test switches between
//! refusing and allowing, to make the apiserver fail our writes on demand.
//!
//! It serves HTTPS with a self-signed certificate made by `openssl` (its own
//! CA, handed to the apiserver as `caBundle`), speaks just enough HTTP/1.1
//! (keep-alive, Content-Length bodies) and answers every AdmissionReview.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The webhook server: refuses while [`Webhook::refuse`] is set.
pub struct Webhook {
    pub port: u16,
    /// The certificate (self-signed, its own CA), PEM.
    pub ca_pem: String,
    refusing: Arc<AtomicBool>,
    /// Every review seen: (object name, refused).
    seen: Arc<Mutex<Vec<(String, bool)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    /// Starts serving on a free port of 127.0.0.1, allowing everything;
    /// key and certificate are written to `dir`.
    pub async fn start(dir: &Path) -> Result<Webhook> {
        let (key, cert) = (dir.join("webhook.key"), dir.join("webhook.crt"));
        let output = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .context("running openssl")?;
        if !output.status.success() {
            bail!("openssl: {}", String::from_utf8_lossy(&output.stderr));
        }
        let ca_pem = std::fs::read_to_string(&cert)?;
        let chain = vec![CertificateDer::from_pem_slice(ca_pem.as_bytes())?];
        let key = PrivateKeyDer::from_pem_file(&key)?;
        let config = ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let refusing = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (r, s) = (refusing.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, r, s) = (acceptor.clone(), r.clone(), s.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = serve(tls, &r, &s).await;
                    }
                });
            }
        });
        Ok(Webhook {
            port,
            ca_pem,
            refusing,
            seen,
            task,
        })
    }

    /// Refuse (true) or allow (false) from now on.
    pub fn refuse(&self, refuse: bool) {
        self.refusing.store(refuse, Ordering::SeqCst);
    }

    /// The reviews seen so far: (object name, refused), in order.
    pub fn seen(&self) -> Vec<(String, bool)> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// A ValidatingWebhookConfiguration sending UPDATEs of `resource` (say
    /// `services/status`) in namespace `namespace` here, failing closed.
    pub fn configuration(&self, name: &str, resource: &str, namespace: &str) -> Value {
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [{
                "name": "refuse.test.ferrolb.io",
                "clientConfig": {
                    "url": format!("https://127.0.0.1:{}/validate", self.port),
                    "caBundle": ca,
                },
                "rules": [{"apiGroups": [""], "apiVersions": ["v1"],
                           "operations": ["UPDATE"], "resources": [resource]}],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 5,
            }],
        })
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers the AdmissionReviews of one connection until it closes.
async fn serve<S>(
    mut stream: S,
    refusing: &AtomicBool,
    seen: &Mutex<Vec<(String, bool)>>,
) -> Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    loop {
        let header_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .context("no Content-Length")?;
        while buf.len() < header_end + length {
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed inside a request body");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let review: Value = serde_json::from_slice(&buf[header_end..header_end + length])?;
        buf.drain(..header_end + length);
        let request = &review["request"];
        let name = request["name"].as_str().unwrap_or_default().to_string();
        let refuse = refusing.load(Ordering::SeqCst);
        if let Ok(mut seen) = seen.lock() {
            seen.push((name, refuse));
        }
        let mut response = json!({"uid": request["uid"], "allowed": !refuse});
        if refuse {
            response["status"] = json!({"code": 403, "message": "refused by the test webhook"});
        }
        let body = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response,
        })
        .to_string();
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(reply.as_bytes()).await?;
        stream.flush().await?;
    }
}
