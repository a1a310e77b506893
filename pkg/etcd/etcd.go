// Package etcd runs distro's embedded etcd with mutual TLS on its client and
// peer ports.
package etcd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/klog/v2"

	"distro/pkg/config"
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
}

// ClientURL is where the apiserver reaches etcd.
func (c Config) ClientURL() string { return fmt.Sprintf("https://127.0.0.1:%d", c.ClientPort) }

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
	peer, _ := url.Parse(fmt.Sprintf("https://127.0.0.1:%d", c.PeerPort))
	cfg.ListenClientUrls = []url.URL{*client}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	cfg.ListenPeerUrls = []url.URL{*peer}
	cfg.AdvertisePeerUrls = []url.URL{*peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(c.Member)
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
	e, err := embed.StartEtcd(cfg)
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
		ready()
	case err := <-e.Err():
		return err
	case <-ctx.Done():
		return nil
	}
	select {
	case err := <-e.Err():
		return err
	case <-e.Server.StopNotify():
		return fmt.Errorf("etcd server stopped")
	case <-ctx.Done():
		return nil
	}
}

// Name implements component.Component.
func (c Config) Name() string { return "etcd" }

// StopTimeout implements component.StopTimeouter: etcd waits for its
// clients' requests for up to its request timeout (7 s by default) before
// cutting them off.
func (c Config) StopTimeout() time.Duration { return 9 * time.Second }
