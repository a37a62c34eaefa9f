//go:build tools

// Package tools pins promtool, which `make rules` builds from this module
// (nothing is downloaded but Go modules), and the prometheus-operator API
// types that hack/tools/promtool/rulefile reads the PrometheusRule with, apart
// from svcguard's own module so that Prometheus's dependencies never mix with
// svcguard's.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
