package options

import "strings"

// List is a repeatable flag whose values may also be comma-separated:
// --x=a,b --x=c and, in the config file, "x: [a, b, c]" or "x: a,b,c" all
// give [a b c].
type List []string

// String implements flag.Value.
func (l *List) String() string {
	return strings.Join(*l, ",")
}

// Set implements flag.Value.
func (l *List) Set(value string) error {
	for _, v := range strings.Split(value, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}
