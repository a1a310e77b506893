// Package certrenew renews a node's leaf certificates while it runs. Every
// component reads its certificate from files it reloads (the apiserver,
// controller-manager and scheduler serving certificates, etcd per TLS
// handshake, client-go kubeconfigs naming cert/key files, the kubelet's
// serving certificate), so replacing the files atomically is the whole
// renewal: no component restarts.
//
// A Renewer checks every pki.CheckInterval, answers `distro certificate
// rotate` through a request file, exports each certificate's
// seconds-to-expiry as a metric, and warns (log line every hour, Warning
// Event on the Node) about a leaf within pki.WarnBefore of expiry that it
// could not renew.
package certrenew

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"

	"distro/pkg/fsutil"
	"distro/pkg/pki"
)

// Request and result files in the Renewer's Dir: `distro certificate
// rotate` writes the request (JSON) and waits for the result.
const (
	RequestFile = "rotate-request"
	ResultFile  = "rotate-result"
)

// Request asks for a renewal now.
type Request struct {
	ID       string   `json:"id"`
	Services []string `json:"services,omitempty"` // empty: every leaf
}

// Result answers a Request.
type Result struct {
	ID      string   `json:"id"`
	Renewed []string `json:"renewed,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// Renewer runs a node's certificate renewal.
type Renewer struct {
	// Renew reissues the leaves that are stale or that force selects
	// (force is nil on a periodic check) and returns their names.
	Renew func(ctx context.Context, force func(leaf string) bool) ([]string, error)
	// Dirs hold the certificates (*.crt) reported in the metric.
	Dirs []string
	// Dir receives rotate requests.
	Dir string
	// Client and NodeName: where Warning Events go (nil Client: none).
	Client   kubernetes.Interface
	NodeName string
	// Poll is how often the request file is looked for (default 2 s).
	Poll time.Duration

	lastWarn time.Time
	warn     func(msg string) // tests; default: log line and Event
}

var (
	registerOnce sync.Once
	expiry       = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Name:           "distro_certificate_expiration_seconds",
		Help:           "Seconds until a certificate of this node expires (negative once it has).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"file", "subject"})
)

func (r *Renewer) Name() string { return "certificate renewal" }

// Run checks now, then every pki.CheckInterval, until ctx ends.
func (r *Renewer) Run(ctx context.Context, ready func()) error {
	registerOnce.Do(func() { legacyregistry.MustRegister(expiry) })
	poll := r.Poll
	if poll == 0 {
		poll = 2 * time.Second
	}
	interval := pki.CheckInterval()
	klog.Infof("certificate renewal: checking every %s, renewing leaves within %s of expiry", interval, pki.RenewBefore)
	r.check(ctx, nil)
	ready()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	req := time.NewTicker(poll)
	defer req.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			r.check(ctx, nil)
		case <-req.C:
			r.answer(ctx)
		}
	}
}

// check renews what is due (or forced), then refreshes the metric and
// warns about leaves close to expiry.
func (r *Renewer) check(ctx context.Context, force func(string) bool) ([]string, error) {
	renewed, err := r.Renew(ctx, force)
	if len(renewed) > 0 {
		klog.Infof("certificate renewal: renewed %s", strings.Join(renewed, ", "))
	}
	if err != nil && ctx.Err() == nil {
		klog.Errorf("certificate renewal: %v", err)
	}
	certs, lerr := pki.ListCerts(r.Dirs...)
	if lerr != nil {
		klog.Errorf("certificate renewal: %v", lerr)
	}
	now := time.Now()
	var expiring []string
	for _, c := range certs {
		expiry.WithLabelValues(c.File, c.Subject).Set(c.NotAfter.Sub(now).Seconds())
		if !c.IsCA && c.NotAfter.Sub(now) < pki.WarnBefore {
			expiring = append(expiring, fmt.Sprintf("%s (expires %s)", filepath.Base(c.File), c.NotAfter.UTC().Format(time.RFC3339)))
		}
	}
	if len(expiring) > 0 && now.Sub(r.lastWarn) >= min(time.Hour, pki.CheckInterval()) {
		r.lastWarn = now
		msg := fmt.Sprintf("certificates within %s of expiry could not be renewed: %s", pki.WarnBefore, strings.Join(expiring, ", "))
		if err != nil {
			msg += ": " + err.Error()
		}
		if r.warn != nil {
			r.warn(msg)
		} else {
			klog.Warning("certificate renewal: " + msg)
			r.event(ctx, msg)
		}
	}
	return renewed, err
}

func (r *Renewer) event(ctx context.Context, msg string) {
	if r.Client == nil || r.NodeName == "" {
		return
	}
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: r.NodeName + ".certificate-expiring.", Namespace: metav1.NamespaceDefault},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: r.NodeName, UID: "", APIVersion: "v1"},
		Reason:         "CertificateExpiring",
		Message:        msg,
		Type:           corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "distro-certificate-renewal", Host: r.NodeName},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := r.Client.CoreV1().Events(metav1.NamespaceDefault).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		klog.Warningf("certificate renewal: cannot record the Warning Event: %v", err)
	}
}

// answer serves a pending rotate request, if any.
func (r *Renewer) answer(ctx context.Context) {
	path := filepath.Join(r.Dir, RequestFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	os.Remove(path)
	var req Request
	res := Result{}
	force, err := func() (func(string) bool, error) {
		if err := json.Unmarshal(data, &req); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		return pki.ForceServices(req.Services)
	}()
	res.ID = req.ID
	if err == nil {
		klog.Infof("certificate renewal: rotating now (%s)", strings.Join(append([]string{"services:"}, orAll(req.Services)...), " "))
		res.Renewed, err = r.check(ctx, force)
	}
	if err != nil {
		res.Error = err.Error()
	}
	out, _ := json.Marshal(res)
	if err := fsutil.WriteFileAtomic(filepath.Join(r.Dir, ResultFile), out, 0o600); err != nil {
		klog.Errorf("certificate renewal: %v", err)
	}
}

func orAll(s []string) []string {
	if len(s) == 0 {
		return []string{"all"}
	}
	return s
}

// Rotate asks the node running on dir to renew now and waits for its
// answer.
func Rotate(ctx context.Context, dir string, services []string) (*Result, error) {
	if _, err := pki.ForceServices(services); err != nil {
		return nil, err
	}
	req := Request{ID: fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()), Services: services}
	data, _ := json.Marshal(req)
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, RequestFile), data, 0o600); err != nil {
		return nil, err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, ResultFile)); err == nil {
			var res Result
			if json.Unmarshal(data, &res) == nil && res.ID == req.ID {
				if res.Error != "" {
					return &res, errors.New(res.Error)
				}
				return &res, nil
			}
		}
		select {
		case <-ctx.Done():
			os.Remove(filepath.Join(dir, RequestFile))
			return nil, fmt.Errorf("no answer from the running distro (is it running on this data dir?): %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
