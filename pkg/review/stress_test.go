package review

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestMutatedBodiesGetTheSameAnswers is the fuzz target's check over a
// fixed, seeded set of mutations of every seed (byte changes, deletions and
// JSON punctuation inserted), so that every `go test` run covers more than
// the seeds: 20,000 bodies, most of them malformed in a new way.
func TestMutatedBodiesGetTheSameAnswers(t *testing.T) {
	seeds := seeds(t, math.MaxInt)
	r := rand.New(rand.NewPCG(1, 2))
	const punctuation = `{}[]",:\ntu`
	fast := 0
	for range 20_000 {
		b := append([]byte(nil), seeds[r.IntN(len(seeds))]...)
		for range 1 + r.IntN(4) {
			if len(b) == 0 {
				break
			}
			i := r.IntN(len(b))
			switch r.IntN(3) {
			case 0:
				b[i] = byte(r.IntN(256))
			case 1:
				b = append(b[:i], b[i+1:]...)
			case 2:
				b = append(b[:i], append([]byte{punctuation[r.IntN(len(punctuation))]}, b[i:]...)...)
			}
		}
		if _, _, ok := Decode(b); ok {
			fast++
		}
		want, got := both(b, "application/json")
		if want != got {
			t.Fatalf("for body %q\ncontroller-runtime answered %d %s\nHandler answered %d %s", b, want.code, want.body, got.code, got.body)
		}
	}
	t.Logf("%d of 20000 mutated bodies read in one pass, the rest left to controller-runtime", fast)
	if fast == 0 {
		t.Error("expected some mutated bodies to stay well-formed and be read in one pass; none was")
	}
}
