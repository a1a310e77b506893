package etcd

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"distro/pkg/config"
	"distro/pkg/datadir"
	"distro/pkg/etcd/snapshot"
	"distro/pkg/pki"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// member is a real embedded etcd with distro's TLS setup.
type member struct {
	Config
	stop func()
}

func newConfig(t *testing.T, dataDir, clusterID string) Config {
	t.Helper()
	paths := datadir.NewServer(dataDir)
	if _, err := pki.EnsureServer(paths.TLS, pki.ServerInput{Hostname: "test", ServiceIP: net.ParseIP("10.43.0.1"), ClusterDomain: "cluster.local"}); err != nil {
		t.Fatal(err)
	}
	c := ForServer(paths, "test", freePort(t), freePort(t))
	c.ClusterID = clusterID
	return c
}

func start(t *testing.T, c Config) (*member, *clientv3.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("etcd: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("etcd not ready in 30 s")
	}
	cc, err := c.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	m := &member{Config: c, stop: func() {
		cli.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("etcd stop: %v", err)
		}
	}}
	return m, cli
}

func get(t *testing.T, cli *clientv3.Client, key string) (string, int64) {
	t.Helper()
	r, err := cli.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) == 0 {
		return "", r.Header.Revision
	}
	return string(r.Kvs[0].Value), r.Header.Revision
}

