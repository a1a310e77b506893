package kubeclient

// Wakeup wakes a loop that acts on the whole state an informer holds:
// Poke never blocks, and any number of pokes before the loop reads the
// channel wake it once (a burst of events, one pass).
type Wakeup chan struct{}

// NewWakeup returns a Wakeup with nothing pending.
func NewWakeup() Wakeup { return make(Wakeup, 1) }

// Poke makes the next read of w return; it never blocks.
func (w Wakeup) Poke() {
	select {
	case w <- struct{}{}:
	default:
	}
}
