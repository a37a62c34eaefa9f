package review

import (
	"bytes"
	"unicode/utf8"
)

// scanner walks JSON that fastjson.ValidateBytes accepted: it finds where
// values start and end without decoding them.
type scanner struct {
	b []byte
	i int
}

// members calls f with each member of the object at the scanner's
// position, its key (as written) and its value's bytes; it stops at the
// first false. It is false when the value is not an object, when a key is
// escaped or not valid UTF-8 (the decoder would read it otherwise), or when
// f is.
func (s *scanner) members(f func(key string, value []byte) bool) bool {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	s.i++
	for {
		s.space()
		switch s.b[s.i] {
		case '}':
			s.i++
			return true
		case ',':
			s.i++
			s.space()
		}
		start := s.i
		s.skip()
		key := s.b[start+1 : s.i-1]
		if bytes.IndexByte(key, '\\') >= 0 || !utf8.Valid(key) {
			return false
		}
		s.space()
		s.i++ // the colon
		s.space()
		start = s.i
		s.skip()
		if !f(string(key), s.b[start:s.i]) {
			return false
		}
	}
}

// space skips JSON whitespace.
func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// skip moves past the value at the scanner's position.
func (s *scanner) skip() {
	switch s.b[s.i] {
	case '"':
		s.i++
		for {
			// The next quote ends the string unless an odd run of backslashes
			// escapes it (a run cannot start before this segment: what precedes
			// a segment is a quote).
			end := s.i + bytes.IndexByte(s.b[s.i:], '"')
			k := end - 1
			for k >= s.i && s.b[k] == '\\' {
				k--
			}
			s.i = end + 1
			if (end-1-k)%2 == 0 {
				return
			}
		}
	case '{', '[':
		depth := 0
		for {
			switch s.b[s.i] {
			case '"':
				s.skip()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return
				}
			}
			s.i++
		}
	default: // a number, true, false or null
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return
			}
			s.i++
		}
	}
}

// MaxDepth is the deepest nesting Decode reads; a deeper body goes to
// controller-runtime (whose decoder refuses past 10,000). fastjson's
// validator recurses once per level with no bound of its own, so without
// this a body of a few MiB of '[' would grow one request's stack past the
// container's memory.
const MaxDepth = 1000

// deeperThan tells whether b nests objects and arrays deeper than limit,
// counting brackets outside strings; b need not be valid JSON.
func deeperThan(b []byte, limit int) bool {
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > limit {
				return true
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return false
}
