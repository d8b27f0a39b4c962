//! Audit background tasks: the checkpoint scheduler (sign the writer head every N records
//! or T seconds; store it, append it to a file, POST it to a witness), the streaming sink
//! (webhook or syslog over UDP, TCP or TLS, at least once, from a stored cursor), and the
//! probe that brings the audit path back to healthy once the store can write again.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde_json::json;
use steward_audit::{Actor, AuditEvent, Checkpoint, CheckpointPolicy, CheckpointSigner, EventKind};
use steward_gateway::runtime::Runtime;
use tokio::io::AsyncWriteExt;

/// `[audit]` settings the tasks use.
#[derive(Debug, Clone, Default)]
pub struct AuditOptions {
    /// When checkpoints are due.
    pub policy: CheckpointPolicy,
    /// Append checkpoints to this file.
    pub checkpoint_file: Option<PathBuf>,
    /// POST checkpoints here.
    pub witness_url: Option<String>,
    /// Deliver records to this webhook.
    pub sink_url: Option<String>,
    /// Deliver records to this syslog collector.
    pub syslog: Option<SyslogTarget>,
    /// The TLS client settings for a `tls://` syslog collector (its CA, or the system's).
    pub syslog_tls: Option<Arc<rustls::ClientConfig>>,
}

/// How records reach a syslog collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogTransport {
    /// One datagram per record (RFC 5426); no acknowledgement.
    Udp,
    /// One connection, records framed by octet counting (RFC 6587); a batch counts as
    /// delivered once the collector's TCP stack accepted it, and a broken connection is
    /// reopened and the batch sent again.
    Tcp,
    /// As TCP, inside TLS (RFC 5425), the collector's certificate verified.
    Tls,
}

/// A syslog collector: `udp://HOST:PORT`, `tcp://HOST:PORT`, `tls://HOST:PORT`, or
/// `HOST:PORT` (UDP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTarget {
    /// UDP, TCP or TLS.
    pub transport: SyslogTransport,
    /// `HOST:PORT`.
    pub addr: String,
}

