package certrenew

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/component-base/metrics/testutil"

	"distro/pkg/pki"
)

func serverPKI(t *testing.T) (string, pki.ServerInput) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tls")
	in := pki.ServerInput{Hostname: "node-a", NodeIPs: []net.IP{net.ParseIP("192.0.2.10")}, ServiceIP: net.ParseIP("10.43.0.1"), ClusterDomain: "cluster.local"}
	if _, err := pki.EnsureServer(dir, in); err != nil {
		t.Fatal(err)
	}
	return dir, in
}

// `distro certificate rotate` reaches a running Renewer through its folder
// and gets the names it renewed; the expiry metric covers every file.
func TestRotateRequest(t *testing.T) {
	dir, in := serverPKI(t)
	r := &Renewer{Dirs: []string{dir}, Dir: dir, Poll: 50 * time.Millisecond,
		Renew: func(_ context.Context, force func(string) bool) ([]string, error) {
			_, renewed, err := pki.RenewServer(dir, in, force)
			return renewed, err
		}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, func() {})
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	res, err := Rotate(rctx, dir, []string{"etcd"})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(res.Renewed)
	if got := strings.Join(res.Renewed, " "); got != "etcd/client etcd/peer-server-client etcd/server-client" {
		t.Errorf("renewed %s", got)
	}
	if _, err := Rotate(rctx, dir, []string{"nope"}); err == nil {
		t.Error("unknown service accepted")
	}
	n, err := testutil.GetGaugeMetricValue(expiry.WithLabelValues(filepath.Join(dir, "serving-kube-apiserver.crt"), "kube-apiserver"))
	if err != nil || n < float64(300*24*3600) {
		t.Errorf("expiry metric %v (%v)", n, err)
	}
}

// A leaf that could not be renewed and is within WarnBefore of expiry is
// reported, with the renewal's error.
func TestWarnsWhenRenewalFails(t *testing.T) {
	defer func(l, r, w time.Duration) { pki.LeafValidity, pki.RenewBefore, pki.WarnBefore = l, r, w }(pki.LeafValidity, pki.RenewBefore, pki.WarnBefore)
	pki.LeafValidity = time.Hour
	dir, _ := serverPKI(t)
	pki.RenewBefore, pki.WarnBefore = 2*time.Hour, 2*time.Hour
	var warned []string
	r := &Renewer{Dirs: []string{dir}, Dir: dir,
		Renew: func(context.Context, func(string) bool) ([]string, error) {
			return nil, errors.New("server unreachable")
		}}
	r.warn = func(msg string) { warned = append(warned, msg) }
	r.check(context.Background(), nil)
	r.check(context.Background(), nil) // within the hour: not repeated
	if len(warned) != 1 || !strings.Contains(warned[0], "serving-kube-apiserver.crt") || !strings.Contains(warned[0], "server unreachable") {
		t.Errorf("warnings: %q", warned)
	}
}
