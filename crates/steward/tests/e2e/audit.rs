//! The audit log through its public surface: signed checkpoints, proofs, export and
//! offline verification (with every tampering case), archiving, the streaming sink, and
//! crash safety under `kill -9`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use steward_audit::{AuditRecord, EventKind, GENESIS_HASH};

use crate::common::*;

const CONFIG: &str = "version = 1\n[audit]\ncheckpoint_every_records = 5\ncheckpoint_every_secs = 1\ncheckpoint_file = \"checkpoints.jsonl\"\n";

fn audit_records(d: &Deployment) -> u64 {
    json(d.port, &d.admin, &["status"])["audit_records"]
        .as_u64()
        .unwrap()
}

/// Waits until a signed checkpoint covers the whole log; returns it as JSON text.
fn wait_for_checkpoint(d: &Deployment) -> Value {
    let start = Instant::now();
    loop {
        let head = audit_records(d);
        let cps = json(d.port, &d.admin, &["audit", "checkpoints"]);
        if let Some(last) = cps.as_array().and_then(|a| a.last())
            && last["tree_size"].as_u64() == Some(head)
        {
            return last.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no checkpoint covered {head} records: {cps}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// `steward audit verify --file FILE --checkpoint CP --public-key KEY`.
fn verify_offline(d: &Deployment, files: &[&Path], checkpoint: &Path, key: &str) -> (i32, String) {
    let mut args: Vec<String> = vec!["audit".into(), "verify".into()];
    for f in files {
        args.extend(["--file".into(), f.display().to_string()]);
    }
    args.extend([
        "--checkpoint".into(),
        checkpoint.display().to_string(),
        "--public-key".into(),
        key.into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = cli(d.port, &d.admin, &args, None);
    (code, format!("{out}{err}"))
}

#[test]
fn export_verifies_offline_and_every_tampering_is_named() {
    let d = Deployment::start(Some(CONFIG), None);
    for n in 0..14 {
        d.ok(
            &[
                "identity",
                "create",
                &format!("bot-{n}"),
                "--owner",
                "alice",
            ],
            None,
        );
    }
    let checkpoint = wait_for_checkpoint(&d);
    let cp = d.dir.path().join("cp.json");
    std::fs::write(&cp, serde_json::to_string_pretty(&checkpoint).unwrap()).unwrap();
    let key = d.ok(&["audit", "public-key"], None).trim().to_owned();
    assert_eq!(key.len(), 64, "{key}");

    let export = d.dir.path().join("export.jsonl");
    d.ok(
        &[
            "audit",
            "export",
            "--format",
            "jsonl",
            "--out",
            export.to_str().unwrap(),
        ],
        None,
    );
    let original = lines(&export);
    let size = checkpoint["tree_size"].as_u64().unwrap() as usize;
    assert!(
        original.len() >= size && size >= 17,
        "{} lines, checkpoint {size}",
        original.len()
    );
    let original: Vec<String> = original[..size].to_vec();
    write_lines(&export, &original);

    // Intact: ok with the pretty checkpoint, and with the checkpoint file of JSON lines.
    let (code, out) = verify_offline(&d, &[&export], &cp, &key);
    assert_eq!(code, 0, "{out}");
    assert!(out.trim_end().ends_with("OK"), "{out}");
    let cp_file = d.dir.path().join("checkpoints.jsonl");
    assert!(
        lines(&cp_file).len() >= 2,
        "checkpoints are appended to the file"
    );
    let (code, out) = verify_offline(&d, &[&export], &cp_file, &key);
    assert_eq!(code, 0, "{out}");
    // A wrong key is not trusted.
    let (code, out) = verify_offline(&d, &[&export], &cp, &"ab".repeat(32));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("SIGNATURE INVALID"), "{out}");

    let tampered = d.dir.path().join("tampered.jsonl");
    let check = |edited: Vec<String>, expect: &[&str]| {
        write_lines(&tampered, &edited);
        let (code, out) = verify_offline(&d, &[&tampered], &cp, &key);
        assert_eq!(code, 1, "tampering not caught: {out}");
        for needle in expect {
            assert!(out.contains(needle), "expected `{needle}` in: {out}");
        }
    };

    // Edit a record.
    let target = original.iter().position(|l| l.contains("bot-3")).unwrap();
    let mut edited = original.clone();
    edited[target] = edited[target].replace("bot-3", "bot-X");
    check(
        edited,
        &[
            &format!("FIRST BAD RECORD: record seq {target} "),
            "record edited",
        ],
    );

    // Delete one.
    let mut deleted = original.clone();
    deleted.remove(5);
    check(
        deleted,
        &["FIRST BAD RECORD: record seq 6", "record 5 is missing"],
    );

    // Reorder two.
    let mut reordered = original.clone();
    reordered.swap(7, 8);
    check(reordered, &["FIRST BAD RECORD: record seq 8", "reordered"]);

    // Truncate.
    check(original[..size - 3].to_vec(), &["TRUNCATED"]);

    // Truncate after deleting a record and recomputing every remaining hash: the file is
    // internally consistent, only the checkpoint held elsewhere catches it.
    let mut records: Vec<AuditRecord> = original
        .iter()
        .map(|l| AuditRecord::from_jsonl_line(l).unwrap())
        .collect();
    records.remove(4);
    let mut prev = GENESIS_HASH;
    let rechained: Vec<String> = records
        .into_iter()
        .enumerate()
        .map(|(seq, r)| {
            let r = AuditRecord::chain(seq as u64, r.time_ms, prev, r.event).unwrap();
            prev = r.hash;
            r.to_jsonl_line().unwrap()
        })
        .collect();
    write_lines(&tampered, &rechained);
    let (code, out, _) = cli(
        d.port,
        &d.admin,
        &["audit", "verify", "--file", tampered.to_str().unwrap()],
        None,
    );
    assert_eq!(
        code, 0,
        "without a checkpoint the rewritten chain is self-consistent: {out}"
    );
    check(rechained, &["TRUNCATED"]);

    // An unreadable line is named too.
    let mut garbage = original.clone();
    garbage[2] = "{not json".into();
    check(garbage, &["FIRST BAD RECORD: entry 3"]);

    // Online: the stored chain verifies against its stored checkpoints.
    let online = json(d.port, &d.admin, &["audit", "verify"]);
    assert_eq!(online["ok"], true, "{online}");

    // Proofs, checked by the CLI against the signed root.
    let proof = json(d.port, &d.admin, &["audit", "proof", &target.to_string()]);
    assert_eq!(proof["tree_size"].as_u64(), Some(size as u64));
    assert_eq!(proof["root_hash"], checkpoint["root_hash"]);
    let first = json(d.port, &d.admin, &["audit", "checkpoints"])[0]["tree_size"]
        .as_u64()
        .unwrap();
    let consistency = json(
        d.port,
        &d.admin,
        &["audit", "consistency", "--from", &first.to_string()],
    );
    assert!(
        !consistency["proof"].as_array().unwrap().is_empty() || first == size as u64,
        "{consistency}"
    );
    let (code, _, err) = cli(d.port, &d.admin, &["audit", "proof", "999999"], None);
    assert_ne!(code, 0, "{err}");

    // OCSF export: API Activity events with the record's sequence number.
    let ocsf = d.dir.path().join("export.ocsf.jsonl");
    d.ok(
        &[
            "audit",
            "export",
            "--format",
            "ocsf",
            "--out",
            ocsf.to_str().unwrap(),
        ],
        None,
    );
    let events: Vec<Value> = lines(&ocsf)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.len() >= size);
    assert_eq!(events[target]["class_uid"], 6003);
    assert_eq!(events[target]["metadata"]["sequence"], target);
    assert_eq!(events[target]["api"]["operation"], "identity.create");
    assert_eq!(events[target]["activity_id"], 1, "create");

    // Retention: archive the first 10 records; the log stays verifiable online and, from
    // the archive plus a new export, offline against the same checkpoints.
    let archive = d.dir.path().join("archive-0.jsonl");
    d.ok(
        &[
            "audit",
            "archive",
            "--before",
            "10",
            "--out",
            archive.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(lines(&archive).len(), 10);
    let online = json(d.port, &d.admin, &["audit", "verify"]);
    assert_eq!(online["ok"], true, "{online}");
    let (code, _, err) = cli(d.port, &d.admin, &["audit", "proof", "3"], None);
    assert_ne!(
        code, 0,
        "archived records have no proof from the store: {err}"
    );
    d.ok(
        &["identity", "create", "after-archive", "--owner", "alice"],
        None,
    );
    let latest = wait_for_checkpoint(&d);
    d.ok(&["audit", "proof", "12"], None);
    d.ok(&["audit", "consistency", "--from", &size.to_string()], None);
    let rest = d.dir.path().join("rest.jsonl");
    d.ok(&["audit", "export", "--out", rest.to_str().unwrap()], None);
    assert_eq!(
        AuditRecord::from_jsonl_line(&lines(&rest)[0]).unwrap().seq,
        10
    );
    let (code, out) = verify_offline(&d, &[&archive, &rest], &cp_file, &key);
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify_offline(&d, &[&rest], &cp_file, &key);
    assert_eq!(code, 1, "the export alone starts after a gap: {out}");
    // Archiving again before the cut is refused; beyond the last checkpoint too.
    let scratch = d.dir.path().join("scratch.jsonl");
    let (code, _, _) = cli(
        d.port,
        &d.admin,
        &[
            "audit",
            "archive",
            "--before",
            "5",
            "--out",
            scratch.to_str().unwrap(),
        ],
        None,
    );
    assert_ne!(code, 0);
    let beyond = latest["tree_size"].as_u64().unwrap() + 1000;
    let (code, _, _) = cli(
        d.port,
        &d.admin,
        &[
            "audit",
            "archive",
            "--before",
            &beyond.to_string(),
            "--out",
            scratch.to_str().unwrap(),
        ],
        None,
    );
    assert_ne!(code, 0);

    // After a restart, the chain continues from the archive anchor.
    let port = d.port;
    let mut d = d;
    d.steward.0.kill().unwrap();
    d.steward.0.wait().unwrap();
    d.steward = start_steward(d.dir.path(), port, &[]).0;
    d.ok(
        &["identity", "create", "after-restart", "--owner", "alice"],
        None,
    );
    let online = json(d.port, &d.admin, &["audit", "verify"]);
    assert_eq!(online["ok"], true, "{online}");
}

/// A webhook receiver that fails its first delivery, then records every record's `seq`.
struct Receiver {
    port: u16,
    seqs: Arc<Mutex<Vec<u64>>>,
    failures: Arc<Mutex<u32>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seqs = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(0u32));
        let (s, f) = (seqs.clone(), failures.clone());
        std::thread::spawn(move || {
            let mut first = true;
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let Some(body) = read_request(&mut stream) else {
                    continue;
                };
                if first {
                    first = false;
                    *f.lock().unwrap() += 1;
                    let _ = stream.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
                for line in body.lines().filter(|l| !l.trim().is_empty()) {
                    let record = AuditRecord::from_jsonl_line(line).unwrap();
                    s.lock().unwrap().push(record.seq);
                }
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            }
        });
        Self {
            port,
            seqs,
            failures,
        }
    }

    fn distinct(&self) -> BTreeSet<u64> {
        self.seqs.lock().unwrap().iter().copied().collect()
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while data.len() < end + 4 + len {
                let n = stream.read(&mut buf).ok()?;
                if n == 0 {
                    return None;
                }
                data.extend_from_slice(&buf[..n]);
            }
            return Some(String::from_utf8_lossy(&data[end + 4..end + 4 + len]).into_owned());
        }
    }
}

fn wait_delivered(d: &Deployment, receiver: &Receiver) {
    let start = Instant::now();
    loop {
        let head = audit_records(d);
        let got = receiver.distinct();
        if got.len() as u64 >= head && got.iter().copied().eq(0..got.len() as u64) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "delivered {got:?}, log has {head}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn streaming_sink_delivers_every_record_across_a_failure_and_a_restart() {
    let receiver = Receiver::start();
    let config = format!(
        "version = 1\n[audit]\nsink_url = \"http://127.0.0.1:{}/audit\"\n",
        receiver.port
    );
    let mut d = Deployment::start(Some(&config), None);
    for n in 0..5 {
        d.ok(
            &[
                "identity",
                "create",
                &format!("sink-{n}"),
                "--owner",
                "alice",
            ],
            None,
        );
    }
    wait_delivered(&d, &receiver);
    assert_eq!(
        *receiver.failures.lock().unwrap(),
        1,
        "the first delivery failed and was retried"
    );

    // Stop, write nothing while down, restart: delivery resumes from the stored cursor.
    let port = d.port;
    d.steward.0.kill().unwrap();
    d.steward.0.wait().unwrap();
    let before = receiver.seqs.lock().unwrap().len();
    d.steward = start_steward(d.dir.path(), port, &[]).0;
    for n in 0..5 {
        d.ok(
            &[
                "identity",
                "create",
                &format!("sink-after-{n}"),
                "--owner",
                "alice",
            ],
            None,
        );
    }
    wait_delivered(&d, &receiver);
    let seqs = receiver.seqs.lock().unwrap().clone();
    let redelivered = seqs[before..]
        .iter()
        .filter(|s| seqs[..before].contains(s))
        .count();
    assert!(
        redelivered <= 100,
        "resumed from the cursor, not from the start ({redelivered} repeats)"
    );
}

/// The record sequence number in one RFC 5424 message from the syslog sink, after checking
/// its header: facility 13 (log audit), severity 6, app `steward`, msgid `audit`.
fn syslog_seq(message: &str) -> u64 {
    let (header, json) = message
        .split_once(" - audit - ")
        .unwrap_or_else(|| panic!("not a Steward audit message: {message}"));
    assert!(header.starts_with("<110>1 "), "{message}");
    assert!(header.ends_with(" steward"), "{message}");
    let record = AuditRecord::from_jsonl_line(json).unwrap();
    record.seq
}

fn wait_syslog(d: &Deployment, seqs: &Mutex<BTreeSet<u64>>) {
    let start = Instant::now();
    loop {
        let head = audit_records(d);
        let got = seqs.lock().unwrap().clone();
        if head > 0 && got.iter().copied().eq(0..head) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "syslog received {got:?}, log has {head}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn create_identities(d: &Deployment, prefix: &str) {
    for n in 0..3 {
        d.ok(
            &[
                "identity",
                "create",
                &format!("{prefix}-{n}"),
                "--owner",
                "alice",
            ],
            None,
        );
    }
}

/// Reads octet-counted syslog frames (RFC 6587: `<length> <message>`, back to back) until
/// the connection ends, recording each message's record sequence number.
fn read_syslog_frames(mut stream: impl Read, seqs: &Mutex<BTreeSet<u64>>, frames: &Mutex<usize>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
        while let Some(space) = data.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&data[..space])
                .unwrap()
                .parse()
                .unwrap_or_else(|e| panic!("bad frame length: {e}"));
            if data.len() < space + 1 + len {
                break;
            }
            let message = String::from_utf8(data[space + 1..space + 1 + len].to_vec()).unwrap();
            data.drain(..space + 1 + len);
            seqs.lock().unwrap().insert(syslog_seq(&message));
            *frames.lock().unwrap() += 1;
        }
    }
}

/// Over TLS (RFC 5425) the collector's certificate is verified against `syslog_ca_file`:
/// a collector whose certificate does not chain to it gets nothing. A collector that
/// authenticates its senders gets records only from a Steward that presents
/// `syslog_client_cert_file`.
#[test]
fn syslog_sink_over_tls_verifies_the_collector() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let pki = tempfile::tempdir().unwrap();
    crate::tls::make_pki(pki.path());
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(pki.path().join("server.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.path().join("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // The collector authenticates its senders: a client certificate from the same CA.
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(pki.path().join("ca.pem")).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seqs = Arc::new(Mutex::new(BTreeSet::new()));
    let frames = Arc::new(Mutex::new(0usize));
    let handshakes_failed = Arc::new(Mutex::new(0usize));
    {
        let (seqs, frames, failed) = (
            Arc::clone(&seqs),
            Arc::clone(&frames),
            Arc::clone(&handshakes_failed),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut tcp) = stream else { return };
                let mut conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
                if conn.complete_io(&mut tcp).is_err() {
                    *failed.lock().unwrap() += 1;
                    continue;
                }
                read_syslog_frames(rustls::StreamOwned::new(conn, tcp), &seqs, &frames);
            }
        });
    }

    // Trusting another CA: the handshake fails and nothing is delivered.
    let other = tempfile::tempdir().unwrap();
    crate::tls::make_pki(other.path());
    let config_with = |ca: &Path, client: Option<&Path>| {
        let mut config = format!(
            "version = 1\n[audit]\nsyslog_addr = \"tls://{addr}\"\nsyslog_ca_file = \"{}\"\n",
            ca.display()
        );
        if let Some(dir) = client {
            config.push_str(&format!(
                "syslog_client_cert_file = \"{}\"\nsyslog_client_key_file = \"{}\"\n",
                dir.join("client.pem").display(),
                dir.join("client.key").display()
            ));
        }
        config
    };
    let wait_failed_handshakes = |at_least: usize| {
        let start = Instant::now();
        while *handshakes_failed.lock().unwrap() < at_least {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no TLS attempt reached the collector"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let d = Deployment::start(
        Some(&config_with(&other.path().join("ca.pem"), Some(pki.path()))),
        None,
    );
    create_identities(&d, "tls-wrong-ca");
    wait_failed_handshakes(1);
    assert!(
        seqs.lock().unwrap().is_empty(),
        "delivered without a verified collector"
    );
    drop(d);

    // The right CA but no client certificate: the collector refuses the sender.
    let failed_before = *handshakes_failed.lock().unwrap();
    let d = Deployment::start(Some(&config_with(&pki.path().join("ca.pem"), None)), None);
    create_identities(&d, "tls-no-client-cert");
    wait_failed_handshakes(failed_before + 1);
    assert!(
        seqs.lock().unwrap().is_empty(),
        "accepted without a client certificate"
    );
    drop(d);

    // Trusting the collector's CA and presenting the client certificate: every record
    // arrives, framed as over TCP.
    let d = Deployment::start(
        Some(&config_with(&pki.path().join("ca.pem"), Some(pki.path()))),
        None,
    );
    create_identities(&d, "tls");
    wait_syslog(&d, &seqs);
    assert!(*frames.lock().unwrap() >= audit_records(&d) as usize);
}

