package profiling

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// statFields cuts after the command's last ')', so a command holding
// spaces and parentheses does not shift the fields: a child named
// "a) b (c" has its state as field 3 and this process as its parent
// (field 4); ProcessStart names it until it has exited.
func TestStatFields(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep on this host")
	}
	odd := filepath.Join(t.TempDir(), "a) b (c")
	if err := os.Symlink(sleep, odd); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(odd, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	f := statFields(pid)
	if state := statField(f, 3); len(state) != 1 {
		t.Fatalf("field 3 of %q's stat is %q, not a state", odd, state)
	}
	if ppid := statField(f, 4); ppid != strconv.Itoa(os.Getpid()) {
		t.Fatalf("field 4 (parent) is %q, want %d", ppid, os.Getpid())
	}
	started := ProcessStart(pid)
	if started == "" || ProcessStart(pid) != started {
		t.Fatalf("ProcessStart of a running child: %q, then %q", started, ProcessStart(pid))
	}
	cmd.Process.Kill()
	cmd.Wait()
	if s := ProcessStart(pid); s != "" {
		t.Fatalf("ProcessStart of an exited child: %q", s)
	}
}
