//! Leader election over a mocked API transport that keeps one Lease: acquire, renew, lose.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};
use imagestream_operator::ops::leader::{run_as_leader, LeaderConfig};
use imagestream_operator::ops::Health;
use kube::client::Body;
use serde_json::{json, Value};

/// The API server's view of the Lease; PATCHes merge `spec`, as both apply and strategic do here.
#[derive(Default)]
struct FakeLease {
    lease: Mutex<Option<Value>>,
    writes: AtomicUsize,
}

fn merge(into: &mut Value, from: &Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        for (k, v) in b {
            match a.get_mut(k) {
                Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                _ => {
                    a.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

fn client(fake: Arc<FakeLease>) -> kube::Client {
    let service = tower::service_fn(move |req: Request<Body>| {
        let fake = fake.clone();
        async move {
            let method = req.method().clone();
            let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let mut lease = fake.lease.lock().unwrap();
            let reply = match method {
                Method::GET => lease.clone(),
                Method::POST => {
                    let mut created = body.clone();
                    created["metadata"]["resourceVersion"] = json!("1");
                    *lease = Some(created.clone());
                    Some(created)
                }
                Method::PATCH | Method::PUT => {
                    fake.writes.fetch_add(1, Ordering::SeqCst);
                    if let Some(l) = lease.as_mut() {
                        merge(l, &json!({"spec": body["spec"]}));
                        let rv: u64 = l["metadata"]["resourceVersion"]
                            .as_str()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(1);
                        l["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
                    }
                    lease.clone()
                }
                _ => lease.clone(),
            };
            let response = match reply {
                Some(v) => Response::new(Body::from(serde_json::to_vec(&v).unwrap())),
                None => Response::builder()
                    .status(404)
                    .body(Body::from(serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})).unwrap()))
                    .unwrap(),
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    kube::Client::new(service, "ops")
}

#[tokio::test]
async fn acquires_renews_and_stops_writing_when_the_lease_is_lost() {
    let fake = Arc::new(FakeLease::default());
    let health = Arc::new(Health::default());
    let config = LeaderConfig {
        namespace: "ops".into(),
        lease_name: "imagestream-operator".into(),
        identity: "pod-a".into(),
        duration: 3,
        grace: 1,
        metrics: Default::default(),
    };
    let writing = Arc::new(AtomicBool::new(false));
    let flag = writing.clone();
    let task = tokio::spawn(run_as_leader(
        client(fake.clone()),
        config,
        health.clone(),
        std::future::pending(),
        move || async move {
            // Stands in for the controllers: "writing" while running, cleared when dropped.
            struct Guard(Arc<AtomicBool>);
            impl Drop for Guard {
                fn drop(&mut self) {
                    self.0.store(false, Ordering::SeqCst);
                }
            }
            flag.store(true, Ordering::SeqCst);
            let _guard = Guard(flag.clone());
            std::future::pending::<()>().await;
            Ok(())
        },
    ));

    // Acquire: the lease is created and held by pod-a, and the work starts.
    for _ in 0..50 {
        if writing.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        writing.load(Ordering::SeqCst),
        "work started after acquiring"
    );
    let holder = fake.lease.lock().unwrap().as_ref().unwrap()["spec"]["holderIdentity"].clone();
    assert_eq!(holder, "pod-a");
    assert!(!health.ready().1.contains("standby"));

    // Renew: more writes to the lease while held.
    let before = fake.writes.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        fake.writes.load(Ordering::SeqCst) > before,
        "the lease is renewed"
    );
    assert!(writing.load(Ordering::SeqCst));

    // Lose: another replica holds a fresh lease; pod-a stops writing and returns an error.
    {
        let mut lease = fake.lease.lock().unwrap();
        let l = lease.as_mut().unwrap();
        let now = jiff::Timestamp::now();
        l["spec"]["holderIdentity"] = json!("pod-b");
        l["spec"]["renewTime"] = json!(now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
        l["spec"]["leaseDurationSeconds"] = json!(3600);
    }
    let result = tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("noticed the loss")
        .unwrap();
    assert!(result
        .unwrap_err()
        .to_string()
        .contains("lost the leader lease"));
    assert!(
        !writing.load(Ordering::SeqCst),
        "no writes after losing the lease"
    );
}

fn config(identity: &str) -> LeaderConfig {
    LeaderConfig {
        namespace: "ops".into(),
        lease_name: "imagestream-operator".into(),
        identity: identity.into(),
        duration: 3,
        grace: 1,
        metrics: Default::default(),
    }
}

/// A standby waits for a lease another replica renews; SIGTERM (here: the shutdown future) ends
/// the wait at once instead of after the pod's grace period, and the work never starts.
#[tokio::test]
async fn a_standby_stops_at_once_on_shutdown() {
    let fake = Arc::new(FakeLease::default());
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    *fake.lease.lock().unwrap() = Some(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "imagestream-operator", "namespace": "ops", "resourceVersion": "1"},
        "spec": {"holderIdentity": "pod-a", "renewTime": now, "acquireTime": now, "leaseDurationSeconds": 3600}
    }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run_as_leader(
        client(fake.clone()),
        config("pod-b"),
        Arc::new(Health::default()),
        async {
            let _ = stopped.await;
        },
        || async { panic!("a standby never runs the controllers") },
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = std::time::Instant::now();
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("the standby stopped within 2 s")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    println!("standby stopped {:?} after the signal", asked.elapsed());
    let holder = fake.lease.lock().unwrap().as_ref().unwrap()["spec"]["holderIdentity"].clone();
    assert_eq!(holder, "pod-a", "a standby leaves the leader's lease alone");
}

/// A leader whose controllers stopped on SIGTERM releases the lease on its way out, so the next
/// replica does not wait for it to expire.
#[tokio::test]
async fn a_leader_releases_the_lease_when_its_work_ends() {
    let fake = Arc::new(FakeLease::default());
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        run_as_leader(
            client(fake.clone()),
            config("pod-a"),
            Arc::new(Health::default()),
            std::future::pending(),
            || async { Ok(()) },
        ),
    )
    .await
    .expect("ended");
    assert!(result.is_ok(), "{result:?}");
    let lease = fake.lease.lock().unwrap().clone().unwrap();
    let holder = &lease["spec"]["holderIdentity"];
    assert!(
        holder.is_null() || holder == "",
        "released: {}",
        lease["spec"]
    );
}
