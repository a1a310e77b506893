package secretsencrypt

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// secretsPrefix is where the apiserver keeps Secrets in etcd.
const secretsPrefix = "/registry/secrets/"

// Stored counts the Secrets in etcd by what they were written with.
type Stored struct {
	Total int
	By    map[string]int // Describe(value) → count
	// Stale are the Secrets (namespace/name) not written with the active
	// key.
	Stale []string
}

// Scan reads every Secret's stored value from etcd, a page at a time.
func Scan(ctx context.Context, cli *clientv3.Client, active Active) (Stored, error) {
	st := Stored{By: map[string]int{}}
	key, end := secretsPrefix, clientv3.GetPrefixRangeEnd(secretsPrefix)
	for {
		resp, err := cli.Get(ctx, key, clientv3.WithRange(end), clientv3.WithLimit(500))
		if err != nil {
			return st, fmt.Errorf("reading Secrets from etcd: %w", err)
		}
		for _, kv := range resp.Kvs {
			st.Total++
			st.By[Describe(kv.Value)]++
			if !active.Current(kv.Value) {
				st.Stale = append(st.Stale, strings.TrimPrefix(string(kv.Key), secretsPrefix))
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return st, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// String is one line: "3 Secrets: 2 aescbc key k1, 1 plain text".
func (s Stored) String() string {
	var parts []string
	for d, n := range s.By {
		parts = append(parts, fmt.Sprintf("%d %s", n, d))
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return fmt.Sprintf("%d Secrets", s.Total)
	}
	return fmt.Sprintf("%d Secrets: %s", s.Total, strings.Join(parts, ", "))
}

// Rewrite writes the named Secrets (namespace/name) again through the
// API, 8 at a time: the apiserver stores an unchanged object anew when it
// was read with a key that is not the active one, so each ends under the
// active key. A Secret deleted meanwhile is skipped. It returns how many it
// wrote.
func Rewrite(ctx context.Context, client kubernetes.Interface, names []string) (int, error) {
	var wrote atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, nn := range names {
		g.Go(func() error {
			ok, err := rewriteOne(ctx, client, nn)
			if ok {
				wrote.Add(1)
			}
			return err
		})
	}
	err := g.Wait()
	return int(wrote.Load()), err
}

func rewriteOne(ctx context.Context, client kubernetes.Interface, nn string) (bool, error) {
	ns, name, _ := strings.Cut(nn, "/")
	for attempt := 0; ; attempt++ {
		s, err := client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			_, err = client.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
		}
		switch {
		case err == nil:
			return true, nil
		case apierrors.IsNotFound(err):
			return false, nil
		case !apierrors.IsConflict(err) || attempt == 5:
			return false, fmt.Errorf("rewriting Secret %s: %w", nn, err)
		}
	}
}

// Migrator rewrites the Secrets that are not stored with the active key:
// at start (a cluster that ran before encryption was on, or with another
// provider) and every Interval after. It runs on the server holding the
// distro-controllers Lease.
type Migrator struct {
	ConfigPath string
	Etcd       clientv3.Config
	Client     kubernetes.Interface
	Interval   time.Duration
}

func (m *Migrator) Name() string { return "secrets encryption" }

func (m *Migrator) Run(ctx context.Context, ready func()) error {
	ready()
	cli, err := clientv3.New(m.Etcd)
	if err != nil {
		return err
	}
	defer cli.Close()
	interval := m.Interval
	if interval == 0 {
		interval = 30 * time.Minute
	}
	for {
		wait := interval
		if err := m.once(ctx, cli); err != nil {
			klog.Warningf("secrets encryption: %v; trying again in 30s", err)
			wait = 30 * time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func (m *Migrator) once(ctx context.Context, cli *clientv3.Client) error {
	cfg, err := Load(m.ConfigPath)
	if err != nil {
		return err
	}
	active := ActiveOf(cfg)
	st, err := Scan(ctx, cli, active)
	if err != nil {
		return err
	}
	if len(st.Stale) == 0 {
		return nil
	}
	what := "plain text"
	if active.Prefix != "" {
		what = active.Provider + " key " + active.Key
	}
	klog.Infof("secrets encryption: %d of %d Secrets are not stored with %s: rewriting them", len(st.Stale), st.Total, what)
	start := time.Now()
	n, err := Rewrite(ctx, m.Client, st.Stale)
	if err != nil {
		return err
	}
	klog.Infof("secrets encryption: rewrote %d Secrets with %s in %.1fs", n, what, time.Since(start).Seconds())
	return nil
}
