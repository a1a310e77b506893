package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Flag returns the value of a --flag the server was started with.
func (s *Server) Flag(name string) string {
	for i, a := range s.args {
		if a == name && i+1 < len(s.args) {
			return s.args[i+1]
		}
	}
	return ""
}

// Distro runs a distro command to completion and returns its combined
// output.
func Distro(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, distroBin(t), args...).CombinedOutput()
	return string(out), err
}

// Snapshot runs `distro etcd-snapshot <args>` against the server's data
// dir and ports.
func (s *Server) Snapshot(args ...string) (string, error) {
	s.t.Helper()
	base := []string{"etcd-snapshot", args[0], "--config", s.Flag("--config"), "--data-dir", s.DataDir, "--etcd-client-port", s.Flag("--etcd-client-port")}
	return Distro(s.t, append(base, args[1:]...)...)
}

func dirNames(t *testing.T, dir string) string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return strings.Join(out, ",")
}

// TestEtcdSnapshotRestore: scheduled snapshots are taken and pruned to the
// retention (on-demand ones are kept), `distro etcd-snapshot` saves, lists,
// prunes and deletes, and `distro server --cluster-reset
// --cluster-reset-restore-path` brings deleted objects back with their
// UIDs. A truncated snapshot is refused and leaves the data untouched.
func TestEtcdSnapshotRestore(t *testing.T) {
	requireRoot(t)
	s := NewServer(t, "--disable-agent", "--disable", "coredns,local-storage,metrics-server",
		"--etcd-snapshot-schedule-cron", "@every 2s", "--etcd-snapshot-retention", "2")
	s.Start()
	s.MustKubectl("create", "configmap", "kept", "--from-literal=k=v")
	s.MustKubectl("create", "secret", "generic", "kept", "--from-literal=password=s3cret")
	cmUID := s.MustKubectl("get", "configmap", "kept", "-o", "jsonpath={.metadata.uid}")
	secretUID := s.MustKubectl("get", "secret", "kept", "-o", "jsonpath={.metadata.uid}")

	out, err := s.Snapshot("save")
	if err != nil {
		t.Fatalf("etcd-snapshot save: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`saved (\S+/on-demand-\S+) \((\d+) bytes, revision \d+, \d+ keys`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("etcd-snapshot save printed %q", out)
	}
	snap := m[1]
	t.Logf("saved %s (%s bytes)", snap, m[2])
	if dir := filepath.Join(s.DataDir, "server", "db", "snapshots"); filepath.Dir(snap) != dir {
		t.Errorf("snapshot in %s, want the default %s", filepath.Dir(snap), dir)
	}

	// The schedule (every 2 s, keep 2) prunes its own snapshots only.
	Eventually(t, 60*time.Second, "scheduled snapshots pruned to 2", func() error {
		if !strings.Contains(s.Log(), "pruned etcd snapshots beyond the newest 2") {
			return fmt.Errorf("no pruning logged yet")
		}
		out, err := s.Snapshot("ls")
		if err != nil {
			return fmt.Errorf("ls: %v: %s", err, out)
		}
		if n := strings.Count(out, "\netcd-snapshot-"); n != 2 {
			return fmt.Errorf("%d scheduled snapshots listed:\n%s", n, out)
		}
		if !strings.Contains(out, filepath.Base(snap)) {
			return fmt.Errorf("on-demand snapshot not listed:\n%s", out)
		}
		return nil
	})
	if out := s.MustKubectl("get", "events", "-n", "default", "--field-selector", "reason=EtcdSnapshotSaved", "-o", "name"); strings.TrimSpace(out) == "" {
		t.Error("no EtcdSnapshotSaved event recorded")
	}
	// prune and delete from the command line.
	if out, err := s.Snapshot("save", "--name", "extra"); err != nil {
		t.Fatalf("save --name extra: %v\n%s", err, out)
	}
	if out, err := s.Snapshot("save", "--name", "extra"); err != nil {
		t.Fatalf("save --name extra: %v\n%s", err, out)
	}
	if out, err := s.Snapshot("prune", "--name", "extra", "--snapshot-retention", "1"); err != nil || strings.Count(out, "deleted extra-") != 1 {
		t.Errorf("prune --name extra: %v\n%s", err, out)
	}
	ls, _ := s.Snapshot("ls")
	extra := regexp.MustCompile(`(?m)^(extra-\S+)`).FindString(ls)
	if extra == "" || strings.Count(ls, "\nextra-") != 1 {
		t.Fatalf("after prune, ls:\n%s", ls)
	}
	if out, err := s.Snapshot("delete", extra); err != nil {
		t.Errorf("delete %s: %v\n%s", extra, err, out)
	}
	if out, err := s.Snapshot("delete", "no-such-snapshot"); err == nil || !strings.Contains(out, `"no-such-snapshot" not found`) {
		t.Errorf("delete of a missing snapshot: %v\n%s", err, out)
	}

	s.MustKubectl("delete", "configmap", "kept")
	s.MustKubectl("delete", "secret", "kept")
	s.MustKubectl("create", "configmap", "later", "--from-literal=k=v")
	if err, _ := s.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	// A truncated snapshot is refused before anything is touched.
	dbDir := filepath.Join(s.DataDir, "server", "db")
	before := dirNames(t, dbDir)
	data, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(t.TempDir(), "truncated.db")
	if err := os.WriteFile(truncated, data[:len(data)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = Distro(t, append(append([]string{}, s.args...), "--cluster-reset", "--cluster-reset-restore-path", truncated)...)
	if err == nil || !strings.Contains(out, "not a complete etcd snapshot") {
		t.Errorf("truncated snapshot: err %v\n%s", err, out)
	}
	if lastLine(out) != "distro: --cluster-reset-restore-path: "+truncated+" is not a complete etcd snapshot (size "+strconv.Itoa(len(data)/2)+": truncated, or not a snapshot)" {
		t.Errorf("truncated snapshot: last line %q", lastLine(out))
	}
	if after := dirNames(t, dbDir); after != before {
		t.Errorf("refused restore changed %s: %s -> %s", dbDir, before, after)
	}

	out, err = Distro(t, append(append([]string{}, s.args...), "--cluster-reset", "--cluster-reset-restore-path", snap)...)
	if err != nil || !strings.Contains(out, "cluster reset done") {
		t.Fatalf("cluster reset: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`etcd-old-\d+T\d+Z`).MatchString(dirNames(t, dbDir)) {
		t.Errorf("old data not kept aside: %s", dirNames(t, dbDir))
	}
	s.Start()
	if uid := s.MustKubectl("get", "configmap", "kept", "-o", "jsonpath={.metadata.uid}"); uid != cmUID {
		t.Errorf("restored configmap uid %q, was %q", uid, cmUID)
	}
	if uid := s.MustKubectl("get", "secret", "kept", "-o", "jsonpath={.metadata.uid}"); uid != secretUID {
		t.Errorf("restored secret uid %q, was %q", uid, secretUID)
	}
	if pw := s.MustKubectl("get", "secret", "kept", "-o", "jsonpath={.data.password}"); pw != "czNjcmV0" {
		t.Errorf("restored secret data %q", pw)
	}
	if out, err := s.Kubectl("get", "configmap", "later"); err == nil {
		t.Errorf("configmap created after the snapshot is there after the restore:\n%s", out)
	}
	// The restored cluster keeps working: writes and watches go on.
	s.MustKubectl("create", "configmap", "after-restore", "--from-literal=k=v")
	s.MustKubectl("wait", "--for=create", "configmap/after-restore", "--timeout=30s")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestRestoreOnNewServer: a snapshot restored on a new data dir with the
// cluster's token brings back the cluster's CAs (sealed in the snapshot
// with the token's secret) and its objects with their UIDs; another
// token's secret is refused and leaves nothing behind.
func TestRestoreOnNewServer(t *testing.T) {
	requireRoot(t)
	off := []string{"--disable-agent", "--disable", "coredns,local-storage,metrics-server"}
	a := NewServer(t, off...)
	a.Start()
	a.MustKubectl("create", "secret", "generic", "kept", "--from-literal=password=s3cret")
	uid := a.MustKubectl("get", "secret", "kept", "-o", "jsonpath={.metadata.uid}")
	// The bootstrap data is stored in the background after etcd starts.
	Eventually(t, 30*time.Second, "bootstrap data stored", func() error {
		if !strings.Contains(a.Log(), "stored the cluster's CAs and service-account key in etcd") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	out, err := a.Snapshot("save")
	if err != nil {
		t.Fatalf("save: %v\n%s", err, out)
	}
	snap := regexp.MustCompile(`saved (\S+) \(`).FindStringSubmatch(out)[1]
	tokenBytes, _ := os.ReadFile(filepath.Join(a.DataDir, "server", "token"))
	token := strings.TrimSpace(string(tokenBytes))
	caA, _ := os.ReadFile(filepath.Join(a.DataDir, "server", "tls", "server-ca.crt"))
	if err, _ := a.Stop(); err != nil {
		t.Fatal(err)
	}

	b := NewServer(t, off...)
	reset := func(tok string) (string, error) {
		return Distro(t, append(append([]string{}, b.args...), "--cluster-reset", "--cluster-reset-restore-path", snap, "--token", tok)...)
	}
	wrong := token[:strings.LastIndex(token, ":")+1] + "not-the-secret"
	if out, err := reset(wrong); err == nil || !strings.Contains(lastLine(out), "does not open this cluster's bootstrap data") {
		t.Errorf("restore with another token's secret: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(b.DataDir, "server")); err == nil {
		t.Errorf("a refused restore left %s/server behind", b.DataDir)
	}
	if out, err := reset(token); err != nil || !strings.Contains(out, "cluster reset done") {
		t.Fatalf("restore on a new server: %v\n%s", err, out)
	}
	if caB, _ := os.ReadFile(filepath.Join(b.DataDir, "server", "tls", "server-ca.crt")); string(caB) != string(caA) {
		t.Error("the new server does not hold the cluster's CA")
	}
	b.Start()
	if got := b.MustKubectl("get", "secret", "kept", "-o", "jsonpath={.metadata.uid}"); got != uid {
		t.Errorf("restored secret uid %q, was %q", got, uid)
	}
	if got, _ := os.ReadFile(filepath.Join(b.DataDir, "server", "token")); strings.TrimSpace(string(got)) != token {
		t.Errorf("token after restore %q, want the cluster's %q", got, token)
	}
}
