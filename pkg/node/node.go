// Package node runs the node side of distro: containerd, the image import,
// the kubelet, kube-proxy, pod networking and NetworkPolicy enforcement.
// The server and the agent run the same components; only where the
// credentials come from differs.
package node

import (
	"context"
	"path/filepath"

	"distro/manifests"
	"distro/pkg/bundle"
	"distro/pkg/component"
	"distro/pkg/config"
	"distro/pkg/datadir"
	"distro/pkg/kubeclient"
	"distro/pkg/node/cni"
	"distro/pkg/node/containerd"
	"distro/pkg/node/images"
	"distro/pkg/node/kubelet"
	"distro/pkg/node/mirror"
	"distro/pkg/node/netpol"
	"distro/pkg/node/proxy"
	"distro/pkg/node/registries"
	"distro/pkg/pki"
)

// Config is what a node needs: its flags, where it lives, the cluster's
// settings and its credentials.
type Config struct {
	config.Node
	IP            string
	DataDir       string
	ClusterCIDR   string
	ServiceCIDR   string
	ClusterDNS    string
	ClusterDomain string
	Creds         Credentials
}

// Credentials are the node's files, written by the server's PKI or fetched
// from the join API.
type Credentials struct {
	Dir                 string // the folder holding them all
	ServerCA            string // the CA of the apiserver's serving certificate
	KubeletKubeconfig   string
	KubeProxyKubeconfig string
	FlannelKubeconfig   string
	ClientCA            string
	ServingCert         string
	ServingKey          string
}

// CredentialsIn returns the standard credential file paths in dir (the
// server's PKI and the agent's join write the same files).
func CredentialsIn(dir string) Credentials {
	return Credentials{
		Dir:                 dir,
		ServerCA:            filepath.Join(dir, "server-ca.crt"),
		KubeletKubeconfig:   filepath.Join(dir, "kubelet.kubeconfig"),
		KubeProxyKubeconfig: filepath.Join(dir, "kube-proxy.kubeconfig"),
		FlannelKubeconfig:   filepath.Join(dir, "flannel.kubeconfig"),
		ClientCA:            filepath.Join(dir, "client-ca.crt"),
		ServingCert:         filepath.Join(dir, "kubelet-serving.crt"),
		ServingKey:          filepath.Join(dir, "kubelet-serving.key"),
	}
}

// WriteKubeconfigs writes the kubelet's, kube-proxy's and flannel's
// kubeconfigs for the apiserver at server, naming the certificate files in
// the folder: a renewed certificate is picked up without a restart.
func (c Credentials) WriteKubeconfigs(server string) error {
	for path, leaf := range map[string]string{
		c.KubeletKubeconfig: pki.KubeletClient, c.KubeProxyKubeconfig: pki.KubeProxy, c.FlannelKubeconfig: pki.Flannel,
	} {
		cert, key := filepath.Join(c.Dir, leaf+".crt"), filepath.Join(c.Dir, leaf+".key")
		if err := pki.WriteKubeconfigFiles(path, server, c.ServerCA, cert, key); err != nil {
			return err
		}
	}
	return nil
}

