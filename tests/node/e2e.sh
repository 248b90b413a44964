#!/usr/bin/env bash
# The chart on a real node (../shared/k8s/node): install, use, fail over, upgrade, uninstall.
# Run by tests/node.rs (cargo test) when a node is up; by hand:
#   eval "$(../shared/k8s/node/node-up.sh)"; ISNODE_OPERATOR_BIN=target/release/imagestream-operator tests/node/e2e.sh
# Every step prints "== ok: ..." with what it measured; the first failure prints what it saw and
# exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${KUBECONFIG:?the kubeconfig node-up.sh prints}" "${ISNODE_REGISTRY:?}" "${ISNODE_REGISTRY_HOST:?}"
BIN=${ISNODE_OPERATOR_BIN:-target/release/imagestream-operator}
REG=$ISNODE_REGISTRY NS=imagestream-system REL=isop APP=isnode-demo TAG=e2e-$$
command -v helm >/dev/null || . .ci/tools.sh
say() { echo "== $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
fail() {
  echo "FAIL: $*" >&2
  kubectl -n $NS get pods,lease -o wide >&2 || true
  kubectl -n $NS logs -l app.kubernetes.io/instance=$REL --tail=20 --prefix >&2 || true
  exit 1
}
# until SECONDS DESCRIPTION COMMAND...: polls every 0.2 s.
poll() {
  local deadline=$(($(date +%s) + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt $deadline ] || fail "$what (not within the limit)"
    sleep 0.2
  done
}
holder() { kubectl -n $NS get lease $REL -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }
pods() { kubectl -n $NS get pods -l app.kubernetes.io/instance=$REL -o jsonpath='{range .items[*]}{.metadata.name}{" "}{end}'; }
ready_pods() {
  kubectl -n $NS get pods -l app.kubernetes.io/instance=$REL \
    -o jsonpath='{range .items[?(@.metadata.deletionTimestamp)]}x{end}{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{" "}{end}'
}
two_ready() { [ "$(ready_pods)" = "True True " ]; }
cleanup() {
  helm uninstall $REL -n $NS --wait >/dev/null 2>&1 || true
  kubectl delete ns $NS $APP --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT

start=$(now)
hack/image.sh --push "$ISNODE_REGISTRY_HOST/imagestream-operator:$TAG" --insecure "$BIN"
say "ok: image built without Docker and pushed ($(since $start) s)"

# The restricted Pod Security level, enforced and warned about, on the release namespace.
kubectl delete ns $NS $APP --ignore-not-found --wait=true --timeout=120s >/dev/null # an earlier run's
kubectl create ns $NS
kubectl label ns $NS pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted >/dev/null
start=$(now)
helm install $REL charts/imagestream-operator -n $NS --wait --timeout 180s \
  --set image.repository=$REG/imagestream-operator --set image.tag=$TAG \
  --set "controller.insecureRegistries={$REG}" 2>&1 | tee /tmp/isnode-helm.$$ >&2 || fail "helm install"
! grep -qi "PodSecurity" /tmp/isnode-helm.$$ || fail "Pod Security warnings at install"
two_ready || fail "both replicas Ready"
poll 30 "the Lease held" sh -c "[ -n \"\$(kubectl -n $NS get lease $REL -o jsonpath={.spec.holderIdentity})\" ]"
say "ok: installed under enforce=restricted without warnings, both replicas Ready, Lease held by $(holder) ($(since $start) s)"

# A stream, a Deployment with a trigger, and a Pod created with the stream's short name.
kubectl create ns $APP >/dev/null
kubectl -n $APP apply -f - >/dev/null <<EOF
apiVersion: image.openshift.io/v1
kind: ImageStream
metadata: {name: bb}
spec:
  lookupPolicy: {local: true}
  tags:
  - name: "1.35"
    from: {kind: DockerImage, name: $REG/busybox:1.35}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    image.openshift.io/triggers: '[{"from":{"kind":"ImageStreamTag","name":"bb:1.35"},"fieldPath":"spec.template.spec.containers[?(@.name==\"web\")].image"}]'
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: " ", command: [sh, -c, "echo started; exec sleep 3600"]}
EOF
start=$(now)
poll 60 "the stream imported" sh -c "kubectl -n $APP get is bb -o jsonpath='{.status.tags[0].items[0].image}' | grep -q sha256:"
digest=$(kubectl -n $APP get is bb -o jsonpath='{.status.tags[0].items[0].image}')
kubectl -n $APP rollout status deploy/web --timeout=90s >/dev/null || fail "the triggered Deployment rolled out"
image=$(kubectl -n $APP get pods -l app=web -o jsonpath='{.items[0].spec.containers[0].image}')
[ "$image" = "$REG/busybox@$digest" ] || fail "the pod runs $image, not the pinned $REG/busybox@$digest"
poll 30 "the pod started" sh -c "kubectl -n $APP logs deploy/web | grep -q started"
say "ok: stream imported, Deployment rolled out to $image and its pod started ($(since $start) s)"

start=$(now)
poll 60 "the webhook's caBundle injected" sh -c "[ -n \"\$(kubectl get mutatingwebhookconfiguration $REL -o jsonpath='{.webhooks[0].clientConfig.caBundle}')\" ]"
kubectl -n $APP run short --image=bb:1.35 --restart=Never --command -- sh -c 'echo rewritten' >/dev/null
image=$(kubectl -n $APP get pod short -o jsonpath='{.spec.containers[0].image}')
[ "$image" = "$REG/busybox@$digest" ] || fail "the webhook left bb:1.35 as $image"
say "ok: the webhook rewrote bb:1.35 to $image through its Service ($(since $start) s)"

# Deleting the leader: it stops its controllers, releases the Lease, and the standby takes it.
leader=$(holder)
start=$(now)
kubectl -n $NS delete pod "$leader" --wait=false >/dev/null
poll 15 "another replica took the Lease within its 15 s duration" \
  sh -c "h=\$(kubectl -n $NS get lease $REL -o jsonpath={.spec.holderIdentity}); [ -n \"\$h\" ] && [ \"\$h\" != $leader ]"
say "ok: leader $leader deleted; $(holder) holds the Lease $(since $start) s later"
poll 90 "the replacement replica Ready" two_ready

# A standby stops on SIGTERM at once (it used to wait out the 30 s grace period).
standby=$(for p in $(pods); do [ "$p" = "$(holder)" ] || echo "$p"; done | head -1)
start=$(now)
kubectl -n $NS delete pod "$standby" --wait=true --timeout=60s >/dev/null
took=$(since $start)
awk -v t="$took" 'BEGIN { exit !(t < 5) }' || fail "standby $standby took $took s to stop"
say "ok: standby $standby stopped and was removed $took s after SIGTERM"
poll 90 "the replacement replica Ready" two_ready

start=$(now)
helm upgrade $REL charts/imagestream-operator -n $NS --wait --timeout 180s --reuse-values \
  --set controller.scheduledImportInterval=10m 2>&1 | tee /tmp/isnode-helm.$$ >&2 || fail "helm upgrade"
! grep -qi "PodSecurity" /tmp/isnode-helm.$$ || fail "Pod Security warnings at upgrade"
kubectl -n $NS get deploy $REL -o jsonpath='{.spec.template.spec.containers[0].env}' | grep -q '"10m"' ||
  fail "the upgrade's value reached the pods"
poll 60 "both replicas Ready, and no old one left, after the upgrade" two_ready
say "ok: helm upgrade with a changed value rolled out ($(since $start) s)"

# What helm uninstall leaves: only what the README names.
start=$(now)
helm uninstall $REL -n $NS --wait --timeout 120s >/dev/null
poll 30 "the operator's pods gone" sh -c "[ -z \"\$(kubectl -n $NS get pods -o name)\" ]"
left=$(kubectl -n $NS get all,secrets,configmaps,leases,serviceaccounts,roles,rolebindings,poddisruptionbudgets -o name |
  grep -v -e '^configmap/kube-root-ca.crt$' -e '^serviceaccount/default$' | sort | tr '\n' ' ')
cluster=$(kubectl get clusterroles,clusterrolebindings,mutatingwebhookconfigurations -o name | grep -e "/$REL" | tr '\n' ' ' || true)
expected="lease.coordination.k8s.io/$REL secret/$REL-webhook-tls "
[ "$left" = "$expected" ] || fail "helm uninstall left: $left (expected: $expected)"
[ -z "$cluster" ] || fail "helm uninstall left cluster-scoped: $cluster"
grep -q -- '-webhook-tls' README.md && grep -q 'helm uninstall' README.md || fail "README names what uninstall leaves"
say "ok: helm uninstall left only $left(named in the README) ($(since $start) s)"
