//! The mocked API server every API-interaction test talks to (kube's `tower-test` idiom): a
//! client whose requests arrive here, answered one by one as the test says, each recorded so the
//! test can assert the exact requests; and a check that nothing else was sent.

use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// A client for namespace `namespace` and the handle that receives its requests.
pub fn mock_client(namespace: &str) -> (Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, namespace), handle)
}

/// One request as the API server saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub uri: String,
    pub content_type: String,
    /// The JSON body (Null when empty or not JSON).
    pub body: Value,
}

/// How to answer a request.
pub enum Reply {
    /// 200 with this object.
    Json(Value),
    /// 200 with the request's own body (what a write returns, near enough).
    Echo,
    /// A 404 Status.
    NotFound,
}

/// Waits (5 s at most) for the next request, answers it with `reply(&call)`, returns the call.
pub async fn answer_next(handle: &mut Handle, reply: impl FnOnce(&Call) -> Reply) -> Call {
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("timed out waiting for an API request")
        .expect("the client was dropped before the expected request");
    let method = req.method().clone();
    let uri = req.uri().to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let call = Call {
        method,
        uri,
        content_type,
        body,
    };
    let response = match reply(&call) {
        Reply::Json(v) => ok(&v),
        Reply::Echo => ok(&call.body),
        Reply::NotFound => Response::builder()
            .status(404)
            .body(Body::from(
                serde_json::to_vec(
                    &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404, "message": "not found"}),
                )
                .unwrap_or_default(),
            ))
            .expect("a response"),
    };
    send.send_response(response);
    call
}

fn ok(v: &Value) -> Response<Body> {
    Response::builder()
        .body(Body::from(serde_json::to_vec(v).unwrap_or_default()))
        .expect("a response")
}

/// Answers exactly `replies.len()` requests, in order.
pub async fn answer_all(handle: &mut Handle, replies: Vec<Reply>) -> Vec<Call> {
    let mut calls = Vec::new();
    for reply in replies {
        calls.push(answer_next(handle, |_| reply).await);
    }
    calls
}

/// Fails if another request arrives (within 200 ms, or before the client is dropped).
pub async fn assert_no_more_requests(handle: &mut Handle) {
    if let Ok(Some((req, _))) =
        tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await
    {
        panic!(
            "unexpected extra API request: {} {}",
            req.method(),
            req.uri()
        );
    }
}
