// Package node runs the node side of distro: containerd, the image import,
// the kubelet, kube-proxy and pod networking. The server and the agent run
// the same components; only where the credentials come from differs.
package node

import (
	"distro/pkg/bundle"
	"distro/pkg/component"
	"distro/pkg/config"
	"distro/pkg/datadir"
	"distro/pkg/node/cni"
	"distro/pkg/node/containerd"
	"distro/pkg/node/images"
	"distro/pkg/node/kubelet"
	"distro/pkg/node/proxy"
)

// Config is what a node needs.
type Config struct {
	Name          string
	IP            string
	DataDir       string
	ClusterCIDR   string
	ClusterDNS    string
	ClusterDomain string
	Labels        []string
	Taints        []string
	KubeletArgs   []config.Arg
	KubeProxyArgs []config.Arg
	ProxyMode     string
	Creds         Credentials
}

// Credentials are the node's files, written by the server's PKI or fetched
// from the join API.
type Credentials struct {
	KubeletKubeconfig   string
	KubeProxyKubeconfig string
	FlannelKubeconfig   string
	ClientCA            string
	ServingCert         string
	ServingKey          string
}

// Components returns the node's components in boot order. podCIDR is
// looked up by the CNI component through the kubelet kubeconfig.
func Components(cfg Config, rt bundle.Dir) []component.Component {
	paths := datadir.NewAgent(cfg.DataDir)
	return []component.Component{
		&containerd.Containerd{Paths: paths, Bin: rt.Bin()},
		&images.Importer{Socket: paths.Socket, Dirs: []string{rt.Images(), paths.Images}},
		&cni.Network{Paths: paths, NodeName: cfg.Name, NodeIP: cfg.IP, Kubeconfig: cfg.Creds.FlannelKubeconfig, ClusterCIDR: cfg.ClusterCIDR},
		&kubelet.Kubelet{
			Paths: paths, NodeName: cfg.Name, NodeIP: cfg.IP,
			ClusterDNS: cfg.ClusterDNS, ClusterDomain: cfg.ClusterDomain,
			Labels: cfg.Labels, Taints: cfg.Taints, Extra: cfg.KubeletArgs,
			Kubeconfig: cfg.Creds.KubeletKubeconfig, ClientCA: cfg.Creds.ClientCA,
			ServingCert: cfg.Creds.ServingCert, ServingKey: cfg.Creds.ServingKey,
		},
		&proxy.Proxy{
			NodeName: cfg.Name, ClusterCIDR: cfg.ClusterCIDR, Mode: cfg.ProxyMode,
			Kubeconfig: cfg.Creds.KubeProxyKubeconfig, Extra: cfg.KubeProxyArgs,
		},
	}
}
