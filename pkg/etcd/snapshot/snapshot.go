// Package snapshot saves, verifies, lists and prunes snapshots of distro's
// embedded etcd, and takes them on a schedule.
package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	clientsnap "go.etcd.io/etcd/client/v3/snapshot"
	utilsnap "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"distro/pkg/fsutil"
)

// Name prefixes: the schedule prunes only its own snapshots, never the
// ones taken on demand.
const (
	ScheduledPrefix = "etcd-snapshot"
	OnDemandPrefix  = "on-demand"
)

// File is one snapshot on disk.
type File struct {
	Name    string
	Path    string
	Size    int64
	Created time.Time
}

// Status is what verifying a snapshot found in it.
type Status struct {
	Revision int64
	Keys     int
	Hash     uint32
}

// Store is a folder of snapshots.
type Store struct {
	Dir string
}

// Save takes a snapshot from the etcd member cc points at (one endpoint),
// verifies it and stores it as <prefix>-<node>-<unix time>. Only one save
// or prune runs at a time in a folder.
func (s Store) Save(ctx context.Context, cc clientv3.Config, prefix, node string) (File, Status, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return File{}, Status{}, fmt.Errorf("snapshot folder: %w", err)
	}
	unlock, err := s.lock()
	if err != nil {
		return File{}, Status{}, err
	}
	defer unlock()
	now := time.Now()
	name := fmt.Sprintf("%s-%s-%d", prefix, node, now.Unix())
	for i := 2; fsutil.Exists(filepath.Join(s.Dir, name)); i++ {
		name = fmt.Sprintf("%s-%s-%d-%d", prefix, node, now.Unix(), i)
	}
	final := filepath.Join(s.Dir, name)
	// SaveWithVersion writes <path>.part and renames it when complete.
	tmp := filepath.Join(s.Dir, "."+name+".tmp")
	defer os.Remove(tmp + ".part")
	defer os.Remove(tmp)
	if _, err := clientsnap.SaveWithVersion(ctx, zap.NewNop(), cc, tmp); err != nil {
		return File{}, Status{}, fmt.Errorf("save snapshot: %w", err)
	}
	st, err := Verify(tmp)
	if err != nil {
		return File{}, Status{}, fmt.Errorf("snapshot just saved does not verify: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return File{}, Status{}, err
	}
	fi, err := os.Stat(final)
	if err != nil {
		return File{}, Status{}, err
	}
	return File{Name: name, Path: final, Size: fi.Size(), Created: fi.ModTime()}, st, nil
}

// Verify checks a snapshot file before it is trusted: the SHA-256 etcd
// appends to every snapshot matches its content, and the database inside
// passes bbolt's consistency check.
func Verify(path string) (Status, error) {
	f, err := os.Open(path)
	if err != nil {
		return Status{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Status{}, err
	}
	n := fi.Size()
	// etcd appends a 32-byte digest to a database of whole 512-byte pages.
	if n < 512+sha256.Size || n%512 != sha256.Size {
		return Status{}, fmt.Errorf("%s is not a complete etcd snapshot (size %d: truncated, or not a snapshot)", path, n)
	}
	h := sha256.New()
	if _, err := io.CopyN(h, f, n-sha256.Size); err != nil {
		return Status{}, err
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, want); err != nil {
		return Status{}, err
	}
	if !bytes.Equal(h.Sum(nil), want) {
		return Status{}, fmt.Errorf("%s is corrupt: its SHA-256 does not match the digest etcd stored in it", path)
	}
	st, err := utilsnap.NewV3(zap.NewNop()).Status(path)
	if err != nil {
		return Status{}, fmt.Errorf("%s is corrupt: %v", path, FirstLine(err))
	}
	return Status{Revision: st.Revision, Keys: st.TotalKey, Hash: st.Hash}, nil
}

// List returns the snapshots in the folder, oldest first. A missing folder
// holds none.
func (s Store) List() ([]File, error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []File
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, File{Name: e.Name(), Path: filepath.Join(s.Dir, e.Name()), Size: fi.Size(), Created: created(e.Name(), fi.ModTime())})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// created reads the time from a snapshot's name (<prefix>-<node>-<unix>[-n]),
// falling back to the file's modification time.
func created(name string, mtime time.Time) time.Time {
	parts := strings.Split(name, "-")
	for i := len(parts) - 1; i >= 0 && i >= len(parts)-2; i-- {
		if sec, err := strconv.ParseInt(parts[i], 10, 64); err == nil && sec > 1e9 {
			return time.Unix(sec, 0)
		}
	}
	return mtime
}

// Delete removes the named snapshots. Every name must be a snapshot in the
// folder; nothing is removed when one is not.
func (s Store) Delete(names ...string) error {
	for _, n := range names {
		if n == "" || strings.ContainsRune(n, '/') || strings.HasPrefix(n, ".") {
			return fmt.Errorf("%q is not a snapshot name (see `distro etcd-snapshot ls`)", n)
		}
		if fi, err := os.Stat(filepath.Join(s.Dir, n)); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("snapshot %q not found in %s", n, s.Dir)
		}
	}
	for _, n := range names {
		if err := os.Remove(filepath.Join(s.Dir, n)); err != nil {
			return err
		}
	}
	return nil
}

// Prune keeps the newest keep snapshots named <prefix>-… and deletes the
// older ones, returning their names.
func (s Store) Prune(prefix string, keep int) ([]string, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	var mine []File
	for _, f := range all {
		if strings.HasPrefix(f.Name, prefix+"-") {
			mine = append(mine, f)
		}
	}
	var deleted []string
	for i := 0; i < len(mine)-keep; i++ {
		if err := os.Remove(mine[i].Path); err != nil {
			return deleted, err
		}
		deleted = append(deleted, mine[i].Name)
	}
	return deleted, nil
}

// lock takes the folder's lock file, so that a scheduled snapshot and one
// taken from the command line never run at the same time.
func (s Store) lock() (func(), error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(s.Dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// FirstLine is an etcdutl error without the lines of detail some of them
// carry, for a one-line message.
func FirstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
