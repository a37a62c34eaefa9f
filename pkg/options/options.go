// Package options parses svcguard's command line and its optional YAML config
// file into the settings of the server machinery and of each webhook.
//
// Every setting is a flag. The config file (--config) is a YAML mapping from
// flag name to value, so the file and the command line cannot drift apart: a
// key that is not a flag is an error, and a flag given on the command line wins
// over the same key in the file.
package options

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// ErrHelp is returned by Parse after it printed the usage for -h or --help;
// the caller should exit 0.
var ErrHelp = flag.ErrHelp

// Component is a part of svcguard that owns a group of flags: the server
// machinery and each webhook.
type Component interface {
	// AddFlags registers the component's flags on fs.
	AddFlags(fs *flag.FlagSet)
	// Validate reports, after parsing, a setting that cannot work; the error
	// names the flag and the value.
	Validate() error
}

// CommandLineOnly is implemented by a Component some of whose flags must
// not come from the config file: it maps each such flag to where the
// setting belongs instead. A config file that sets one is refused, naming
// that place, rather than silently losing to the command line.
type CommandLineOnly interface {
	CommandLineOnly() map[string]string
}

// Server holds the settings of the machinery that every webhook shares.
type Server struct {
	// WebhookBindAddress is host:port of the TLS listener for admission requests.
	WebhookBindAddress string
	// CertDir holds tls.crt and tls.key, reloaded when they change.
	CertDir string
	// HealthProbeBindAddress is host:port of /healthz and /readyz (plain HTTP).
	HealthProbeBindAddress string
	// MetricsBindAddress is host:port of /metrics; "0" turns the endpoint off.
	MetricsBindAddress string
	// PprofBindAddress is host:port of Go's /debug/pprof (plain HTTP, no
	// authentication: bind it to loopback); "0", the default, turns it off.
	PprofBindAddress string
	// MetricsSecure serves /metrics over HTTPS with the serving certificate,
	// only to clients whose token the API server authenticates and
	// authorizes for get on the non-resource URL /metrics.
	MetricsSecure bool
	// Kubeconfig is the path of a kubeconfig file; empty means $KUBECONFIG,
	// else the in-cluster config, else ~/.kube/config (controller-runtime's
	// order).
	Kubeconfig string
	// MutatingWebhookConfiguration and ValidatingWebhookConfiguration name
	// the configurations whose live failurePolicy and caBundle readiness
	// reads; empty: not consulted.
	MutatingWebhookConfiguration, ValidatingWebhookConfiguration string
	// ReadinessCheckInterval is the time between rounds of readiness checks.
	ReadinessCheckInterval time.Duration
	// StartupGrace bounds how long a fresh replica waits for every check to
	// pass before failing dependencies of Ignore webhooks stop holding it back.
	StartupGrace time.Duration
	// ShutdownDrain is how long the listener keeps answering after SIGTERM,
	// with /readyz failing and every answer closing its connection.
	ShutdownDrain time.Duration
	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// once the listener closed.
	ShutdownTimeout time.Duration
	// LeaderElect turns the Lease election for leader-only audits on.
	LeaderElect bool
	// LeaderElectionNamespace and LeaderElectionID locate the Lease; an
	// empty namespace is svcguard's own (see OwnNamespace).
	LeaderElectionNamespace, LeaderElectionID string
	// LeaderElectionLeaseDuration, LeaderElectionRenewDeadline and
	// LeaderElectionRetryPeriod are client-go's election timings.
	LeaderElectionLeaseDuration, LeaderElectionRenewDeadline, LeaderElectionRetryPeriod time.Duration
	// AuditInterval is the time between passes of the leader-only audits.
	AuditInterval time.Duration
	// MaxInFlightRequests caps the admission requests answered at once;
	// beyond it the webhook listener answers HTTP 429 with Retry-After.
	MaxInFlightRequests int
	// Log holds controller-runtime's zap logging flags.
	Log zap.Options
}

