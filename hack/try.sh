#!/usr/bin/env bash
# Try the operator on this machine, from a fresh clone: a one-node cluster, the chart installed
# from a locally built image, an ImageStream, a Deployment with a trigger, a new image pushed,
# and the rollout it causes.
#
#   hack/try.sh            start ../shared/k8s/node (needs root), or reuse one started before
#   hack/try.sh --context  use the current kube context instead; REGISTRY=<host:port> must be a
#                          registry this machine pushes to and the cluster pulls from over plain
#                          HTTP (e.g. kind's local registry)
#
# Leaves everything running; the last lines say how to look around and how to tear it down.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }
ns=try release=isop

if [ "${1:-}" = --context ]; then
  : "${REGISTRY:?set REGISTRY to a registry the cluster pulls from, e.g. localhost:5001}"
  push_to=$REGISTRY pull_from=$REGISTRY base=docker://docker.io/library/busybox:1.36
  down="helm uninstall $release -n imagestream-system; kubectl delete ns $ns"
else
  node=../shared/k8s/node
  [ -x $node/node-up.sh ] || { echo "no $node beside the checkout: use --context" >&2; exit 1; }
  if [ -z "${ISNODE_REGISTRY_HOST:-}" ]; then
    step "Starting a one-node Kubernetes 1.28 cluster in a network namespace ($node)"
    eval "$(ISNODE_OPERATOR_BIN=none $node/node-up.sh)"
  fi
  push_to=$ISNODE_REGISTRY_HOST pull_from=$ISNODE_REGISTRY base=docker://$ISNODE_REGISTRY_HOST/busybox:1.35
  down="ISNODE_RUN=${ISNODE_RUN:-<its state dir>} $node/node-down.sh"
fi
command -v helm >/dev/null || . .ci/tools.sh >/dev/null

step "Building the operator and its image (no Docker: hack/image.sh)"
cargo build --release --locked --bins 2>&1 | tail -1
bin=${CARGO_TARGET_DIR:-target}/release
hack/image.sh --insecure --push "$push_to/imagestream-operator:try" "$bin/imagestream-operator"

step "Installing the chart"
helm upgrade --install $release charts/imagestream-operator -n imagestream-system --create-namespace \
  --set image.repository=$pull_from/imagestream-operator --set image.tag=try \
  --set "controller.insecureRegistries={$pull_from}" --wait --timeout 180s >/dev/null
kubectl -n imagestream-system get pods

step "Pushing version 1 of an app image to $pull_from/try/app:latest"
app=$(mktemp -d)
trap 'rm -rf "$app"' EXIT
new_version() { # N: the busybox image with a label saying which version it is
  skopeo copy -q --src-tls-verify=false "$base" "oci:$app/layout:v$1"
  umoci config --image "$app/layout:v$1" --config.label "version=$1" --config.cmd sh \
    --config.cmd -c --config.cmd "echo version $1; exec sleep 3600"
  skopeo copy -q --dest-tls-verify=false "oci:$app/layout:v$1" "docker://$push_to/try/app:latest"
}
new_version 1

step "Creating an ImageStream and a Deployment that follows it"
kubectl create ns $ns --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n $ns apply -f - <<EOF
apiVersion: image.openshift.io/v1
kind: ImageStream
metadata: {name: app}
spec:
  tags:
  - name: latest
    from: {kind: DockerImage, name: $pull_from/try/app:latest}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    # Keep the container "web" on whatever app:latest points at.
    image.openshift.io/triggers: '[{"from":{"kind":"ImageStreamTag","name":"app:latest"},"fieldPath":"spec.template.spec.containers[?(@.name==\"web\")].image"}]'
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: " " # OpenShift's placeholder: the trigger writes the digest before any pod runs
EOF
kubectl -n $ns rollout status deploy/web --timeout=120s
kubectl -n $ns get is app
echo "web runs: $(kubectl -n $ns get deploy web -o jsonpath='{.spec.template.spec.containers[0].image}')"

step "Pushing version 2 and asking for an import (a push notification or a schedule does this too)"
new_version 2
"$bin/kubectl-imagestream" -n $ns import-image app:latest
kubectl -n $ns rollout status deploy/web --timeout=120s
echo "web runs: $(kubectl -n $ns get deploy web -o jsonpath='{.spec.template.spec.containers[0].image}')"
newest=$(kubectl -n $ns get pods -l app=web --sort-by=.metadata.creationTimestamp -o name | tail -1)
echo "$newest says: $(kubectl -n $ns logs "$newest")"
"$bin/kubectl-imagestream" -n $ns describe istag app:latest

step "Done"
echo "Look around:  kubectl -n $ns get is,deploy,rs,pods   kubectl -n imagestream-system logs deploy/$release"
echo "History:      $bin/kubectl-imagestream -n $ns describe is app"
[ "${1:-}" = --context ] || echo "KUBECONFIG:   export KUBECONFIG=$KUBECONFIG"
echo "Tear down:    $down"
