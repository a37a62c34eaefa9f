package options

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// listFlag is a repeatable flag, as later webhooks use for pins.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type fakeComponent struct {
	host  string
	items listFlag
}

func (f *fakeComponent) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&f.host, "service-host", "", "host")
	fs.Var(&f.items, "item", "repeatable")
}
func (f *fakeComponent) Validate() error { return nil }

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestParseDefaults(t *testing.T) {
	s := NewServer()
	require.NoError(t, Parse("svcguard", nil, &bytes.Buffer{}, s))
	assert.Equal(t, ":9443", s.WebhookBindAddress)
	assert.Equal(t, "/tmp/k8s-webhook-server/serving-certs", s.CertDir)
	assert.Equal(t, ":8081", s.HealthProbeBindAddress)
	assert.Equal(t, ":8443", s.MetricsBindAddress)
	assert.True(t, s.MetricsSecure, "metrics are authenticated unless turned off")
	assert.Equal(t, 32, s.MaxInFlightRequests)
}

func TestConfigFileSetsFlagsAndCommandLineWins(t *testing.T) {
	path := writeConfig(t, "metrics-bind-address: \"0\"\nwebhook-bind-address: \":9000\"\nservice-host: 10.1.1.1\nitem: [a, b]\nzap-log-level: debug\n")
	s, c := NewServer(), &fakeComponent{}
	require.NoError(t, Parse("svcguard", []string{"--config", path, "--webhook-bind-address=:9555"}, &bytes.Buffer{}, s, c))
	assert.Equal(t, "0", s.MetricsBindAddress, "set by the file")
	assert.Equal(t, ":9555", s.WebhookBindAddress, "the command line must win over the file")
	assert.Equal(t, "10.1.1.1", c.host, "a component's flag is settable from the file")
	assert.Equal(t, listFlag{"a", "b"}, c.items, "a list sets a repeatable flag once per element")
}

// pinnedComponent's flag "pinned" may only come from the command line.
type pinnedComponent struct{ value string }

func (p *pinnedComponent) AddFlags(fs *flag.FlagSet) { fs.StringVar(&p.value, "pinned", "", "pinned") }
func (p *pinnedComponent) Validate() error           { return nil }
func (p *pinnedComponent) CommandLineOnly() map[string]string {
	return map[string]string{"pinned": "set it in the place it belongs"}
}

func TestConfigFileCannotSetACommandLineOnlyFlag(t *testing.T) {
	path := writeConfig(t, "audit-interval: 1m\npinned: x\n")
	p := &pinnedComponent{}
	err := Parse("svcguard", []string{"--config", path, "--pinned="}, &bytes.Buffer{}, NewServer(), p)
	require.Error(t, err, "a config file that sets a command-line-only flag must be refused, not lose silently")
	assert.Equal(t, "config file "+path+` line 2: "pinned" cannot be set in the config file: set it in the place it belongs`, err.Error())
	require.NoError(t, Parse("svcguard", []string{"--pinned=y"}, &bytes.Buffer{}, NewServer(), p))
	assert.Equal(t, "y", p.value, "the command line still sets it")
}

