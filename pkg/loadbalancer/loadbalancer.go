// Package loadbalancer is the agent's client-side load balancer: a TCP
// proxy on loopback in front of every server's apiserver. The kubelet,
// kube-proxy and flannel talk to it, so an agent keeps working when the
// server it joined through goes away. The server list comes from the
// `kubernetes` EndpointSlices, is kept in the agent's data dir, and its
// members are health-checked; each failover is logged.
package loadbalancer

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"distro/pkg/fsutil"
)

// DefaultPort is where the load balancer listens on 127.0.0.1.
const DefaultPort = 6444

// LB proxies TCP connections to the first reachable server.
type LB struct {
	Listen    string // 127.0.0.1:<port>
	StateFile string // the server list, JSON
	// Client lists the `kubernetes` EndpointSlices (through the load
	// balancer itself); nil keeps the list as it is.
	Client kubernetes.Interface

	mu      sync.Mutex
	servers []string // host:port
	healthy map[string]bool
	current string
	conns   map[string]map[net.Conn]struct{} // open proxied connections per server
}

// New returns a load balancer for the servers listed in stateFile, or for
// seed (host:port of the server joined first) when there is no list yet.
func New(listen, stateFile, seed string) *LB {
	l := &LB{Listen: listen, StateFile: stateFile, healthy: map[string]bool{}, conns: map[string]map[net.Conn]struct{}{}}
	var saved []string
	if data, err := os.ReadFile(stateFile); err == nil && json.Unmarshal(data, &saved) == nil && len(saved) > 0 {
		l.servers = saved
	} else {
		l.servers = []string{seed}
	}
	l.current = l.servers[0]
	return l
}

// Servers returns the current list, the one in use first.
func (l *LB) Servers() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []string{l.current}
	for _, s := range l.servers {
		if s != l.current {
			out = append(out, s)
		}
	}
	return out
}

// URL is the apiserver URL the node's components use.
func (l *LB) URL() string { return "https://" + l.Listen }

// Name implements component.Component.
func (l *LB) Name() string { return "load balancer" }

// Run implements component.Component.
func (l *LB) Run(ctx context.Context, ready func()) error {
	ln, err := net.Listen("tcp", l.Listen)
	if err != nil {
		return err
	}
	klog.Infof("load balancer on %s for the servers %v", l.Listen, l.Servers())
	ready()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	go l.healthLoop(ctx)
	if l.Client != nil {
		go l.serverLoop(ctx)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			klog.Warningf("load balancer: accept: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go l.proxy(c)
	}
}

// proxy connects c to the server in use, or to the next reachable one.
func (l *LB) proxy(c net.Conn) {
	for _, s := range l.Servers() {
		b, err := net.DialTimeout("tcp", s, time.Second)
		if err != nil {
			l.setHealth(s, false)
			continue
		}
		l.use(s)
		l.track(s, c, true)
		defer l.track(s, c, false)
		done := make(chan struct{}, 2)
		go func() { io.Copy(b, c); closeWrite(b); done <- struct{}{} }()
		go func() { io.Copy(c, b); closeWrite(c); done <- struct{}{} }()
		<-done
		<-done
		b.Close()
		c.Close()
		return
	}
	c.Close()
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
		return
	}
	c.Close()
}

func (l *LB) track(server string, c net.Conn, open bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns[server] == nil {
		l.conns[server] = map[net.Conn]struct{}{}
	}
	if open {
		l.conns[server][c] = struct{}{}
	} else {
		delete(l.conns[server], c)
	}
}

// use makes s the server in use. Switching away from a server closes the
// connections still open to it, so clients reconnect (through the new one)
// at once instead of waiting for their own timeouts.
func (l *LB) use(s string) {
	l.mu.Lock()
	old := l.current
	if old == s {
		l.mu.Unlock()
		return
	}
	l.current = s
	stale := l.conns[old]
	l.conns[old] = nil
	l.mu.Unlock()
	klog.Infof("load balancer: switched from %s to %s", old, s)
	for c := range stale {
		c.Close()
	}
}

func (l *LB) setHealth(s string, ok bool) {
	l.mu.Lock()
	was, known := l.healthy[s]
	l.healthy[s] = ok
	l.mu.Unlock()
	if known && was != ok {
		if ok {
			klog.Infof("load balancer: server %s is reachable again", s)
		} else {
			klog.Warningf("load balancer: server %s is unreachable", s)
		}
	}
}

// healthLoop dials every server every second and moves off the one in use
// when it stops answering.
func (l *LB) healthLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		servers := l.Servers()
		up := map[string]bool{}
		for _, s := range servers {
			c, err := net.DialTimeout("tcp", s, 500*time.Millisecond)
			if err == nil {
				c.Close()
				up[s] = true
			}
			l.setHealth(s, up[s])
		}
		if !up[servers[0]] {
			for _, s := range servers[1:] {
				if up[s] {
					l.use(s)
					break
				}
			}
		}
	}
}

// serverLoop keeps the server list in step with the `kubernetes`
// EndpointSlices (every apiserver's address), every 10 s.
func (l *LB) serverLoop(ctx context.Context) {
	for {
		l.refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
	}
}

func (l *LB) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	slices_, err := l.Client.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=kubernetes"})
	if err != nil {
		klog.V(2).Infof("load balancer: listing the servers: %v", err)
		return
	}
	var servers []string
	for _, es := range slices_.Items {
		port := 0
		for _, p := range es.Ports {
			if p.Port != nil && (p.Name == nil || *p.Name == "https") {
				port = int(*p.Port)
			}
		}
		if port == 0 {
			continue
		}
		for _, ep := range es.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				servers = append(servers, net.JoinHostPort(a, strconv.Itoa(port)))
			}
		}
	}
	if len(servers) > 0 {
		l.SetServers(servers)
	}
}

// SetServers replaces the list (the server in use stays first if it is
// still listed) and saves it.
func (l *LB) SetServers(servers []string) {
	slices.Sort(servers)
	servers = slices.Compact(servers)
	l.mu.Lock()
	if slices.Equal(servers, l.sorted()) {
		l.mu.Unlock()
		return
	}
	l.servers = servers
	if !slices.Contains(servers, l.current) {
		l.current = servers[0]
	}
	l.mu.Unlock()
	klog.Infof("load balancer: servers now %v", l.Servers())
	if data, err := json.Marshal(servers); err == nil {
		if err := fsutil.WriteFileAtomic(l.StateFile, data, 0o600); err != nil {
			klog.Warningf("load balancer: saving the server list: %v", err)
		}
	}
}

func (l *LB) sorted() []string {
	out := slices.Clone(l.servers)
	slices.Sort(out)
	return out
}