// NewServer returns the server settings with their defaults.
func NewServer() *Server {
	return &Server{
		WebhookBindAddress:     ":9443",
		CertDir:                "/tmp/k8s-webhook-server/serving-certs",
		HealthProbeBindAddress: ":8081",
		PprofBindAddress:       "0",
		MetricsBindAddress:     ":8443",
		MetricsSecure:          true,

		MutatingWebhookConfiguration:   "svcguard",
		ValidatingWebhookConfiguration: "svcguard",
		ReadinessCheckInterval:         2 * time.Second,
		StartupGrace:                   2 * time.Minute,
		ShutdownDrain:                  15 * time.Second,
		ShutdownTimeout:                10 * time.Second,

		LeaderElectionID:            "svcguard",
		LeaderElectionLeaseDuration: 15 * time.Second,
		LeaderElectionRenewDeadline: 10 * time.Second,
		LeaderElectionRetryPeriod:   2 * time.Second,
		AuditInterval:               time.Minute,

		MaxInFlightRequests: 32, // see server.DefaultMaxInFlight
	}
}

// AddFlags registers the server flags and the zap logging flags on fs.
func (s *Server) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&s.WebhookBindAddress, "webhook-bind-address", s.WebhookBindAddress,
		"host:port of the TLS listener that serves admission requests.")
	fs.StringVar(&s.CertDir, "cert-dir", s.CertDir,
		"Directory holding the serving certificate tls.crt and key tls.key; both are reloaded when they change.")
	fs.StringVar(&s.HealthProbeBindAddress, "health-probe-bind-address", s.HealthProbeBindAddress,
		"host:port serving /healthz (liveness) and /readyz (readiness) over plain HTTP.")
	fs.StringVar(&s.MetricsBindAddress, "metrics-bind-address", s.MetricsBindAddress,
		"host:port serving Prometheus /metrics; \"0\" turns it off.")
	fs.StringVar(&s.PprofBindAddress, "pprof-bind-address", s.PprofBindAddress,
		"host:port serving Go's /debug/pprof profiles over plain HTTP without authentication, for profiling (bind it to 127.0.0.1); \"0\" turns it off.")
	fs.BoolVar(&s.MetricsSecure, "metrics-secure", s.MetricsSecure,
		"Serve /metrics over HTTPS with the certificate from --cert-dir, answering only clients whose bearer token the API server authenticates (TokenReview) "+
			"and authorizes for get on the non-resource URL /metrics (SubjectAccessReview); false serves plain HTTP to anyone, for local use.")
	fs.StringVar(&s.Kubeconfig, "kubeconfig", s.Kubeconfig,
		"Path of a kubeconfig file; empty: $KUBECONFIG, else the in-cluster config, else ~/.kube/config. Either way client-side rate limiting is off: the API server's priority and fairness applies.")
	fs.StringVar(&s.MutatingWebhookConfiguration, "mutating-webhook-configuration", s.MutatingWebhookConfiguration,
		"Name of the MutatingWebhookConfiguration whose live failurePolicy and caBundle readiness reads; empty: not consulted.")
	fs.StringVar(&s.ValidatingWebhookConfiguration, "validating-webhook-configuration", s.ValidatingWebhookConfiguration,
		"Name of the ValidatingWebhookConfiguration whose live failurePolicy and caBundle readiness reads; empty: not consulted.")
	fs.DurationVar(&s.ReadinessCheckInterval, "readiness-check-interval", s.ReadinessCheckInterval,
		"Time between rounds of readiness checks (each round sends one self-test AdmissionReview per webhook).")
	fs.DurationVar(&s.StartupGrace, "startup-grace", s.StartupGrace,
		"How long a starting replica waits for every readiness check to pass; after it, failing caches of a webhook under failurePolicy Ignore no longer keep it unready.")
	fs.DurationVar(&s.ShutdownDrain, "shutdown-drain", s.ShutdownDrain,
		"After SIGTERM: how long /readyz fails while the webhook listener keeps answering, each answer closing its connection, before the listener closes.")
	fs.DurationVar(&s.ShutdownTimeout, "shutdown-timeout", s.ShutdownTimeout,
		"After the drain: how long in-flight admission requests may take to finish before the process exits.")
	fs.BoolVar(&s.LeaderElect, "leader-elect", s.LeaderElect,
		"Elect a leader through a coordination.k8s.io Lease to run the audits once per cluster; off: this replica runs them. Webhooks are served by every replica either way.")
	fs.StringVar(&s.LeaderElectionNamespace, "leader-election-namespace", s.LeaderElectionNamespace,
		"Namespace of the Lease; empty: svcguard's own ($POD_NAMESPACE, else the service account's namespace).")
	fs.StringVar(&s.LeaderElectionID, "leader-election-id", s.LeaderElectionID, "Name of the Lease.")
	fs.DurationVar(&s.LeaderElectionLeaseDuration, "leader-election-lease-duration", s.LeaderElectionLeaseDuration,
		"How long followers wait after the last renewal before taking a Lease over (a replica that stops releases it at once).")
	fs.DurationVar(&s.LeaderElectionRenewDeadline, "leader-election-renew-deadline", s.LeaderElectionRenewDeadline,
		"How long the leader keeps trying to renew before it gives leadership up.")
	fs.DurationVar(&s.LeaderElectionRetryPeriod, "leader-election-retry-period", s.LeaderElectionRetryPeriod,
		"Time between attempts to acquire or renew the Lease.")
	fs.DurationVar(&s.AuditInterval, "audit-interval", s.AuditInterval,
		"Time between passes of the leader-only audits (missed injections, nodePorts not correctly allocated).")
	fs.IntVar(&s.MaxInFlightRequests, "max-in-flight-requests", s.MaxInFlightRequests,
		"Most admission requests answered at once; beyond it a request is answered HTTP 429 with Retry-After: 1 at once, without being read, and the API server retries it after a second while the webhook's timeoutSeconds allows.")
	s.Log.BindFlags(fs)
}

