package containerd

import (
	"context"
	"fmt"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/typeurl/v2"
	"k8s.io/klog/v2"

	"distro/pkg/profiling"
)

// AddonPages hands back to the kernel the pages of a packaged add-on's
// executable that its start touched (CoreDNS, metrics-server,
// local-path-provisioner: Go programs whose init and first requests touch
// 30-45 MB of their binaries each, counted in their RSS and in their pods'
// memory), Settle after each of their containers starts, as distro does
// with its own once booted. What a running add-on uses again comes back
// from the page cache. It follows containerd's task-start events; only
// containers of the Images given (the ones distro carries) are touched,
// never a user's workload. Releasing needs process_madvise (Linux 5.10 and
// CAP_SYS_NICE); without it the pages stay, and the log says why.
type AddonPages struct {
	Socket string
	// Images are the image names (as the pod spec gives them) of the
	// containers whose pages are released.
	Images map[string]bool
	// Settle is how long after a container's start its pages are
	// released: past its start-up and its first readiness (metrics-server
	// is Ready after its second scrape, ~10 s).
	Settle time.Duration
}

// AddonSettle is the default AddonPages.Settle.
const AddonSettle = 30 * time.Second

// criImageName is the annotation containerd's CRI puts in a container's
// spec: the image as the pod spec names it.
const criImageName = "io.kubernetes.cri.image-name"

// podNamespaceLabel is the label of a container (the kubelet's, kept by the
// CRI) naming its pod's namespace.
const podNamespaceLabel = "io.kubernetes.pod.namespace"

func (a *AddonPages) Name() string { return "add-on pages" }

// Run follows task starts until ctx ends; it is ready at once (nothing
// waits for it). A broken event stream (containerd restarting) is followed
// again a second later.
func (a *AddonPages) Run(ctx context.Context, ready func()) error {
	ready()
	for ctx.Err() == nil {
		if err := a.follow(ctx); err != nil && ctx.Err() == nil {
			klog.V(2).Infof("add-on pages: containerd's events: %v (following again in 1 s)", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

func (a *AddonPages) follow(ctx context.Context) error {
	c, err := New(a.Socket)
	if err != nil {
		return err
	}
	defer c.Close()
	events, errs := c.Subscribe(ctx, `namespace=="`+Namespace+`",topic=="/tasks/start"`)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			return err
		case e := <-events:
			v, err := typeurl.UnmarshalAny(e.Event)
			if err != nil {
				continue
			}
			start, ok := v.(*eventstypes.TaskStart)
			if !ok {
				continue
			}
			// The add-ons run in kube-system: any other pod's start
			// costs one lookup, not its spec.
			ctr, err := c.LoadContainer(ctx, start.ContainerID)
			if err != nil {
				continue
			}
			if info, err := ctr.Info(ctx, client.WithoutRefreshedMetadata); err != nil || info.Labels[podNamespaceLabel] != "kube-system" {
				continue
			}
			spec, err := ctr.Spec(ctx)
			if err != nil || !a.Images[spec.Annotations[criImageName]] {
				continue
			}
			image, pid := spec.Annotations[criImageName], int(start.Pid)
			started := profiling.ProcessStart(pid)
			time.AfterFunc(a.Settle, func() {
				// Only the same process: not one that reused the PID
				// of a container that exited meanwhile.
				if started != "" && profiling.ProcessStart(pid) == started {
					releasePages(fmt.Sprintf("add-on %s (process %d)", image, pid), "its start", pid)
				}
			})
		}
	}
}
