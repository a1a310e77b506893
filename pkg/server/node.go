package server

import (
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"

	"distro/pkg/component"
	"distro/pkg/config"
	"distro/pkg/datadir"
	"distro/pkg/fsutil"
	"distro/pkg/node"
	"distro/pkg/pki"
)

// ControlPlaneLabel marks server nodes.
const ControlPlaneLabel = "node-role.kubernetes.io/control-plane"

// nodeComponents prepares the server's own node: credentials from the
// local PKI, the runtime bundle, and the node components: the container
// runtime, which needs no apiserver, and the rest, which do.
func nodeComponents(cfg *config.Server, certs *pki.ServerCerts, localURL string, start time.Time, admin kubernetes.Interface) (component.Component, []component.Component, error) {
	creds := node.CredentialsIn(datadir.NewAgent(cfg.DataDir).Cred)
	if err := writeNodeCreds(cfg, certs, creds, localURL); err != nil {
		return nil, nil, err
	}
	runtime, comps, err := node.Components(node.Config{
		Node: cfg.Node, IP: cfg.NodeIP, DataDir: cfg.DataDir,
		ClusterCIDR: cfg.ClusterCIDR, ServiceCIDR: cfg.ServiceCIDR, ClusterDNS: cfg.ClusterDNS, ClusterDomain: cfg.ClusterDomain,
		Creds: creds,
	})
	if err != nil {
		return nil, nil, err
	}
	watch := node.ReadyLogger(admin, cfg.NodeName, start, map[string]string{ControlPlaneLabel: "true"})
	return runtime, append(comps, watch), nil
}

// writeNodeCreds writes the server's own node credentials from the local
// PKI: its certificates (reissuing the stale ones), the CAs and the
// kubeconfigs naming them.
func writeNodeCreds(cfg *config.Server, certs *pki.ServerCerts, creds node.Credentials, localURL string) error {
	if _, err := renewNode(cfg, certs, creds, nil); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(creds.ClientCA, certs.ClientCA.PEM, 0o644); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(creds.ServerCA, certs.ServerCA.PEM, 0o644); err != nil {
		return err
	}
	return creds.WriteKubeconfigs(localURL)
}

// renewNode reissues the server's node certificates that are stale or that
// force selects, and returns their names.
func renewNode(cfg *config.Server, certs *pki.ServerCerts, creds node.Credentials, force func(string) bool) ([]string, error) {
	renewed, err := pki.EnsureNode(creds.Dir, certs.ServerCA, certs.ClientCA, cfg.NodeName, uniqueIPs(cfg.NodeIP), force)
	if err != nil {
		return renewed, fmt.Errorf("node certificates: %w", err)
	}
	return renewed, nil
}
