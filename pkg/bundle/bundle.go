// Package bundle carries the node's runtime files inside the distro binary
// (runc, the containerd shim, CNI plugins, the pause image) and extracts them
// once per content hash to <data-dir>/data/<hash>.
package bundle

import (
	"archive/tar"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"k8s.io/klog/v2"

	"distro/pkg/profiling"
)

//go:embed assets
var assets embed.FS

// zstd: it unpacks in a third of gzip's CPU time (~0.6 s instead of ~1.6 s
// for the ~280 MB here, on a first start that is short of CPU) and is
// smaller.
const archive = "assets/runtime.tar.zst"

// archiveHash is the archive's sha256, written beside it by `make`, so a
// start need not read the whole archive to find its folder.
const archiveHash = archive + ".sha256"

// ErrMissing means the binary was built without the runtime bundle.
var ErrMissing = errors.New("this distro binary was built without the node runtime bundle (runc, shim, CNI plugins, pause image); build it with `make`")

// Dir is an extracted bundle.
type Dir string

// Bin is the folder of runtime binaries.
func (d Dir) Bin() string { return filepath.Join(string(d), "bin") }

// Images is the folder of image tarballs carried in the binary.
func (d Dir) Images() string { return filepath.Join(string(d), "images") }

// Start returns the folder the bundle is (or will be) extracted to and a
// wait for the extraction, which runs in the background: on a first start
// unpacking takes about a second, which then overlaps the control plane's
// boot instead of delaying it. A binary without the bundle fails here.
func Start(dataDir string) (Dir, func() error, error) {
	hash, err := bundleHash()
	if err != nil {
		return "", nil, err
	}
	dst := Dir(filepath.Join(dataDir, "data", hash))
	done := make(chan struct{})
	var extractErr error
	go func() {
		defer close(done)
		extractErr = extract(dataDir, hash)
	}()
	wait := func() error {
		select {
		case <-done:
		default:
			klog.Infof("waiting for the runtime bundle to be extracted to %s", dst)
			<-done
		}
		return extractErr
	}
	return dst, wait, nil
}

// bundleHash names the bundle's folder: the first 16 hex digits of its
// sha256, from the file `make` writes, else computed.
func bundleHash() (string, error) {
	f, err := assets.Open(archive)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", ErrMissing
		}
		return "", err
	}
	defer f.Close()
	if b, err := assets.ReadFile(archiveHash); err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		return strings.TrimSpace(string(b))[:16], nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Path returns the folder the bundle is extracted to, without extracting.
func Path(dataDir string) (Dir, error) {
	hash, err := bundleHash()
	if err != nil {
		return "", err
	}
	return Dir(filepath.Join(dataDir, "data", hash)), nil
}

// Extract unpacks the bundle and returns its folder (Start, then wait).
func Extract(dataDir string) (Dir, error) {
	dst, wait, err := Start(dataDir)
	if err != nil {
		return "", err
	}
	return dst, wait()
}

// extract unpacks the bundle to <dataDir>/data/<hash> unless a complete
// copy is already there. It unpacks into a temporary folder renamed into
// place, under a lock, so concurrent or interrupted starts never see a
// partial bundle.
func extract(dataDir, hash string) error {
	base := filepath.Join(dataDir, "data")
	dst := filepath.Join(base, hash)
	if err := os.MkdirAll(base, 0o700); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(base, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dst, ".complete")); err == nil {
		return nil
	}
	// What an interrupted extraction left (we hold the lock).
	stale, _ := filepath.Glob(filepath.Join(base, ".extract-*"))
	for _, d := range stale {
		os.RemoveAll(d)
	}
	tmp, err := os.MkdirTemp(base, ".extract-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// Streamed from the binary: never a copy of the whole archive in memory.
	f, err := assets.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := untar(f, tmp); err != nil {
		return fmt.Errorf("extract runtime bundle: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), []byte(hash+"\n"), 0o644); err != nil {
		return err
	}
	os.RemoveAll(dst)
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	current := filepath.Join(base, "current")
	os.Remove(current)
	os.Symlink(hash, current)
	klog.Infof("runtime bundle extracted to %s", dst)
	releaseArchivePages()
	return nil
}

func untar(r io.Reader, dst string) error {
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return err
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if strings.HasPrefix(name, "..") || filepath.IsAbs(name) {
			return fmt.Errorf("bad path %q in bundle", h.Name)
		}
		p := filepath.Join(dst, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		}
	}
}

// releaseArchivePages drops this process's mapping of the binary's
// read-only data after an extraction read the whole archive from it: those
// ~80 MB would otherwise count in the process's RSS for as long as it runs.
// The pages stay in the page cache; anything else there that is read again
// is mapped back in on access (it is a read-only file mapping).
func releaseArchivePages() {
	maps, err := profiling.ExecutableMappings()
	if err != nil {
		return
	}
	for _, m := range maps {
		if m.Perms != "r--p" {
			continue
		}
		if err := m.Advise(unix.MADV_DONTNEED); err != nil {
			klog.V(2).Infof("madvise %x-%x: %v", m.Start, m.End, err)
		}
	}
}
