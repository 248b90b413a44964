//! A fault-injecting proxy in front of a registry: one request per connection; a request whose
//! path contains a rule's pattern gets the rule's fault, every other request is forwarded.

use std::time::Duration;

use super::http::{read_head, respond, spawn_server, RequestHead};

#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status, extra headers and body.
    Status(u16, Vec<(&'static str, String)>, String),
    /// Close the connection without answering.
    Reset,
    /// Never answer.
    Hang,
    /// Headers at once, then the body one byte per 200 ms.
    SlowBody,
    /// 200 with a body that is not JSON (and a digest header for HEAD).
    Garbage,
    /// 200 with a body of this many bytes and no Content-Length.
    Oversized(usize),
    /// Forward, but flip one byte of the body (content no longer matches its digest).
    Corrupt,
    /// HEAD without a digest header (so the client GETs by tag), then a GET forwarded with one
    /// byte of the body flipped: only the registry's `Docker-Content-Digest` can tell.
    CorruptUndigested,
    /// Serve the upstream tag list in `Link`-paginated pages honouring `n` and `last`, as
    /// distribution 3 and Docker Hub do (Debian's distribution 2.8 ignores `n`).
    Paginate,
}

impl Fault {
    pub fn name(&self) -> String {
        match self {
            Fault::Status(code, ..) => format!("status {code}"),
            Fault::Reset => "reset".into(),
            Fault::Hang => "hang".into(),
            Fault::SlowBody => "slow body".into(),
            Fault::Garbage => "garbage".into(),
            Fault::Oversized(_) => "oversized".into(),
            Fault::Corrupt => "corrupt".into(),
            Fault::CorruptUndigested => "corrupt, undigested".into(),
            Fault::Paginate => "paginate".into(),
        }
    }
}

/// Random faults: each request gets one of `faults` with probability `percent`/100, drawn from
/// a seeded generator so a failing run can be repeated.
struct Chaos {
    percent: u64,
    faults: Vec<Fault>,
    state: u64,
}

impl Chaos {
    fn draw(&mut self) -> Option<Fault> {
        // xorshift64*: plenty for spreading faults, and no dependency.
        let mut next = || {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        if next() % 100 >= self.percent || self.faults.is_empty() {
            return None;
        }
        let i = (next() % self.faults.len() as u64) as usize;
        self.faults.get(i).cloned()
    }
}

/// One request as the proxy saw it: when, what, and the fault it got (if any).
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: std::time::Instant,
    pub method: String,
    pub path: String,
    pub fault: Option<String>,
}

type Shared<T> = std::sync::Arc<std::sync::Mutex<T>>;

pub struct FaultProxy {
    pub addr: String,
    rules: Shared<Vec<(String, Fault)>>,
    chaos: Shared<Option<Chaos>>,
    pub forwarded: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// (method, path) of every request that reached the proxy, in order.
    pub seen: Shared<Vec<(String, String)>>,
    /// Every request with its time and fault, in order.
    pub log: Shared<Vec<Seen>>,
}

impl FaultProxy {
    pub fn start(upstream: &str) -> Self {
        let rules: Shared<Vec<(String, Fault)>> = Default::default();
        let chaos: Shared<Option<Chaos>> = Default::default();
        let forwarded = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen: Shared<Vec<(String, String)>> = Default::default();
        let timed: Shared<Vec<Seen>> = Default::default();
        let upstream = upstream.to_string();
        let (r, c, f, log, t) = (
            rules.clone(),
            chaos.clone(),
            forwarded.clone(),
            seen.clone(),
            timed.clone(),
        );
        let addr = spawn_server(move |mut stream| {
            let (rules, chaos, forwarded) = (r.clone(), c.clone(), f.clone());
            let (log, timed) = (log.clone(), t.clone());
            let upstream = upstream.clone();
            async move {
                let Some(head) = read_head(&mut stream).await else {
                    return;
                };
                log.lock()
                    .unwrap()
                    .push((head.method.clone(), head.path.clone()));
                let fault = rules
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(p, _)| head.path.contains(p.as_str()))
                    .map(|(_, f)| f.clone())
                    .or_else(|| chaos.lock().unwrap().as_mut().and_then(Chaos::draw));
                timed.lock().unwrap().push(Seen {
                    at: std::time::Instant::now(),
                    method: head.method.clone(),
                    path: head.path.clone(),
                    fault: fault.as_ref().map(Fault::name),
                });
                match fault {
                    None => {
                        forwarded.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        forward(stream, &head, &upstream, false).await
                    }
                    Some(f) => inject(stream, &head, f, &upstream).await,
                }
            }
        });
        Self {
            addr,
            rules,
            chaos,
            forwarded,
            seen,
            log: timed,
        }
    }

    /// From now on, `percent` % of requests (that no rule matches) get one of `faults`.
    pub fn chaos(&self, percent: u64, faults: Vec<Fault>, seed: u64) {
        *self.chaos.lock().unwrap() = Some(Chaos {
            percent,
            faults,
            state: seed.max(1),
        });
    }

    /// Requests seen so far whose method is `method` and whose path contains `pattern`.
    pub fn count(&self, method: &str, pattern: &str) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(m, p)| m == method && p.contains(pattern))
            .count()
    }

    /// Requests seen so far by method, e.g. `{"HEAD": 20, "GET": 40}`.
    pub fn methods(&self) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for (m, _) in self.seen.lock().unwrap().iter() {
            *out.entry(m.clone()).or_insert(0) += 1;
        }
        out
    }

    pub fn fail(&self, pattern: &str, fault: Fault) {
        self.rules
            .lock()
            .unwrap()
            .push((pattern.to_string(), fault));
    }

    /// Removes every rule and stops the chaos.
    pub fn clear(&self) {
        self.rules.lock().unwrap().clear();
        *self.chaos.lock().unwrap() = None;
    }
}

