package component

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.events, ",")
}

func comp(r *recorder, name string) Component {
	return Func{N: name, F: func(ctx context.Context, ready func()) error {
		r.add("start " + name)
		ready()
		<-ctx.Done()
		r.add("stop " + name)
		return nil
	}}
}

func TestOrderAndReverseStop(t *testing.T) {
	r := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	readyCalled := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- Starter{}.Run(ctx, []Component{comp(r, "a"), comp(r, "b"), comp(r, "c")}, func() { close(readyCalled) })
	}()
	<-readyCalled
	if got := r.String(); got != "start a,start b,start c" {
		t.Fatalf("start order %q", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := r.String(); got != "start a,start b,start c,stop c,stop b,stop a" {
		t.Fatalf("stop order %q", got)
	}
}

func TestFailureStopsEverything(t *testing.T) {
	r := &recorder{}
	boom := Func{N: "boom", F: func(ctx context.Context, ready func()) error {
		return errors.New("exploded")
	}}
	err := Starter{}.Run(context.Background(), []Component{comp(r, "a"), boom, comp(r, "never")}, nil)
	if err == nil || !strings.Contains(err.Error(), "boom: exploded") {
		t.Fatalf("err = %v", err)
	}
	if got := r.String(); got != "start a,stop a" {
		t.Fatalf("events %q", got)
	}
}

func TestReadyTimeout(t *testing.T) {
	slow := Func{N: "slow", F: func(ctx context.Context, ready func()) error {
		<-ctx.Done()
		return nil
	}}
	err := Starter{ReadyTimeout: time.Millisecond}.Run(context.Background(), []Component{slow}, nil)
	if err == nil || !strings.Contains(err.Error(), "slow did not become ready") {
		t.Fatalf("err = %v", err)
	}
}

func TestHungComponentDoesNotBlockTheRest(t *testing.T) {
	r := &recorder{}
	hung := Func{N: "hung", F: func(ctx context.Context, ready func()) error {
		ready()
		select {} // ignores ctx
	}}
	ctx, cancel := context.WithCancel(context.Background())
	readyCalled := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- Starter{PerStopTimeout: 50 * time.Millisecond}.Run(ctx, []Component{comp(r, "base"), hung}, func() { close(readyCalled) })
	}()
	<-readyCalled
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if got := r.String(); got != "start base,stop base" {
		t.Fatalf("events %q: the component below the hung one was not stopped", got)
	}
}
