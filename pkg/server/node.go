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
// local PKI, the runtime bundle, and the node components.
func nodeComponents(cfg *config.Server, certs *pki.ServerCerts, localURL string, start time.Time, admin kubernetes.Interface) ([]component.Component, error) {
	paths := datadir.NewAgent(cfg.DataDir)
	ips := uniqueIPs(cfg.NodeIP)
	nc, err := pki.EnsureNode(paths.Cred, certs.ServerCA, certs.ClientCA, cfg.NodeName, ips)
	if err != nil {
		return nil, fmt.Errorf("node certificates: %w", err)
	}
	caBundle := pki.Bundle(certs.ServerCA)
	creds := node.CredentialsIn(paths.Cred)
	if err := pki.WriteKubeconfig(creds.KubeletKubeconfig, 0o600, localURL, caBundle, nc.ClientCert, nc.ClientKey); err != nil {
		return nil, err
	}
	for user, path := range map[string]string{"kube-proxy": creds.KubeProxyKubeconfig, "flannel": creds.FlannelKubeconfig} {
		c := certs.Clients[user]
		if err := pki.WriteKubeconfig(path, 0o600, localURL, caBundle, c[0], c[1]); err != nil {
			return nil, err
		}
	}
	if err := fsutil.WriteFileAtomic(creds.ClientCA, certs.ClientCA.PEM, 0o644); err != nil {
		return nil, err
	}
	comps, err := node.Components(node.Config{
		Node: cfg.Node, IP: cfg.NodeIP, DataDir: cfg.DataDir,
		ClusterCIDR: cfg.ClusterCIDR, ServiceCIDR: cfg.ServiceCIDR, ClusterDNS: cfg.ClusterDNS, ClusterDomain: cfg.ClusterDomain,
		Creds: creds,
	})
	if err != nil {
		return nil, err
	}
	watch := node.ReadyLogger(admin, cfg.NodeName, start, map[string]string{ControlPlaneLabel: "true"})
	return append(comps, watch), nil
}
