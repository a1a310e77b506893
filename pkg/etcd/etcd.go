// Package etcd runs distro's embedded etcd with mutual TLS on its client and
// peer ports.
package etcd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"distro/pkg/config"
	"distro/pkg/datadir"
)

// Config is what the embedded etcd needs from the server.
type Config struct {
	Member               string
	DataDir              string
	ClientPort, PeerPort int
	// TLS material.
	ServerCA, ServerCert, ServerKey string
	PeerCA, PeerCert, PeerKey       string
	// ExtraArgs are --etcd-arg key=value settings, keys as etcd's flags.
	ExtraArgs []config.Arg
	// PeerHost is the address other members reach this one on: the node
	// IP in a cluster of servers, loopback (the default) for a single one.
	PeerHost string
	// InitialCluster, set when this member joins a running cluster as a
	// learner, lists every member as name=peer-URL.
	InitialCluster string
	// ClusterID names the cluster the data belongs to (the server CA's
	// hash): stored in etcd on first start, checked on every start and
	// before a snapshot is restored.
	ClusterID string
	// Alone is set for the member of a server that is not one of a
	// cluster of servers: it never has peers (a second server cannot join
	// it), so raft's election timeout only decides how long each start
	// waits before the member elects itself.
	Alone bool
}

// ForServer is the Config of a server's member: its data and TLS files
// under the server's data dir.
func ForServer(paths datadir.Server, member string, clientPort, peerPort int) Config {
	return Config{
		Member: member, DataDir: paths.EtcdData,
		ClientPort: clientPort, PeerPort: peerPort,
		ServerCA: paths.File("etcd/server-ca.crt"), ServerCert: paths.File("etcd/server-client.crt"), ServerKey: paths.File("etcd/server-client.key"),
		PeerCA: paths.File("etcd/peer-ca.crt"), PeerCert: paths.File("etcd/peer-server-client.crt"), PeerKey: paths.File("etcd/peer-server-client.key"),
	}
}

// ClusterIDKey is the etcd key that holds the cluster's ID.
const ClusterIDKey = "/distro/cluster-id"

// ClientConfig is an etcd client configuration for the local member, with
// the server's client certificate.
func (c Config) ClientConfig() (clientv3.Config, error) {
	tlsc, err := transport.TLSInfo{CertFile: c.ServerCert, KeyFile: c.ServerKey, TrustedCAFile: c.ServerCA}.ClientConfig()
	if err != nil {
		return clientv3.Config{}, fmt.Errorf("etcd client certificate: %w", err)
	}
	return clientv3.Config{
		Endpoints: []string{c.ClientURL()}, TLS: tlsc, DialTimeout: 5 * time.Second,
		Logger: zap.NewNop(),
	}, nil
}

// PeerURL is where other members reach this one.
func (c Config) PeerURL() string {
	host := c.PeerHost
	if host == "" {
		host = "127.0.0.1"
	}
	return "https://" + net.JoinHostPort(host, strconv.Itoa(c.PeerPort))
}

// ClientURL is where the apiserver reaches etcd.
func (c Config) ClientURL() string { return fmt.Sprintf("https://127.0.0.1:%d", c.ClientPort) }

// HTTPSocket is where etcd serves its HTTP endpoints (/health, /metrics,
// /version), with the client port's TLS and client certificates: a unix
// socket named by the client port, so servers on one host (tests) do not
// share it. The client port then speaks gRPC only, served by gRPC's own
// server: sharing the port made etcd serve gRPC through net/http, slower
// and prone to starving watch streams under read load (etcd-io/etcd#15402).
// Nothing in distro uses these endpoints; they are for operators.
func (c Config) HTTPSocket() string {
	return filepath.Join(datadir.Run, fmt.Sprintf("etcd-%d.sock", c.ClientPort))
}

// grpcServerOptions are etcd's side of the gRPC buffer settings of its
// connections with the server's apiserver (both ends in this process): the
// apiserver opens one connection per resource it stores (~70), and gRPC
// gives each end of each a 32 KB read buffer and a 32 KB write buffer for
// its lifetime, ~9 MB in all that sit idle between requests. Writes take a
// buffer from a shared pool for each flush instead, and reads go to the TLS
// connection directly, which buffers a whole record itself. The apiserver's
// end gets the same options in its etcd client (scripts/kube-patch.sh).
var grpcServerOptions = []grpc.ServerOption{grpc.SharedWriteBuffer(true), grpc.ReadBufferSize(0)}

// loneCatchUpEntries is how many applied raft entries a lone member keeps
// in memory after compacting its log (etcd's default is 5,000): etcd takes
// an in-memory snapshot every 100 entries, so the log holds 100 to 200.
const loneCatchUpEntries = 100

// managed lists etcd flags distro sets itself and that --etcd-arg cannot
// change (URLs and cluster membership).
var managed = map[string]bool{
	"name": true, "data-dir": true, "listen-client-urls": true, "listen-peer-urls": true,
	"advertise-client-urls": true, "initial-advertise-peer-urls": true, "initial-cluster": true,
	"listen-client-http-urls": true,
}