/// Every record reaches a syslog collector as an RFC 5424 message: one datagram each over
/// UDP, octet-counted frames (RFC 6587) over TCP, where a collector that is not up yet gets
/// every record once it listens.
#[test]
fn syslog_sink_delivers_every_record_over_udp_and_tcp() {
    // UDP.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let config = format!(
        "version = 1\n[audit]\nsyslog_addr = \"udp://{}\"\n",
        udp.local_addr().unwrap()
    );
    let d = Deployment::start(Some(&config), None);
    create_identities(&d, "udp");
    let seqs = Arc::new(Mutex::new(BTreeSet::new()));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (seqs, done) = (Arc::clone(&seqs), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !done.load(Ordering::Relaxed) {
                if let Ok(n) = udp.recv(&mut buf) {
                    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                    seqs.lock().unwrap().insert(syslog_seq(&message));
                }
            }
        })
    };
    wait_syslog(&d, &seqs);
    done.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    drop(d);

    // TCP, with the collector down at first: the sink retries until it listens.
    let port = free_port();
    let config = format!("version = 1\n[audit]\nsyslog_addr = \"tcp://127.0.0.1:{port}\"\n");
    let d = Deployment::start(Some(&config), None);
    create_identities(&d, "tcp");
    std::thread::sleep(Duration::from_millis(700));
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let seqs = Arc::new(Mutex::new(BTreeSet::new()));
    let frames = Arc::new(Mutex::new(0usize));
    {
        let (seqs, frames) = (Arc::clone(&seqs), Arc::clone(&frames));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                read_syslog_frames(stream, &seqs, &frames);
            }
        });
    }
    wait_syslog(&d, &seqs);
    create_identities(&d, "tcp-more");
    wait_syslog(&d, &seqs);
    assert!(
        *frames.lock().unwrap() >= audit_records(&d) as usize,
        "every record in its own frame"
    );
}

