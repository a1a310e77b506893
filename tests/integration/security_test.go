package integration

import (
	"crypto/tls"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecureDefaults proves what a server is without any hardening flag:
// anonymous requests get 401 from the apiserver and the kubelet; a node's
// credentials cannot read Secrets no pod of that node uses (Node
// authorizer); every private key is 0600 and no folder of the data dir is
// readable by others; the audit log records a Secret's creation without
// its data.
func TestSecureDefaults(t *testing.T) {
	requireRoot(t)
	s := NewServer(t, "--disable", "coredns,local-storage,metrics-server")
	s.Start()
	// Ready: the kubelet serves and the airgap images are imported (a stop
	// mid-import would leave containerd's temporary mounts behind).
	Eventually(t, 2*time.Minute, "node Ready", func() error {
		_, err := s.Kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=5s")
		return err
	})
	s.MustKubectl("create", "secret", "generic", "audited", "--from-literal=password=never-in-the-log")

	insecure := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for what, url := range map[string]string{
		"apiserver": fmt.Sprintf("https://127.0.0.1:%d/api/v1/namespaces/default/secrets", s.Port),
		"kubelet":   "https://127.0.0.1:10250/pods",
	} {
		var code int
		Eventually(t, time.Minute, what+" answers", func() error {
			resp, err := insecure.Get(url)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			code = resp.StatusCode
			return nil
		})
		if code != http.StatusUnauthorized {
			t.Errorf("anonymous request to the %s: HTTP %d, want 401", what, code)
		}
	}

	kubeletKubeconfig := filepath.Join(s.DataDir, "agent", "cred", "kubelet.kubeconfig")
	out, err := Distro(t, "kubectl", "--kubeconfig", kubeletKubeconfig, "get", "secret", "audited", "-n", "default")
	if err == nil || !strings.Contains(out, "forbidden") {
		t.Errorf("the node's credentials read a Secret no pod of it uses: %v\n%s", err, out)
	}

	filepath.WalkDir(s.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(s.DataDir, p)
		// containerd's state: image layers and container root filesystems,
		// behind its own 0700/0711 folders.
		if strings.HasPrefix(rel, filepath.Join("agent", "containerd")+"/") {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		switch {
		case d.IsDir() && info.Mode().Perm()&0o004 != 0:
			t.Errorf("folder %s is readable by others (%v)", rel, info.Mode().Perm())
		case !d.IsDir() && strings.HasSuffix(p, ".key") && info.Mode().Perm() != 0o600:
			t.Errorf("key %s has mode %v, want 0600", rel, info.Mode().Perm())
		}
		return nil
	})

	// distro certificate check: every certificate, with its expiry.
	out, err = Distro(t, "certificate", "check", "--config", s.Flag("--config"), "--data-dir", s.DataDir)
	if err != nil {
		t.Fatalf("certificate check: %v\n%s", err, out)
	}
	for _, want := range []string{"FILE", "DAYS LEFT", "server/tls/server-ca.crt", "server/tls/serving-kube-apiserver.crt", "agent/cred/kubelet-serving.crt"} {
		if !strings.Contains(out, want) {
			t.Errorf("certificate check lacks %q:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		if f := strings.Fields(line); len(f) < 2 || f[len(f)-1] != "ok" {
			t.Errorf("certificate check: %q", line)
		}
	}

	log := filepath.Join(s.DataDir, "server", "logs", "audit.log")
	Eventually(t, 30*time.Second, "the Secret's creation in the audit log", func() error {
		data, err := os.ReadFile(log)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, `"verb":"create"`) && strings.Contains(line, `"resource":"secrets"`) && strings.Contains(line, `"name":"audited"`) {
				return nil
			}
		}
		return fmt.Errorf("no create of Secret audited in %s", log)
	})
	if data, _ := os.ReadFile(log); strings.Contains(string(data), "never-in-the-log") || strings.Contains(string(data), "bmV2ZXItaW4tdGhlLWxvZw") {
		t.Error("the audit log holds the Secret's data")
	}
	if fi, err := os.Stat(log); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("audit log %s: %v %v, want it readable by root only", log, err, fi.Mode().Perm())
	}
}