// Build returns the embed.Config for c, with the --etcd-arg settings
// applied. An unknown or managed key is an error naming it.
func (c Config) Build() (*embed.Config, error) {
	cfg := embed.NewConfig()
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.AddFlags(fs) // binds (and resets) the settings that flags can change
	cfg.Name = c.Member
	cfg.Dir = c.DataDir
	client, _ := url.Parse(c.ClientURL())
	peer, _ := url.Parse(c.PeerURL())
	cfg.ListenClientUrls = []url.URL{*client}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	cfg.ListenClientHttpUrls = []url.URL{{Scheme: "unixs", Path: c.HTTPSocket()}}
	// The gRPC gateway (etcd's JSON API over HTTP) would be served on that
	// socket too; nothing uses it. --etcd-arg enable-grpc-gateway=true
	// brings it back.
	cfg.EnableGRPCGateway = false
	cfg.GRPCAdditionalServerOptions = grpcServerOptions
	cfg.ListenPeerUrls = []url.URL{*peer}
	cfg.AdvertisePeerUrls = []url.URL{*peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(c.Member)
	if c.InitialCluster != "" {
		cfg.InitialCluster = c.InitialCluster
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	cfg.ClientTLSInfo.CertFile = c.ServerCert
	cfg.ClientTLSInfo.KeyFile = c.ServerKey
	cfg.ClientTLSInfo.TrustedCAFile = c.ServerCA
	cfg.ClientTLSInfo.ClientCertAuth = true
	cfg.PeerTLSInfo.CertFile = c.PeerCert
	cfg.PeerTLSInfo.KeyFile = c.PeerKey
	cfg.PeerTLSInfo.TrustedCAFile = c.PeerCA
	cfg.PeerTLSInfo.ClientCertAuth = true
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{"stderr"}
	// A single-member cluster on one host: a lighter snapshot cadence and
	// periodic compaction keep memory and disk small.
	cfg.SnapshotCount = 10000
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "5m"
	timing, catchUp := false, false
	for _, a := range c.ExtraArgs {
		if managed[a.Key] {
			return nil, fmt.Errorf("--etcd-arg %s: distro sets this itself", a.Key)
		}
		if fs.Lookup(a.Key) == nil {
			return nil, fmt.Errorf("--etcd-arg %s: not an etcd setting", a.Key)
		}
		if err := fs.Set(a.Key, a.Value); err != nil {
			return nil, fmt.Errorf("--etcd-arg %s=%s: %v", a.Key, a.Value, err)
		}
		timing = timing || a.Key == "heartbeat-interval" || a.Key == "election-timeout"
		catchUp = catchUp || a.Key == "snapshot-catchup-entries"
	}
	if c.Alone && !timing {
		// etcd advances a lone member's election clock to one tick short
		// of the timeout, but raft draws the timeout at random between one
		// and two election timeouts: with upstream's 100 ms ticks and 1 s
		// timeout the member led 0.1 to 1.0 s after it started, and the
		// whole server waited for it. A 250 ms timeout (5 ticks, etcd's
		// least) of 50 ms ticks makes that 0.05 to 0.25 s. Heartbeats go to
		// nobody. Either setting given with --etcd-arg leaves both to it.
		cfg.TickMs, cfg.ElectionMs = 50, 250
	}
	if c.Alone && !catchUp {
		// etcd keeps the last 5,000 raft entries in memory after each
		// compaction of its log, for a slow follower to catch up from
		// instead of receiving a snapshot. A lone member has no follower:
		// those entries (every write's request, whole objects for a pod
		// or a Secret) were memory held for nobody, until 5,000 newer
		// writes pushed them out.
		cfg.SnapshotCatchUpEntries = loneCatchUpEntries
	}
	return cfg, nil
}

// Run starts etcd and blocks until ctx ends, then closes it cleanly.
func (c Config) Run(ctx context.Context, ready func()) error {
	cfg, err := c.Build()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(c.tombstone()); err == nil {
		return c.removedError()
	}
	e, err := startEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	defer func() {
		start := time.Now()
		e.Close()
		klog.Infof("etcd closed in %.2fs", time.Since(start).Seconds())
	}()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return c.checkRemoved(e, err)
	case <-ctx.Done():
		return nil
	}
	if err := c.waitVoter(ctx, e); err != nil {
		return err
	}
	if err := c.checkClusterID(ctx, e); err != nil {
		return err
	}
	if err := c.updatePeerURL(ctx, e); err != nil {
		return err
	}
	go c.promoteLearners(ctx, e)
	ready()
	select {
	case err := <-e.Err():
		return c.checkRemoved(e, err)
	case <-e.Server.StopNotify():
		return c.checkRemoved(e, fmt.Errorf("etcd server stopped"))
	case <-ctx.Done():
		return nil
	}
}

// startEtcd starts etcd with cfg (from Build), making the folder of its
// HTTP socket first.
func startEtcd(cfg *embed.Config) (*embed.Etcd, error) {
	for _, u := range cfg.ListenClientHttpUrls {
		if err := os.MkdirAll(filepath.Dir(u.Path), 0o700); err != nil {
			return nil, err
		}
	}
	return embed.StartEtcd(cfg)
}

// checkClusterID stores the cluster's ID in a new datastore and refuses a
// datastore that holds another cluster's ID (a data dir or a restored
// snapshot mixed up between clusters).
func (c Config) checkClusterID(ctx context.Context, e *embed.Etcd) error {
	if c.ClusterID == "" {
		return nil
	}
	cli := v3client.New(e.Server)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(ClusterIDKey), "=", 0)).
		Then(clientv3.OpPut(ClusterIDKey, c.ClusterID)).
		Else(clientv3.OpGet(ClusterIDKey)).Commit()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("etcd: reading the cluster ID: %w", err)
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 1 && string(kvs[0].Value) != c.ClusterID {
		return fmt.Errorf("etcd data in %s belongs to another cluster (its CA hash %s, this server's %s): restore a snapshot of this cluster, or move the folder away", c.DataDir, kvs[0].Value, c.ClusterID)
	}
	return nil
}

// Name implements component.Component.
func (c Config) Name() string { return "etcd" }

// StopTimeout implements component.StopTimeouter: etcd waits for its
// clients' requests for up to its request timeout (7 s by default) before
// cutting them off.
func (c Config) StopTimeout() time.Duration { return 9 * time.Second }
