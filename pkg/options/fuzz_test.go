package options

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzConfigSeeds mirror the config files of the tests above (their tables
// are local to them) and a few shapes YAML allows.
var fuzzConfigSeeds = []string{
	"metrics-bind-address: \"0\"\nwebhook-bind-address: \":9000\"\nservice-host: 10.1.1.1\nitem: [a, b]\nzap-log-level: debug\n",
	"a: [b\n",
	"servicehost: x\n",
	"zap-devel: maybe\n",
	"- a\n",
	"shutdown-drain: 15\n",
	"shutdown-drain: 15s\nshutdown-timeout: 0s\n",
	"max-in-flight-requests: -5\n",
	"max-in-flight-requests: 99999999999999999999\n",
	"config: other.yaml\n",
	"item:\n  - a\n  - {b: c}\n",
	"service-host: {a: b}\n",
	"",
	"---\n",
	"~\n",
	"zap-log-level: 10\nzap-encoder: console\nzap-stacktrace-level: panic\nzap-time-encoding: rfc3339\n",
	"a: &x [1, 2]\nb: *x\n",
	"service-host: !!binary aGVsbG8=\n",
	"? [a]\n: b\n",
	"webhook-bind-address: \":9443\"\nwebhook-bind-address: \":9444\"\n",
	"\xff\xfe: x\n",
}

// FuzzConfigFile feeds Parse arbitrary --config files. Whatever the file
// holds, Parse returns (no panic), either an error of one bounded line of
// text or settings in which the command line still wins over the file.
func FuzzConfigFile(f *testing.F) {
	for _, s := range fuzzConfigSeeds {
		f.Add([]byte(s))
	}
	path := filepath.Join(f.TempDir(), "config.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, c := NewServer(), &fakeComponent{}
		var usage bytes.Buffer
		err := Parse("svcguard", []string{"--config", path, "--webhook-bind-address=127.0.0.1:9555"}, &usage, s, c)
		if usage.Len() > 0 {
			t.Fatalf("a config file made Parse print: %q", usage.String())
		}
		if err != nil {
			m := err.Error()
			// The file's text may be quoted (up to 4 bytes per byte, as
			// \x00) at most twice, next to the path and a fixed text.
			if !utf8.ValidString(m) || strings.ContainsAny(m, "\r\n") || len(m) > 2*4*len(data)+len(path)+512 {
				t.Fatalf("the error is not one bounded line of text (%d bytes): %q", len(m), m)
			}
			return
		}
		if s.WebhookBindAddress != "127.0.0.1:9555" {
			t.Fatalf("the file overrode the command line: --webhook-bind-address is %q", s.WebhookBindAddress)
		}
		// Whatever the file set, it passed validation.
		if err := s.Validate(); err != nil {
			t.Fatalf("Parse accepted settings that do not validate: %v", err)
		}
	})
}
