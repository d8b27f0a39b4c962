//! TLS on the listener: server certificates, mTLS client verification, and TLS as what
//! makes a non-loopback listener acceptable.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all made here.
fn make_pki(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=steward-test-ca",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=agent-host",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.pem",
            "-days",
            "2",
            "-extfile",
            "client.ext",
        ],
    );
}

fn curl(dir: &Path, url: &str, client_cert: bool) -> (bool, String) {
    let mut cmd = Command::new("curl");
    cmd.current_dir(dir)
        .args(["-sS", "--max-time", "10", "--cacert", "ca.pem"]);
    if client_cert {
        cmd.args(["--cert", "client.pem", "--key", "client.key"]);
    }
    let out = cmd.arg(url).output().expect("curl runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn serve_tls(dir: &Path, listen: &str, client_ca: bool) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_steward"));
    cmd.current_dir(dir)
        .args([
            "serve",
            "--data-dir",
            "data",
            "--listen",
            listen,
            "--tls-cert",
            "server.pem",
            "--tls-key",
            "server.key",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if client_ca {
        cmd.args(["--tls-client-ca", "ca.pem"]);
    }
    Proc(cmd.spawn().unwrap())
}

fn wait_healthy(dir: &Path, port: u16) {
    let start = Instant::now();
    loop {
        let (ok, _) = curl(dir, &format!("https://127.0.0.1:{port}/healthz"), true);
        if ok {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "TLS listener never became healthy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn tls_and_mutual_tls_on_the_listener() {
    if Command::new("openssl").arg("version").output().is_err()
        || Command::new("curl").arg("--version").output().is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but openssl or curl is missing"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());

    // mTLS: a client without a certificate is refused during the handshake.
    let port = free_port();
    let server = serve_tls(dir.path(), &format!("127.0.0.1:{port}"), true);
    wait_healthy(dir.path(), port);
    let (ok, body) = curl(
        dir.path(),
        &format!("https://127.0.0.1:{port}/healthz"),
        true,
    );
    assert!(ok && body.contains("ok"), "{body}");
    let (ok, _) = curl(
        dir.path(),
        &format!("https://127.0.0.1:{port}/healthz"),
        false,
    );
    assert!(!ok, "a client without a certificate got through mTLS");
    // Plain HTTP on the TLS port gets nothing useful.
    let (status, _) = try_http(
        "GET",
        &format!("http://127.0.0.1:{port}/healthz"),
        &[],
        None,
    )
    .unwrap_or((0, String::new()));
    assert_ne!(status, 200);
    drop(server);

    // TLS makes a non-loopback listener acceptable (without it, startup is refused:
    // see startup.rs). Bind all interfaces, talk to it over loopback only.
    let port = free_port();
    let server = serve_tls(dir.path(), &format!("0.0.0.0:{port}"), false);
    wait_healthy(dir.path(), port);
    let (ok, body) = curl(
        dir.path(),
        &format!("https://127.0.0.1:{port}/healthz"),
        false,
    );
    assert!(ok, "server TLS without client auth: {body}");
    drop(server);
}