async fn forward(
    mut client: tokio::net::TcpStream,
    head: &RequestHead,
    upstream: &str,
    corrupt: bool,
) {
    use tokio::io::AsyncWriteExt;
    let Some(mut response) = upstream_response(head, upstream).await else {
        return;
    };
    if corrupt {
        if let Some(start) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            if let Some(b) = response.get_mut(start + 10) {
                *b ^= 0x20;
            }
        }
    }
    let _ = client.write_all(&response).await;
    let _ = client.shutdown().await;
}

async fn paginate(mut client: tokio::net::TcpStream, head: &RequestHead, upstream: &str) {
    let (path, query) = head.path.split_once('?').unwrap_or((&head.path, ""));
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let n: usize = param("n")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    let last = param("last");
    let Some(response) = upstream_response(head, upstream).await else {
        return;
    };
    let body_at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |p| p + 4);
    // A list longer than Go's 4 KiB response buffer comes chunked.
    let head_text = String::from_utf8_lossy(&response[..body_at]).to_ascii_lowercase();
    let body = match head_text.contains("transfer-encoding: chunked") {
        true => dechunk(&response[body_at..]),
        false => response[body_at..].to_vec(),
    };
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut tags: Vec<String> = list["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    let rest: Vec<String> = tags
        .into_iter()
        .filter(|t| last.as_ref().is_none_or(|l| t > l))
        .collect();
    let page: Vec<String> = rest.iter().take(n).cloned().collect();
    let mut headers = vec![("Content-Type", "application/json".to_string())];
    if rest.len() > page.len() {
        if let Some(l) = page.last() {
            headers.push(("Link", format!("<{path}?last={l}&n={n}>; rel=\"next\"")));
        }
    }
    let body = serde_json::json!({"name": list["name"], "tags": page}).to_string();
    respond(&mut client, "200 OK", &headers, body.as_bytes()).await
}

/// The body of a chunked HTTP/1.1 response.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16);
        let Ok(size) = size else { break };
        let start = line_end + 2;
        if size == 0 || rest.len() < start + size {
            break;
        }
        body.extend_from_slice(&rest[start..start + size]);
        rest = rest.get(start + size + 2..).unwrap_or_default();
    }
    body
}

async fn upstream_response(head: &RequestHead, upstream: &str) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut up = tokio::net::TcpStream::connect(upstream).await.ok()?;
    // One request per connection keeps the rules simple.
    let text =
        String::from_utf8_lossy(&head.raw).replace("Connection: keep-alive", "Connection: close");
    let text = if text.to_ascii_lowercase().contains("\r\nconnection:") {
        text
    } else {
        text.replacen("\r\n", "\r\nConnection: close\r\n", 1)
    };
    up.write_all(text.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    up.read_to_end(&mut response).await.ok()?;
    Some(response)
}

async fn inject(
    mut stream: tokio::net::TcpStream,
    head: &RequestHead,
    fault: Fault,
    upstream: &str,
) {
    use tokio::io::AsyncWriteExt;
    let digest_header = (
        "Docker-Content-Digest",
        format!("sha256:{}", "0".repeat(64)),
    );
    match fault {
        Fault::Status(code, headers, body) => {
            let status = format!("{code} Fault");
            respond(&mut stream, &status, &headers, body.as_bytes()).await
        }
        Fault::Reset => drop(stream),
        Fault::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
        Fault::SlowBody => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nDocker-Content-Digest: sha256:0000000000000000000000000000000000000000000000000000000000000000\r\n\r\n")
                .await;
            if head.method == "HEAD" {
                return;
            }
            for _ in 0..1000 {
                if stream.write_all(b" ").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Fault::Garbage => {
            let ct = (
                "Content-Type",
                "application/vnd.oci.image.manifest.v1+json".to_string(),
            );
            // No digest header, so the client must GET by tag and parse what it gets.
            if head.method == "HEAD" {
                return respond(&mut stream, "200 OK", &[ct], b"").await;
            }
            respond(&mut stream, "200 OK", &[ct], b"{not json at all").await
        }
        Fault::Oversized(n) => {
            if head.method == "HEAD" {
                return respond(&mut stream, "200 OK", &[digest_header], b"").await;
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n")
                .await;
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0;
            while sent < n {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
                sent += chunk.len();
            }
        }
        Fault::Corrupt => forward(stream, head, upstream, true).await,
        Fault::CorruptUndigested if head.method == "HEAD" => {
            respond(&mut stream, "200 OK", &[], b"").await
        }
        Fault::CorruptUndigested => forward(stream, head, upstream, true).await,
        Fault::Paginate => paginate(stream, head, upstream).await,
    }
}
