package integration

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// rawSecret reads a Secret's value as stored in the server's etcd.
func rawSecret(t *testing.T, s *Server, ns, name string) string {
	t.Helper()
	tls := filepath.Join(s.DataDir, "server", "tls", "etcd")
	tc, err := transport.TLSInfo{CertFile: filepath.Join(tls, "client.crt"), KeyFile: filepath.Join(tls, "client.key"), TrustedCAFile: filepath.Join(tls, "server-ca.crt")}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://127.0.0.1:" + s.Flag("--etcd-client-port")}, TLS: tc, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/registry/secrets/"+ns+"/"+name)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("etcd get of Secret %s/%s: %v (%d values)", ns, name, err, len(resp.Kvs))
	}
	return string(resp.Kvs[0].Value)
}

// TestSecretsEncryption: Secrets are stored encrypted by default (aescbc,
// a key generated on the first start); Secrets stored in plain text while
// encryption was off are encrypted at the next start with it on; another
// provider rewrites every Secret with its key, the older ones staying
// readable throughout; `distro secrets-encrypt status` says where they are.
func TestSecretsEncryption(t *testing.T) {
	requireRoot(t)
	s := NewServer(t, "--disable-agent", "--disable", "coredns,local-storage,metrics-server", "--secrets-encryption=false")
	s.Start()
	s.MustKubectl("create", "secret", "generic", "old", "--from-literal=password=plain-before")
	if raw := rawSecret(t, s, "default", "old"); !strings.Contains(raw, "plain-before") || strings.HasPrefix(raw, "k8s:enc:") {
		t.Fatalf("with --secrets-encryption=false the Secret is not in plain text: %q", raw)
	}
	config := filepath.Join(s.DataDir, "server", "tls", "encryption-config.json")
	if _, err := os.Stat(config); err == nil {
		t.Errorf("%s written with encryption off", config)
	}
	if err, _ := s.Stop(); err != nil {
		t.Fatal(err)
	}

	// Encryption on (the default): the old Secret is rewritten encrypted.
	s.args = slices.DeleteFunc(s.args, func(a string) bool { return a == "--secrets-encryption=false" })
	s.Start()
	encrypted := func(name, provider, plain string) func() error {
		return func() error {
			raw := rawSecret(t, s, "default", name)
			if !strings.HasPrefix(raw, "k8s:enc:"+provider+":v1:") || strings.Contains(raw, plain) {
				return fmt.Errorf("stored as %.40q", raw)
			}
			return nil
		}
	}
	Eventually(t, time.Minute, "the plain-text Secret encrypted at start", encrypted("old", "aescbc", "plain-before"))
	s.MustKubectl("create", "secret", "generic", "new", "--from-literal=password=s3cret-value")
	if err := encrypted("new", "aescbc", "s3cret-value")(); err != nil {
		t.Errorf("a new Secret: %v", err)
	}
	if fi, err := os.Stat(config); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v, mode %v (want 0600)", config, err, fi.Mode().Perm())
	}
	status := func() string {
		out, err := Distro(t, "secrets-encrypt", "status", "--config", s.Flag("--config"), "--data-dir", s.DataDir, "--etcd-client-port", s.Flag("--etcd-client-port"))
		if err != nil {
			t.Fatalf("secrets-encrypt status: %v\n%s", err, out)
		}
		return out
	}
	out := status()
	for _, want := range []string{"Encryption: on", "Provider: aescbc", "Active key: aescbckey-", "Every Secret is stored with the active key."} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if err, _ := s.Stop(); err != nil {
		t.Fatal(err)
	}

	// Another provider: every Secret moves to its key and stays readable.
	s.args = append(s.args, "--secrets-encryption-provider=secretbox")
	s.Start()
	for name, plain := range map[string]string{"old": "plain-before", "new": "s3cret-value"} {
		Eventually(t, time.Minute, name+" rewritten with secretbox", encrypted(name, "secretbox", plain))
		got := s.MustKubectl("get", "secret", name, "-o", "jsonpath={.data.password}")
		if b, _ := base64.StdEncoding.DecodeString(got); string(b) != plain {
			t.Errorf("Secret %s reads %q, want %q", name, b, plain)
		}
	}
	if out := status(); !strings.Contains(out, "Provider: secretbox") || !strings.Contains(out, "providers in order: secretbox (1 key), aescbc (1 key), identity") {
		t.Errorf("status after the provider change:\n%s", out)
	}
}

