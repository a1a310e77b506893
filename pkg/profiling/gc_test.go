package profiling

import (
	"testing"
	"time"
)

// BootWorkDone stays open while registered boot work runs (AfterBoot's
// release must not run under the node's image import) and closes once each
// done was called, a second call of one done changing nothing.
func TestBootWorkDone(t *testing.T) {
	first, second := BootWork(), BootWork()
	done := BootWorkDone()
	first()
	first()
	select {
	case <-done:
		t.Fatal("BootWorkDone closed with one boot work still running")
	case <-time.After(100 * time.Millisecond):
	}
	second()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("BootWorkDone still open after every boot work was done")
	}
	select {
	case <-BootWorkDone():
	case <-time.After(5 * time.Second):
		t.Fatal("BootWorkDone of a later call still open with no boot work")
	}
}