func copyFile(t *testing.T, src, dst string, edit func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, edit(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	es, _ := os.ReadDir(dir)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// TestSnapshotRestore saves a snapshot of a live member, refuses corrupt,
// truncated and foreign snapshots without touching the data, and restores a
// good one: the keys are as they were at the snapshot, with a revision
// bumped past every revision clients saw before.
func TestSnapshotRestore(t *testing.T) {
	root := t.TempDir()
	c := newConfig(t, root, "cluster-a")
	m, cli := start(t, c)
	ctx := context.Background()
	if _, err := cli.Put(ctx, "/registry/kept", "v1"); err != nil {
		t.Fatal(err)
	}
	if wrote, err := c.StoreBootstrap(ctx, "s3cret", map[string][]byte{"server-ca.crt": []byte("ca")}); err != nil || !wrote {
		t.Fatalf("store bootstrap: %v %v", wrote, err)
	}
	if wrote, err := c.StoreBootstrap(ctx, "s3cret", map[string][]byte{"server-ca.crt": []byte("ca")}); err != nil || wrote {
		t.Errorf("store unchanged bootstrap again: wrote=%v %v", wrote, err)
	}
	cc, _ := c.ClientConfig()
	store := snapshot.Store{Dir: filepath.Join(root, "snapshots")}
	f, st, err := store.Save(ctx, cc, snapshot.OnDemandPrefix, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(f.Name, "on-demand-test-") || st.Keys < 2 || f.Size == 0 {
		t.Errorf("saved %+v %+v", f, st)
	}
	if id, _ := get(t, cli, ClusterIDKey); id != "cluster-a" {
		t.Errorf("cluster ID in etcd = %q", id)
	}
	if _, err := cli.Delete(ctx, "/registry/kept"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/registry/later", "v2"); err != nil {
		t.Fatal(err)
	}
	m.stop()

	before := listDir(t, root)
	bad := filepath.Join(root, "snapshots", "bad")
	for name, edit := range map[string]func([]byte) []byte{
		"truncated": func(b []byte) []byte { return b[:len(b)-4096] },
		"corrupt":   func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b },
		"not etcd":  func(b []byte) []byte { return []byte("hello") },
	} {
		copyFile(t, f.Path, bad, edit)
		if _, err := c.Reset(ctx, bad, nil); err == nil {
			t.Errorf("%s snapshot restored", name)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error is not one line: %q", name, err)
		}
	}
	os.Remove(bad)
	foreign := c
	foreign.ClusterID = "cluster-b"
	if _, err := foreign.Reset(ctx, f.Path, nil); err == nil || !strings.Contains(err.Error(), "another cluster") {
		t.Errorf("snapshot of another cluster: err = %v", err)
	}
	if after := listDir(t, root); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("refused restores changed the data dir: %v -> %v", before, after)
	}

	var sealed []byte
	old, err := c.Reset(ctx, f.Path, func(id string, b []byte) error {
		if id != "cluster-a" {
			t.Errorf("cluster ID seen by check: %q", id)
		}
		sealed = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files, err := OpenBootstrap("s3cret", sealed); err != nil || string(files["server-ca.crt"]) != "ca" {
		t.Errorf("bootstrap data in the snapshot: %v %v", files, err)
	}
	if _, err := os.Stat(filepath.Join(old, "member")); err != nil {
		t.Errorf("old data not kept: %v", err)
	}
	m, cli = start(t, c)
	if v, rev := get(t, cli, "/registry/kept"); v != "v1" || rev < revisionBump {
		t.Errorf("after restore: kept = %q at revision %d", v, rev)
	}
	if v, _ := get(t, cli, "/registry/later"); v != "" {
		t.Errorf("after restore: a key written after the snapshot is there: %q", v)
	}
	m.stop()

	// A reset from the member's own data keeps it.
	if _, err := c.Reset(ctx, "", nil); err != nil {
		t.Fatal(err)
	}
	m, cli = start(t, c)
	if v, _ := get(t, cli, "/registry/kept"); v != "v1" {
		t.Errorf("after reset from own data: kept = %q", v)
	}
	m.stop()

	// A datastore of another cluster is refused at start.
	if _, _, err := func() (*member, *clientv3.Client, error) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return nil, nil, foreign.Run(ctx, func() { t.Error("etcd of another cluster became ready") })
	}(); err == nil || !strings.Contains(err.Error(), "belongs to another cluster") {
		t.Errorf("start on another cluster's data: err = %v", err)
	}
}

func TestPruneAndDelete(t *testing.T) {
	dir := t.TempDir()
	s := snapshot.Store{Dir: dir}
	for i, n := range []string{"etcd-snapshot-a-1700000001", "etcd-snapshot-a-1700000002", "etcd-snapshot-a-1700000003", "on-demand-a-1700000000"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte{byte(i)}, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	deleted, err := s.Prune(snapshot.ScheduledPrefix, 2)
	if err != nil || strings.Join(deleted, ",") != "etcd-snapshot-a-1700000001" {
		t.Errorf("prune: %v %v", deleted, err)
	}
	files, _ := s.List()
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	if strings.Join(names, ",") != "on-demand-a-1700000000,etcd-snapshot-a-1700000002,etcd-snapshot-a-1700000003" {
		t.Errorf("left: %v", names)
	}
	if err := s.Delete("on-demand-a-1700000000", "nope"); err == nil || !strings.Contains(err.Error(), `"nope" not found`) {
		t.Errorf("delete of a missing name: %v", err)
	}
	if err := s.Delete("../x"); err == nil {
		t.Error("delete outside the folder accepted")
	}
	if err := s.Delete("on-demand-a-1700000000"); err != nil {
		t.Error(err)
	}
	if files, _ := s.List(); len(files) != 2 {
		t.Errorf("after delete: %v", files)
	}
}

func TestBootstrapSeal(t *testing.T) {
	files := map[string][]byte{"server-ca.crt": []byte("cert"), "server-ca.key": []byte("key")}
	sealed, err := SealBootstrap("s3cret", files)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "cert") || strings.Contains(string(sealed), "key") {
		t.Error("sealed data holds the files in the clear")
	}
	got, err := OpenBootstrap("s3cret", sealed)
	if err != nil || string(got["server-ca.key"]) != "key" || len(got) != 2 {
		t.Errorf("open: %v %v", got, err)
	}
	if _, err := OpenBootstrap("other", sealed); err != ErrBootstrapSecret {
		t.Errorf("open with another secret: %v", err)
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := OpenBootstrap("s3cret", sealed); err == nil {
		t.Error("tampered data opened")
	}
}

// TestStalledLearnerRemoved: a server added as a learner that never starts
// is removed by the leader after StalledLearnerAfter, so the next server
// can join (etcd takes one learner at a time).
func TestStalledLearnerRemoved(t *testing.T) {
	defer func(d time.Duration) { StalledLearnerAfter = d }(StalledLearnerAfter)
	StalledLearnerAfter = 3 * time.Second
	c := newConfig(t, t.TempDir(), "")
	m, cli := start(t, c)
	defer m.stop()
	ghost := fmt.Sprintf("https://127.0.0.1:%d", freePort(t))
	if _, err := c.AddLearner(context.Background(), "ghost", ghost); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddLearner(context.Background(), "next", fmt.Sprintf("https://127.0.0.1:%d", freePort(t))); err != ErrRetry {
		t.Fatalf("a second learner while the first is pending: %v, want ErrRetry", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		list, err := cli.MemberList(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Members) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stalled learner is still a member: %v", list.Members)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if _, err := c.AddLearner(context.Background(), "next", fmt.Sprintf("https://127.0.0.1:%d", freePort(t))); err != nil {
		t.Errorf("a server joining after the stalled learner was removed: %v", err)
	}
}

// A lone member (a server that is not one of a cluster of servers) elects
// itself on a 250 ms timeout of 50 ms ticks; a member of a cluster keeps
// etcd's 100 ms / 1 s, and either setting given with --etcd-arg leaves both
// to the user (etcd's own check then applies: timeout ≥ 5 ticks).
func TestLoneMemberElectionTiming(t *testing.T) {
	paths := datadir.NewServer(t.TempDir())
	for _, tc := range []struct {
		name           string
		alone          bool
		args           []config.Arg
		tick, election uint
	}{
		{"lone member", true, nil, 50, 250},
		{"member of a cluster", false, nil, 100, 1000},
		{"lone member, heartbeat given", true, []config.Arg{{Key: "heartbeat-interval", Value: "200"}}, 200, 1000},
		{"lone member, timeout given", true, []config.Arg{{Key: "election-timeout", Value: "3000"}}, 100, 3000},
		{"lone member, other setting given", true, []config.Arg{{Key: "quota-backend-bytes", Value: "4294967296"}}, 50, 250},
	} {
		c := ForServer(paths, "test", 2379, 2380)
		c.Alone, c.ExtraArgs = tc.alone, tc.args
		cfg, err := c.Build()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if cfg.TickMs != tc.tick || cfg.ElectionMs != tc.election {
			t.Errorf("%s: heartbeat %d ms, election timeout %d ms; want %d, %d", tc.name, cfg.TickMs, cfg.ElectionMs, tc.tick, tc.election)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: etcd refuses the settings: %v", tc.name, err)
		}
	}
}

// A lone member keeps 100 raft entries in memory after each compaction of
// its log instead of etcd's 5,000 kept for slow followers it never has; a
// member of a cluster keeps etcd's, and --etcd-arg snapshot-catchup-entries
// is the user's.
func TestLoneMemberCatchUpEntries(t *testing.T) {
	paths := datadir.NewServer(t.TempDir())
	for _, tc := range []struct {
		name  string
		alone bool
		args  []config.Arg
		want  uint64
	}{
		{"lone member", true, nil, 100},
		{"member of a cluster", false, nil, 5000},
		{"lone member, count given", true, []config.Arg{{Key: "snapshot-catchup-entries", Value: "2000"}}, 2000},
	} {
		c := ForServer(paths, "test", 2379, 2380)
		c.Alone, c.ExtraArgs = tc.alone, tc.args
		cfg, err := c.Build()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if cfg.SnapshotCatchUpEntries != tc.want {
			t.Errorf("%s: %d catch-up entries, want %d", tc.name, cfg.SnapshotCatchUpEntries, tc.want)
		}
	}
}

// The client port speaks gRPC only (gRPC's own server, not gRPC under
// net/http); etcd's HTTP endpoints answer on the member's unix socket, with
// the same TLS and client certificates.
func TestHTTPOnItsOwnSocket(t *testing.T) {
	c := newConfig(t, t.TempDir(), "")
	m, cli := start(t, c)
	defer m.stop()
	if _, err := cli.Put(context.Background(), "/k", "v"); err != nil {
		t.Fatalf("gRPC on the client port: %v", err)
	}
	cc, err := c.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}

	port := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cc.TLS.Clone()}}
	if resp, err := port.Get(fmt.Sprintf("https://127.0.0.1:%d/health", c.ClientPort)); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("GET /health on the client port: %s; want no HTTP there", resp.Status)
		}
	}

	sock := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: cc.TLS.Clone(),
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", c.HTTPSocket())
		},
	}}
	resp, err := sock.Get("https://127.0.0.1/health")
	if err != nil {
		t.Fatalf("GET /health on %s: %v", c.HTTPSocket(), err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
		t.Errorf("GET /health on %s: %s %s", c.HTTPSocket(), resp.Status, body)
	}
	// No client certificate, no answer.
	bare := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: cc.TLS.RootCAs},
		DialContext:     sock.Transport.(*http.Transport).DialContext,
	}}
	if resp, err := bare.Get("https://127.0.0.1/health"); err == nil {
		resp.Body.Close()
		t.Errorf("GET /health on %s without a client certificate: %s; want refused", c.HTTPSocket(), resp.Status)
	}
}
