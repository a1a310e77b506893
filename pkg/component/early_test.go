package component

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEarlyRunsAheadAndGatesTheRest(t *testing.T) {
	r := &recorder{}
	release := make(chan struct{})
	slow := Func{N: "x", F: func(ctx context.Context, ready func()) error {
		r.add("start x")
		<-release
		ready()
		<-ctx.Done()
		r.add("stop x")
		return nil
	}}
	start, await := Early(slow)
	ctx, cancel := context.WithCancel(context.Background())
	readyCalled := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- Starter{}.Run(ctx, []Component{start, comp(r, "a"), await, comp(r, "b")}, func() { close(readyCalled) })
	}()
	deadline := time.Now().Add(5 * time.Second)
	for r.String() != "start x,start a" {
		if time.Now().After(deadline) {
			t.Fatalf("events %q: a did not start while x was not ready", r.String())
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if got := r.String(); got != "start x,start a" {
		t.Fatalf("events %q: b started before x was ready", got)
	}
	close(release)
	<-readyCalled
	if got := r.String(); got != "start x,start a,start b" {
		t.Fatalf("events %q", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := r.String(); got != "start x,start a,start b,stop b,stop a,stop x" {
		t.Fatalf("stop order %q", got)
	}
}

func TestEarlyFailureStopsEverything(t *testing.T) {
	r := &recorder{}
	fail := make(chan struct{})
	boom := Func{N: "boom", F: func(ctx context.Context, ready func()) error {
		<-fail
		return errors.New("exploded")
	}}
	start, await := Early(boom)
	a := Func{N: "a", F: func(ctx context.Context, ready func()) error {
		r.add("start a")
		ready()
		close(fail)
		<-ctx.Done()
		r.add("stop a")
		return nil
	}}
	err := Starter{}.Run(context.Background(), []Component{start, a, await, comp(r, "never")}, nil)
	if err == nil || !strings.Contains(err.Error(), "boom (started early): exploded") {
		t.Fatalf("err = %v", err)
	}
	if got := r.String(); got != "start a,stop a" {
		t.Fatalf("events %q", got)
	}
}
