package server

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"distro/pkg/bundle"
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
	rt, err := bundle.Extract(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	ips := uniqueIPs(cfg.NodeIP)
	nc, err := pki.EnsureNode(paths.Cred, certs.ServerCA, certs.ClientCA, cfg.NodeName, ips)
	if err != nil {
		return nil, fmt.Errorf("node certificates: %w", err)
	}
	caBundle := pki.Bundle(certs.ServerCA)
	creds := node.Credentials{
		KubeletKubeconfig:   filepath.Join(paths.Cred, "kubelet.kubeconfig"),
		KubeProxyKubeconfig: filepath.Join(paths.Cred, "kube-proxy.kubeconfig"),
		FlannelKubeconfig:   filepath.Join(paths.Cred, "flannel.kubeconfig"),
		ClientCA:            filepath.Join(paths.Cred, "client-ca.crt"),
		ServingCert:         filepath.Join(paths.Cred, "kubelet-serving.crt"),
		ServingKey:          filepath.Join(paths.Cred, "kubelet-serving.key"),
	}
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
	kubeletArgs, _ := config.ParseArgs("--kubelet-arg", cfg.KubeletArgs)
	proxyArgs, _ := config.ParseArgs("--kube-proxy-arg", cfg.KubeProxyArgs)
	comps := node.Components(node.Config{
		Name: cfg.NodeName, IP: cfg.NodeIP, DataDir: cfg.DataDir,
		ClusterCIDR: cfg.ClusterCIDR, ClusterDNS: cfg.ClusterDNS, ClusterDomain: cfg.ClusterDomain,
		Labels: cfg.NodeLabels, Taints: cfg.NodeTaints, KubeletArgs: kubeletArgs, KubeProxyArgs: proxyArgs,
		ProxyMode: cfg.ProxyMode, Creds: creds,
	}, rt)
	watch := component.Func{N: "node " + cfg.NodeName, F: func(ctx context.Context, ready func()) error {
		return watchNode(ctx, admin, cfg.NodeName, start, ready)
	}}
	return append(comps, watch), nil
}

// watchNode labels the server's node as control plane (the kubelet may not
// set node-role labels itself) and logs when it turns Ready.
func watchNode(ctx context.Context, client kubernetes.Interface, name string, start time.Time, ready func()) error {
	ready()
	labeled, logged := false, false
	_ = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		if !labeled {
			if n.Labels[ControlPlaneLabel] != "true" {
				patch := fmt.Sprintf(`{"metadata":{"labels":{%q:"true"}}}`, ControlPlaneLabel)
				if _, err := client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
					return false, nil
				}
			}
			labeled = true
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && !logged {
				klog.Infof("node %s Ready in %.2f s", name, time.Since(start).Seconds())
				logged = true
			}
		}
		return labeled && logged, nil
	})
	<-ctx.Done()
	return nil
}
