package checkconfig

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"distro/pkg/config"
	"distro/pkg/node/mirror"
)

// Port is a TCP port a component listens on.
type Port struct {
	What  string // the flag that sets it, or the component
	Host  string // the address it listens on
	Port  int
	Level Status // Missing when the component cannot run without it, else Warn
	// AtStart: also checked when the server starts (the control plane's
	// ports). The node's ports are only listed by check-config: a start
	// that finds them taken still gets as far as its join.
	AtStart bool
}

// ForServer returns the checks that apply to `distro server` with cfg:
// the control plane's ports, and the node's checks unless --disable-agent
// (or --cluster-reset, which runs etcd only).
func ForServer(cfg *config.Server) Options {
	o := Options{Node: !cfg.DisableAgent && !cfg.ClusterReset, ProxyMode: cfg.ProxyMode}
	o.Ports = []Port{
		{"--https-listen-port", cfg.BindAddress, cfg.HTTPSListenPort, Missing, true},
		{"--etcd-client-port", "127.0.0.1", cfg.EtcdClientPort, Missing, true},
		{"--etcd-peer-port", "127.0.0.1", cfg.EtcdPeerPort, Missing, true},
		{"kube-controller-manager", "127.0.0.1", 10257, Missing, true},
		{"kube-scheduler", "127.0.0.1", 10259, Missing, true},
	}
	if o.Node {
		o.Ports = append(o.Ports, nodePorts(cfg.Node)...)
	}
	return o
}

// ForAgent returns the checks that apply to `distro agent` with cfg.
func ForAgent(cfg *config.Agent) Options {
	o := Options{Node: true, ProxyMode: cfg.ProxyMode}
	o.Ports = append([]Port{{"--lb-server-port", "127.0.0.1", cfg.LBPort, Missing, false}}, nodePorts(cfg.Node)...)
	return o
}

// nodePorts are the kubelet's and kube-proxy's ports. The kubelet's
// serving port (--kubelet-arg port=N) is required: the kubelet ends the
// process when it cannot listen. The health and metrics ports only cost
// those endpoints.
func nodePorts(n config.Node) []Port {
	kubelet, healthz := 10250, 10248
	args, _ := config.ParseArgs("--kubelet-arg", n.KubeletArgs)
	for _, a := range args {
		p, err := strconv.Atoi(a.Value)
		if err != nil {
			continue
		}
		switch a.Key {
		case "port":
			kubelet = p
		case "healthz-port":
			healthz = p
		}
	}
	ports := []Port{
		{"kubelet", "0.0.0.0", kubelet, Missing, false},
		{"kubelet healthz", "127.0.0.1", healthz, Warn, false},
		{"kube-proxy healthz", "127.0.0.1", 10256, Warn, false},
		{"kube-proxy metrics", "127.0.0.1", 10249, Warn, false},
	}
	if !n.DisableEmbeddedRegistry {
		ports = append(ports, Port{"embedded registry mirror (--disable-embedded-registry)", "0.0.0.0", mirror.DefaultPort, Missing, false})
	}
	return ports
}

// Validate checks what the options carry from flags: port numbers and the
// kube-proxy mode.
func (o Options) Validate() error {
	for _, p := range o.Ports {
		if p.Port < 1 || p.Port > 65535 {
			return fmt.Errorf("%s %d is not a port number (1-65535)", p.What, p.Port)
		}
		if net.ParseIP(p.Host) == nil {
			return fmt.Errorf("%s: %q is not an IP address", p.What, p.Host)
		}
	}
	if o.Node && o.ProxyMode != "iptables" && o.ProxyMode != "nftables" {
		return fmt.Errorf("--kube-proxy-mode %q: must be iptables or nftables", o.ProxyMode)
	}
	return nil
}

// checkPorts tries to listen on each port.
func checkPorts(ports []Port) []Result {
	var out []Result
	seen := map[int]string{}
	for _, p := range ports {
		name := fmt.Sprintf("port %d (%s)", p.Port, p.What)
		if other, dup := seen[p.Port]; dup {
			out = append(out, Result{name, Missing, fmt.Sprintf("%s %d is also used by %s: choose another port", p.What, p.Port, other)})
			continue
		}
		seen[p.Port] = p.What
		l, err := net.Listen("tcp", net.JoinHostPort(p.Host, strconv.Itoa(p.Port)))
		if err != nil {
			out = append(out, Result{name, p.Level, fmt.Sprintf("already in use or not available on %s: %v; stop what listens there or choose another port", p.Host, Cause(err))})
			continue
		}
		l.Close()
		out = append(out, Result{name, OK, "free on " + p.Host})
	}
	return out
}

// Cause is the system error under the net and os wrappers ("address
// already in use", "permission denied"), for one-line messages.
func Cause(err error) error {
	for {
		switch e := err.(type) {
		case *net.OpError:
			err = e.Err
		case *os.PathError:
			return e.Err
		case *os.SyscallError:
			return e.Err
		default:
			return err
		}
	}
}
