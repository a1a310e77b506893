package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// ErrRetry means the cluster cannot take a new member right now (another
// one is still a learner); asking again later will work.
var ErrRetry = errors.New("another server is still joining; retry shortly")

// Conflict is an AddLearner error that retrying cannot change.
type Conflict struct{ error }

// Permanent marks the error as final for the join API.
func (Conflict) Permanent() bool { return true }

// AddLearner adds a member named name at peerURL to the cluster as a
// learner, through this server's member, and returns the initial-cluster
// setting the new member starts with. A member of that name already added
// at the same URL (a join that did not finish) is reused; another member of
// that name is an error.
func (c Config) AddLearner(ctx context.Context, name, peerURL string) (string, error) {
	cc, err := c.ClientConfig()
	if err != nil {
		return "", err
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	list, err := cli.MemberList(ctx)
	if err != nil {
		return "", fmt.Errorf("etcd member list: %w", err)
	}
	members := list.Members
	found := false
	for _, m := range members {
		same := slices.Contains(m.PeerURLs, peerURL)
		switch {
		case m.Name == name && !same:
			return "", Conflict{fmt.Errorf("an etcd member named %s already exists at %s: delete that server's Node (which removes its member) before another server takes its name", name, strings.Join(m.PeerURLs, ","))}
		case same && m.Name != "" && m.Name != name:
			return "", Conflict{fmt.Errorf("etcd member %s already uses the peer address %s", m.Name, peerURL)}
		case same:
			found = true
		}
	}
	if !found {
		resp, err := cli.MemberAddAsLearner(ctx, []string{peerURL})
		if err != nil {
			if errors.Is(err, rpctypes.ErrGRPCTooManyLearners) || strings.Contains(err.Error(), "too many learner") {
				return "", ErrRetry
			}
			return "", fmt.Errorf("etcd member add: %w", err)
		}
		members = resp.Members
		klog.Infof("etcd: added %s (%s) as a learner", name, peerURL)
	}
	var cluster []string
	for _, m := range members {
		n := m.Name
		if slices.Contains(m.PeerURLs, peerURL) {
			n = name
		}
		if n == "" {
			continue // another member that never started
		}
		for _, u := range m.PeerURLs {
			cluster = append(cluster, n+"="+u)
		}
	}
	sort.Strings(cluster)
	return strings.Join(cluster, ","), nil
}

// waitVoter holds a member that joined as a learner until the leader has
// promoted it: a learner serves no client requests, so the apiserver must
// not start on it before.
func (c Config) waitVoter(ctx context.Context, e *embed.Etcd) error {
	if !e.Server.IsLearner() {
		return nil
	}
	start := time.Now()
	klog.Infof("etcd: this member is a learner, catching up with the cluster; waiting to be promoted to voter")
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for e.Server.IsLearner() {
		select {
		case <-ctx.Done():
			return nil
		case err := <-e.Err():
			return err
		case <-tick.C:
		}
		if time.Since(start) > 10*time.Minute {
			return errors.New("etcd: still a learner after 10 minutes: is a server of the cluster reachable on its peer port?")
		}
	}
	klog.Infof("etcd: promoted to voter after %.1fs", time.Since(start).Seconds())
	return nil
}

// updatePeerURL makes the member's advertised peer URL the configured one:
// a single server that starts a cluster (--cluster-init) moves its peer
// address from loopback to the node IP.
func (c Config) updatePeerURL(ctx context.Context, e *embed.Etcd) error {
	want := c.PeerURL()
	m := e.Server.Cluster().Member(e.Server.MemberID())
	if m == nil || slices.Equal(m.PeerURLs, []string{want}) {
		return nil
	}
	cli := v3client.New(e.Server)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := cli.MemberUpdate(ctx, uint64(e.Server.MemberID()), []string{want}); err != nil {
		return fmt.Errorf("etcd: moving this member's peer address to %s: %w", want, err)
	}
	klog.Infof("etcd: this member's peer address is now %s (was %s)", want, strings.Join(m.PeerURLs, ","))
	return nil
}

// StalledLearnerAfter is how long a learner may stay unpromoted before the
// leader removes it: a server that was added but never started, or never
// caught up, would otherwise block every later join (etcd takes one learner
// at a time).
var StalledLearnerAfter = 5 * time.Minute

// promoteLearners runs on every server and acts on the raft leader: a
// learner that has caught up is promoted to voter. etcd refuses to promote
// one that has not; it is tried again 2 s later, and removed once it has
// been a learner for StalledLearnerAfter.
func (c Config) promoteLearners(ctx context.Context, e *embed.Etcd) {
	cli := v3client.New(e.Server)
	defer cli.Close()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	seen := map[uint64]time.Time{} // learners, when this leader first saw them
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.Server.StopNotify():
			return
		case <-tick.C:
		}
		if e.Server.Leader() != e.Server.MemberID() {
			clear(seen)
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		list, err := cli.MemberList(rctx)
		if err == nil {
			learners := map[uint64]time.Time{}
			for _, m := range list.Members {
				if !m.IsLearner {
					continue
				}
				name := m.Name
				if name == "" {
					name = "(never started)"
				}
				if m.Name != "" {
					_, err := cli.MemberPromote(rctx, m.ID)
					if err == nil {
						klog.Infof("etcd: promoted learner %s (%s) to voter", m.Name, strings.Join(m.PeerURLs, ","))
						continue
					}
					klog.V(2).Infof("etcd: learner %s not promoted yet: %v", m.Name, err)
				}
				since, ok := seen[m.ID]
				if !ok {
					since = time.Now()
				}
				learners[m.ID] = since
				if time.Since(since) < StalledLearnerAfter {
					continue
				}
				if _, err := cli.MemberRemove(rctx, m.ID); err != nil {
					klog.Warningf("etcd: removing stalled learner %s: %v", name, err)
					continue
				}
				delete(learners, m.ID)
				klog.Warningf("etcd: removed learner %s (%s): not caught up after %s, it blocked other servers from joining; that server can join again once its %s folder is deleted",
					name, strings.Join(m.PeerURLs, ","), StalledLearnerAfter, "<data-dir>/server/db")
			}
			seen = learners
		}
		cancel()
	}
}

