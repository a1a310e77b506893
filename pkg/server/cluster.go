package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"distro/pkg/component"
	"distro/pkg/config"
	"distro/pkg/datadir"
	"distro/pkg/etcd"
	"distro/pkg/join"
	"distro/pkg/pki"
	"distro/pkg/token"
)

// clusterMarker, under the server's db folder, records that this server
// belongs to a cluster of servers: its etcd peers talk over the node IP
// from then on, with or without --cluster-init / --server.
func clusterMarker(paths datadir.Server) string {
	return filepath.Join(filepath.Dir(paths.EtcdData), "cluster")
}

// clusterMode says whether this server is (or becomes) one of several:
// etcd's peer address is then the node IP, and the server admits others.
func clusterMode(cfg *config.Server, paths datadir.Server) bool {
	_, err := os.Stat(clusterMarker(paths))
	return cfg.ClusterInit || cfg.JoinServer != "" || err == nil
}

// markCluster writes the marker (part of the first start's state).
func markCluster(paths datadir.Server) error {
	if err := os.MkdirAll(filepath.Dir(clusterMarker(paths)), 0o700); err != nil {
		return err
	}
	return os.WriteFile(clusterMarker(paths), []byte("this server is one of a cluster of servers: etcd peers use the node IP\n"), 0o600)
}

// sharedSettings are the settings every server of a cluster must have the
// same, compared when a server joins (flag → value).
func sharedSettings(cfg *config.Server) map[string]string {
	disable := slices.Clone(cfg.Disable)
	slices.Sort(disable)
	return map[string]string{
		"--cluster-cidr":   cfg.ClusterCIDR,
		"--service-cidr":   cfg.ServiceCIDR,
		"--cluster-dns":    cfg.ClusterDNS,
		"--cluster-domain": cfg.ClusterDomain,
		"--disable":        strings.Join(disable, ","),

		"--secrets-encryption":          fmt.Sprint(cfg.SecretsEncryption),
		"--secrets-encryption-provider": cfg.SecretsEncryptionProvider,
	}
}

// joinCluster admits this server to the cluster of --server on its first
// start (no etcd data yet): the settings are compared, its etcd member is
// added as a learner, and it receives the cluster's shared files (CAs,
// service-account key), returned for the PKI step. ec gets the etcd
// initial-cluster setting. It returns nil when there is nothing to join.
func joinCluster(ctx context.Context, cfg *config.Server, paths datadir.Server, ec *etcd.Config) (map[string][]byte, error) {
	if cfg.JoinServer == "" {
		return nil, nil
	}
	if _, err := os.Stat(filepath.Join(paths.EtcdData, "member")); err == nil {
		klog.Infof("etcd data exists in %s: rejoining as the same member (--server is only read on the first start)", paths.EtcdData)
		return nil, nil
	}
	if _, err := os.Stat(paths.TLS); err == nil {
		return nil, fmt.Errorf("--server: %s already holds this server's own certificates (a server that ran alone); a server joins a cluster with a new --data-dir", paths.TLS)
	}
	tok, err := token.Parse(cfg.Token)
	if err != nil {
		return nil, fmt.Errorf("--token: %w", err)
	}
	klog.Infof("joining the cluster of %s as server %s (etcd peer %s)", cfg.JoinServer, ec.Member, ec.PeerURL())
	c := &join.Client{Server: strings.TrimRight(cfg.JoinServer, "/"), Token: tok}
	resp, err := c.JoinServer(ctx, join.ServerJoinRequest{Name: ec.Member, PeerURL: ec.PeerURL(), Settings: sharedSettings(cfg)})
	if err != nil {
		return nil, fmt.Errorf("--server %s: %w", cfg.JoinServer, err)
	}
	klog.Infof("admitted by %s: etcd cluster %s", cfg.JoinServer, resp.InitialCluster)
	ec.InitialCluster = resp.InitialCluster
	return resp.Files, nil
}

// bootstrapStore keeps the cluster's shared files in etcd, sealed with the
// token's secret (etcd.BootstrapKey), so that a snapshot can be restored on
// a new server given the token. It runs after etcd on every server.
func bootstrapStore(ec etcd.Config, paths datadir.Server, secret string) component.Component {
	return component.Func{N: "bootstrap data", F: func(ctx context.Context, ready func()) error {
		files, err := pki.ReadShared(paths.TLS)
		if err != nil {
			return err
		}
		ready() // nothing waits for it: the key derivation stays off the boot path
		for {
			wrote, err := ec.StoreBootstrap(ctx, secret, files)
			if wrote {
				klog.Infof("stored the cluster's CAs and service-account key in etcd, sealed with the token's secret (a snapshot restores on a new server given the token)")
			}
			if err == nil || ctx.Err() != nil {
				break
			}
			klog.Infof("waiting to store the bootstrap data in etcd: %v", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
		<-ctx.Done()
		return nil
	}}
}
