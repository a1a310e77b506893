package integration

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"distro/pkg/pki"
)

// privateRegistry starts an in-Go OCI registry over TLS with its own CA and
// basic auth, and returns its host:port and the CA file.
func privateRegistry(t *testing.T, user, password string) (host, caFile string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.EnsureCA(dir, "registry-ca", "test registry CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := pki.Leaf{Name: "registry", CA: ca, CN: "registry", Server: true, IPs: []net.IP{net.ParseIP("127.0.0.1")}}.Issue()
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="test registry"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://"), filepath.Join(dir, "registry-ca.crt")
}

// pushTestImage pushes a busybox test image as host/test/busybox:1. Its
// image ID differs from the airgap test image's: the kubelet remembers
// which images it pulled with credentials (in /var/lib/kubelet, shared by
// the tests' nodes) and would refuse the airgap one to pods without them.
func pushTestImage(t *testing.T, host, caFile, user, password string) string {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "busybox.tar")
	buildTestImage(t, archive, "--dir", "/private-registry:0755")
	tag, err := name.NewTag(TestImage)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(archive, &tag)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(caPEM)
	ref := host + "/test/busybox:1"
	dst, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	err = remote.Write(dst, img, remote.WithAuth(&authn.Basic{Username: user, Password: password}),
		remote.WithTransport(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}))
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref
}

func pullPod(name, image string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  containers:
  - name: c
    image: %s
    imagePullPolicy: Always
    command: ["/bin/sh", "-c", "exec sleep 100000"]
`, name, image)
}

// TestRegistries configures a private registry (basic auth, its own CA)
// through registries.yaml: a pod pulls from it with imagePullPolicy
// Always; with a wrong password (picked up while running) a new pod shows
// the registry's 401 in its events and the running pod is untouched; a
// malformed registries.yaml stops the start with one line naming the key
// and writes nothing.
func TestRegistries(t *testing.T) {
	requireRoot(t)
	host, caFile := privateRegistry(t, "puller", "s3cret")
	image := pushTestImage(t, host, caFile, "puller", "s3cret")
	regFile := filepath.Join(t.TempDir(), "registries.yaml")
	writeRegistries := func(password string) {
		data := fmt.Sprintf("configs:\n  %q:\n    auth: {username: puller, password: %q}\n    tls: {ca_file: %q}\n", host, password, caFile)
		if err := os.WriteFile(regFile, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeRegistries("s3cret")
	s := NewServer(t, "--disable", "coredns,local-storage,metrics-server", "--registries-config", regFile)
	t.Cleanup(func() { killall(t, s.DataDir) })
	s.Start()

	manifest := filepath.Join(t.TempDir(), "pod.yaml")
	os.WriteFile(manifest, []byte(pullPod("private", image)), 0o644)
	Eventually(t, 2*time.Minute, "the pod from the private registry Running", func() error {
		if _, err := s.Kubectl("apply", "-f", manifest); err != nil {
			return err
		}
		_, err := s.Kubectl("wait", "--for=condition=Ready", "pod/private", "--timeout=10s")
		return err
	})
	if hosts, err := os.ReadFile(filepath.Join(s.DataDir, "agent", "etc", "containerd", "certs.d", host, "hosts.toml")); err != nil || !strings.Contains(string(hosts), caFile) {
		t.Errorf("hosts.toml for %s: %v\n%s", host, err, hosts)
	}

	// A wrong password, picked up while running.
	writeRegistries("wrong")
	Eventually(t, time.Minute, "the credential change applied", func() error {
		if !strings.Contains(s.Log(), "registry credentials changed") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	os.WriteFile(manifest, []byte(pullPod("denied", image)), 0o644)
	Eventually(t, 2*time.Minute, "the registry's 401 in the pod's events", func() error {
		if _, err := s.Kubectl("apply", "-f", manifest); err != nil {
			return err
		}
		ev, err := s.Kubectl("get", "events", "--field-selector", "involvedObject.name=denied", "-o", "jsonpath={.items[*].message}")
		if err != nil {
			return err
		}
		if !strings.Contains(ev, "401 Unauthorized") {
			return fmt.Errorf("events: %s", ev)
		}
		return nil
	})
	if out := s.MustKubectl("get", "pod", "private", "-o", "jsonpath={.status.phase} {.status.containerStatuses[0].restartCount}"); out != "Running 0" {
		t.Errorf("the running pod after containerd's restart: %s", out)
	}

	// A malformed file: one line naming the key, no data dir.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("mirrors:\n  docker.io:\n    endpoints: [\"https://m.example\"]\n"), 0o600)
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfg, nil, 0o600)
	out, err := exec.Command(distroBin(t), "server", "--config", cfg, "--data-dir", dataDir, "--registries-config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "mirrors.docker.io.endpoints: unknown key") {
		t.Errorf("malformed registries.yaml: %v\n%s", err, out)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 {
		t.Errorf("want one line, got %d:\n%s", len(lines), out)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("a failed start left %s: %v", dataDir, err)
	}
}