// tombstone records that this member was removed from the cluster: the
// server then refuses to start until its etcd data is deleted.
func (c Config) tombstone() string { return filepath.Join(filepath.Dir(c.DataDir), "removed") }

func (c Config) removedError() error {
	return fmt.Errorf("this server's etcd member was removed from the cluster (its Node was deleted): to rejoin, stop distro, delete %s and start it with --server https://<a server>:6443 --token <token>", filepath.Dir(c.DataDir))
}

// checkRemoved turns etcd stopping because this member was removed into
// the error that says how to rejoin, and leaves a tombstone.
func (c Config) checkRemoved(e *embed.Etcd, err error) error {
	removed := e.Server.IsIDRemoved(uint64(e.Server.MemberID())) ||
		(err != nil && strings.Contains(err.Error(), "permanently removed"))
	if !removed {
		return err
	}
	os.WriteFile(c.tombstone(), []byte("this etcd member was removed from the cluster\n"), 0o600)
	return c.removedError()
}

// Node annotations and finalizer that tie a server's Node to its member.
const (
	MemberAnnotation = "etcd.distro.io/member-name"
	MemberFinalizer  = "etcd.distro.io/member"
)

// NodeMarker, on every server of a cluster, marks the server's Node with
// its etcd member name and a finalizer, so deleting the Node removes the
// member (MemberRemover).
type NodeMarker struct {
	Client kubernetes.Interface
	Node   string
	Member string
}

// Name implements component.Component.
func (m *NodeMarker) Name() string { return "etcd member on the Node" }

// Run implements component.Component.
func (m *NodeMarker) Run(ctx context.Context, ready func()) error {
	ready()
	for ctx.Err() == nil {
		err := func() error {
			n, err := m.Client.CoreV1().Nodes().Get(ctx, m.Node, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if n.DeletionTimestamp != nil || (n.Annotations[MemberAnnotation] == m.Member && slices.Contains(n.Finalizers, MemberFinalizer)) {
				return nil
			}
			// Only once the kubelet has registered the node and it is
			// Ready: the kubelet's own start-up updates come first.
			ready := false
			for _, c := range n.Status.Conditions {
				ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
			}
			if !ready {
				return fmt.Errorf("node %s not Ready yet", m.Node)
			}
			finalizers := n.Finalizers
			if !slices.Contains(finalizers, MemberFinalizer) {
				finalizers = append(slices.Clone(finalizers), MemberFinalizer)
			}
			patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
				"resourceVersion": n.ResourceVersion,
				"annotations":     map[string]string{MemberAnnotation: m.Member},
				"finalizers":      finalizers,
			}})
			_, err = m.Client.CoreV1().Nodes().Patch(ctx, m.Node, types.MergePatchType, patch, metav1.PatchOptions{})
			return err
		}()
		if err == nil {
			break
		}
		klog.V(2).Infof("marking node %s with its etcd member: %v", m.Node, err)
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	<-ctx.Done()
	return nil
}

// MemberRemover runs on one server (elected): when a server's Node is
// being deleted, it removes that server's etcd member, then the Node's
// finalizer. A member that is already gone only costs the finalizer, so a
// deletion never sticks.
type MemberRemover struct {
	Client kubernetes.Interface
	Etcd   Config
}

// Name implements component.Component.
func (r *MemberRemover) Name() string { return "etcd member removal" }

// Run implements component.Component.
func (r *MemberRemover) Run(ctx context.Context, ready func()) error {
	ready()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(3 * time.Second):
		}
		nodes, err := r.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for i := range nodes.Items {
			n := &nodes.Items[i]
			if n.DeletionTimestamp == nil || !slices.Contains(n.Finalizers, MemberFinalizer) {
				continue
			}
			if err := r.remove(ctx, n.Annotations[MemberAnnotation]); err != nil {
				klog.Warningf("node %s is being deleted: removing its etcd member: %v", n.Name, err)
				continue
			}
			n.Finalizers = slices.DeleteFunc(n.Finalizers, func(f string) bool { return f == MemberFinalizer })
			if _, err := r.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
				klog.Warningf("node %s: removing the finalizer %s: %v", n.Name, MemberFinalizer, err)
			}
		}
	}
}

func (r *MemberRemover) remove(ctx context.Context, name string) error {
	if name == "" {
		return nil
	}
	cc, err := r.Etcd.ClientConfig()
	if err != nil {
		return err
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	list, err := cli.MemberList(ctx)
	if err != nil {
		return err
	}
	for _, m := range list.Members {
		if m.Name != name {
			continue
		}
		if _, err := cli.MemberRemove(ctx, m.ID); err != nil {
			return err
		}
		klog.Infof("etcd: removed member %s (%s): its Node was deleted", name, strings.Join(m.PeerURLs, ","))
		return nil
	}
	klog.Infof("etcd: member %s is already gone", name)
	return nil
}
