package snapshot

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// Schedule takes snapshots on a cron schedule, keeps the newest Retention
// of them and records each result as an Event on the server's Node.
type Schedule struct {
	Store     Store
	Cron      string // cron format, or @every <duration>
	Retention int
	Node      string
	Etcd      clientv3.Config
	Client    kubernetes.Interface // for Events; may be nil
}

// Name implements component.Component.
func (s *Schedule) Name() string { return "etcd snapshots" }

// Run implements component.Component.
func (s *Schedule) Run(ctx context.Context, ready func()) error {
	sched, err := cron.ParseStandard(s.Cron)
	if err != nil {
		return fmt.Errorf("--etcd-snapshot-schedule-cron %q: %v", s.Cron, err)
	}
	ready()
	for {
		next := sched.Next(time.Now())
		klog.V(2).Infof("next etcd snapshot at %s", next.Format(time.RFC3339))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(next)):
		}
		s.take(ctx)
	}
}

func (s *Schedule) take(ctx context.Context) {
	f, st, err := s.Store.Save(ctx, s.Etcd, ScheduledPrefix, s.Node)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		klog.Errorf("scheduled etcd snapshot failed: %v", err)
		Record(ctx, s.Client, s.Node, corev1.EventTypeWarning, "EtcdSnapshotFailed", err.Error())
		return
	}
	msg := Describe(f, st)
	klog.Infof("scheduled etcd snapshot saved: %s", msg)
	Record(ctx, s.Client, s.Node, corev1.EventTypeNormal, "EtcdSnapshotSaved", msg)
	deleted, err := s.Store.Prune(ScheduledPrefix, s.Retention)
	if err != nil {
		klog.Errorf("pruning etcd snapshots: %v", err)
	}
	if len(deleted) > 0 {
		klog.Infof("pruned etcd snapshots beyond the newest %d: %s", s.Retention, strings.Join(deleted, ", "))
	}
}

// Describe is the one-line summary of a saved snapshot.
func Describe(f File, st Status) string {
	return fmt.Sprintf("%s (%d bytes, revision %d, %d keys, hash %08x)", f.Path, f.Size, st.Revision, st.Keys, st.Hash)
}

// Record creates an Event about the node; failures are only logged (the
// snapshot itself is what matters).
func Record(ctx context.Context, c kubernetes.Interface, node, typ, reason, msg string) {
	if c == nil {
		return
	}
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: node + ".etcd-snapshot.", Namespace: metav1.NamespaceDefault},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: node, APIVersion: "v1"},
		Reason:         reason,
		Message:        msg,
		Type:           typ,
		Source:         corev1.EventSource{Component: "distro-etcd-snapshot", Host: node},
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.CoreV1().Events(metav1.NamespaceDefault).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		klog.Warningf("recording etcd snapshot event: %v", err)
	}
}