impl SyslogTarget {
    /// Parses `[audit] syslog_addr`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (transport, addr) = match text.split_once("://") {
            Some(("udp", rest)) => (SyslogTransport::Udp, rest),
            Some(("tcp", rest)) => (SyslogTransport::Tcp, rest),
            Some(("tls", rest)) => (SyslogTransport::Tls, rest),
            Some((scheme, _)) => {
                return Err(format!(
                    "syslog transport `{scheme}` is not `udp`, `tcp` or `tls`"
                ));
            }
            None => (SyslogTransport::Udp, text),
        };
        let port_ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok {
            return Err(format!(
                "`{text}` is not a syslog collector address; expected HOST:PORT, udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT"
            ));
        }
        Ok(Self {
            transport,
            addr: addr.to_owned(),
        })
    }

    /// The host part of the address, as the TLS server name.
    fn host(&self) -> &str {
        let host = self
            .addr
            .rsplit_once(':')
            .map_or(self.addr.as_str(), |(host, _)| host);
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// An open stream connection to a syslog collector (TCP or TLS).
type SyslogConn = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

async fn syslog_connect(
    target: &SyslogTarget,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<SyslogConn> {
    let tcp = tokio::net::TcpStream::connect(&target.addr)
        .await
        .with_context(|| format!("syslog collector {}", target.addr))?;
    tcp.set_nodelay(true)?;
    if target.transport != SyslogTransport::Tls {
        return Ok(Box::new(tcp));
    }
    let config = tls.ok_or_else(|| anyhow!("no TLS settings for the syslog collector"))?;
    let name = rustls::pki_types::ServerName::try_from(target.host().to_owned())
        .with_context(|| format!("syslog collector name `{}`", target.host()))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
        .with_context(|| format!("syslog collector {}: TLS", target.addr))?;
    Ok(Box::new(stream))
}

/// `kv_records` kind of the sink cursors.
pub const CURSOR_KIND: &str = "audit_cursor";

/// Starts the tasks.
pub fn spawn(rt: Arc<Runtime>, signer: CheckpointSigner, options: AuditOptions) {
    let witness = options.witness_url.clone().map(|url| {
        let (tx, rx) = tokio::sync::mpsc::channel::<Checkpoint>(64);
        tokio::spawn(witness_task(url, rx));
        tx
    });
    tokio::spawn(checkpoint_task(
        Arc::clone(&rt),
        signer,
        options.clone(),
        witness,
    ));
    if let Some(url) = options.sink_url.clone() {
        tokio::spawn(sink_task(Arc::clone(&rt), Sink::Webhook(url)));
    }
    if let Some(target) = options.syslog.clone() {
        tokio::spawn(sink_task(
            Arc::clone(&rt),
            Sink::Syslog(target, options.syslog_tls.clone()),
        ));
    }
    tokio::spawn(resume_probe(rt));
}

async fn checkpoint_task(
    rt: Arc<Runtime>,
    signer: CheckpointSigner,
    options: AuditOptions,
    witness: Option<tokio::sync::mpsc::Sender<Checkpoint>>,
) {
    let mut heads = rt.audit.subscribe();
    let mut last: Option<(u64, i64)> =
        match steward_gateway::audit_sink::checkpoints(&rt.store, &rt.instance_id).await {
            Ok(list) => list.last().map(|c| (c.tree_size, c.time_ms)),
            Err(e) => {
                tracing::error!(error = %e, "cannot read audit checkpoints");
                None
            }
        };
    loop {
        // Wake on a new durable head, or every second for the time rule.
        let _ = tokio::time::timeout(Duration::from_secs(1), heads.changed()).await;
        let head = heads.borrow_and_update().clone();
        let now = rt.now_ms();
        if !options.policy.is_due(last, head.tree_size, now) {
            continue;
        }
        // A stored checkpoint only ever covers records readers can already see: proofs and
        // verification read the indexed log, which may lag the durable head briefly.
        if let Err(e) = rt.audit.settled().await {
            tracing::warn!(error = %e, "audit index behind; checkpoint postponed");
            continue;
        }
        let checkpoint = signer.sign_head(&head, now, &rt.instance_id);
        match store_checkpoint(&rt, &checkpoint, options.checkpoint_file.as_ref()).await {
            Ok(()) => {
                last = Some((checkpoint.tree_size, checkpoint.time_ms));
                metrics::counter!("steward_audit_checkpoints_total").increment(1);
                if let Some(tx) = &witness
                    && tx.try_send(checkpoint).is_err()
                {
                    tracing::warn!(
                        "witness queue full; a checkpoint was not sent (a later one supersedes it)"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot store audit checkpoint; retrying"),
        }
    }
}

async fn store_checkpoint(
    rt: &Runtime,
    checkpoint: &Checkpoint,
    file: Option<&PathBuf>,
) -> Result<()> {
    let line = serde_json::to_string(checkpoint)?;
    let size = i64::try_from(checkpoint.tree_size).unwrap_or(i64::MAX);
    rt.store
        .audit_checkpoint_insert(&rt.instance_id, size, &line)
        .await?;
    if let Some(path) = file {
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .with_context(|| format!("checkpoint file `{}`", path.display()))?;
        f.write_all(format!("{line}\n").as_bytes()).await?;
        f.sync_data().await?;
    }
    Ok(())
}

async fn witness_task(url: String, mut rx: tokio::sync::mpsc::Receiver<Checkpoint>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "witness client");
            return;
        }
    };
    while let Some(checkpoint) = rx.recv().await {
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=8u32 {
            match client.post(&url).json(&checkpoint).send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => tracing::warn!(
                    status = r.status().as_u16(),
                    attempt,
                    "witness refused checkpoint"
                ),
                Err(e) => tracing::warn!(error = %e, attempt, "witness unreachable"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
}

#[derive(Debug, Clone)]
enum Sink {
    Webhook(String),
    Syslog(SyslogTarget, Option<Arc<rustls::ClientConfig>>),
}

impl Sink {
    fn cursor_id(&self, instance: &str) -> String {
        match self {
            Self::Webhook(_) => format!("webhook:{instance}"),
            Self::Syslog(..) => format!("syslog:{instance}"),
        }
    }
}

const SINK_BATCH: i64 = 100;
/// Longest a syslog connect or batch write may take before it counts as failed.
const SYSLOG_TIMEOUT: Duration = Duration::from_secs(10);

/// Delivers records `cursor..` in batches; the cursor advances only after a batch was
/// accepted, so a crash or a failed delivery repeats records rather than losing them.
async fn sink_task(rt: Arc<Runtime>, sink: Sink) {
    let cursor_id = sink.cursor_id(&rt.instance_id);
    let mut heads = rt.audit.subscribe();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .ok();
    // The open TCP or TLS connection to a syslog collector, kept between batches.
    let mut tcp: Option<SyslogConn> = None;
    let mut delay = Duration::from_millis(200);
    loop {
        match deliver_once(&rt, &sink, &cursor_id, client.as_ref(), &mut tcp).await {
            Ok(true) => {
                delay = Duration::from_millis(200);
                continue;
            }
            Ok(false) => {
                delay = Duration::from_millis(200);
                let _ = tokio::time::timeout(Duration::from_secs(1), heads.changed()).await;
            }
            Err(e) => {
                // A connection that failed mid-batch is not reused: the batch goes again
                // on a new one.
                tcp = None;
                tracing::warn!(error = %e, "audit sink delivery failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// One batch; `Ok(true)` when records were delivered (more may follow).
async fn deliver_once(
    rt: &Runtime,
    sink: &Sink,
    cursor_id: &str,
    client: Option<&reqwest::Client>,
    tcp: &mut Option<SyslogConn>,
) -> Result<bool> {
    let cursor = match rt.store.kv_get(CURSOR_KIND, cursor_id).await? {
        Some(record) => record
            .body
            .get("next_seq")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0),
        None => 0,
    };
    let rows = rt
        .store
        .audit_range(&rt.instance_id, cursor, SINK_BATCH)
        .await?;
    let Some(last) = rows.last() else {
        return Ok(false);
    };
    let next = last.seq.saturating_add(1);
    let mut lines = Vec::with_capacity(rows.len());
    for row in &rows {
        let record = steward_gateway::audit_sink::from_row(row).map_err(|e| anyhow!(e))?;
        lines.push((record.time_ms, record.to_jsonl_line()?));
    }
    match sink {
        Sink::Webhook(url) => {
            let client = client.ok_or_else(|| anyhow!("no http client"))?;
            let body: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
            let resp = client
                .post(url)
                .header("content-type", "application/x-ndjson")
                .header("steward-audit-instance", rt.instance_id.as_str())
                .body(body)
                .send()
                .await?;
            if !resp.status().is_success() {
                return Err(anyhow!("webhook answered {}", resp.status()));
            }
        }
        Sink::Syslog(target, _) if target.transport == SyslogTransport::Udp => {
            let socket = tokio::net::UdpSocket::bind("0.0.0.0:0").await?;
            socket.connect(&target.addr).await?;
            for (time_ms, line) in &lines {
                socket
                    .send(syslog_line(*time_ms, &rt.instance_id, line).as_bytes())
                    .await?;
            }
        }
        Sink::Syslog(target, tls) => {
            let mut frames = Vec::new();
            for (time_ms, line) in &lines {
                let message = syslog_line(*time_ms, &rt.instance_id, line);
                frames.extend_from_slice(format!("{} {message}", message.len()).as_bytes());
            }
            let stream = match tcp {
                Some(stream) => stream,
                None => {
                    let stream =
                        tokio::time::timeout(SYSLOG_TIMEOUT, syslog_connect(target, tls.as_ref()))
                            .await
                            .map_err(|_| {
                                anyhow!("syslog collector {}: connect timed out", target.addr)
                            })??;
                    tcp.insert(stream)
                }
            };
            tokio::time::timeout(SYSLOG_TIMEOUT, async {
                stream.write_all(&frames).await?;
                stream.flush().await
            })
            .await
            .map_err(|_| anyhow!("syslog collector {}: write timed out", target.addr))?
            .with_context(|| format!("syslog collector {}", target.addr))?;
        }
    }
    rt.store
        .kv_put(
            CURSOR_KIND,
            cursor_id,
            &json!({"next_seq": next}),
            rt.now_ms(),
        )
        .await?;
    Ok(true)
}

/// An RFC 5424 message: facility 13 (log audit), severity 6 (informational), the record
/// as its JSON line.
fn syslog_line(time_ms: i64, instance: &str, line: &str) -> String {
    let time = jiff::Timestamp::from_millisecond(time_ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| "-".into());
    let host = if instance.is_empty() { "-" } else { instance };
    format!("<110>1 {time} {host} steward - audit - {line}")
}

/// After an audit write failed, readiness reports it until a write succeeds. Requests may
/// not arrive while a load balancer holds traffic back, so this probe writes a record
/// saying the log resumed, which succeeds (and restores readiness) as soon as the store
/// can write again.
async fn resume_probe(rt: Arc<Runtime>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if rt.audit_healthy.load(Ordering::Relaxed) {
            continue;
        }
        let mut event = AuditEvent::new(EventKind::Other("audit_resumed".into()), Actor::system());
        event.detail = json!({"reason": "the audit store accepted writes again after a failure"});
        if rt.audit(event).await.is_ok() {
            tracing::info!("audit log writable again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_addresses_name_transport_host_and_port() {
        let target = |transport, addr: &str| SyslogTarget {
            transport,
            addr: addr.to_owned(),
        };
        assert_eq!(
            SyslogTarget::parse("logs.example:514"),
            Ok(target(SyslogTransport::Udp, "logs.example:514"))
        );
        assert_eq!(
            SyslogTarget::parse("udp://10.0.0.5:514"),
            Ok(target(SyslogTransport::Udp, "10.0.0.5:514"))
        );
        assert_eq!(
            SyslogTarget::parse("tcp://[::1]:601"),
            Ok(target(SyslogTransport::Tcp, "[::1]:601"))
        );
        assert_eq!(
            SyslogTarget::parse("tcp://[::1]:601").unwrap().host(),
            "::1"
        );
        let tls = SyslogTarget::parse("tls://logs.example:6514").unwrap();
        assert_eq!(tls, target(SyslogTransport::Tls, "logs.example:6514"));
        assert_eq!(tls.host(), "logs.example");
        for bad in [
            "relp://h:2514",
            "h",
            "h:",
            ":514",
            "h:0",
            "h:70000",
            "tcp://h",
        ] {
            assert!(SyslogTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn syslog_lines_follow_rfc_5424() {
        let line = syslog_line(0, "ins_1", "{\"seq\":0}");
        assert_eq!(
            line,
            "<110>1 1970-01-01T00:00:00Z ins_1 steward - audit - {\"seq\":0}"
        );
    }
}
