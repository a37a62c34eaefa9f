package warning

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

func TestFormatPrefixesShortWarningsAndKeepsThemWhole(t *testing.T) {
	assert.Equal(t, "svcguard: port \"http\" moved", Format("port %q moved", "http"))
}

func TestFormatCutsLongWarningsToMaxWithoutSplittingACharacter(t *testing.T) {
	for _, filler := range []string{strings.Repeat("a", 200), strings.Repeat("é", 100), strings.Repeat("€", 70)} {
		w := Format("%s", filler)
		assert.LessOrEqual(t, len(w), Max, "warning %q", w)
		assert.True(t, strings.HasSuffix(w, "..."), "a cut warning ends in ...: %q", w)
		assert.True(t, utf8.ValidString(w), "a cut warning stays UTF-8: %q", w)
	}
}