// Validate checks the listener addresses and the certificate directory.
func (s *Server) Validate() error {
	if err := validateHostPort("webhook-bind-address", s.WebhookBindAddress, false); err != nil {
		return err
	}
	if err := validateHostPort("health-probe-bind-address", s.HealthProbeBindAddress, false); err != nil {
		return err
	}
	if err := validateHostPort("metrics-bind-address", s.MetricsBindAddress, true); err != nil {
		return err
	}
	if err := validateHostPort("pprof-bind-address", s.PprofBindAddress, true); err != nil {
		return err
	}
	if s.CertDir == "" {
		return errors.New("--cert-dir is empty: give the directory that holds tls.crt and tls.key")
	}
	for _, d := range []struct {
		flag     string
		value    time.Duration
		positive bool
	}{
		{"readiness-check-interval", s.ReadinessCheckInterval, true},
		{"startup-grace", s.StartupGrace, false},
		{"shutdown-drain", s.ShutdownDrain, false},
		{"shutdown-timeout", s.ShutdownTimeout, true},
		{"leader-election-lease-duration", s.LeaderElectionLeaseDuration, true},
		{"leader-election-renew-deadline", s.LeaderElectionRenewDeadline, true},
		{"leader-election-retry-period", s.LeaderElectionRetryPeriod, true},
		{"audit-interval", s.AuditInterval, true},
	} {
		if d.positive && d.value <= 0 {
			return fmt.Errorf("--%s=%s must be a positive duration (for example \"10s\")", d.flag, d.value)
		}
		if d.value < 0 {
			return fmt.Errorf("--%s=%s must not be negative (0 turns it off)", d.flag, d.value)
		}
	}
	if s.MaxInFlightRequests < 1 {
		return fmt.Errorf("--max-in-flight-requests=%d must be at least 1", s.MaxInFlightRequests)
	}
	// client-go's own constraints, said in flag names.
	if s.LeaderElectionLeaseDuration <= s.LeaderElectionRenewDeadline {
		return fmt.Errorf("--leader-election-lease-duration=%s must be longer than --leader-election-renew-deadline=%s",
			s.LeaderElectionLeaseDuration, s.LeaderElectionRenewDeadline)
	}
	if float64(s.LeaderElectionRenewDeadline) <= 1.2*float64(s.LeaderElectionRetryPeriod) {
		return fmt.Errorf("--leader-election-renew-deadline=%s must be longer than 1.2 x --leader-election-retry-period=%s",
			s.LeaderElectionRenewDeadline, s.LeaderElectionRetryPeriod)
	}
	if s.LeaderElect && s.LeaderElectionID == "" {
		return errors.New("--leader-election-id is empty: give the Lease a name")
	}
	return nil
}

// serviceAccountNamespace is where the kubelet mounts the Pod's namespace.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// OwnNamespace returns svcguard's own namespace: $POD_NAMESPACE (the
// manifests set it through the downward API), else the mounted service
// account's namespace; empty when neither exists (outside a cluster).
func OwnNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if data, err := os.ReadFile(serviceAccountNamespace); err == nil {
		return strings.TrimSpace(string(data))
	}
	return ""
}

