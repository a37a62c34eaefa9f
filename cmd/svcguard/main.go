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
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		version.Print(os.Stdout)
		return
	}

	serverOpts, serviceHost, nodePorts := options.NewServer(), servicehost.NewOptions(), nodeport.NewOptions()
	if err := parse(os.Args[1:], os.Stdout, serverOpts, serviceHost, nodePorts); err != nil {
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
	if err := srv.Run(ctrl.SetupSignalHandler()); err != nil {
		exit(err)
	}
}

// parse reads the command line into every component's settings: the one
// flag set of the binary, which the manifests' tests parse too.
func parse(args []string, out io.Writer, server *options.Server, serviceHost *servicehost.Options, nodePorts *nodeport.Options) error {
	return options.Parse("svcguard", args, out, server, serviceHost, nodePorts)
}

// exit prints err as one line and exits 1: an operator reading a
// CrashLoopBackOff sees the problem, not a stack trace.
func exit(err error) {
	fmt.Fprintln(os.Stderr, "svcguard: "+err.Error())
	os.Exit(1)
}
