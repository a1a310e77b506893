package images

import (
	"context"
	"encoding/json"
	"errors"
	"os"

	"github.com/containerd/containerd/v2/client"
	"k8s.io/klog/v2"

	"distro/pkg/fsutil"
)

// record maps a tarball's path to what its last import stored. It lives in
// containerd's root, so wiping that folder forgets it too; every entry is
// checked against containerd before it is trusted.
type record map[string]entry

type entry struct {
	Size    int64 `json:"size"`
	ModTime int64 `json:"mtimeNanos"`
	// Images maps each image name the tarball holds to its digest.
	Images map[string]string `json:"images"`
}

func newEntry(st os.FileInfo, imgs []client.Image) entry {
	e := entry{Size: st.Size(), ModTime: st.ModTime().UnixNano(), Images: map[string]string{}}
	for _, img := range imgs {
		e.Images[img.Name()] = img.Target().Digest.String()
	}
	return e
}

// sameFile reports whether the tarball looks as it did at its import.
func (e entry) sameFile(st os.FileInfo) bool {
	return e.Size == st.Size() && e.ModTime == st.ModTime().UnixNano() && len(e.Images) > 0
}

// present reports whether containerd still holds every image of the entry
// as the import left it: same digest, pinned, unpacked. Another tarball
// that carried the same name since, an image removed by hand or a wiped
// snapshotter all make the tarball be imported again.
func (e entry) present(ctx context.Context, c *client.Client) bool {
	for name, dgst := range e.Images {
		img, err := c.ImageService().Get(ctx, name)
		if err != nil || img.Target.Digest.String() != dgst || img.Labels[PinnedLabel] != "pinned" {
			return false
		}
		if ok, err := client.NewImage(c, img).IsUnpacked(ctx, Snapshotter); err != nil || !ok {
			return false
		}
	}
	return true
}

// loadRecord reads the record at path; a missing or unreadable one is
// empty (every tarball is imported).
func loadRecord(path string) record {
	r := record{}
	if path == "" {
		return r
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			klog.Warningf("image import: %v (importing every tarball)", err)
		}
		return r
	}
	if err := json.Unmarshal(b, &r); err != nil {
		klog.Warningf("image import: %s: %v (importing every tarball)", path, err)
		return record{}
	}
	return r
}

// save replaces the record at path atomically.
func (r record) save(path string) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, b, 0o600)
}