// Components starts extracting the runtime bundle and returns the node's
// components in boot order: first the container runtime (containerd, which
// waits for the bundle, the registry mirror and the image import), which
// needs no apiserver and may start ahead of the control plane, then the
// rest.
func Components(cfg Config) (runtime component.Component, rest []component.Component, err error) {
	rt, bundleReady, err := bundle.Start(cfg.DataDir)
	if err != nil {
		return nil, nil, err
	}
	kubeletArgs, _ := config.ParseArgs("--kubelet-arg", cfg.KubeletArgs) // checked by Validate
	proxyArgs, _ := config.ParseArgs("--kube-proxy-arg", cfg.KubeProxyArgs)
	paths := datadir.NewAgent(cfg.DataDir)
	importer := images.NewImporter(paths.Socket, paths.ImportRecord, rt.Images(), paths.Images)
	// NetworkPolicies: the controller reads pods, namespaces and policies
	// with the node's pod-network identity (RBAC distro:network-policy);
	// turned off, it leaves no rule behind.
	policy := netpol.Disabled()
	if !cfg.DisableNetworkPolicy {
		policy = &netpol.Controller{NodeName: cfg.NodeName, Kubeconfig: cfg.Creds.FlannelKubeconfig}
	}
	embedded, peers, err := embeddedRegistry(cfg, paths)
	if err != nil {
		return nil, nil, err
	}
	runtime = component.Group("container runtime",
		&containerd.Containerd{Paths: paths, Bin: rt.Bin(), BinReady: bundleReady,
			Registries: cfg.RegistriesConfig, RegistriesRequired: cfg.RegistriesConfig != registries.DefaultPath, Peers: peers,
			Debug: cfg.EnablePprof},
		embedded,
		importer,
		&containerd.AddonPages{Socket: paths.Socket, Images: manifests.AddonImages(), Settle: containerd.AddonSettle},
	)
	return runtime, []component.Component{
		&cni.Network{Paths: paths, NodeName: cfg.NodeName, NodeIP: cfg.IP, Kubeconfig: cfg.Creds.FlannelKubeconfig, ClusterCIDR: cfg.ClusterCIDR, ServiceCIDR: cfg.ServiceCIDR, Before: importer.Done()},
		&kubelet.Kubelet{
			Paths: paths, NodeName: cfg.NodeName, NodeIP: cfg.IP,
			ClusterDNS: cfg.ClusterDNS, ClusterDomain: cfg.ClusterDomain,
			Labels: cfg.NodeLabels, Taints: cfg.NodeTaints, ResolvConf: cfg.ResolvConf, Extra: kubeletArgs,
			Kubeconfig: cfg.Creds.KubeletKubeconfig, ClientCA: cfg.Creds.ClientCA,
			ServingCert: cfg.Creds.ServingCert, ServingKey: cfg.Creds.ServingKey,
		},
		&proxy.Proxy{
			NodeName: cfg.NodeName, ClusterCIDR: cfg.ClusterCIDR, Mode: cfg.ProxyMode,
			Kubeconfig: cfg.Creds.KubeProxyKubeconfig, Extra: proxyArgs,
		},
		policy,
	}, nil
}

// embeddedRegistry is the node's registry mirror and the peers its
// containerd tries first (a no-op component and nil when disabled).
func embeddedRegistry(cfg Config, paths datadir.Agent) (component.Component, func() *registries.Peers, error) {
	if cfg.DisableEmbeddedRegistry {
		return component.Func{N: "registry mirror (disabled)", F: func(ctx context.Context, ready func()) error {
			ready()
			<-ctx.Done()
			return nil
		}}, nil, nil
	}
	// The pod network's identity reads every Node (a kubelet's reads only
	// its own).
	client, err := kubeclient.FromKubeconfig(cfg.Creds.FlannelKubeconfig)
	if err != nil {
		return nil, nil, err
	}
	m := &mirror.Mirror{
		NodeName: cfg.NodeName, Port: mirror.DefaultPort, Socket: paths.Socket, Client: client,
		ServingCert: cfg.Creds.ServingCert, ServingKey: cfg.Creds.ServingKey, ClientCA: cfg.Creds.ClientCA,
	}
	peers := func() *registries.Peers {
		others := m.Peers()
		return &registries.Peers{
			Endpoints: append([]string{mirror.Endpoint("127.0.0.1", mirror.DefaultPort)}, others...),
			CA:        cfg.Creds.ServerCA,
			Cert:      filepath.Join(cfg.Creds.Dir, pki.KubeletClient+".crt"),
			Key:       filepath.Join(cfg.Creds.Dir, pki.KubeletClient+".key"),
		}
	}
	return m, peers, nil
}
