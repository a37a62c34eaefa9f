package readiness

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/utils/ptr"

	"github.com/svcguard/svcguard/pkg/metrics"
)

// SelfTestHeader carries the token that marks the serving check's requests.
// The API server sends no such header to webhooks, and the token is a secret
// of this process, so no request from the API server (whatever its user,
// through impersonation or not) can pass for a self-test, and no self-test
// for an API server request.
const SelfTestHeader = "Svcguard-Self-Test"

// SelfTestUser is the user named in self-test requests, so that a self-test
// is recognisable in a handler's own logs; it marks nothing by itself.
const SelfTestUser = "system:svcguard:self-test"

// SelfTestMark marks the serving check's requests and recognises them on
// arrival. Make one per process with NewSelfTestMark and give the same one to
// the serving check and to the server's request context.
type SelfTestMark struct {
	token string
}

// NewSelfTestMark returns a mark with a fresh random token.
func NewSelfTestMark() SelfTestMark {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics on a broken system source)
	return SelfTestMark{token: hex.EncodeToString(b)}
}

// Sign marks r as a self-test of this mark.
func (m SelfTestMark) Sign(r *http.Request) {
	r.Header.Set(SelfTestHeader, m.token)
}

// Signed tells whether r carries this mark's token.
func (m SelfTestMark) Signed(r *http.Request) bool {
	got := r.Header.Get(SelfTestHeader)
	return m.token != "" && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(m.token)) == 1
}

type selfTestKey struct{}

// Context returns ctx marked as a self-test when r carries this mark's token,
// and ctx unchanged otherwise. It fits controller-runtime's
// admission.Webhook.WithContextFunc.
func (m SelfTestMark) Context(ctx context.Context, r *http.Request) context.Context {
	if !m.Signed(r) {
		return ctx
	}
	return context.WithValue(ctx, selfTestKey{}, true)
}

// IsSelfTest tells whether ctx belongs to a serving check's request (see
// SelfTestMark.Context). Such a request runs the webhook's real code but must
// stay out of svcguard's metrics, logs and side effects.
func IsSelfTest(ctx context.Context) bool {
	marked, _ := ctx.Value(selfTestKey{}).(bool)
	return marked
}

// send posts sample to url as a marked, dry-run AdmissionReview with a fresh
// UID, and returns an error unless the answer is a judgement of that very
// request: allowed (with or without a patch) or denied by a rule.
func (m SelfTestMark) send(ctx context.Context, client *http.Client, url string, sample admissionv1.AdmissionRequest) error {
	if sample.Kind.Kind == "" {
		return errors.New("the webhook gives no self-test request (a bug in its registration)")
	}
	req := sample
	req.UID = types.UID("self-test-" + string(uuid.NewUUID()))
	req.UserInfo.Username = SelfTestUser
	req.DryRun = ptr.To(true) // handlers have no side effects on dry runs
	answer, err := PostReview(ctx, client, url, &req, m.Sign)
	if err != nil {
		return err
	}
	if r := answer.Response; metrics.DecisionOf(r, len(r.Patch) > 0) == metrics.Error {
		return fmt.Errorf("a %s of %s was answered with an error, HTTP code %d: %s; every such request fails the same way",
			req.Operation, req.Kind.Kind, r.Result.Code, r.Result.Message)
	}
	return nil
}

// ReviewAnswer is a webhook's answer to PostReview.
type ReviewAnswer struct {
	// Response is the answer's response, for the request that was posted.
	Response *admissionv1.AdmissionResponse
	// Closed: the answer carried Connection: close (a draining server's
	// last answer on that connection).
	Closed bool
}

// PostReview posts req to a webhook at url as an AdmissionReview
// (admission.k8s.io/v1), the way the API server does, with sign (may be
// nil) adding headers, and reads the answer. It returns an error unless the
// answer is HTTP 200 with an AdmissionReview whose response carries req's
// UID; whether the response allows, denies or errors is the caller's to
// judge. The serving check's self-test posts through it, and so do the tests
// that play the API server.
func PostReview(ctx context.Context, client *http.Client, url string, req *admissionv1.AdmissionRequest, sign func(*http.Request)) (ReviewAnswer, error) {
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	})
	if err != nil {
		return ReviewAnswer{}, err
	}
	httpReq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return ReviewAnswer{}, err
	}
	httpReq.Header.Set("Content-Type", "application/json")
	if sign != nil {
		sign(httpReq)
	}
	resp, err := client.Do(httpReq)
	if err != nil {
		return ReviewAnswer{}, err
	}
	defer resp.Body.Close()
	answer := ReviewAnswer{Closed: resp.Close}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return answer, fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return answer, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &review); err != nil {
		return answer, fmt.Errorf("the answer is not an AdmissionReview: %w", err)
	}
	if review.Response == nil || review.Response.UID != req.UID {
		return answer, fmt.Errorf("the answer does not carry the request's UID %s", req.UID)
	}
	answer.Response = review.Response
	return answer, nil
}
