// Package deploy holds no code. Its tests check the files that run keymigrate
// somewhere else than a developer's shell against what the binaries actually
// read: the Dockerfile, docker-compose.yml, the Kubernetes manifests under
// deploy/k8s and the Grafana dashboard and alert rules under deploy/monitoring.
//
// The binaries are the source of truth. The tests build producer, worker and
// migratectl as the Dockerfile does (static, CGO_ENABLED=0), read every flag,
// its environment variable and its default from --help, and the required
// settings from what each binary refuses to start without, so that a renamed
// flag, variable, service or port fails `go test ./...` instead of a rollout.
// The Kubernetes manifests are rendered with kustomize's own library and every
// object is decoded strictly into its API type (k8s.io/api, the Prometheus
// Operator's types) or validated against its CRD's schema (KEDA's, kept in
// deploy/k8s/schemas), so that a misspelt field fails too. The alert rules are
// parsed and evaluated with Prometheus' own rule engine against recorded
// series, as `promtool test rules` does (alerteval_test.go, alerts_test.go).
// They need no server and no Docker engine.
package deploy
