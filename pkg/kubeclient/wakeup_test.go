package kubeclient

import "testing"

// A burst of pokes wakes the reader once, and none of them blocks.
func TestWakeupCoalesces(t *testing.T) {
	w := NewWakeup()
	for range 100 {
		w.Poke()
	}
	select {
	case <-w:
	default:
		t.Fatal("no wake-up after 100 pokes")
	}
	select {
	case <-w:
		t.Fatal("a second wake-up for one burst")
	default:
	}
	w.Poke()
	select {
	case <-w:
	default:
		t.Fatal("no wake-up for a poke after the read")
	}
}