// TestSecretsRotateKeys: rotate-keys while a writer creates Secrets, killed
// half-way through rewriting and run again, ends with every Secret
// readable and stored with the new key, and only that key in the file.
func TestSecretsRotateKeys(t *testing.T) {
	requireRoot(t)
	s := NewServer(t, "--disable-agent", "--disable", "coredns,local-storage,metrics-server")
	s.Start()
	var items []string
	for i := 0; i < 400; i++ {
		items = append(items, fmt.Sprintf(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s-%d"},"stringData":{"v":"value-%d"}}`, i, i))
	}
	list := filepath.Join(t.TempDir(), "secrets.json")
	os.WriteFile(list, []byte(`{"apiVersion":"v1","kind":"List","items":[`+strings.Join(items, ",")+`]}`), 0o600)
	s.MustKubectl("apply", "-f", list)
	config := filepath.Join(s.DataDir, "server", "tls", "encryption-config.json")
	firstKey := func() (string, int) {
		data, _ := os.ReadFile(config)
		var c struct {
			Resources []struct {
				Providers []struct {
					AESCBC *struct{ Keys []struct{ Name string } } `json:"aescbc"`
				} `json:"providers"`
			} `json:"resources"`
		}
		if err := json.Unmarshal(data, &c); err != nil || len(c.Resources) == 0 || c.Resources[0].Providers[0].AESCBC == nil {
			t.Fatalf("%s: %v\n%s", config, err, data)
		}
		keys := c.Resources[0].Providers[0].AESCBC.Keys
		return keys[0].Name, len(keys)
	}
	oldKey, _ := firstKey()

	// A writer creates a Secret every 300 ms throughout.
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			case <-time.After(300 * time.Millisecond):
			}
			if _, err := s.Kubectl("create", "secret", "generic", fmt.Sprintf("w-%d", n), "--from-literal=v=written"); err == nil {
				n++
			}
		}
	}()
	rotate := func() *exec.Cmd {
		return exec.Command(distroBin(t), "secrets-encrypt", "rotate-keys", "--config", s.Flag("--config"), "--data-dir", s.DataDir, "--etcd-client-port", s.Flag("--etcd-client-port"))
	}
	// First run: killed as soon as it starts rewriting.
	cmd := rotate()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var first []string
	for sc.Scan() {
		first = append(first, sc.Text())
		if strings.HasPrefix(sc.Text(), "rewriting") {
			cmd.Process.Kill()
			break
		}
	}
	cmd.Wait()
	newKey, n := firstKey()
	if newKey == oldKey || n != 2 {
		t.Fatalf("after the interrupted run the file has %d keys, first %s (old %s); output:\n%s", n, newKey, oldKey, strings.Join(first, "\n"))
	}
	// Second run: finishes the job.
	out, err := rotate().CombinedOutput()
	if err != nil || !strings.Contains(string(out), "resuming: key "+newKey) || !strings.Contains(string(out), "done:") {
		t.Fatalf("rotate-keys again: %v\n%s", err, out)
	}
	close(stop)
	written := <-done
	if key, n := firstKey(); key != newKey || n != 1 {
		t.Errorf("after rotation the file has %d keys, first %s; want only %s", n, key, newKey)
	}
	status, err := Distro(t, "secrets-encrypt", "status", "--config", s.Flag("--config"), "--data-dir", s.DataDir, "--etcd-client-port", s.Flag("--etcd-client-port"))
	if err != nil || !strings.Contains(status, "Active key: "+newKey) || !strings.Contains(status, "Every Secret is stored with the active key.") {
		t.Errorf("status after rotation: %v\n%s", err, status)
	}
	// Every Secret reads back (the apiserver no longer has the old key).
	for _, name := range []string{"s-0", "s-199", "s-399", fmt.Sprintf("w-%d", written-1)} {
		if out, err := s.Kubectl("get", "secret", name, "-o", "jsonpath={.data.v}"); err != nil || out == "" {
			t.Errorf("Secret %s: %v %q", name, err, out)
		}
	}
	if out, err := s.Kubectl("get", "secrets", "-o", "name"); err != nil || strings.Count(out, "secret/") < 400+written {
		t.Errorf("listing Secrets after rotation: %v (%d listed, want ≥ %d)", err, strings.Count(out, "secret/"), 400+written)
	}
	t.Logf("%d Secrets written during the rotation; interrupted run:\n%s\nsecond run:\n%s", written, strings.Join(first, "\n"), out)
}
