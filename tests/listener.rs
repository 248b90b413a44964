//! The HTTPS listener against clients that misbehave on purpose (real sockets on 127.0.0.1): a
//! connection that sends half its headers, one that goes quiet after a request, and more
//! connections than the limit. Short limits keep the test quick; the defaults are seconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use imagestream_operator::admission::listener::ListenerLimits;
use imagestream_operator::admission::server::{generate, serve_router_with, Certificate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

const LIMITS: ListenerLimits = ListenerLimits {
    connections: 3,
    handshake: Duration::from_secs(1),
    header_read: Duration::from_millis(800),
    idle: Duration::from_millis(1500),
};

struct Server {
    addr: std::net::SocketAddr,
    connector: tokio_rustls::TlsConnector,
}

async fn server() -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = generate(&["127.0.0.1".to_string()]).unwrap();
    let Certificate::Generated { cert_pem, .. } = &cert else {
        unreachable!()
    };
    let der: String = cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(der)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.into()).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    tokio::spawn(serve_router_with(addr, cert, app, LIMITS));
    listening(addr).await;
    Server {
        addr,
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
    }
}

/// Waits until something accepts connections on `addr` (2 s at most).
async fn listening(addr: std::net::SocketAddr) {
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends one request on the connection and checks the answer is the app's.
async fn get_ok(c: &mut TlsStream<TcpStream>) {
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = c.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

impl Server {
    async fn tls(&self) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        self.connector.connect(name, tcp).await.unwrap()
    }
}

/// How long until the server closes the connection (reads return EOF or an error).
async fn closed_after(stream: &mut TlsStream<TcpStream>, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn half_sent_headers_are_cut_off() {
    let s = server().await;
    let mut c = s.tls().await;
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let closed = closed_after(&mut c, Duration::from_secs(5)).await;
    assert!(
        closed.is_some_and(|d| d < Duration::from_secs(3)),
        "open after {closed:?}"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let s = server().await;
    let mut c = s.tls().await;
    let closed = closed_after(&mut c, Duration::from_secs(5)).await;
    assert!(
        closed.is_some_and(|d| d < Duration::from_secs(3)),
        "open after {closed:?}"
    );
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let s = server().await;
    let mut c = s.tls().await;
    get_ok(&mut c).await;
    let closed = closed_after(&mut c, Duration::from_secs(6)).await;
    assert!(
        closed.is_some_and(|d| d < Duration::from_secs(4)),
        "open after {closed:?}"
    );
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_and_the_rest_still_served() {
    let s = server().await;
    let mut held = Vec::new();
    for _ in 0..LIMITS.connections {
        held.push(s.tls().await);
    }
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let extra = s.connector.connect(name, tcp).await;
    assert!(
        extra.is_err(),
        "a connection past the limit got a TLS session"
    );
    let mut c = held.pop().unwrap();
    get_ok(&mut c).await;
    drop(held);
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Slots are released when connections close.
    get_ok(&mut s.tls().await).await;
}

/// A CA (playing the cluster's, which signs the API server's client certificate) and a client
/// certificate: PEM of the CA, and the client's chain and key for rustls.
fn client_identity(
    ca: Option<&(rcgen::CertificateParams, rcgen::KeyPair)>,
) -> (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kube-apiserver");
    let cert = match ca {
        Some((ca_params, ca_key)) => params
            .signed_by(&key, &rcgen::Issuer::from_params(ca_params, ca_key))
            .unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    (vec![cert.der().clone()], der)
}

/// Connects with `identity` (or none) and sends one request; true when the app answered.
async fn answered(
    addr: std::net::SocketAddr,
    roots: &rustls::RootCertStore,
    identity: Option<(
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> bool {
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots.clone());
    let config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let Ok(mut c) = connector.connect(name, tcp).await else {
        return false;
    };
    // TLS 1.3: the server judges the client's certificate after the client thinks it is done,
    // so a refusal shows on the first read.
    if c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        _ => false,
    }
}

/// With `--admission-client-ca-file`, only a caller holding a certificate from that CA (the
/// API server, configured by its AdmissionConfiguration) gets an answer: no certificate, or
/// one from anyone else, ends in the handshake before any request is read.
#[tokio::test]
async fn the_webhook_listener_answers_only_the_api_servers_certificate() {
    use imagestream_operator::admission::certificate::Pair;
    use imagestream_operator::admission::server::{client_roots, serve_tls, ServerTls};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let ca = (ca_params, ca_key);

    let Certificate::Generated { cert_pem, key_pem } =
        generate(&["127.0.0.1".to_string()]).unwrap()
    else {
        unreachable!()
    };
    let pair = Pair {
        cert_pem: cert_pem.clone(),
        key_pem,
    };
    let tls = ServerTls::new(&pair, Some(client_roots(ca_pem.as_bytes()).unwrap())).unwrap();
    let addr: std::net::SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    tokio::spawn(serve_tls(addr, tls, app, LIMITS));
    listening(addr).await;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();

    assert!(!answered(addr, &roots, None).await, "no client certificate");
    assert!(
        !answered(addr, &roots, Some(client_identity(None))).await,
        "a self-signed client certificate"
    );
    assert!(
        answered(addr, &roots, Some(client_identity(Some(&ca)))).await,
        "the API server's certificate"
    );
}
