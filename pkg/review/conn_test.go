package review

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

// TestABodyThatStopsClosesTheConnectionAfterTheAnswer: a client that sends
// less than its Content-Length and falls silent gets controller-runtime's
// answer when the read deadline passes, and then the connection closes, as
// with controller-runtime's webhook alone (net/http decides by the request's
// own body, which the replay must leave in place).
func TestABodyThatStopsClosesTheConnectionAfterTheAnswer(t *testing.T) {
	for name, h := range map[string]http.Handler{
		"controller-runtime": &webhook.Admission{Handler: echo},
		"one-pass":           Handler{Webhook: &webhook.Admission{Handler: echo}},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// As svcguard's listener bounds a body's read.
				_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				h.ServeHTTP(w, r)
			}))
			srv.Start()
			defer srv.Close()
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			require.NoError(t, err)
			defer conn.Close()
			body := `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u"}}`
			_, err = fmt.Fprintf(conn, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:20])
			require.NoError(t, err)
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
			all, err := io.ReadAll(conn)
			require.NoError(t, err, "the connection closes after the answer")
			assert.True(t, strings.HasPrefix(string(all), "HTTP/1.1 200 OK"), "an answer: %q", all)
			assert.Contains(t, string(all), "i/o timeout")
		})
	}
}
