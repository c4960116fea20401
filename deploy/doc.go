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
// They need no server and no Docker engine.
package deploy
