// Package join is how agents join a cluster: the server's handlers, served
// in front of the apiserver on its own port, and the agent's client. The
// agent pins the server CA with the hash in its K10 token before it sends
// the token's secret; a per-node password keeps a second host from taking
// over an existing node's name.
package join

const (
	// CACertsPath serves the server CA bundle, unauthenticated.
	CACertsPath = "/cacerts"
	// NodePath issues a node's credentials and the cluster settings.
	NodePath = "/v1-distro/node"

	headerNodeName     = "Distro-Node-Name"
	headerNodePassword = "Distro-Node-Password"
	headerNodeIP       = "Distro-Node-Ip"
)

// NodeConfig is what an agent receives: its credentials (PEM) and the
// cluster settings the node needs.
type NodeConfig struct {
	ServerCA string `json:"serverCA"`
	ClientCA string `json:"clientCA"`

	KubeletCert        string `json:"kubeletCert"`
	KubeletKey         string `json:"kubeletKey"`
	KubeletServingCert string `json:"kubeletServingCert"`
	KubeletServingKey  string `json:"kubeletServingKey"`
	KubeProxyCert      string `json:"kubeProxyCert"`
	KubeProxyKey       string `json:"kubeProxyKey"`
	FlannelCert        string `json:"flannelCert"`
	FlannelKey         string `json:"flannelKey"`

	ClusterCIDR    string `json:"clusterCIDR"`
	ServiceCIDR    string `json:"serviceCIDR"`
	ClusterDNS     string `json:"clusterDNS"`
	ClusterDomain  string `json:"clusterDomain"`
	FlannelBackend string `json:"flannelBackend"`
}