const COUNTING_OPENAPI: &str = "openapi: 3.0.3\ninfo: {title: counting, version: \"1\"}\npaths:\n  /get:\n    get:\n      operationId: get\n";

/// The `traceparent` of every request the upstream received (Steward forwards the
/// caller's `traceparent` and records it in the intent).
fn upstream_traces(upstream: &CountingUpstream) -> BTreeSet<String> {
    upstream
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| header_value(&String::from_utf8_lossy(r), "traceparent"))
        .collect()
}

/// The value of header `name` (case-insensitive name) in a raw HTTP message head.
fn header_value(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

fn export_records(d: &Deployment) -> Vec<AuditRecord> {
    let path = d.dir.path().join("crash-export.jsonl");
    d.ok(&["audit", "export", "--out", path.to_str().unwrap()], None);
    lines(&path)
        .iter()
        .map(|l| AuditRecord::from_jsonl_line(l).unwrap())
        .collect()
}

#[test]
fn kill_dash_nine_during_audited_calls_loses_no_record() {
    let kills: usize = std::env::var("STEWARD_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let upstream = CountingUpstream::start();
    let mut d = Deployment::start(None, None);
    d.service(
        "counting",
        &format!("http://127.0.0.1:{}", upstream.port),
        COUNTING_OPENAPI,
        &[],
    );
    d.policy("permit(principal, action == Action::\"counting:get\", resource);\n");
    let port = d.port;
    let url = format!("{}/get", d.base("counting"));
    let bearer = format!("Bearer {}", d.agent);
    // request id -> status, for every call that got an answer.
    let answered: Arc<Mutex<BTreeMap<String, u16>>> = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));

    for round in 0..kills {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (stop, answered, url, bearer, calls) = (
                    stop.clone(),
                    answered.clone(),
                    url.clone(),
                    bearer.clone(),
                    calls.clone(),
                );
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let n = calls.fetch_add(1, Ordering::Relaxed);
                        let traceparent = format!(
                            "00-{:032x}-{:016x}-01",
                            0x5eed_0000_0000_0000_0000_0000_0000_0000u128 + u128::from(n),
                            n + 1
                        );
                        let Some((status, text)) = try_http(&url, &bearer, &traceparent) else {
                            continue;
                        };
                        let rid = header_value(&text, "steward-request-id");
                        if let Some(rid) = rid {
                            answered.lock().unwrap().insert(rid, status);
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(700 + 150 * (round as u64 % 3)));
        d.steward.0.kill().unwrap(); // SIGKILL
        d.steward.0.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        d.steward = start_steward(d.dir.path(), port, &[]).0;

        let records = export_records(&d);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.seq, i as u64, "round {round}: sequence gap");
        }
        let mut intents = BTreeSet::new();
        let mut intent_traces = BTreeSet::new();
        let mut outcomes: BTreeMap<String, bool> = BTreeMap::new(); // rid -> unknown?
        for r in &records {
            let Some(rid) = r.event.request_id.clone() else {
                continue;
            };
            match r.event.kind {
                EventKind::Decision if r.event.decision == Some(steward_audit::Decision::Allow) => {
                    intent_traces.extend(r.event.traceparent.clone());
                    intents.insert(rid);
                }
                EventKind::Outcome => {
                    let unknown = r.event.outcome.as_ref().is_some_and(|o| o.outcome_unknown);
                    outcomes.insert(rid, unknown);
                }
                _ => {}
            }
        }
        let answered = answered.lock().unwrap().clone();
        let ok_calls: Vec<&String> = answered
            .iter()
            .filter(|(_, s)| (200..300).contains(*s))
            .map(|(r, _)| r)
            .collect();
        assert!(!ok_calls.is_empty(), "round {round}: no call succeeded");
        for rid in &ok_calls {
            assert_eq!(
                outcomes.get(*rid),
                Some(&false),
                "round {round}: 2xx call {rid} has no outcome record"
            );
        }
        let upstream_seen = upstream_traces(&upstream);
        assert!(
            !upstream_seen.is_empty(),
            "round {round}: the upstream saw no request"
        );
        for trace in &upstream_seen {
            assert!(
                intent_traces.contains(trace),
                "round {round}: upstream received {trace} without an intent record"
            );
        }
        for rid in &intents {
            assert!(
                outcomes.contains_key(rid),
                "round {round}: intent {rid} has neither outcome nor outcome_unknown"
            );
        }
        let upstream_seen = upstream_seen.len();
        let unknown = outcomes.values().filter(|u| **u).count();
        eprintln!(
            "round {round}: {} records, {} 2xx calls, {upstream_seen} upstream requests, {unknown} outcome_unknown",
            records.len(),
            ok_calls.len()
        );
        let online = json(d.port, &d.admin, &["audit", "verify"]);
        assert_eq!(online["ok"], true, "round {round}: {online}");
    }
}

/// One GET; `None` when the connection failed (the gateway was being killed).
fn try_http(url: &str, bearer: &str, traceparent: &str) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_at(rest.find('/')?);
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {bearer}\r\ntraceparent: {traceparent}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    stream.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}
