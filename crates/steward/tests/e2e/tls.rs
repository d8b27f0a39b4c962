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
pub(crate) fn make_pki(dir: &Path) {
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
    issue_cert(dir, "server", "127.0.0.1", "server.ext");
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    issue_cert(dir, "client", "agent-host", "client.ext");
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

/// A certificate `NAME.pem` / `NAME.key` for `CN=cn` from the test CA, with the
/// extensions in `ext`.
fn issue_cert(dir: &Path, name: &str, cn: &str, ext: &str) {
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
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            ext,
        ],
    );
}

/// An HTTPS upstream (Python's ssl module) that requires a client certificate from the
/// test CA and answers with the certificate's CN and the Authorization it received; its
/// token endpoint issues a token naming the client certificate's CN.
const MTLS_UPSTREAM: &str = r#"
import http.server, json, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        cert = self.connection.getpeercert() or {}
        cn = [v for rdn in cert.get("subject", ()) for (k, v) in rdn if k == "commonName"]
        body = json.dumps({"cn": cn[0] if cn else None,
                           "authorization": self.headers.get("Authorization")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        request = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        cert = self.connection.getpeercert() or {}
        cn = [v for rdn in cert.get("subject", ()) for (k, v) in rdn if k == "commonName"]
        cn = cn[0] if cn else "nobody"
        if self.path == "/mcp":
            # A minimal MCP server over Streamable HTTP (JSON answers): one tool that
            # reports the client certificate's CN and the Authorization it received.
            msg = json.loads(request)
            if "id" not in msg:
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            method = msg["method"]
            if method == "initialize":
                result = {"protocolVersion": msg["params"]["protocolVersion"],
                          "capabilities": {"tools": {}}, "serverInfo": {"name": "mtls", "version": "1"}}
            elif method == "tools/list":
                result = {"tools": [{"name": "whoami", "description": "Who is calling",
                                     "inputSchema": {"type": "object"},
                                     "annotations": {"readOnlyHint": True}}]}
            elif method == "tools/call":
                text = "cn=%s authorization=%s" % (cn, self.headers.get("Authorization"))
                result = {"content": [{"type": "text", "text": text}]}
            else:
                result = None
            answer = {"jsonrpc": "2.0", "id": msg["id"]}
            if result is None:
                answer["error"] = {"code": -32601, "message": "method not found"}
            else:
                answer["result"] = result
            body = json.dumps(answer).encode()
        else:
            # A token endpoint that authenticates its client by certificate (RFC 8705).
            body = json.dumps({"access_token": "token-for-" + cn, "expires_in": 300}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("server.pem", "server.key")
ctx.load_verify_locations("ca.pem")
ctx.verify_mode = ssl.CERT_REQUIRED
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#;

#[test]
fn upstream_mutual_tls_presents_the_vault_client_certificate() {
    if Command::new("openssl").arg("version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but openssl is missing"
        );
        return;
    }
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    issue_cert(pki.path(), "client2", "agent-host-rotated", "client.ext");
    std::fs::write(pki.path().join("upstream.py"), MTLS_UPSTREAM).unwrap();
    let up_port = free_port();
    let _upstream = Proc(
        Command::new("python3")
            .current_dir(pki.path())
            .args(["upstream.py", &up_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs"),
    );
    wait_port(up_port);

    let d = Deployment::start(None, None);
    let read = |name: &str| std::fs::read_to_string(pki.path().join(name)).unwrap();
    let identity = format!("{}{}", read("client.pem"), read("client.key"));
    d.ok(&["secret", "set", "upstream-mtls"], Some(&identity));
    d.ok(
        &["secret", "set", "upstream-token"],
        Some("mtls-upstream-bearer"),
    );
    let spec = pki.path().join("whoami.yaml");
    std::fs::write(
        &spec,
        "openapi: 3.0.3\ninfo: {title: whoami, version: '1'}\npaths:\n  /whoami:\n    get: {operationId: whoami.get}\n",
    )
    .unwrap();
    let base = format!("https://127.0.0.1:{up_port}");
    let ca = pki.path().join("ca.pem");
    // `service add NAME` for the upstream, with `auth` arguments after these.
    let add = |name: &'static str, auth: &[&str]| {
        let mut args = vec![
            "service",
            "add",
            name,
            "--base-url",
            base.as_str(),
            "--allow-private",
            "--ca-bundle",
            ca.to_str().unwrap(),
            "--openapi",
            spec.to_str().unwrap(),
        ];
        args.extend_from_slice(auth);
        d.ok(&args, None);
    };
    let bearer_auth = ["--auth", "bearer", "--secret", "upstream-token"];
    add(
        "mtls",
        &[&bearer_auth[..], &["--client-cert-secret", "upstream-mtls"]].concat(),
    );
    add("nocert", &bearer_auth);
    d.policy("permit(principal, action, resource);");
    let bearer = format!("Bearer {}", d.agent);
    let auth = [("Authorization", bearer.as_str())];

    // The upstream refuses a handshake without a client certificate: no call goes through.
    let (status, text) = http("GET", &format!("{}/whoami", d.base("nocert")), &auth, None);
    assert_eq!(status, 502, "{text}");

    // With the certificate from the vault: the upstream sees it, and the bearer credential.
    let (status, text) = http("GET", &format!("{}/whoami", d.base("mtls")), &auth, None);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""cn": "agent-host""#), "{text}");
    assert!(text.contains("Bearer mtls-upstream-bearer"), "{text}");

    // The OAuth token endpoint sees the same client certificate (mutual-TLS client
    // authentication), and the token it issued is what the upstream receives.
    let token_url = format!("{base}/token");
    add(
        "mtls-oauth",
        &[
            "--auth",
            "oauth2",
            "--token-url",
            token_url.as_str(),
            "--client-id",
            "steward",
            "--secret",
            "upstream-token",
            "--client-cert-secret",
            "upstream-mtls",
        ],
    );
    let (status, text) = http(
        "GET",
        &format!("{}/whoami", d.base("mtls-oauth")),
        &auth,
        None,
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("Bearer token-for-agent-host"), "{text}");

    // An MCP server over HTTPS sees the same client certificate, and the bearer credential.
    let apply = pki.path().join("mcp.yaml");
    let indented_ca: String = read("ca.pem")
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    std::fs::write(
        &apply,
        format!(
            "version: 1\nservices:\n  - name: mtlsmcp\n    kind: mcp\n    allow_private: true\n    client_cert_secret: upstream-mtls\n    auth: {{type: bearer, secret: upstream-token}}\n    ca_bundle: |\n{indented_ca}    mcp:\n      transport:\n        type: http\n        url: \"{base}/mcp\"\n"
        ),
    )
    .unwrap();
    d.ok(&["apply", "--file", apply.to_str().unwrap()], None);
    d.ok(&["mcp", "refresh", "mtlsmcp"], None);
    // One JSON-RPC POST to Steward's /mcp as the agent, in a session once there is one.
    let mcp_post = |body: &str, session: Option<&str>| {
        let mut headers = vec![
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ];
        if let Some(id) = session {
            headers.push(("Mcp-Session-Id", id));
            headers.push(("Mcp-Protocol-Version", "2025-11-25"));
        }
        http(
            "POST",
            &format!("http://127.0.0.1:{}/mcp", d.port),
            &headers,
            Some(body),
        )
    };
    let (status, text) = mcp_post(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
        None,
    );
    assert_eq!(status, 200, "{text}");
    let session = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("mcp-session-id")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no session id: {text}"));
    let (status, text) = mcp_post(
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"mtlsmcp__whoami","arguments":{}}}"#,
        Some(session.as_str()),
    );
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("cn=agent-host authorization=Bearer mtls-upstream-bearer"),
        "{text}"
    );
    // A client certificate for a stdio MCP server is refused with a clear error.
    let stdio = pki.path().join("stdio.yaml");
    std::fs::write(
        &stdio,
        "version: 1\nservices:\n  - name: certstdio\n    kind: mcp\n    client_cert_secret: upstream-mtls\n    mcp:\n      transport:\n        type: stdio\n        command: \"true\"\n",
    )
    .unwrap();
    let (code, out, err) = cli(
        d.port,
        &d.admin,
        &["apply", "--file", stdio.to_str().unwrap()],
        None,
    );
    assert_ne!(code, 0, "{out}");
    assert!(
        format!("{out}{err}").contains("client_cert_secret"),
        "{out}{err}"
    );

    // A rotated certificate is presented on the next call, without a restart.
    let rotated = format!("{}{}", read("client2.pem"), read("client2.key"));
    d.ok(&["secret", "set", "upstream-mtls"], Some(&rotated));
    let (status, text) = http("GET", &format!("{}/whoami", d.base("mtls")), &auth, None);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""cn": "agent-host-rotated""#), "{text}");

    // The outcome records name the certificate secret's version; the key never appears.
    let records = json(
        d.port,
        &d.admin,
        &["audit", "search", "--operation", "mtls:whoami.get"],
    )
    .to_string();
    assert!(records.contains("client_cert"), "{records}");
    let key_body: String = read("client.key")
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(
        !records.contains(&key_body[..32]),
        "private key leaked into audit"
    );

    // A secret that is not a certificate fails closed (no call), with a clear log, not a crash.
    d.ok(&["secret", "set", "upstream-mtls"], Some("not a pem"));
    let (status, text) = http("GET", &format!("{}/whoami", d.base("mtls")), &auth, None);
    assert_eq!(status, 502, "{text}");
    assert!(!text.contains("not a pem"), "{text}");
}
