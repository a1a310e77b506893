package integration

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// caFromKubeconfig returns the CA pool embedded in a kubeconfig.
func caFromKubeconfig(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var kc struct {
		Clusters []struct {
			Cluster struct {
				CAData []byte `json:"certificate-authority-data"`
			} `json:"cluster"`
		} `json:"clusters"`
	}
	if err := yaml.Unmarshal(data, &kc); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if len(kc.Clusters) == 0 || !pool.AppendCertsFromPEM(kc.Clusters[0].Cluster.CAData) {
		t.Fatalf("no CA in %s", path)
	}
	return pool
}

// servingCert connects with the kubeconfig's CA (full verification) and
// returns the fingerprint of the apiserver's certificate.
func servingCert(t *testing.T, s *Server) string {
	t.Helper()
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port), &tls.Config{RootCAs: caFromKubeconfig(t, s.Kubeconfig), ServerName: "kubernetes.default.svc"})
	if err != nil {
		t.Fatalf("serving certificate does not verify against the kubeconfig CA: %v", err)
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
	return hex.EncodeToString(sum[:])
}

func TestControlPlaneLifecycle(t *testing.T) {
	requireRoot(t)
	pprofPort := freePort(t)
	s := NewServer(t, "--disable-agent", "--enable-pprof", "--pprof-address", fmt.Sprintf("127.0.0.1:%d", pprofPort))
	s.Start()
	if !strings.Contains(s.Log(), "control plane ready in") {
		t.Fatal("no readiness line")
	}

	// --enable-pprof: the whole process's heap profile, on loopback.
	prof, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap?debug=1", pprofPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(prof.Body)
	prof.Body.Close()
	if prof.StatusCode != http.StatusOK || !strings.Contains(string(body), "# HeapInuse") || !strings.Contains(string(body), "kube-apiserver") {
		t.Fatalf("pprof heap profile: status %d, %d bytes without the apiserver's frames", prof.StatusCode, len(body))
	}

	info, err := os.Stat(s.Kubeconfig)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("admin kubeconfig: %v mode %v", err, info.Mode())
	}
	token, err := os.ReadFile(filepath.Join(s.DataDir, "server", "token"))
	if err != nil || !strings.HasPrefix(string(token), "K10") {
		t.Fatalf("join token: %q %v", token, err)
	}

	// The serving certificate verifies against the kubeconfig's CA.
	fp := servingCert(t, s)

	// An anonymous request is refused.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caFromKubeconfig(t, s.Kubeconfig), ServerName: "localhost"}}}
	resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/api/v1/namespaces", s.Port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous request: status %d, want 401", resp.StatusCode)
	}

	// A Deployment creates its ReplicaSet and 2 Pods (Pending: no node).
	s.MustKubectl("create", "deployment", "web", "--image=registry.k8s.io/pause:3.10.2", "--replicas=2")
	Eventually(t, 90*time.Second, "ReplicaSet and 2 pending pods", func() error {
		rs, err := s.Kubectl("get", "rs", "-l", "app=web", "-o", "name")
		if err != nil || !strings.Contains(rs, "replicaset.apps/web-") {
			return fmt.Errorf("replicasets: %q %v", rs, err)
		}
		pods, err := s.Kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.phase}")
		if err != nil || strings.Count(pods, "Pending") != 2 {
			return fmt.Errorf("pods: %q %v", pods, err)
		}
		return nil
	})
	uid := s.MustKubectl("get", "deployment", "web", "-o", "jsonpath={.metadata.uid}")

	// SIGTERM: clean exit 0 within 20 s.
	err, took := s.Stop()
	if err != nil {
		t.Fatalf("server exit after SIGTERM: %v\n%s", err, s.Tail(30))
	}
	if took > 20*time.Second {
		t.Errorf("shutdown took %s, want ≤ 20s", took)
	}
	t.Logf("shutdown took %.1fs", took.Seconds())

	// A restart keeps the Deployment and the serving certificate.
	s.Start()
	if got := s.MustKubectl("get", "deployment", "web", "-o", "jsonpath={.metadata.uid}"); got != uid {
		t.Errorf("deployment uid after restart = %q, want %q", got, uid)
	}
	if got := servingCert(t, s); got != fp {
		t.Error("serving certificate changed across a restart")
	}
	if strings.Contains(s.Log(), "created certificate authority") || strings.Contains(s.Log(), "reissuing certificate") {
		t.Errorf("restart regenerated certificates:\n%s", s.Tail(40))
	}
}
