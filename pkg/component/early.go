package component

import (
	"context"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Early lets c start ahead of its place in the boot order, for a component
// that needs nothing started before it but is needed only later (the
// container runtime and its image import, which need no apiserver, start
// alongside the control plane). start runs c and is ready at once; await
// is ready once c is. A failure of c stops the Starter as usual; c stops
// in start's place of the reverse order.
func Early(c Component) (start, await Component) {
	e := &early{c: c, ready: make(chan struct{})}
	return &earlyStart{e}, &earlyAwait{e}
}

type early struct {
	c     Component
	ready chan struct{}
	once  sync.Once
	begun time.Time
}

type earlyStart struct{ *early }

func (s *earlyStart) Name() string { return s.c.Name() + " (started early)" }

func (s *earlyStart) Run(ctx context.Context, ready func()) error {
	s.begun = time.Now()
	ready()
	return s.c.Run(ctx, func() {
		s.once.Do(func() {
			klog.Infof("%s ready after %.2fs (started early)", s.c.Name(), time.Since(s.begun).Seconds())
			close(s.early.ready)
		})
	})
}

// StopTimeout is c's own.
func (s *earlyStart) StopTimeout() time.Duration {
	if st, ok := s.c.(StopTimeouter); ok {
		return st.StopTimeout()
	}
	return DefaultPerStopTimeout
}

type earlyAwait struct{ *early }

func (a *earlyAwait) Name() string { return a.c.Name() }

func (a *earlyAwait) Run(ctx context.Context, ready func()) error {
	select {
	case <-a.early.ready:
		ready()
	case <-ctx.Done():
		return nil
	}
	<-ctx.Done()
	return nil
}
