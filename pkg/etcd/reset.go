package etcd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	utilsnap "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"

	"distro/pkg/etcd/snapshot"
	"distro/pkg/fsutil"
)

// revisionBump is added to the restored datastore's revision, and that
// revision marked compacted, so that clients that watched the cluster before
// the restore (kubelets, controllers) relist instead of waiting for a
// revision the restored store will not reach for a long time.
const revisionBump = 1_000_000_000

// Reset turns this member into a one-member cluster, from its own data or,
// when restorePath is set, from that snapshot. A snapshot is verified (and
// checked to be of this cluster) before anything on disk is touched; check,
// when set, also sees the snapshot's cluster ID and sealed bootstrap data
// first and can refuse it. The old data is kept next to the new, and its
// path returned.
func (c Config) Reset(ctx context.Context, restorePath string, check func(clusterID string, bootstrap []byte) error) (string, error) {
	stamp := time.Now().UTC().Format("20060102T150405Z")
	old := c.DataDir + "-old-" + stamp
	for i := 2; fsutil.Exists(old); i++ {
		old = fmt.Sprintf("%s-old-%s-%d", c.DataDir, stamp, i)
	}
	if restorePath != "" {
		return old, c.restore(restorePath, old, stamp, check)
	}
	if _, err := os.Stat(filepath.Join(c.DataDir, "member")); err != nil {
		return "", fmt.Errorf("--cluster-reset: no etcd data in %s to reset (give --cluster-reset-restore-path to restore a snapshot)", c.DataDir)
	}
	klog.Infof("cluster reset: copying %s to %s", c.DataDir, old)
	if err := copyDir(c.DataDir, old); err != nil {
		os.RemoveAll(old)
		return "", fmt.Errorf("--cluster-reset: keeping a copy of the old data: %w", err)
	}
	cfg, err := c.Build()
	if err != nil {
		return "", err
	}
	cfg.ForceNewCluster = true
	klog.Infof("cluster reset: starting etcd on %s as a new one-member cluster", c.DataDir)
	e, err := startEtcd(cfg)
	if err != nil {
		return "", fmt.Errorf("--cluster-reset: start etcd: %w", err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return "", fmt.Errorf("--cluster-reset: etcd: %w", err)
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return old, c.checkClusterID(ctx, e)
}

func (c Config) restore(path, old, stamp string, check func(string, []byte) error) error {
	klog.Infof("cluster reset: verifying snapshot %s", path)
	if _, err := snapshot.Verify(path); err != nil {
		return fmt.Errorf("--cluster-reset-restore-path: %w", err)
	}
	parent := filepath.Dir(c.DataDir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return err
	}
	tmp := filepath.Join(parent, ".restore-"+stamp)
	defer os.RemoveAll(tmp)
	klog.Infof("cluster reset: restoring %s into %s", path, tmp)
	err := utilsnap.NewV3(zap.NewNop()).Restore(utilsnap.RestoreConfig{
		SnapshotPath:        path,
		Name:                c.Member,
		OutputDataDir:       tmp,
		PeerURLs:            []string{c.PeerURL()},
		InitialCluster:      c.Member + "=" + c.PeerURL(),
		InitialClusterToken: embed.NewConfig().InitialClusterToken,
		RevisionBump:        revisionBump,
		MarkCompacted:       true,
	})
	if err != nil {
		return fmt.Errorf("--cluster-reset-restore-path %s: %v", path, snapshot.FirstLine(err))
	}
	vals, err := readKeys(filepath.Join(tmp, "member", "snap", "db"), ClusterIDKey, BootstrapKey)
	if err != nil {
		return fmt.Errorf("--cluster-reset-restore-path %s: %v", path, err)
	}
	id := string(vals[ClusterIDKey])
	if id != "" && c.ClusterID != "" && id != c.ClusterID {
		return fmt.Errorf("--cluster-reset-restore-path %s is a snapshot of another cluster (its CA hash %s, this server's %s)", path, id, c.ClusterID)
	}
	if check != nil {
		if err := check(id, vals[BootstrapKey]); err != nil {
			return fmt.Errorf("--cluster-reset-restore-path %s: %w", path, err)
		}
	}
	if _, err := os.Stat(c.DataDir); err == nil {
		klog.Infof("cluster reset: moving the old data to %s", old)
		if err := os.Rename(c.DataDir, old); err != nil {
			return err
		}
	}
	return os.Rename(tmp, c.DataDir)
}

// readKeys returns the newest values of keys in an etcd database file
// (absent or deleted keys are missing from the map).
func readKeys(dbPath string, keys ...string) (map[string][]byte, error) {
	db, err := bolt.Open(dbPath, 0o400, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	vals := map[string][]byte{}
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("key"))
		if b == nil {
			return errors.New("not an etcd v3 database (no key bucket)")
		}
		return b.ForEach(func(k, v []byte) error {
			var kv mvccpb.KeyValue
			if err := proto.Unmarshal(v, &kv); err != nil {
				return err
			}
			if !slices.Contains(keys, string(kv.Key)) {
				return nil
			}
			if mvcc.IsTombstone(k) {
				delete(vals, string(kv.Key))
			} else {
				vals[string(kv.Key)] = kv.Value
			}
			return nil
		})
	})
	return vals, err
}

// copyDir copies a folder tree of regular files, keeping modes.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(target, info.Mode().Perm())
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_EXCL, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
