package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/svcguard/svcguard/pkg/admissiontest"
	"github.com/svcguard/svcguard/pkg/certtest"
	"github.com/svcguard/svcguard/pkg/readiness"
	"github.com/svcguard/svcguard/pkg/testenv"
)

// outcome is one admission request sent during the drain test.
type outcome struct {
	sent, done time.Time
	err        error
	closed     bool // the answer carried Connection: close
}

// errRoutedElsewhere stands for the Service sending a new connection to
// another replica once this one left the endpoints.
var errRoutedElsewhere = errors.New("new connection routed to another replica: this one left the endpoints")

// TestBinaryDrainAnswersEveryRequestUntilTheListenerCloses plays the API
// server behind a Service: clients keep sending AdmissionReviews over pooled
// keep-alive connections while the real binary gets SIGTERM. Once /readyz
// fails, new connections go elsewhere (the endpoints controller removed the
// replica), but pooled connections keep arriving, as they do in a cluster.
// Every request on this replica gets an answer; none meets a reset, an EOF,
// or a refused connection while /readyz still reported ready.
func TestBinaryDrainAnswersEveryRequestUntilTheListenerCloses(t *testing.T) {
	certDir := t.TempDir()
	ca := certtest.NewAuthority(t)
	ca.IssueFiles(t, certDir)
	addr, err := testenv.FreeAddress()
	require.NoError(t, err)
	p, err := env.StartBinary(context.Background(), binary, nil, "--webhook-bind-address="+addr, "--cert-dir="+certDir,
		"--service-host="+serviceHost, "--mutating-webhook-configuration=", "--validating-webhook-configuration=",
		"--shutdown-drain=3s", "--readiness-check-interval=200ms")
	require.NoError(t, err)

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	var leftEndpoints atomic.Bool
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second, // as the API server's webhook client
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			if leftEndpoints.Load() {
				return nil, errRoutedElsewhere
			}
			return dialer.DialContext(ctx, network, address)
		},
	}}
	review := admissiontest.PodCreate().Build(t)

	var (
		mu        sync.Mutex
		outcomes  []outcome
		lastReady time.Time
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// repeat runs step until stop is closed.
	repeat := func(step func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					step()
				}
			}
		}()
	}
	for range 4 {
		repeat(func() {
			o := send(client, "https://"+addr+"/webhooks/service-host", &review.AdmissionRequest)
			mu.Lock()
			outcomes = append(outcomes, o)
			mu.Unlock()
			if o.err != nil {
				time.Sleep(10 * time.Millisecond) // the listener is gone: do not spin
			}
		})
	}
	repeat(func() {
		if ok, _ := p.Ready(); ok {
			mu.Lock()
			lastReady = time.Now()
			mu.Unlock()
		} else if !lastReady.IsZero() {
			leftEndpoints.Store(true)
		}
		time.Sleep(20 * time.Millisecond)
	})

	time.Sleep(time.Second) // traffic on warm keep-alive connections
	signalled := time.Now()
	p.Signal(t, syscall.SIGTERM)
	code, err := p.Wait(60 * time.Second)
	time.Sleep(200 * time.Millisecond) // a few refusals after exit
	close(stop)
	wg.Wait()
	require.NoError(t, err)
	assert.Equal(t, 0, code, "exit code after SIGTERM; output:\n%s", p.Output())

	var answeredDuringDrain, elsewhere, refused int
	for _, o := range outcomes {
		switch {
		case o.err == nil:
			if o.sent.After(signalled) && o.closed {
				answeredDuringDrain++
			}
		case errors.Is(o.err, errRoutedElsewhere):
			elsewhere++
		case errors.Is(o.err, syscall.ECONNREFUSED):
			refused++
			assert.True(t, o.sent.After(lastReady), "a request sent at %s was refused while /readyz still reported ready (last ready %s)",
				o.sent.Format(time.StampMicro), lastReady.Format(time.StampMicro))
		default:
			assert.Fail(t, "a request failed other than by a refused connection", "sent %s, failed %s: %v",
				o.sent.Format(time.StampMicro), o.done.Format(time.StampMicro), o.err)
		}
	}
	t.Logf("%d requests: %d answered during the drain with Connection: close, %d sent to other replicas, %d refused after the listener closed",
		len(outcomes), answeredDuringDrain, elsewhere, refused)
	assert.Positive(t, answeredDuringDrain, "the listener must keep answering during the drain, closing connections")
	assert.True(t, lastReady.Before(signalled.Add(time.Second)), "/readyz must fail at once on SIGTERM (last ready %s, SIGTERM %s)",
		lastReady.Format(time.StampMicro), signalled.Format(time.StampMicro))
}

func send(client *http.Client, url string, req *admissionv1.AdmissionRequest) outcome {
	o := outcome{sent: time.Now()}
	answer, err := readiness.PostReview(context.Background(), client, url, req, nil)
	if err == nil && !answer.Response.Allowed {
		err = fmt.Errorf("not allowed: %+v", answer.Response.Result)
	}
	o.err, o.done, o.closed = err, time.Now(), answer.Closed
	return o
}
