package kubeclient

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPollStart(t *testing.T) {
	// Until true: the condition runs at once, then again until it holds.
	calls := 0
	if err := PollStart(context.Background(), func(context.Context) (bool, error) {
		calls++
		return calls == 3, nil
	}); err != nil || calls != 3 {
		t.Fatalf("PollStart = %v after %d calls; want nil after 3", err, calls)
	}
	// An error ends it with that error.
	boom := errors.New("boom")
	if err := PollStart(context.Background(), func(context.Context) (bool, error) { return false, boom }); err != boom {
		t.Fatalf("PollStart = %v; want the condition's error", err)
	}
	// The context ending ends it.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := PollStart(ctx, func(context.Context) (bool, error) { return false, nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("PollStart = %v; want the context's error", err)
	}
}
