// Command noop is the ceiling of svcguard's stack for the benchmarks of
// docs/performance.md: a controller-runtime webhook server, the same
// version and TLS setup as svcguard's, whose handler allows every request
// without decoding its object. Whatever svcguard spends beyond it is its own.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // the profiles the benchmarks compare with svcguard's
	"os"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/review"
)

func main() {
	bind := flag.String("bind", "127.0.0.1:9443", "host:port of the TLS listener")
	certDir := flag.String("cert-dir", "", "directory of tls.crt and tls.key")
	path := flag.String("path", "/webhooks/service-host", "the path to answer on")
	pprof := flag.String("pprof-bind-address", "", "host:port of Go's /debug/pprof (plain HTTP); empty: off")
	onePass := flag.Bool("one-pass", false, "read reviews as svcguard does (pkg/review), not with controller-runtime's decoder alone")
	flag.Parse()
	// No log lines: a ceiling that logged would measure its logging (and controller-runtime prints a
	// stack trace when no logger was ever set).
	ctrl.SetLogger(logr.Discard())
	if *pprof != "" {
		go func() {
			server := &http.Server{Addr: *pprof, ReadHeaderTimeout: 10 * time.Second} // DefaultServeMux, where net/http/pprof registers
			fmt.Fprintln(os.Stderr, "noop: pprof:", server.ListenAndServe())
		}()
	}
	if err := run(*bind, *certDir, *path, *onePass); err != nil {
		fmt.Fprintln(os.Stderr, "noop:", err)
		os.Exit(1)
	}
}

func run(bind, certDir, path string, onePass bool) error {
	host, portText, err := net.SplitHostPort(bind)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return err
	}
	server := webhook.NewServer(webhook.Options{Host: host, Port: port, CertDir: certDir})
	allow := admission.HandlerFunc(func(context.Context, admission.Request) admission.Response { return admission.Allowed("") })
	hook := &webhook.Admission{Handler: allow}
	if onePass {
		server.Register(path, review.Handler{Webhook: hook})
	} else {
		server.Register(path, hook)
	}
	return server.Start(ctrl.SetupSignalHandler())
}
