// Package agent wires `distro agent`: join the cluster, then run the same
// node components as a server's node, with credentials from the join API.
package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"distro/pkg/certrenew"
	"distro/pkg/checkconfig"
	"distro/pkg/component"
	"distro/pkg/config"
	"distro/pkg/datadir"
	"distro/pkg/fsutil"
	"distro/pkg/join"
	"distro/pkg/kubeclient"
	"distro/pkg/loadbalancer"
	"distro/pkg/node"
	"distro/pkg/pki"
	"distro/pkg/profiling"
	"distro/pkg/token"
)

// Run joins the cluster and runs the node until ctx ends. cfg must be
// validated.
func Run(ctx context.Context, cfg *config.Agent) error {
	start := time.Now()
	tok, err := token.Parse(cfg.Token)
	if err != nil {
		return fmt.Errorf("--token: %w", err)
	}
	// What `distro check-config agent` checks, before anything is written.
	if err := checkconfig.Preflight(checkconfig.ForAgent(cfg)); err != nil {
		return err
	}
	paths := datadir.NewAgent(cfg.DataDir)
	if err := os.MkdirAll(paths.Cred, 0o700); err != nil {
		return fmt.Errorf("--data-dir %s is not writable: %v", cfg.DataDir, err)
	}
	password, err := nodePassword(filepath.Join(paths.Root, "node-password"))
	if err != nil {
		return err
	}

	// 1. The load balancer in front of the servers: the one joined first,
	// then every server the cluster lists (saved in the data dir).
	seed, err := url.Parse(cfg.Server)
	if err != nil {
		return fmt.Errorf("--server: %w", err)
	}
	lb := loadbalancer.New(net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.LBPort)), filepath.Join(paths.Etc, "servers.json"), seed.Host)

	// 2. Join: credentials and cluster settings from a server (--server,
	// else any server known from an earlier start).
	klog.Infof("joining %s as node %s", cfg.Server, cfg.NodeName)
	jc := &join.Client{Server: cfg.Server, Token: tok, NodeName: cfg.NodeName, NodePassword: password, NodeIPs: []string{cfg.NodeIP}}
	for _, s := range lb.Servers() {
		if s != seed.Host {
			jc.Fallback = append(jc.Fallback, "https://"+s)
		}
	}
	nc, err := jc.Join(ctx)
	if err != nil {
		return err
	}
	creds, err := writeCreds(paths, lb.URL(), nc)
	if err != nil {
		return err
	}
	if lb.Client, err = kubeclient.FromKubeconfig(creds.KubeProxyKubeconfig); err != nil {
		return err
	}
	klog.Infof("joined %s in %.2f s", cfg.Server, time.Since(start).Seconds())

	// 3. The node, talking to the servers through the load balancer.
	runtime, comps, err := node.Components(node.Config{
		Node: cfg.Node, IP: cfg.NodeIP, DataDir: cfg.DataDir,
		ClusterCIDR: nc.ClusterCIDR, ServiceCIDR: nc.ServiceCIDR, ClusterDNS: nc.ClusterDNS, ClusterDomain: nc.ClusterDomain,
		Creds: creds,
	})
	if err != nil {
		return err
	}
	client, err := kubeclient.FromKubeconfig(creds.KubeletKubeconfig)
	if err != nil {
		return err
	}
	comps = append([]component.Component{lb, runtime}, comps...)
	comps = append(comps, node.ReadyLogger(client, cfg.NodeName, start, nil), renewer(jc, paths, lb.URL(), client, cfg.NodeName))
	return component.Starter{}.Run(ctx, comps, profiling.AfterBoot)
}

// nodePassword returns this host's node password, made once: the server
// remembers it per node name, so another host cannot take the name over.
func nodePassword(path string) (string, error) {
	if data, err := os.ReadFile(path); err == nil {
		if p := strings.TrimSpace(string(data)); len(p) >= 16 {
			return p, nil
		}
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	p := hex.EncodeToString(b)
	return p, fsutil.WriteFileAtomic(path, []byte(p+"\n"), 0o600)
}

// writeCreds writes what the join returned as the node's files: each
// certificate and key, the CAs, and kubeconfigs naming them.
func writeCreds(paths datadir.Agent, server string, nc *join.NodeConfig) (node.Credentials, error) {
	c := node.CredentialsIn(paths.Cred)
	for name, pair := range nc.Leaves() {
		if err := pki.WriteLeaf(c.Dir, name, pair[0], pair[1]); err != nil {
			return c, err
		}
	}
	for path, pem := range map[string]string{c.ClientCA: nc.ClientCA, c.ServerCA: nc.ServerCA} {
		if err := fsutil.WriteFileAtomic(path, []byte(pem), 0o644); err != nil {
			return c, err
		}
	}
	return c, c.WriteKubeconfigs(server)
}

// renewer renews the node's certificates through the join API, with the
// token it joined with: every certificate is reissued at once.
func renewer(jc *join.Client, paths datadir.Agent, server string, client kubernetes.Interface, nodeName string) *certrenew.Renewer {
	return &certrenew.Renewer{
		Dirs: []string{paths.Cred}, Dir: paths.Cred, Client: client, NodeName: nodeName,
		Renew: func(ctx context.Context, force func(string) bool) ([]string, error) {
			certs, err := pki.ListCerts(paths.Cred)
			if err != nil {
				return nil, err
			}
			due, now := false, time.Now()
			for _, c := range certs {
				name := strings.TrimSuffix(filepath.Base(c.File), ".crt")
				due = due || (!c.IsCA && (c.Status(now) != "ok" || (force != nil && force(name))))
			}
			if !due {
				return nil, nil
			}
			ctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			nc, err := jc.Join(ctx)
			if err != nil {
				return nil, fmt.Errorf("renew through the join API: %w", err)
			}
			if _, err := writeCreds(paths, server, nc); err != nil {
				return nil, err
			}
			var renewed []string
			for name := range nc.Leaves() {
				renewed = append(renewed, name)
			}
			sort.Strings(renewed)
			return renewed, nil
		},
	}
}
