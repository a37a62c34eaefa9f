// Package warning formats the admission warnings every webhook returns: the
// API server passes each on as an HTTP Warning header, whole only when it is
// short and valid UTF-8, so every warning goes through Format.
package warning

import (
	"fmt"
	"unicode/utf8"
)

// Max is the longest warning the API server passes on whole.
const Max = 119

// Prefix starts every svcguard warning, so that a user who sees it in
// kubectl's output knows who sent it.
const Prefix = "svcguard: "

// Format returns Prefix and the formatted text, cut to Max bytes with "..."
// when longer, never inside a character.
func Format(format string, args ...any) string {
	w := fmt.Sprintf(Prefix+format, args...)
	if len(w) > Max {
		cut := Max - 3
		for cut > 0 && !utf8.RuneStart(w[cut]) {
			cut-- // never cut inside a character: the API server drops a warning that is not UTF-8
		}
		w = w[:cut] + "..."
	}
	return w
}
