// Package leader runs a component on one server at a time: the one holding
// its Lease in kube-system. Losing the Lease stops the component and puts
// the server back in the running for it; the process goes on. (Upstream's
// own leader election in kube-scheduler and kube-controller-manager exits
// the process when the Lease is lost, and on a normal stop while leading:
// distro runs them with it turned off, inside Elected.)
package leader

import (
	"context"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"distro/pkg/component"
)

// Upstream's defaults for the control-plane components' Leases.
const (
	LeaseDuration = 15 * time.Second
	RenewDeadline = 10 * time.Second
	RetryPeriod   = 2 * time.Second
)

// Elected runs Inner while this server holds the Lease kube-system/Lease.
type Elected struct {
	Lease string
	// Identity names the holder. A server uses its node name, so that after
	// a crash it takes its own Lease back at once instead of waiting for it
	// to expire.
	Identity string
	Client   kubernetes.Interface
	Inner    component.Component
}

// Name implements component.Component.
func (e *Elected) Name() string { return e.Inner.Name() }

// StopTimeout passes the inner component's stop timeout on.
func (e *Elected) StopTimeout() time.Duration {
	if st, ok := e.Inner.(component.StopTimeouter); ok {
		return st.StopTimeout()
	}
	return component.DefaultPerStopTimeout
}

// Run implements component.Component. It is ready once Inner is (this
// server leads), or as soon as another server is seen holding the Lease,
// or after ReadyTimeout: boot order stays as without election (the
// controller-manager initialises its volume plugins before the kubelet
// does; the CSI plugin keeps process-wide state the last Init wins), and a
// server that does not lead does not hold the rest of its boot back.
func (e *Elected) Run(ctx context.Context, ready func()) error {
	var once sync.Once
	readyOnce := func() { once.Do(ready) }
	t := time.AfterFunc(ReadyTimeout, readyOnce)
	defer t.Stop()
	for {
		err := e.round(ctx, readyOnce)
		if err != nil || ctx.Err() != nil {
			return err
		}
		klog.Infof("%s: lost the lease kube-system/%s: stopped it; campaigning again", e.Name(), e.Lease)
	}
}

// ReadyTimeout bounds how long an elected component holds the boot back.
const ReadyTimeout = 20 * time.Second

// round campaigns for the Lease, runs Inner while it is held and returns
// once Inner has stopped: nil when the Lease was lost or ctx ended, Inner's
// error when it failed on its own.
func (e *Elected) round(ctx context.Context, ready func()) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Inner runs here, never in the elector's callback goroutine, so two
	// rounds can never overlap.
	leading := make(chan context.Context, 1)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, Name: e.Lease},
			Client:     e.Client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: e.Identity},
		},
		LeaseDuration:   LeaseDuration,
		RenewDeadline:   RenewDeadline,
		RetryPeriod:     RetryPeriod,
		ReleaseOnCancel: true,
		Name:            e.Lease,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) { leading <- lctx },
			OnStoppedLeading: func() {}, // required by client-go; a lost lease ends lctx, below
			OnNewLeader: func(identity string) {
				if identity != e.Identity {
					ready() // another server leads
				}
			},
		},
	})
	if err != nil {
		return err
	}
	elected := make(chan struct{})
	go func() {
		defer close(elected)
		le.Run(rctx)
	}()
	select {
	case <-elected:
		return nil // ctx ended before this server led
	case lctx := <-leading:
		klog.Infof("%s: this server holds the lease kube-system/%s: starting", e.Name(), e.Lease)
		err := e.Inner.Run(lctx, ready)
		var innerErr error
		if lctx.Err() == nil {
			// Failed while leading: end the round, releasing the Lease.
			innerErr = err
		}
		cancel()
		<-elected
		return innerErr
	}
}
