{{/*
The operator's rules on namespaced objects: granted cluster-wide by the ClusterRole, or with
controller.watchNamespaces by a Role in each listed namespace (see src/ops/rbac.rs).
*/}}
{{- define "imagestream-operator.namespacedRules" -}}
- apiGroups: ["image.openshift.io"]
  resources: ["imagestreams"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["image.openshift.io"]
  resources: ["imagestreams/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets", "replicasets"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: [""]
  resources: ["replicationcontrollers", "pods"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch"]
{{- $tokens := .Values.credentialProviders.serviceAccountTokens }}
{{- range (.Values.credentialProviders.config.providers | default list) }}
{{- if .tokenAttributes }}{{ $tokens = true }}{{ end }}
{{- end }}
{{- if and .Values.credentialProviders.enabled $tokens }}
# Credential providers in service-account-token mode: a token of the ServiceAccount a stream
# names in its own namespace, for the provider's audience only (see src/ops/rbac.rs).
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
{{- end }}
{{- end }}
