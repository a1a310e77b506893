package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"distro/pkg/pki"
)

const sleeperPod = `apiVersion: v1
kind: Pod
metadata: {name: sleeper}
spec:
  containers:
  - name: sleeper
    image: ` + TestImage + `
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "exec sleep 100000"]
`

// fileSerials maps each leaf certificate under dirs (name relative to the
// data dir) to its serial.
func fileSerials(t *testing.T, dataDir string, dirs ...string) map[string]string {
	t.Helper()
	certs, err := pki.ListCerts(dirs...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range certs {
		if !c.IsCA {
			rel, _ := filepath.Rel(dataDir, c.File)
			out[rel] = c.Serial
		}
	}
	return out
}

// TestCertificateRotate renews every certificate of a running server and
// its node with `distro certificate rotate`: the apiserver, the kubelet and
// etcd serve the new certificates without a restart, the admin kubeconfig
// is rewritten and works, the pod keeps running, and the expiry metric is
// exported.
func TestCertificateRotate(t *testing.T) {
	requireRoot(t)
	s := NewServer(t, "--disable", "coredns,local-storage,metrics-server")
	withTestImage(t, s.DataDir)
	s.Start()
	manifest := filepath.Join(t.TempDir(), "sleeper.yaml")
	os.WriteFile(manifest, []byte(sleeperPod), 0o644)
	Eventually(t, 2*time.Minute, "the pod Running", func() error {
		if _, err := s.Kubectl("apply", "-f", manifest); err != nil {
			return err
		}
		_, err := s.Kubectl("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=10s")
		return err
	})
	podUID := s.MustKubectl("get", "pod", "sleeper", "-o", "jsonpath={.metadata.uid}")

	tls, cred := filepath.Join(s.DataDir, "server", "tls"), filepath.Join(s.DataDir, "agent", "cred")
	endpoints := map[string]struct{ addr, file string }{
		"apiserver": {fmt.Sprintf("127.0.0.1:%d", s.Port), "server/tls/serving-kube-apiserver.crt"},
		"kubelet":   {"127.0.0.1:10250", "agent/cred/kubelet-serving.crt"},
		"etcd":      {"127.0.0.1:" + s.Flag("--etcd-client-port"), "server/tls/etcd/server-client.crt"},
	}
	before := fileSerials(t, s.DataDir, tls, cred)
	for name, e := range endpoints {
		if got, err := pki.ServedSerial(e.addr); err != nil || got != before[e.file] {
			t.Fatalf("%s serves %s (%v), want %s from %s", name, got, err, before[e.file], e.file)
		}
	}
	userKubeconfig, _ := os.ReadFile(s.Kubeconfig)

	out, err := Distro(t, "certificate", "rotate", "--config", s.Flag("--config"), "--data-dir", s.DataDir)
	if err != nil {
		t.Fatalf("certificate rotate: %v\n%s", err, out)
	}
	after := fileSerials(t, s.DataDir, tls, cred)
	if len(after) < 15 {
		t.Errorf("only %d leaves: %v", len(after), after)
	}
	for file, serial := range after {
		if before[file] == serial {
			t.Errorf("%s was not renewed", file)
		}
		if !strings.Contains(out, "renewed "+strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(file, "server/tls/"), "agent/cred/"), ".crt")) {
			t.Errorf("rotate output does not name %s:\n%s", file, out)
		}
	}
	for name, e := range endpoints {
		Eventually(t, 2*time.Minute, name+" serving its renewed certificate", func() error {
			got, err := pki.ServedSerial(e.addr)
			if err != nil {
				return err
			}
			if got != after[e.file] {
				return fmt.Errorf("serves %s, want %s", got, after[e.file])
			}
			return nil
		})
	}
	// The same, as an operator checks it.
	Eventually(t, time.Minute, "certificate check --served: every endpoint current", func() error {
		out, err := Distro(t, "certificate", "check", "--served", "--config", s.Flag("--config"), "--data-dir", s.DataDir,
			"--https-listen-port", fmt.Sprint(s.Port), "--etcd-client-port", s.Flag("--etcd-client-port"))
		if err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		for _, want := range []string{"kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kubelet", "registry mirror"} {
			if !strings.Contains(out, want+" ") {
				return fmt.Errorf("no line for %s:\n%s", want, out)
			}
		}
		if strings.Contains(out, "not answering") {
			return fmt.Errorf("%s", out)
		}
		return nil
	})
	if now, _ := os.ReadFile(s.Kubeconfig); string(now) == string(userKubeconfig) {
		t.Error("the admin kubeconfig was not rewritten with the renewed certificate")
	}
	// The renewed admin kubeconfig works, the node stays Ready (the
	// kubelet's client certificate is reloaded), the pod was not touched.
	time.Sleep(10 * time.Second)
	s.MustKubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")
	if uid := s.MustKubectl("get", "pod", "sleeper", "-o", "jsonpath={.metadata.uid}"); uid != podUID {
		t.Errorf("the pod was replaced")
	}
	if rc := s.MustKubectl("get", "pod", "sleeper", "-o", "jsonpath={.status.containerStatuses[0].restartCount}"); rc != "0" {
		t.Errorf("the pod restarted %s times", rc)
	}
	metrics := s.MustKubectl("get", "--raw", "/metrics")
	if !strings.Contains(metrics, `distro_certificate_expiration_seconds{file="`+filepath.Join(tls, "serving-kube-apiserver.crt")) {
		t.Errorf("no expiry metric for the serving certificate")
	}
	// An unknown service is one clear error.
	if out, err := Distro(t, "certificate", "rotate", "--config", s.Flag("--config"), "--data-dir", s.DataDir, "--service", "nope"); err == nil || !strings.Contains(out, `unknown service "nope"`) {
		t.Errorf("rotate --service nope: %v\n%s", err, out)
	}
}
