package testenv

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSumSamplesAddsCountersGaugesAndHistogramSumsOfMatchingSeries(t *testing.T) {
	const text = `# TYPE requests counter
requests{verb="WATCH",resource="pods"} 2
requests{verb="WATCH",resource="services"} 3
requests{verb="LIST",resource="pods"} 5
# TYPE sizes histogram
sizes_bucket{resource="pods",le="1024"} 1
sizes_bucket{resource="pods",le="+Inf"} 2
sizes_sum{resource="pods"} 3000
sizes_count{resource="pods"} 2
sizes_bucket{resource="nodes",le="+Inf"} 1
sizes_sum{resource="nodes"} 10
sizes_count{resource="nodes"} 1
`
	sum, ok := SumSamples(t, text, "requests", "verb", "WATCH")
	assert.True(t, ok)
	assert.Equal(t, 5.0, sum, "both WATCH series")
	sum, ok = SumSamples(t, text, "sizes", "resource", "pods")
	assert.True(t, ok)
	assert.Equal(t, 3000.0, sum, "a histogram's sum of observations")
	_, ok = SumSamples(t, text, "sizes", "resource", "secrets")
	assert.False(t, ok, "no series matches")
}
