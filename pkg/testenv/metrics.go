package testenv

import (
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// GaugeValue returns the value of the gauge name with the given label
// pairs (name, value, ...) in the registry that this process serves on
// /metrics (controller-runtime's, where pkg/metrics registers every svcguard
// collector), or 0 while that series does not exist yet, as a new series
// starts at 0. It lets a test outside a webhook's package read the gauges
// its audit sets.
func GaugeValue(t testing.TB, name string, labelPairs ...string) float64 {
	t.Helper()
	m := series(t, name, labelPairs)
	if m == nil {
		return 0
	}
	if m.GetGauge() == nil {
		t.Fatalf("%s is not a gauge", name)
	}
	return m.GetGauge().GetValue()
}

// HasSeries tells whether this process exports the series name with exactly
// the given label pairs: a labelled gauge that only the leader sets is
// absent elsewhere.
func HasSeries(t testing.TB, name string, labelPairs ...string) bool {
	t.Helper()
	return series(t, name, labelPairs) != nil
}

// series finds the series name with exactly labelPairs in the process's
// registry, or nil.
func series(t testing.TB, name string, labelPairs []string) *dto.Metric {
	t.Helper()
	if len(labelPairs)%2 != 0 {
		t.Fatalf("%s: labels must come in name, value pairs: %q", name, labelPairs)
	}
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gathering the metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labelPairs)/2 {
				continue
			}
			for _, l := range m.GetLabel() {
				if !hasPair(labelPairs, l.GetName(), l.GetValue()) {
					continue series
				}
			}
			return m
		}
	}
	return nil
}

func hasPair(pairs []string, name, value string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i] == name && pairs[i+1] == value {
			return true
		}
	}
	return false
}

// SumSamples parses a /metrics answer in the Prometheus text format and
// returns the sum of the samples of counter or gauge name (of a histogram:
// the sum of its observations) whose labels include every name, value pair
// given, and whether any matched: a test of a process reads its counters
// with it.
func SumSamples(t testing.TB, text, name string, labelPairs ...string) (float64, bool) {
	t.Helper()
	sum, found, err := sumSamples(text, name, labelPairs...)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return sum, found
}

// sumSamples is SumSamples returning the parse error.
func sumSamples(text, name string, labelPairs ...string) (float64, bool, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return 0, false, err
	}
	var sum float64
	var found bool
	f, ok := families[name]
	if !ok {
		return 0, false, nil
	}
series:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labelPairs); i += 2 {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
				return l.GetName() == labelPairs[i] && l.GetValue() == labelPairs[i+1]
			}) {
				continue series
			}
		}
		found = true
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue() + m.GetHistogram().GetSampleSum()
	}
	return sum, found, nil
}