// Parse fills the components from args and, when --config names one, from a
// YAML config file, then validates each component. It writes the usage to
// stdout and returns ErrHelp for -h/--help. Every other error is one line
// that names the flag or file at fault.
func Parse(name string, args []string, stdout io.Writer, components ...Component) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// The flag package would print the whole usage on every error; svcguard
	// prints one line naming the problem instead.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var configPath string
	fs.StringVar(&configPath, "config", "",
		"Path of a YAML file whose keys are flag names (without --) and values their settings; the command line wins. service-host and service-port are refused there: the manifests set them from injection.env.")
	for _, c := range components {
		c.AddFlags(fs)
	}

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout, name, fs)
			return ErrHelp
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: svcguard takes only flags (and the subcommand \"version\")", fs.Arg(0))
	}
	fromFile := map[string]int{}
	if configPath != "" {
		var err error
		elsewhere := map[string]string{}
		for _, c := range components {
			if only, ok := c.(CommandLineOnly); ok {
				maps.Copy(elsewhere, only.CommandLineOnly())
			}
		}
		if fromFile, err = applyConfigFile(fs, configPath, elsewhere); err != nil {
			return err
		}
	}
	for _, c := range components {
		if err := c.Validate(); err != nil {
			return inConfigFile(err, configPath, fromFile)
		}
	}
	return nil
}

// inConfigFile adds the config file and line to a validation error about a
// flag that the file set, so that the error names the file to fix.
func inConfigFile(err error, path string, fromFile map[string]int) error {
	for name, line := range fromFile {
		if strings.Contains(err.Error(), "--"+name+"=") || strings.HasPrefix(err.Error(), "--"+name+" ") {
			return fmt.Errorf("config file %s line %d: %w", path, line, err)
		}
	}
	return err
}

// applyConfigFile sets every flag named in the YAML file at path that the
// command line did not set, and returns the line that set each.
func applyConfigFile(fs *flag.FlagSet, path string, elsewhere map[string]string) (map[string]int, error) {
	set := map[string]int{}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read config file %s: %w", path, errors.Unwrap(err))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("config file %s is not valid YAML: %s", path, oneLine(err.Error()))
	}
	if len(doc.Content) == 0 {
		return set, nil // an empty file sets nothing
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config file %s: expected a mapping of flag names to values at line %d", path, root.Line)
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })

	for i := 0; i+1 < len(root.Content); i += 2 {
		key, value := root.Content[i], root.Content[i+1]
		if key.Value == "config" {
			return nil, fmt.Errorf("config file %s line %d: \"config\" cannot be set from a config file", path, key.Line)
		}
		if fs.Lookup(key.Value) == nil {
			return nil, fmt.Errorf("config file %s line %d: unknown setting %q (keys are flag names, see --help)", path, key.Line, key.Value)
		}
		if where, ok := elsewhere[key.Value]; ok {
			return nil, fmt.Errorf("config file %s line %d: %q cannot be set in the config file: %s", path, key.Line, key.Value, where)
		}
		if onCommandLine[key.Value] {
			continue
		}
		values, err := scalarValues(value)
		if err != nil {
			return nil, fmt.Errorf("config file %s line %d: %q: %w", path, value.Line, key.Value, err)
		}
		for _, v := range values {
			if err := fs.Set(key.Value, v); err != nil {
				return nil, fmt.Errorf("config file %s line %d: invalid value %q for %q: %s", path, value.Line, v, key.Value, oneLine(err.Error()))
			}
		}
		set[key.Value] = key.Line
	}
	return set, nil
}

// scalarValues returns the text of a scalar, or of each scalar of a sequence
// (a repeatable flag is set once per element).
func scalarValues(n *yaml.Node) ([]string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		return []string{n.Value}, nil
	case yaml.SequenceNode:
		out := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				return nil, errors.New("a list may only hold plain values")
			}
			out = append(out, item.Value)
		}
		return out, nil
	default:
		return nil, errors.New("expected a value or a list of values, not a mapping")
	}
}

func printUsage(w io.Writer, name string, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s [flags]\n       %s version\n\n", name, name)
	fmt.Fprintf(w, "%s is a Kubernetes admission webhook server. Every flag can also be set in the --config file.\n\nFlags:\n", name)
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	for _, f := range flags {
		def := ""
		if f.DefValue != "" {
			def = fmt.Sprintf(" (default %q)", f.DefValue)
		}
		fmt.Fprintf(w, "  --%s\n        %s%s\n", f.Name, f.Usage, def)
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
