// Package images imports image tarballs (docker-archive or OCI) into
// containerd's k8s.io namespace at start, before the kubelet runs, so a node
// needs no registry (airgap).
package images

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"distro/pkg/node/containerd"
	"distro/pkg/profiling"
)

// Importer is the image import component. It is ready as soon as
// containerd answers, so the kubelet registers the node meanwhile; Done
// closes once every image is imported (the pod network waits for it).
type Importer struct {
	Socket string
	// Dirs are scanned for *.tar files, in order.
	Dirs []string
	// Record is the file that remembers what was imported (see record.go);
	// empty imports every tarball on every start.
	Record string
	done   chan struct{}
	// bootWork is called when the import has ended, successful or not (see
	// profiling.BootWork).
	bootWork func()
}

// NewImporter returns the importer of the *.tar files in dirs, remembering
// what it imported in record.
func NewImporter(socket, record string, dirs ...string) *Importer {
	return &Importer{Socket: socket, Record: record, Dirs: dirs, done: make(chan struct{}), bootWork: profiling.BootWork()}
}

// Done is closed when every tarball is imported.
func (i *Importer) Done() <-chan struct{} { return i.done }

func (i *Importer) Name() string { return "image import" }

// Run imports every tarball once, then waits for ctx. The tarballs of one
// folder are imported in parallel (they are on the node's boot path); a
// later folder's images replace an earlier one's of the same name. A
// tarball imported by an earlier start, unchanged since (same size and
// modification time) and whose images containerd still holds as imported
// (same digests, pinned, unpacked), is not read again: a warm restart
// spends no time hashing images it already has.
func (i *Importer) Run(ctx context.Context, ready func()) error {
	err := i.importAll(ctx, ready)
	i.bootWork()
	if err != nil {
		return err
	}
	close(i.done)
	<-ctx.Done()
	return nil
}

// importAll imports every tarball, through a containerd client it closes
// when done: nothing else needs it, and its connection's buffers would stay.
func (i *Importer) importAll(ctx context.Context, ready func()) error {
	c, err := containerd.New(i.Socket)
	if err != nil {
		return err
	}
	defer c.Close()
	ready()
	start := time.Now()
	old := loadRecord(i.Record)
	now := record{}
	var mu sync.Mutex
	var skipped []string
	for _, dir := range i.Dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.tar"))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(runtime.NumCPU())
		for _, f := range files {
			g.Go(func() error {
				start := time.Now()
				st, err := os.Stat(f)
				if err != nil {
					return fmt.Errorf("import %s: %w", f, err)
				}
				if prev, ok := old[f]; ok && prev.sameFile(st) && prev.present(gctx, c) {
					mu.Lock()
					now[f] = prev
					skipped = append(skipped, filepath.Base(f))
					mu.Unlock()
					return nil
				}
				imgs, err := Import(gctx, c, f)
				if err != nil {
					return fmt.Errorf("import %s: %w", f, err)
				}
				mu.Lock()
				now[f] = newEntry(st, imgs)
				mu.Unlock()
				klog.Infof("imported %s (%s) in %.2fs", filepath.Base(f), strings.Join(names(imgs), ", "), time.Since(start).Seconds())
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	if err := now.save(i.Record); err != nil {
		klog.Warningf("image import: %v (the next start imports every tarball again)", err)
	}
	if len(skipped) > 0 {
		sort.Strings(skipped)
		klog.Infof("images imported in %.2fs; not read again, unchanged since their import and still in containerd: %s", time.Since(start).Seconds(), strings.Join(skipped, ", "))
	} else {
		klog.Infof("images imported in %.2fs", time.Since(start).Seconds())
	}
	return nil
}

// PinnedLabel keeps the kubelet's image garbage collection away from an
// image (containerd's CRI honours it): imported images cannot be pulled
// again on an air-gapped node.
const PinnedLabel = "io.cri-containerd.pinned"

// Snapshotter is the snapshotter imported images are unpacked for.
const Snapshotter = "overlayfs"

// Import loads one tarball, pins its images and unpacks them for the
// overlayfs snapshotter. It returns the images as stored.
func Import(ctx context.Context, c *client.Client, path string) ([]client.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	imgs, err := c.Import(ctx, f, client.WithSkipMissing())
	if err != nil {
		return nil, err
	}
	var out []client.Image
	for _, img := range imgs {
		if img.Labels[PinnedLabel] != "pinned" {
			if img.Labels == nil {
				img.Labels = map[string]string{}
			}
			img.Labels[PinnedLabel] = "pinned"
			updated, err := c.ImageService().Update(ctx, img, "labels."+PinnedLabel)
			if err != nil {
				return nil, fmt.Errorf("pin %s: %w", img.Name, err)
			}
			img = updated
		}
		ci := client.NewImage(c, img)
		if err := ci.Unpack(ctx, Snapshotter); err != nil {
			return nil, fmt.Errorf("unpack %s: %w", img.Name, err)
		}
		out = append(out, ci)
	}
	return out, nil
}

func names(imgs []client.Image) []string {
	var n []string
	for _, img := range imgs {
		n = append(n, img.Name())
	}
	return n
}