func TestParseErrorsAreOneLineNamingTheProblem(t *testing.T) {
	tests := []struct {
		name    string
		args    func(t *testing.T) []string
		wantSub string
	}{
		{"unknown flag", func(*testing.T) []string { return []string{"--no-such-flag"} }, "no-such-flag"},
		{"bad bind address", func(*testing.T) []string { return []string{"--webhook-bind-address=9443"} }, "--webhook-bind-address=\"9443\" is not host:port"},
		{"port out of range", func(*testing.T) []string { return []string{"--health-probe-bind-address=:70000"} }, "not a number from 0 to 65535"},
		{"unreadable config file names the file", func(*testing.T) []string { return []string{"--config=/nonexistent/svcguard.yaml"} },
			"cannot read config file /nonexistent/svcguard.yaml: no such file or directory"},
		{"config file is not YAML", func(t *testing.T) []string { return []string{"--config", writeConfig(t, "a: [b\n")} }, "is not valid YAML"},
		{"config key is not a flag", func(t *testing.T) []string { return []string{"--config", writeConfig(t, "servicehost: x\n")} }, "unknown setting \"servicehost\""},
		{"config value invalid for its flag", func(t *testing.T) []string {
			return []string{"--config", writeConfig(t, "zap-devel: maybe\n")}
		}, "invalid value \"maybe\" for \"zap-devel\""},
		{"config file is a list", func(t *testing.T) []string { return []string{"--config", writeConfig(t, "- a\n")} }, "expected a mapping"},
		{"stray argument", func(*testing.T) []string { return []string{"serve"} }, "unexpected argument \"serve\""},
		{"empty cert dir", func(*testing.T) []string { return []string{"--cert-dir="} }, "--cert-dir is empty"},
		{"zero readiness interval", func(*testing.T) []string { return []string{"--readiness-check-interval=0s"} }, "--readiness-check-interval=0s must be a positive duration"},
		{"zero shutdown timeout", func(*testing.T) []string { return []string{"--shutdown-timeout=0s"} }, "--shutdown-timeout=0s must be a positive duration"},
		{"negative drain", func(*testing.T) []string { return []string{"--shutdown-drain=-1s"} }, "--shutdown-drain=-1s must not be negative"},
		{"zero in-flight cap", func(*testing.T) []string { return []string{"--max-in-flight-requests=0"} }, "--max-in-flight-requests=0 must be at least 1"},
		{"a bad value from the config file names the file and line", func(t *testing.T) []string {
			return []string{"--config", writeConfig(t, "audit-interval: 1m\nmax-in-flight-requests: -5\n")}
		}, "config.yaml line 2: --max-in-flight-requests=-5 must be at least 1"},
		{"in-flight cap that is not a number", func(*testing.T) []string { return []string{"--max-in-flight-requests=many"} }, "max-in-flight-requests"},
		{"drain that is not a duration", func(t *testing.T) []string { return []string{"--config", writeConfig(t, "shutdown-drain: 15\n")} }, "invalid value \"15\" for \"shutdown-drain\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Parse("svcguard", tc.args(t), &bytes.Buffer{}, NewServer(), &fakeComponent{})
			require.Error(t, err, "expected an error")
			assert.Contains(t, err.Error(), tc.wantSub)
			assert.NotContains(t, err.Error(), "\n", "the error must be one line")
		})
	}
}

func TestHelpPrintsEveryFlagAndReturnsErrHelp(t *testing.T) {
	var out bytes.Buffer
	err := Parse("svcguard", []string{"--help"}, &out, NewServer(), &fakeComponent{})
	assert.ErrorIs(t, err, ErrHelp)
	for _, name := range []string{"--config", "--webhook-bind-address", "--cert-dir", "--metrics-bind-address", "--kubeconfig", "--zap-log-level", "--service-host", "--shutdown-drain", "--mutating-webhook-configuration", "--max-in-flight-requests"} {
		assert.Contains(t, out.String(), name, "usage must list %s", name)
	}
}

func TestMetricsCanBeTurnedOff(t *testing.T) {
	s := NewServer()
	require.NoError(t, Parse("svcguard", []string{"--metrics-bind-address=0"}, &bytes.Buffer{}, s))
	assert.Equal(t, "0", s.MetricsBindAddress)
}

func TestProfilingIsOffByDefaultAndTakesHostPort(t *testing.T) {
	s := NewServer()
	require.NoError(t, Parse("svcguard", nil, &bytes.Buffer{}, s))
	assert.Equal(t, "0", s.PprofBindAddress, "no profiling endpoint unless asked for")
	require.NoError(t, Parse("svcguard", []string{"--pprof-bind-address=127.0.0.1:6060"}, &bytes.Buffer{}, NewServer()))
	assert.ErrorContains(t, Parse("svcguard", []string{"--pprof-bind-address=6060"}, &bytes.Buffer{}, NewServer()),
		`--pprof-bind-address="6060" is not host:port`)
}
