// Package deploy is the operator kit: Prometheus rules and their unit tests
// (prometheus/), a Grafana dashboard (grafana/) and a Kubernetes example of
// the fleet (kubernetes/). It holds no code; its tests check the kit
// against promtool, a real Prometheus and a running gateway, and against
// the README's metrics table.
package deploy
