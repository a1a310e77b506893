// Package component gives every part of distro the same small lifecycle: a
// component runs until its context ends and says when it is ready, and a
// Starter brings a list of components up in order, waiting on each one's
// readiness before starting the next, and stops all of them on the first
// failure.
package component

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Component is one thing that runs inside distro (etcd, the apiserver, ...).
type Component interface {
	// Name is used in logs.
	Name() string
	// Run blocks until ctx ends or the component fails. It calls ready
	// once the component serves; ready may be called more than once.
	Run(ctx context.Context, ready func()) error
}

// StopTimeouter is implemented by components that need longer than the
// Starter's PerStopTimeout to stop cleanly.
type StopTimeouter interface {
	StopTimeout() time.Duration
}

// Func adapts a function to a Component.
type Func struct {
	N string
	F func(ctx context.Context, ready func()) error
}

func (f Func) Name() string                                { return f.N }
func (f Func) Run(ctx context.Context, ready func()) error { return f.F(ctx, ready) }

// DefaultPerStopTimeout is how long a Starter waits for one component to
// stop unless the component says otherwise.
const DefaultPerStopTimeout = 5 * time.Second

// Starter runs components in order.
type Starter struct {
	// ReadyTimeout bounds how long one component may take to become ready.
	ReadyTimeout time.Duration
	// StopTimeout bounds how long all components together may take to
	// return after the context ends; PerStopTimeout bounds each one.
	StopTimeout, PerStopTimeout time.Duration
}

type running struct {
	name    string
	timeout time.Duration
	cancel  context.CancelFunc
	done    chan struct{}
}

// Run starts each component in turn and waits for it to become ready. It
// calls onReady once all are ready, then blocks until ctx ends or any
// component returns. It then stops the components in reverse order and
// returns the first failure (nil when ctx ended and all stopped cleanly).
func (s Starter) Run(ctx context.Context, comps []Component, onReady func()) error {
	if s.ReadyTimeout == 0 {
		s.ReadyTimeout = 5 * time.Minute
	}
	if s.StopTimeout == 0 {
		s.StopTimeout = 18 * time.Second
	}
	if s.PerStopTimeout == 0 {
		s.PerStopTimeout = DefaultPerStopTimeout
	}
	failed := make(chan error, len(comps))
	var started []*running

	// stopAll cancels the components in reverse order, waiting for each
	// (PerStopTimeout at most, StopTimeout in all) before the next: a
	// component that hangs on shutdown does not keep the ones it depends
	// on (etcd last) from closing cleanly.
	stopAll := func() {
		deadline := time.Now().Add(s.StopTimeout)
		for i := len(started) - 1; i >= 0; i-- {
			r := started[i]
			r.cancel()
			wait := min(r.timeout, time.Until(deadline))
			if wait <= 0 {
				continue
			}
			select {
			case <-r.done:
			case <-time.After(wait):
				klog.Warningf("%s did not stop within %s; stopping the rest", r.name, wait.Round(time.Millisecond))
			}
		}
	}

	for _, c := range comps {
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		r := &running{name: c.Name(), timeout: s.PerStopTimeout, cancel: cancel, done: make(chan struct{})}
		if st, ok := c.(StopTimeouter); ok {
			r.timeout = st.StopTimeout()
		}
		readyCh := make(chan struct{})
		var once sync.Once
		ready := func() { once.Do(func() { close(readyCh) }) }
		started = append(started, r)
		go func(c Component) {
			defer close(r.done)
			err := c.Run(cctx, ready)
			if cctx.Err() == nil {
				if err == nil {
					err = errors.New("exited")
				}
				failed <- fmt.Errorf("%s: %w", c.Name(), err)
			}
		}(c)

		start := time.Now()
		tick := time.NewTicker(5 * time.Second)
		timeout := time.NewTimer(s.ReadyTimeout)
		waiting := true
		for waiting {
			select {
			case <-readyCh:
				klog.Infof("%s ready after %.2fs", c.Name(), time.Since(start).Seconds())
				waiting = false
			case <-tick.C:
				klog.Infof("waiting for %s to become ready (%.0fs so far)", c.Name(), time.Since(start).Seconds())
			case <-timeout.C:
				tick.Stop()
				stopAll()
				return fmt.Errorf("%s did not become ready within %s", c.Name(), s.ReadyTimeout)
			case err := <-failed:
				tick.Stop()
				stopAll()
				return err
			case <-ctx.Done():
				tick.Stop()
				stopAll()
				return nil
			}
		}
		tick.Stop()
		timeout.Stop()
	}
	if onReady != nil {
		onReady()
	}
	select {
	case err := <-failed:
		klog.Errorf("stopping: %v", err)
		stopAll()
		return err
	case <-ctx.Done():
		klog.Info("shutting down")
		stopAll()
		return nil
	}
}

// Group runs components as one: started in order by a Starter, ready once
// all are, stopped together.
func Group(name string, comps ...Component) Component {
	return Func{N: name, F: func(ctx context.Context, ready func()) error {
		return Starter{}.Run(ctx, comps, ready)
	}}
}
