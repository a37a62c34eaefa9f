// Command svcguard is the svcguard admission webhook server. main only wires:
// parse the options, build the server, register the webhooks, run.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/svcguard/svcguard/pkg/options"
	"github.com/svcguard/svcguard/pkg/server"
	"github.com/svcguard/svcguard/pkg/version"
	"github.com/svcguard/svcguard/webhook/nodeport"
	"github.com/svcguard/svcguard/webhook/servicehost"
	"github.com/svcguard/svcguard/webhook/servicepath"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		version.Print(os.Stdout)
		return
	}

	serverOpts, serviceHost, nodePorts, servicePath := options.NewServer(), servicehost.NewOptions(), nodeport.NewOptions(), servicepath.NewOptions()
	if err := parse(os.Args[1:], os.Stdout, serverOpts, serviceHost, nodePorts, servicePath); err != nil {
		if errors.Is(err, options.ErrHelp) {
			return
		}
		exit(err)
	}

	srv, err := server.New(serverOpts)
	if err != nil {
		exit(err)
	}
	// Every webhook package builds the same way: its settings, the server's dependencies.
	injection, err := servicehost.Build(serviceHost, srv.Dependencies())
	if err != nil {
		exit(err)
	}
	srv.Add(injection)
	guard, err := nodeport.Build(nodePorts, srv.Dependencies())
	if err != nil {
		exit(err)
	}
	srv.Add(guard)
	// The address Pods are given for the API server is one the service-path guard protects.
	path, err := servicepath.Build(servicePath, serviceHost.ServiceHost, srv.Dependencies())
	if err != nil {
		exit(err)
	}
	srv.Add(path)
	if err := srv.Run(ctrl.SetupSignalHandler()); err != nil {
		exit(err)
	}
}

// parse reads the command line into every component's settings: the one
// flag set of the binary, which the manifests' tests parse too.
func parse(args []string, out io.Writer, components ...options.Component) error {
	return options.Parse("svcguard", args, out, components...)
}

// exit prints err as one line and exits 1: an operator reading a
// CrashLoopBackOff sees the problem, not a stack trace.
func exit(err error) {
	fmt.Fprintln(os.Stderr, "svcguard: "+err.Error())
	os.Exit(1)
}
